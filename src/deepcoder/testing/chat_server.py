"""A scripted chat-completions server on 127.0.0.1 for tests and benchmarks; the real SDKs talk to it.

It speaks the protocol at Groq's paths (``/openai/v1/…``: base URL :attr:`ChatServer.url`) and
OpenAI's (``/v1/…``: :attr:`ChatServer.openai_url`): ``POST chat/completions`` and ``GET models``.
Replies come from a script (a function of the request body), so a test decides the teacher's
turns: Thought/Action text, R1-style inline ``<think>``, a separate ``reasoning`` or
``reasoning_content`` field, native ``tool_calls``; top-k ``logprobs`` of the content when asked
(synthetic, or a real model's through ``logprobs=``: :mod:`deepcoder.testing.served_logprobs`).

Limits as Groq applies them: optional requests/min and tokens/min token buckets (a request costs
its prompt plus completion tokens, counted here as characters/4, unlike the client's estimate),
``x-ratelimit-*`` headers on every answer, 429 with ``retry-after`` when a bucket is short.
``bucket_s`` is how many seconds of refill a bucket holds (Groq: 60) — the benchmark uses less
so that a short run measures the steady rate, not the first full bucket.

Faults on command (:meth:`ChatServer.inject`), each taken by the next chat request: ``429`` (with
``retry-after``), ``500``, ``413``, ``timeout`` (answers after ``delay_s``), ``truncated`` (a 200
whose JSON is cut short), ``empty`` (a 200 with no content). ``unsupported=("max_tokens", …)``
plays a model that rejects request parameters as OpenAI's reasoning models do: a 400 naming the
``param`` with code ``unsupported_parameter`` (``max_tokens``: "Use 'max_completion_tokens'").
"""

from __future__ import annotations

import collections
import json
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

FAULTS = ("429", "500", "413", "timeout", "truncated", "empty")

DEFAULT_TURNS = (
    "Thought: I will check the tool first.\nAction: python\nAction Input:\n```python\nprint(1 + 1)\n```",
    "Thought: The tool works, so here is the program.\nFinal Answer:\n```python\ndef solution():\n    return None\n```",
)


@dataclass(frozen=True)
class Reply:
    """One scripted assistant message. ``reasoning_field`` names where ``reasoning`` goes
    (Groq: ``reasoning``; vLLM/DeepSeek: ``reasoning_content``); ``tool_calls`` are (name, arguments JSON)."""

    content: str | None
    reasoning: str | None = None
    reasoning_field: str = "reasoning"
    tool_calls: Sequence[tuple[str, str]] = ()


Script = Callable[[dict[str, Any]], Reply]
LogprobSource = Callable[[list[dict[str, Any]], Reply, int], list[dict[str, Any]]]  # (messages, reply, k) → entries


def turn_script(turns: Sequence[Reply | str] = DEFAULT_TURNS) -> Script:
    """A script answering the agent's k-th turn (k assistant messages so far) with ``turns[k]``, then the last."""
    replies = [t if isinstance(t, Reply) else Reply(t) for t in turns]

    def script(body: dict[str, Any]) -> Reply:
        k = sum(1 for m in body.get("messages", []) if m.get("role") == "assistant")
        return replies[min(k, len(replies) - 1)]

    return script


def count_tokens(text: str) -> int:
    """The server's own token count: one per four characters, as a tokenizer roughly gives."""
    return math.ceil(len(text) / 4)


@dataclass
class _Bucket:
    capacity: float
    rate: float
    level: float
    updated: float

    def wait_s(self, cost: float, now: float) -> float:
        """Seconds until ``cost`` is available (0: it is), after refilling to ``now``."""
        self.level = min(self.capacity, self.level + self.rate * (now - self.updated))
        self.updated = now
        return max(0.0, (cost - self.level) / self.rate)

    def headers(self, kind: str) -> dict[str, str]:
        reset = (self.capacity - self.level) / self.rate
        return {
            f"x-ratelimit-limit-{kind}": str(int(self.capacity)),
            f"x-ratelimit-remaining-{kind}": str(max(0, int(self.level))),
            f"x-ratelimit-reset-{kind}": f"{reset:.3f}s",
        }


