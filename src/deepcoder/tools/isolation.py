"""Layer 2 of the sandbox: Linux namespaces, an unprivileged uid and no_new_privs, via ctypes.

Layer 1 (``policy.py``, ``runtime.py``) restricts what Python a program may run; this module
assumes layer 1 is broken and limits what a process that runs arbitrary code can reach.

Start-up (``boot_namespaces``, called first thing by the fork server's interpreter, ``P``):
  P forks ``C``; C unshares user, mount, network, IPC, UTS and PID namespaces; P (still in the
  host's namespaces) writes C's uid/gid maps; C forks the fork server ``S``, pid 1 of the new
  PID namespace. S makes every mount private and read-only (``mount_setattr``), mounts empty
  read-only tmpfs over the host's scratch directories, a fresh /proc, and sets no_new_privs.
  Each of P, C, S dies with its parent (PR_SET_PDEATHSIG), and every process of the namespace
  dies with S, so killing P or closing the control socket ends everything.

Per run (``fork_in_new_pid_namespace`` in S, ``enter_run_jail`` in the child):
  the child is pid 1 of its own PID namespace (so no process of a run outlives it), gets its
  own mount namespace with a fresh /proc showing only the run's processes and an empty,
  private tmpfs /tmp (the only writable place, its cwd), drops to an unprivileged uid (as
  root: host uid/gid 65534; as a normal user, who can map only their own uid: uid 0 of the
  namespace with every capability dropped and locked out), sets no_new_privs and installs a
  seccomp filter refusing ptrace, process_vm_*, mount/namespace/bpf/keyring/perf calls.

The network namespace has only a loopback interface, left down. Nothing here is called in
``process`` isolation (the weaker opt-in, for machines without user namespaces).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import enum
import errno
import os
import signal
import struct
import subprocess
import sys
from typing import Final

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
SERVER_NAMESPACES = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWPID

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
AT_FDCWD = -100
AT_RECURSIVE = 0x8000
SYS_MOUNT_SETATTR = {"x86_64": 442, "aarch64": 442}

PR_SET_PDEATHSIG = 1
PR_SET_SECUREBITS = 28
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
# SECBIT_NOROOT, SECBIT_NO_SETUID_FIXUP, SECBIT_KEEP_CAPS_LOCKED, SECBIT_NO_CAP_AMBIENT_RAISE and locks
SECUREBITS_LOCKED_DOWN = 0x01 | 0x02 | 0x04 | 0x08 | 0x20 | 0x40 | 0x80

SANDBOX_UID = 65534  # inside the namespace; mapped to host uid 65534 when the owner is root
SCRATCH_DIRS = ("/tmp", "/var/tmp", "/dev/shm", "/run", "/var/run")
HOST_UID_FOR_SANDBOX = 65534

_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]


class IsolationError(OSError):
    """A namespace or privilege operation failed: strong isolation is unavailable."""


def _check(result: int, what: str) -> int:
    if result < 0:
        code = ctypes.get_errno()
        raise IsolationError(code, f"{what}: {os.strerror(code)}")
    return result


def unshare(flags: int) -> None:
    _check(_libc.unshare(ctypes.c_int(flags)), "unshare")


def setns(fd: int, nstype: int) -> None:
    _check(_libc.setns(ctypes.c_int(fd), ctypes.c_int(nstype)), "setns")


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    def enc(text: str | None) -> bytes | None:
        return None if text is None else text.encode()

    _check(_libc.mount(enc(source), enc(target), enc(fstype), flags, enc(data)), f"mount {target}")


def prctl(option: int, arg2: int = 0) -> None:
    _check(
        _libc.prctl(
            ctypes.c_int(option), ctypes.c_ulong(arg2), ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0)
        ),
        f"prctl({option})",
    )


def die_with_parent(parent_pid: int) -> None:
    """SIGKILL this process when its parent dies; exit now if the parent already has."""
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:
        os._exit(1)


def make_mounts_read_only() -> None:
    """Make every mount of this (new) mount namespace private, read-only and nosuid."""
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    number = SYS_MOUNT_SETATTR.get(os.uname().machine)
    if number is None:
        raise IsolationError(errno.ENOSYS, "mount_setattr: unknown architecture")
    attr = struct.pack("QQQQ", MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID, 0, 0, 0)  # struct mount_attr
    buf = ctypes.create_string_buffer(attr)
    _check(
        _libc.syscall(
            ctypes.c_long(number),
            ctypes.c_int(AT_FDCWD),
            ctypes.c_char_p(b"/"),
            ctypes.c_uint(AT_RECURSIVE),
            buf,
            ctypes.c_size_t(len(attr)),
        ),
        "mount_setattr",
    )


def hide_scratch_dirs() -> None:
    """Empty read-only tmpfs over the host's shared scratch directories (other users' files).

    A scratch directory holding the interpreter or an import path (a checkout in /tmp) stays
    visible to the server, read-only; a run's child mounts its own /tmp over it anyway.
    """
    needed = [os.path.realpath(p) for p in (sys.executable, sys.prefix, *sys.path) if p]
    for path in SCRATCH_DIRS:
        if not os.path.isdir(path) or os.path.islink(path):
            continue
        real = os.path.realpath(path)
        if any(n == real or n.startswith(real + "/") for n in needed):
            continue
        mount("tmpfs", path, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=4k,mode=755")


def mount_proc() -> None:
    mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)


# --- start-up of the fork server -------------------------------------------------------------


def _write(path: str, text: str) -> None:
    with open(path, "w") as fh:
        fh.write(text)


def _id_maps(euid: int, egid: int) -> tuple[str, str, bool]:
    """(uid_map, gid_map, may call setgroups) for the namespace the server runs in."""
    if euid == 0:  # root maps the server to root and the sandbox uid to an unprivileged host uid
        return (
            f"0 0 1\n{SANDBOX_UID} {HOST_UID_FOR_SANDBOX} 1\n",
            f"0 0 1\n{SANDBOX_UID} {HOST_UID_FOR_SANDBOX} 1\n",
            True,
        )
    return f"0 {euid} 1\n", f"0 {egid} 1\n", False  # an unprivileged user may map only itself


def boot_namespaces(keep_fds: list[int]) -> None:
    """Turn this process (P) into the watcher of a fork server running in new namespaces.

    Returns only in S, the fork server: pid 1 of a new PID namespace, in new user, mount,
    network, IPC and UTS namespaces, with read-only mounts, a private /proc and no_new_privs.
    Raises IsolationError (in P, before any fork server runs) if that cannot be set up.
    """
    watcher = os.getpid()
    ready_r, ready_w = os.pipe()  # C -> P: "unshared" or an error
    mapped_r, mapped_w = os.pipe()  # P -> C: "maps written" or an error
    pid = os.fork()
    if pid == 0:  # C
        os.close(ready_r)
        os.close(mapped_w)
        try:
            die_with_parent(watcher)
            unshare(SERVER_NAMESPACES)
        except BaseException as exc:  # noqa: BLE001
            os.write(ready_w, f"E{exc}".encode()[:500])
            os._exit(1)
        os.write(ready_w, b"U")
        if os.read(mapped_r, 1) != b"M":
            os._exit(1)
        os.close(ready_w)
        os.close(mapped_r)
        _become_server_parent(keep_fds)  # returns only in S
        return
    os.close(ready_w)
    os.close(mapped_r)
    reply = os.read(ready_r, 600)
    try:
        if reply != b"U":
            raise IsolationError(errno.EPERM, reply[1:].decode("utf-8", "replace") or "namespace helper died")
        uid_map, gid_map, can_setgroups = _id_maps(os.geteuid(), os.getegid())
        if not can_setgroups:
            _write(f"/proc/{pid}/setgroups", "deny")
        _write(f"/proc/{pid}/uid_map", uid_map)
        _write(f"/proc/{pid}/gid_map", gid_map)
    except BaseException:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise
    os.write(mapped_w, b"M")
    os.close(mapped_w)
    os.close(ready_r)
    for fd in keep_fds:  # P only waits; S owns the control socket
        os.close(fd)
    _relay_exit(pid)


def _become_server_parent(keep_fds: list[int]) -> None:
    """C: fork S (pid 1 of the new PID namespace) and wait for it."""
    pid = os.fork()
    if pid == 0:  # S: its parent lies outside its PID namespace, so getppid() is 0
        die_with_parent(0)
        make_mounts_read_only()
        hide_scratch_dirs()
        mount_proc()
        mount("sysfs", "/sys", "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)  # this netns's view
        prctl(PR_SET_NO_NEW_PRIVS, 1)
        return
    for fd in keep_fds:
        os.close(fd)
    _relay_exit(pid)


def _relay_exit(pid: int) -> None:
    """Wait for `pid` and exit the same way (code, or 128 + signal)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except InterruptedError:
            continue
    code = os.waitstatus_to_exitcode(status)
    os._exit(code if code >= 0 else 128 - code)


