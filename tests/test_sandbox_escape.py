"""Assume escape: layer 2 of the sandbox holds when layer 1 (the Python policy) is broken.

Every test runs *unrestricted* Python (``PythonExecutor._run_unrestricted``, a test-only hook)
inside the exact child setup of a real run, and asserts one operating-system property:
secrets, network, files, signals, /proc, persistence, fork bombs, and that the fork server
and the process owning the executor survive. Skipped where namespaces are unavailable.
"""

from __future__ import annotations

import os
import signal
import textwrap
import threading
import time
from pathlib import Path

import pytest

from deepcoder.tools import PythonExecutor
from deepcoder.tools.isolation import namespaces_unavailable_reason
from deepcoder.tools.server_handle import PING_TIMEOUT_S
from deepcoder.tools.supervisor import DRAIN_TIMEOUT_S

pytestmark = pytest.mark.skipif(
    namespaces_unavailable_reason() is not None, reason=f"no namespaces here: {namespaces_unavailable_reason()}"
)

SECRET = "gsk_FAKE_secret_value_4242_for_the_escape_suite"


@pytest.fixture(scope="module")
def jail():
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GROQ_API_KEY", SECRET)
        patch.setenv("OPENAI_API_KEY", SECRET)
        with PythonExecutor(timeout_s=10.0, max_output_chars=100_000, _test_hooks=True) as ex:
            yield ex


def escape(ex: PythonExecutor, code: str, **kwargs):
    result = ex._run_unrestricted(textwrap.dedent(code), **kwargs)
    assert result.ok, (result.error, result.stdout)
    return result.stdout


def sandbox_pids(owner: int) -> set[int]:
    """Host pids of every process that belongs to an executor of process `owner`."""
    found = set()
    tag = f"owner={owner}".encode()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                if tag in fh.read().split(b"\0"):
                    found.add(int(pid))
        except OSError:
            pass
    return found


def assert_healthy(ex: PythonExecutor) -> None:
    result = ex.run("import math\nprint(math.pi)")
    assert result.ok and result.stdout == f"{__import__('math').pi}\n", result.error


def test_hook_is_refused_without_test_hooks():
    with PythonExecutor() as ex:
        with pytest.raises(RuntimeError):
            ex._run_unrestricted("print(1)")
        forged = ex._run({"code": "print(1)", "unrestricted": True}, None)
    assert not forged.ok and "test hook" in forged.error


def test_secrets_are_nowhere_in_the_jail(jail):
    assert os.environ["GROQ_API_KEY"] == SECRET
    # The program holds the secret only as two halves, never joined, so that it does not
    # find its own needle: a hit is the whole secret somewhere the jail can read.
    out = escape(
        jail,
        f"""
        import ctypes, os
        ctypes.CDLL(None).prctl(4, 1, 0, 0, 0)  # PR_SET_DUMPABLE, so that /proc/self/mem opens
        head, tail = {SECRET[:20]!r}.encode(), {SECRET[20:]!r}.encode()
        def found(data):
            at = data.find(head)
            while at >= 0:
                if data[at + len(head):at + len(head) + len(tail)] == tail:
                    return True
                at = data.find(head, at + 1)
            return False
        hits = []
        if found(repr(dict(os.environ)).encode()):
            hits.append("os.environ")
        for pid in os.listdir("/proc"):
            for name in ("environ", "cmdline"):
                try:
                    with open(f"/proc/{{pid}}/{{name}}", "rb") as fh:
                        if found(fh.read()):
                            hits.append(f"/proc/{{pid}}/{{name}}")
                except OSError:
                    pass
        regions = 0
        with open("/proc/self/maps") as maps, open("/proc/self/mem", "rb", 0) as mem:
            for line in maps:  # this process's whole memory: a copy of the fork server's
                span, perms = line.split()[:2]
                if not perms.startswith("r") or "[vsyscall]" in line:
                    continue
                start, end = (int(x, 16) for x in span.split("-"))
                try:
                    mem.seek(start)
                    if found(mem.read(end - start)):
                        hits.append("memory " + line.strip())
                    regions += 1
                except OSError:
                    pass
        print(sorted(set(hits)), os.environ.get("GROQ_API_KEY"), regions > 10, open("/proc/1/environ", "rb").read())
    """,
    )
    assert out.startswith("[] None True ")
    assert "API_KEY" not in out