@dataclass
class Fault:
    kind: str
    retry_after: float | None = None
    delay_s: float = 2.0


@dataclass
class Stats:
    """What the server saw: chat requests (bodies), answers by status, and the tokens it admitted when."""

    requests: list[dict[str, Any]] = field(default_factory=list)
    statuses: collections.Counter = field(default_factory=collections.Counter)
    admitted: list[tuple[float, int]] = field(default_factory=list)  # (time.monotonic(), tokens) per request
    authorizations: set[str] = field(default_factory=set)


class ChatServer:
    """Use as a context manager; ``api_key`` (if given) is required as ``Authorization: Bearer``."""

    def __init__(
        self,
        script: Script | None = None,
        models: Sequence[str] = ("openai/gpt-oss-120b", "test-model"),
        latency_s: float = 0.0,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        bucket_s: float = 60.0,
        api_key: str | None = None,
        fingerprint: str = "fp_test",
        logprobs: LogprobSource | None = None,
        unsupported: Sequence[str] = (),
    ) -> None:
        self.script = script or turn_script()
        self.unsupported = tuple(unsupported)
        self.logprobs = logprobs or _synthetic_logprobs
        self.models, self.latency_s, self.api_key, self.fingerprint = list(models), latency_s, api_key, fingerprint
        self.stats = Stats()
        self._faults: collections.deque[Fault] = collections.deque()
        self._lock = threading.Lock()
        now = time.monotonic()
        self._buckets = {
            kind: _Bucket(per_min * bucket_s / 60, per_min / 60, per_min * bucket_s / 60, now)
            for kind, per_min in (("requests", requests_per_minute), ("tokens", tokens_per_minute))
            if per_min
        }
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._http.daemon_threads = True
        self._thread = threading.Thread(target=self._http.serve_forever, name="chat-server", daemon=True)

    @property
    def url(self) -> str:
        """The root URL: Groq's SDK base URL (it appends ``/openai/v1``)."""
        host, port = self._http.server_address[:2]
        return f"http://{host.decode() if isinstance(host, bytes) else host}:{port}"

    @property
    def openai_url(self) -> str:
        return f"{self.url}/v1"

    def __enter__(self) -> ChatServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.shutdown()
        self._http.server_close()

    def inject(self, kind: str, times: int = 1, retry_after: float | None = None, delay_s: float = 2.0) -> None:
        """The next ``times`` chat requests get fault ``kind`` (one of :data:`FAULTS`)."""
        if kind not in FAULTS:
            raise ValueError(f"unknown fault {kind!r}; use one of {FAULTS}")
        with self._lock:
            self._faults.extend(Fault(kind, retry_after, delay_s) for _ in range(times))

    def _next_fault(self) -> Fault | None:
        with self._lock:
            return self._faults.popleft() if self._faults else None

    def _admit(self, cost: int) -> tuple[float, dict[str, str]]:
        """Charge the buckets: (0, headers) when admitted, else (retry-after seconds, headers)."""
        with self._lock:
            now = time.monotonic()
            costs = {kind: c for kind, c in (("requests", 1), ("tokens", cost)) if kind in self._buckets}
            wait = max((self._buckets[kind].wait_s(c, now) for kind, c in costs.items()), default=0.0)
            if wait == 0:
                for kind, c in costs.items():
                    self._buckets[kind].level -= c
                self.stats.admitted.append((now, cost))
            headers = {k: v for bucket_kind, b in self._buckets.items() for k, v in b.headers(bucket_kind).items()}
            return wait, headers

    def completion(self, body: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        """Answer one chat request: (status, headers, body bytes)."""
        with self._lock:
            self.stats.requests.append(body)
        rejected = next((name for name in self.unsupported if name in body), None)
        if rejected:
            advice = " Use 'max_completion_tokens' instead." if rejected == "max_tokens" else ""
            return (
                400,
                {},
                _error(
                    f"Unsupported parameter: '{rejected}' is not supported with this model.{advice}",
                    param=rejected,
                    code="unsupported_parameter",
                ),
            )
        fault = self._next_fault()
        if fault and fault.kind in ("429", "500", "413"):
            retry = {"retry-after": f"{fault.retry_after if fault.retry_after is not None else 1:g}"}
            message = {
                "429": "Rate limit reached (injected). Please try again later.",
                "500": "Internal server error (injected).",
                "413": "Request too large (injected): please reduce your message size and try again.",
            }
            return int(fault.kind), retry if fault.kind == "429" else {}, _error(message[fault.kind])
        reply = Reply("") if fault and fault.kind == "empty" else self.script(body)
        prompt = sum(count_tokens(str(m.get("content") or "")) for m in body.get("messages", []))
        completion = count_tokens((reply.content or "") + (reply.reasoning or ""))
        wait, headers = self._admit(prompt + completion)
        if wait > 0:
            return (
                429,
                {**headers, "retry-after": f"{wait:.3f}"},
                _error(
                    f"Rate limit reached for model `{body.get('model')}`: Requested {prompt + completion}. "
                    f"Please try again in {wait:.3f}s."
                ),
            )
        time.sleep(fault.delay_s if fault and fault.kind == "timeout" else self.latency_s)
        payload = json.dumps(self._response(body, reply, prompt, completion)).encode()
        if fault and fault.kind == "truncated":
            payload = payload[: len(payload) // 2]
        return 200, headers, payload

    def _response(self, body: dict[str, Any], reply: Reply, prompt: int, completion: int) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": reply.content}
        if reply.reasoning is not None:
            message[reply.reasoning_field] = reply.reasoning
        if reply.tool_calls:
            message["tool_calls"] = [
                {"id": f"call_{i}", "type": "function", "function": {"name": name, "arguments": arguments}}
                for i, (name, arguments) in enumerate(reply.tool_calls)
            ]
        choice: dict[str, Any] = {"index": 0, "message": message, "finish_reason": "stop", "logprobs": None}
        if body.get("logprobs"):
            choice["logprobs"] = {
                "content": self.logprobs(body.get("messages", []), reply, int(body.get("top_logprobs") or 0))
            }
        return {
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model"),
            "system_fingerprint": self.fingerprint,
            "choices": [choice],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
        }


def _synthetic_logprobs(messages: list[dict[str, Any]], reply: Reply, k: int) -> list[dict[str, Any]]:
    """Deterministic per-token log-probabilities of the content: the chosen token first, then ``k - 1``
    alternatives, on four-character pieces (not a tokenizer's tokens)."""
    content = reply.content or ""
    pieces = [content[i : i + 4] for i in range(0, len(content), 4)]
    out = []
    for i, piece in enumerate(pieces):
        chosen = -0.01 * (i % 7)
        top = [{"token": piece, "logprob": chosen, "bytes": None}]
        top += [{"token": f"alt{j}", "logprob": chosen - j, "bytes": None} for j in range(1, k)]
        out.append({"token": piece, "logprob": chosen, "bytes": None, "top_logprobs": top[:k]})
    return out


def _error(message: str, param: str | None = None, code: str = "test") -> bytes:
    return json.dumps(
        {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}}
    ).encode()


def _handler(server: ChatServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read the stats instead
            pass

        def _authorized(self) -> bool:
            given = self.headers.get("Authorization", "")
            with server._lock:
                server.stats.authorizations.add(given)
            if server.api_key is None or given == f"Bearer {server.api_key}":
                return True
            self._send(401, {}, _error("Invalid API Key"))
            return False

        def do_GET(self) -> None:
            if self.path.rstrip("/") not in ("/openai/v1/models", "/v1/models"):
                return self._send(404, {}, _error(f"no route {self.path}"))
            if self._authorized():
                data = [{"id": m, "object": "model", "created": 0, "owned_by": "test"} for m in server.models]
                self._send(200, {}, json.dumps({"object": "list", "data": data}).encode())

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            if self.path not in ("/openai/v1/chat/completions", "/v1/chat/completions"):
                return self._send(404, {}, _error(f"no route {self.path}"))
            if not self._authorized():
                return
            try:
                body = json.loads(raw)
            except json.JSONDecodeError:
                return self._send(400, {}, _error("request body is not JSON"))
            self._send(*server.completion(body))

        def _send(self, status: int, headers: dict[str, str], payload: bytes) -> None:
            with server._lock:
                server.stats.statuses[status] += 1
            try:
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout fault)
                pass

    return Handler