def namespaces_unavailable_reason() -> str | None:
    """None if this machine can run the fork server in namespaces, else why not (cached probe)."""
    global _probe_result
    if _probe_result is _UNSET:
        _probe_result = _probe()
    return _probe_result


class _Unset(enum.Enum):
    """The type of `_UNSET`: a sentinel mypy can narrow away (a bare object() it cannot)."""

    TOKEN = enum.auto()


_UNSET: Final = _Unset.TOKEN
_probe_result: str | None | _Unset = _UNSET
_PROBE = (
    "import sys; sys.path[0] = {root!r}\n"
    "from deepcoder.tools import isolation as i\n"
    "try:\n"
    "    i.boot_namespaces([])\n"
    "except OSError as exc:\n"
    "    print(exc); raise SystemExit(3)\n"
    "i.mount('tmpfs', '/tmp', 'tmpfs', 0, 'size=64k'); i.unshare(i.CLONE_NEWPID | i.CLONE_NEWNS)\n"
    "import os; os._exit(0)\n"
)


def _probe() -> str | None:
    if not sys.platform.startswith("linux"):
        return f"Linux namespaces are not available on {sys.platform}"
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        proc = subprocess.run(
            [sys.executable, "-s", "-B", "-c", _PROBE.format(root=root)],
            capture_output=True,
            timeout=30,
            env={"LC_ALL": "C.UTF-8"},
            cwd="/",
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"namespace probe failed: {exc}"
    if proc.returncode == 0:
        return None
    detail = (proc.stdout + proc.stderr).decode("utf-8", "replace").strip().splitlines()
    return detail[-1] if detail else f"namespace probe exited with {proc.returncode}"


# --- per run ----------------------------------------------------------------------------------


class PidNamespaceForker:
    """In S: fork each run's child as pid 1 of a PID namespace of its own."""

    def __init__(self):
        self._own = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)

    def fork(self) -> int:
        unshare(CLONE_NEWPID)
        try:
            pid = os.fork()
        except BaseException:
            setns(self._own, CLONE_NEWPID)
            raise
        if pid:
            setns(self._own, CLONE_NEWPID)  # the next run gets a fresh namespace again
        return pid

    def close_in_child(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._own)