def test_no_network(jail):
    out = escape(
        jail,
        """
        import os, socket
        print(sorted(name for _, name in socket.if_nameindex()))
        for host in ("1.1.1.1", "127.0.0.1"):
            try:
                socket.create_connection((host, 53), timeout=2)
                print("connected", host)
            except OSError as exc:
                print("refused", host, exc.errno)
        import fcntl, struct
        flags = struct.unpack("16sH", fcntl.ioctl(socket.socket(), 0x8913, struct.pack("16sH", b"lo", 0)))[1]
        print("up" if flags & 1 else "down", sorted(os.listdir("/sys/class/net")))
    """,
    )
    lines = out.splitlines()
    assert lines[0] == "['lo']"
    assert lines[1].startswith("refused 1.1.1.1") and lines[2].startswith("refused 127.0.0.1")
    assert lines[3] == "down ['lo']"  # and /sys shows the jail's network namespace, not the host's


def test_no_writes_outside_the_private_tmpdir(jail, tmp_path_factory):
    # a world-writable directory and file in the repository: only the mount stops the child
    victim_dir = Path(__file__).resolve().parent / f".sandbox_victim_{os.getpid()}"
    victim_dir.mkdir()
    try:
        victim = victim_dir / "victim.txt"
        victim.write_text("precious")
        os.chmod(victim_dir, 0o777)
        os.chmod(victim, 0o666)
        host_tmp = tmp_path_factory.mktemp("visible")
        (host_tmp / "other.txt").write_text("other user's file")
        out = escape(
            jail,
            f"""
            import os
            def attempt(label, action):
                try:
                    action()
                    print(label, "DONE")
                except OSError as exc:
                    print(label, "refused")
            attempt("truncate", lambda: open({str(victim)!r}, "w").close())
            attempt("unlink", lambda: os.unlink({str(victim)!r}))
            attempt("create", lambda: open({str(victim_dir / "new")!r}, "x").close())
            attempt("etc", lambda: open("/etc/sandbox-pwned", "x").close())
            print("host tmp", os.path.exists({str(host_tmp / "other.txt")!r}), sorted(os.listdir("/tmp")))
            open("scratch", "w").close()  # the private temp dir (cwd) is writable
            print("cwd", os.getcwd(), sorted(os.listdir(".")))
        """,
        )
        assert victim.read_text() == "precious" and sorted(os.listdir(victim_dir)) == ["victim.txt"]
        assert not os.path.exists("/etc/sandbox-pwned")
        for label in ("truncate", "unlink", "create", "etc"):
            assert f"{label} refused" in out
        assert "host tmp False []" in out and "cwd /tmp ['scratch']" in out
        # and the private temp dir is gone with the run
        again = escape(jail, "import os\nprint(sorted(os.listdir('.')))")
        assert again == "[]\n"
    finally:
        for path in sorted(victim_dir.rglob("*"), reverse=True):
            path.unlink()
        victim_dir.rmdir()


def test_cannot_see_or_signal_other_processes(jail):
    server = jail._server[0]
    before = set(server.server_pids())
    owner = os.getpid()
    out = escape(
        jail,
        f"""
        import os, signal
        print(sorted(p for p in os.listdir("/proc") if p.isdigit()), os.getpid(), os.getppid())
        for pid in {sorted(before | {owner})!r}:
            try:
                os.kill(pid, signal.SIGKILL)
                print("signalled", pid)
            except OSError as exc:
                pass
        for pid in {sorted(before | {owner})!r}:
            try:
                open(f"/proc/{{pid}}/environ").read()
                print("read", pid)
            except OSError:
                pass
        try:
            os.kill(-1, signal.SIGKILL)  # everything this process may signal
        except OSError:
            pass
        print("alive")
    """,
    )
    assert out.splitlines()[0] == "['1'] 1 0"
    assert "signalled" not in out and "read" not in out
    assert set(server.server_pids()) == before
    assert_healthy(jail)