def enter_run_jail(unprivileged_uid: bool) -> None:
    """In a run's child (pid 1 of its PID namespace, still the namespace's root): jail it."""
    unshare(CLONE_NEWNS)
    mount_proc()
    mount(
        "tmpfs",
        "/tmp",
        "tmpfs",
        MS_NOSUID | MS_NODEV | MS_NOEXEC,
        f"size=16m,nr_inodes=1024,mode=700,uid={SANDBOX_UID if unprivileged_uid else 0},"
        f"gid={SANDBOX_UID if unprivileged_uid else 0}",
    )
    os.chdir("/tmp")
    prctl(PR_SET_NO_NEW_PRIVS, 1)
    if unprivileged_uid:
        os.setgroups([])
        os.setresgid(SANDBOX_UID, SANDBOX_UID, SANDBOX_UID)
        os.setresuid(SANDBOX_UID, SANDBOX_UID, SANDBOX_UID)  # drops every capability
    else:
        drop_all_capabilities()
    install_seccomp_filter()


def drop_all_capabilities() -> None:
    """Keep uid 0 of the namespace but hold no capability, now or after execve."""
    prctl(PR_SET_SECUREBITS, SECUREBITS_LOCKED_DOWN)
    cap = 0
    while True:
        try:
            prctl(PR_CAPBSET_DROP, cap)
        except IsolationError:
            break
        cap += 1
    header = struct.pack("II", 0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this thread
    data = bytes(24)  # two empty __user_cap_data_struct
    hbuf, dbuf = ctypes.create_string_buffer(header), ctypes.create_string_buffer(data)
    _check(_libc.capset(hbuf, dbuf), "capset")


# seccomp: refuse (EPERM) the calls a jailed program never needs and an escape would.
_SECCOMP_DENIED = {
    "x86_64": (
        101,
        310,
        311,
        165,
        166,
        272,
        308,
        321,
        248,
        249,
        250,
        298,
        323,
        246,
        320,
        155,
        163,
        167,
        168,
        169,
        175,
        176,
        313,
        425,
        426,
        427,
        428,
        429,
        430,
        431,
        432,
        442,
        438,
    ),
}
_AUDIT_ARCH = {"x86_64": 0xC000003E}


def install_seccomp_filter() -> bool:
    """Install the filter where the architecture is known; returns whether it was installed."""
    arch = os.uname().machine
    if arch not in _SECCOMP_DENIED:
        return False
    denied = _SECCOMP_DENIED[arch]
    ret_allow, ret_errno = 0x7FFF0000, 0x00050000 | errno.EPERM
    ret_kill = 0x80000000  # SECCOMP_RET_KILL_PROCESS: wrong architecture
    insns = [
        (0x20, 0, 0, 4),  # ld [arch]
        (0x15, 1, 0, _AUDIT_ARCH[arch]),  # jeq arch, skip 1
        (0x06, 0, 0, ret_kill),
        (0x20, 0, 0, 0),  # ld [nr]
        (0x35, 0, 1, 0x40000000),  # x32 syscalls: refuse
        (0x06, 0, 0, ret_errno),
    ]
    for _i, number in enumerate(denied):
        insns.append((0x15, 0, 1, number))  # jeq nr, next is ret errno
        insns.append((0x06, 0, 0, ret_errno))
    insns.append((0x06, 0, 0, ret_allow))
    prog = b"".join(struct.pack("HBBI", *insn) for insn in insns)
    buf = ctypes.create_string_buffer(prog)
    fprog = struct.pack("HxxxxxxQ", len(insns), ctypes.addressof(buf))
    fbuf = ctypes.create_string_buffer(fprog)
    _check(
        _libc.prctl(
            ctypes.c_int(PR_SET_SECCOMP),
            ctypes.c_ulong(SECCOMP_MODE_FILTER),
            fbuf,
            ctypes.c_ulong(0),
            ctypes.c_ulong(0),
        ),
        "seccomp",
    )
    return True