def test_cannot_read_memory_of_other_processes(jail):
    owner, server = os.getpid(), jail._server[0].server_pids()
    out = escape(
        jail,
        f"""
        import ctypes, os
        libc = ctypes.CDLL(None, use_errno=True)
        for pid in {sorted(set(server) | {owner})!r}:
            try:
                open(f"/proc/{{pid}}/mem", "rb").read(1)
                print("mem", pid)
            except OSError:
                pass
            buf = ctypes.create_string_buffer(8)
            local = (ctypes.c_void_p * 2)(ctypes.addressof(buf), 8)
            remote = (ctypes.c_void_p * 2)(0x400000, 8)
            if libc.process_vm_readv(pid, local, 1, remote, 1, 0) >= 0:
                print("vm_readv", pid)
        print("ptrace", libc.ptrace(16, 1, 0, 0), ctypes.get_errno())  # PTRACE_ATTACH
    """,
    )
    assert "mem" not in out and "vm_readv" not in out
    assert out.startswith("ptrace -1")


def test_unprivileged_and_locked_down(jail):
    out = escape(
        jail,
        """
        import ctypes, os
        status = dict(line.split(":", 1) for line in open("/proc/self/status"))
        libc = ctypes.CDLL(None, use_errno=True)
        print(os.getuid() if os.geteuid() else "root-in-ns", status["CapEff"].strip(),
              status["NoNewPrivs"].strip(), status["Seccomp"].strip())
        print("unshare", libc.unshare(0x10000000), "mount", libc.mount(b"none", b"/mnt", b"tmpfs", 0, None))
    """,
    )
    first, second = out.splitlines()
    ident, caps, nnp, seccomp = first.split()
    assert caps == "0000000000000000" and nnp == "1" and seccomp == "2"
    if os.geteuid() == 0:
        assert ident == "65534"  # root owner: the child is an unprivileged host uid
    assert second == "unshare -1 mount -1"


def test_fork_is_refused_by_rlimit_nproc(jail):
    out = escape(
        jail,
        """
        import os
        try:
            os.fork()
            print("forked")
        except OSError as exc:
            print("refused", exc.errno)
    """,
    )
    assert out.startswith("refused 11")  # EAGAIN: RLIMIT_NPROC binds, even for a root owner


def test_no_process_outlives_its_run(jail):
    owner = os.getpid()
    before = sandbox_pids(owner)
    out = escape(
        jail,
        """
        import os, signal, time
        for _ in range(3):
            if os.fork() == 0:
                os.setsid()
                signal.signal(signal.SIGHUP, signal.SIG_IGN)
                if os.fork() == 0:
                    time.sleep(60)
                os._exit(0)
        deadline = time.monotonic() + 5
        while len([p for p in os.listdir("/proc") if p.isdigit()]) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        print(len([p for p in os.listdir("/proc") if p.isdigit()]))
    """,
        nproc=16,
    )
    assert int(out) >= 4  # the run did have its daemons...
    deadline = time.monotonic() + 5
    while sandbox_pids(owner) - before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sandbox_pids(owner) - before == set()  # ...and none is left


def test_fork_bomb_is_bounded_and_cleaned_up(jail):
    owner = os.getpid()
    before = sandbox_pids(owner)
    result = jail._run_unrestricted(
        textwrap.dedent("""
        import os
        while True:
            try:
                os.fork()
            except OSError:
                pass
    """),
        timeout_s=1.5,
        nproc=32,
    )
    assert result.timed_out
    deadline = time.monotonic() + 5
    while sandbox_pids(owner) - before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sandbox_pids(owner) - before == set()
    assert_healthy(jail)


def test_server_survives_and_owner_is_untouched(jail):
    server = jail._server[0]
    out = escape(
        jail,
        """
        import os, signal
        for pid in range(1, 400):
            for sig in (signal.SIGSTOP, signal.SIGKILL):
                try:
                    os.kill(pid, sig)
                except OSError:
                    pass
        print("done")
    """,
    )
    assert out == "" or out == "done\n"  # killing pid 1 (itself) from inside is ignored
    assert jail._server and jail._server[0] is server and server.alive()
    assert_healthy(jail)


# --- the result channel -------------------------------------------------------------------------


def test_forged_result_without_the_secret_is_a_crash(jail):
    result = jail._run_unrestricted(
        textwrap.dedent("""
        import os, json
        os.write(3, b"0" * 32 + b"\\n" + json.dumps({"exit_reason": "ok", "error": None}).encode())
        os._exit(0)
    """)
    )
    assert result.exit_reason == "crash" and "without a valid result" in result.error


def test_result_then_segfault_is_a_crash(jail):
    result = jail._run_unrestricted(
        textwrap.dedent("""
        import ctypes, sys
        secret = sys._getframe(2).f_locals["secret"]  # an escaped program can find it...
        import os, json
        os.write(3, secret + b"\\n" + json.dumps({"exit_reason": "ok", "error": None}).encode())
        ctypes.string_at(0)  # ...but its exit status must agree
    """)
    )
    assert result.exit_reason == "crash" and "SIGSEGV" in result.error


def test_large_stderr_does_not_hide_the_result(jail):
    ok = jail._run_unrestricted("import sys\nsys.stderr.write('x' * (3 << 20))\nprint('fine')")
    assert ok.ok and ok.stdout == "fine\n"
    failing = jail._run_unrestricted("import sys\nsys.stderr.write('x' * (3 << 20))\nraise ValueError('no')")
    assert failing.exit_reason == "error" and failing.error == "ValueError: no"


# --- supervision ------------------------------------------------------------------------------


def test_stopped_server_is_replaced_quickly():
    with PythonExecutor(timeout_s=2.0) as ex:
        assert ex.run("print(1)").ok
        old = ex._server[0]
        for pid in old.server_pids():
            os.kill(pid, signal.SIGSTOP)
        start = time.monotonic()
        result = ex.run("print(2)")
        assert result.stdout == "2\n", result.error
        assert time.monotonic() - start < 15  # ping deadline + a fresh server's start
        assert ex._server[0] is not old and not old.alive()


def test_server_stopped_mid_run_does_not_outlast_the_deadline():
    with PythonExecutor(timeout_s=1.0) as ex:
        assert ex.run("print(1)").ok
        server = ex._server[0]
        timer = threading.Timer(0.5, lambda: [os.kill(p, signal.SIGSTOP) for p in server.server_pids()])
        timer.start()
        start = time.monotonic()
        result = ex.run("while True:\n    pass")
        elapsed = time.monotonic() - start
        timer.join()
        assert result.timed_out or result.exit_reason == "crash", result
        assert elapsed < 1.0 + DRAIN_TIMEOUT_S + PING_TIMEOUT_S  # never the old 30 s wait
        assert ex.run("print(3)").stdout == "3\n"


def test_wedged_server_is_replaced_quickly():
    with PythonExecutor(timeout_s=2.0, _test_hooks=True) as ex:
        assert ex.run("print(1)").ok
        old = ex._server[0]
        old._sock.send(b"W")  # test hook: the server stops answering, though it keeps running
        start = time.monotonic()
        result = ex.run("print(2)")
        assert result.stdout == "2\n", result.error
        assert time.monotonic() - start < PING_TIMEOUT_S + 12  # a fresh server's start under load
        assert ex._server[0] is not old and not old.alive()
