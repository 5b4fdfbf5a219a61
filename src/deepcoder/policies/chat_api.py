"""What the Groq and OpenAI-compatible teachers share: one chat-completions call, made robust.

Failure handling, one owner each:

- **5xx, 408/409 and timeouts**: the SDK's own retries with backoff (``max_retries``,
  ``timeout_s``); nothing here repeats them.
- **429**: the shared :class:`~deepcoder.policies.rate_limit.RateLimiter`. An httpx response hook
  marks 429s ``x-should-retry: false`` so the SDK raises at once instead of sleeping on its own
  (it would cap ``retry-after`` at 60 s and retry without telling the other workers); the limiter
  then pauses the whole pool for ``retry-after``, however long, and the request is sent again,
  at most ``rate_limit_retries`` times.
- **413** (request larger than the token budget): ``max_tokens`` is halved and the request sent
  again, down to ``min_max_tokens``; below that the call fails with :class:`RequestTooLarge`.
- **400 unsupported parameter** (OpenAI's reasoning models reject ``max_tokens``, ``temperature``,
  ``top_p`` and ``stop``): ``max_tokens`` is sent as ``max_completion_tokens`` from then on, and a
  rejected sampling parameter is left out from then on, each with a warning; any other 400 fails.
- **Malformed or empty completions** (a body that is not JSON, no choices, no text, reasoning
  or tool call) raise :class:`MalformedCompletion` / :class:`EmptyCompletion`. The agent loop
  records them as the record's ``error``, not as an empty assistant turn (which training would
  then imitate), and a rerun on the same ``output_dir`` retries that problem.

Every raised error ends the episode as a record with ``error`` set, so no problem is lost.
The API key is read from the environment variable ``key_env`` only, handed to the SDK client and
never stored in config, logs or records. ``stop`` cuts a turn at a hallucinated ``Observation:``
line; set it to null for a model whose inline reasoning may start a line with one.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import httpx

from deepcoder.policies.base import Completion, Message
from deepcoder.policies.rate_limit import RateLimiter
from deepcoder.policies.reasoning import reasoning_of, tool_calls_text, top_logprobs_of
from deepcoder.utils.text import count_words

if TYPE_CHECKING:
    from deepcoder.problems import Problem

log = logging.getLogger(__name__)

MODEL_CHECK_TIMEOUT_S = 4.0
SHOWN_MODELS = 8
UNSUPPORTED_CODES = ("unsupported_parameter", "unsupported_value")  # a 400 naming one request parameter
ADAPTABLE = {"max_tokens": "max_completion_tokens", "temperature": None, "top_p": None, "stop": None}


class EmptyCompletion(RuntimeError):
    """The server answered with no text, no reasoning and no tool call."""


class MalformedCompletion(RuntimeError):
    """The server's answer is not a chat completion (truncated or invalid JSON, no choices)."""


class RequestTooLarge(RuntimeError):
    """413 even with ``max_tokens`` at its floor: the prompt itself is over the token budget."""


class RateLimitRetriesExhausted(RuntimeError):
    """429 more than ``rate_limit_retries`` times for one request."""


def _leave_429_to_the_limiter(response: httpx.Response) -> None:
    """httpx response hook: the SDK must not retry a 429 on its own (see the module docstring)."""
    if response.status_code == 429:
        response.headers["x-should-retry"] = "false"


class _TokenEstimator:
    """A request's token cost before it is sent: prompt words scaled to the server's count, plus
    the mean completion so far. Both corrections are learned from the usage responses report."""

    def __init__(self, max_tokens: int) -> None:
        self._lock = threading.Lock()
        self.prompt_scale = 1.0
        self.completion_mean = float(min(max_tokens, 256))
        self._seen = 0

    def estimate(self, words: int, max_tokens: int) -> float:
        return words * self.prompt_scale + min(self.completion_mean, max_tokens)

    def learn(self, words: int, prompt_tokens: int, completion_tokens: int) -> None:
        with self._lock:
            self._seen += 1
            weight = max(1.0 / self._seen, 0.1)  # running mean at first, then an exponential one
            if words:
                self.prompt_scale += weight * (prompt_tokens / words - self.prompt_scale)
            self.completion_mean += weight * (completion_tokens - self.completion_mean)


class ChatAPITeacher:
    """A chat-completions teacher over a Stainless-generated SDK (``groq`` or ``openai``).

    Subclasses set ``provider``, ``key_env``, ``sdk`` (the SDK module) and ``_request_options``.
    One instance is shared by every generation worker: its client is thread-safe and its
    limiter is the pool's.
    """

    provider = ""
    key_env = ""
    key_required = True
    sdk: Any = None

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        max_tokens: int = 4096,
        temperature: float = 0.6,
        top_p: float | None = None,
        seed: int | None = 0,
        stop: Sequence[str] | None = ("\nObservation:",),
        timeout_s: float = 120.0,
        max_retries: int = 3,
        rate_limit_retries: int = 20,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        min_max_tokens: int = 256,
        check_model: bool = True,
        limiter: RateLimiter | None = None,
    ) -> None:
        if not model:
            raise ValueError(f"teacher.model is not set: pass teacher.model=ID ({self.provider})")
        if max_tokens < 1 or min_max_tokens < 1:
            raise ValueError(
                f"teacher.max_tokens and teacher.min_max_tokens must be >= 1, got {max_tokens} and {min_max_tokens}"
            )
        self.model = str(model)
        self.max_tokens, self.min_max_tokens = int(max_tokens), int(min_max_tokens)
        self.temperature, self.top_p, self.seed = temperature, top_p, seed
        self.stop = list(stop) if stop else None
        self.rate_limit_retries = rate_limit_retries
        self.fingerprint: str | None = None
        self._renamed: dict[str, str | None] = {}  # parameters the model rejected → new name, None: left out
        self.limiter = limiter or RateLimiter(requests_per_minute, tokens_per_minute)
        self._estimator = _TokenEstimator(self.max_tokens)
        self.client = self.sdk.Client(  # Groq / OpenAI: both SDKs name the sync client ``Client`` too
            api_key=self._api_key(),
            base_url=base_url,
            timeout=timeout_s,
            max_retries=max_retries,
            http_client=self.sdk.DefaultHttpxClient(event_hooks={"response": [_leave_429_to_the_limiter]}),
        )
        if check_model:
            self.check_model()

    def _api_key(self) -> str:
        key = os.environ.get(self.key_env, "")
        if not key and self.key_required:
            raise ValueError(
                f"{self.key_env} is not set: export it in the environment "
                f"(API keys are read from the environment only, never from config)"
            )
        return key or "EMPTY"  # local OpenAI-compatible servers (vLLM, Ollama) accept any key

    def _where(self) -> str:
        return str(self.client.base_url)

    def check_model(self) -> None:
        """Fail fast, naming the model and a few valid ids, when the server does not serve ``model``."""
        client = self.client.with_options(timeout=MODEL_CHECK_TIMEOUT_S, max_retries=0)
        try:
            served = sorted(m.id for m in client.models.list().data)
        except self.sdk.NotFoundError:
            log.warning("%s has no models endpoint; not checking teacher.model=%s", self._where(), self.model)
            return
        except self.sdk.AuthenticationError as exc:
            raise ValueError(
                f"{self._where()} rejected the API key in {self.key_env} ({exc.status_code}): check the variable"
            ) from None
        except self.sdk.APIConnectionError as exc:
            raise ConnectionError(
                f"cannot reach {self._where()} to check teacher.model={self.model!r}: {exc} (set teacher.base_url=URL?)"
            ) from None
        if self.model not in served:
            more = f" … ({len(served)} in all)" if len(served) > SHOWN_MODELS else ""
            shown = ", ".join(served[:SHOWN_MODELS]) + more
            raise ValueError(
                f"teacher.model={self.model!r} is not served by {self._where()} (misspelt, or "
                f"retired: providers decommission models often). Pick one it serves with "
                f"teacher.model=ID, for example: {shown or '(the server lists none)'}"
            )

    def _request_options(self) -> dict[str, Any]:
        """Provider-specific request parameters (reasoning, logprobs, extra body)."""
        return {}

    def complete(self, messages: Sequence[Message], *, problem: Problem) -> Completion:
        started = time.perf_counter()
        words = sum(count_words(m["content"]) for m in messages)
        max_tokens, attempt = self.max_tokens, 0
        while True:
            reservation = self.limiter.acquire(self._estimator.estimate(words, max_tokens))
            try:
                raw = self.client.chat.completions.with_raw_response.create(
                    model=self.model, messages=list(messages), **self._sampling(max_tokens)
                )
            except self.sdk.APIStatusError as exc:
                if exc.status_code == 429:
                    attempt += 1
                    if attempt > self.rate_limit_retries:
                        self.limiter.refund(reservation)
                        raise RateLimitRetriesExhausted(
                            f"429 {attempt} times for one request: {_message(exc)}"
                        ) from None
                    self.limiter.rate_limited(reservation, exc.response.headers, attempt)
                    continue
                self.limiter.refund(reservation)
                if self._adapt_to(exc):
                    continue
                if exc.status_code == 413:
                    if max_tokens // 2 < self.min_max_tokens:
                        raise RequestTooLarge(
                            f"413 with max_tokens={max_tokens} (floor teacher.min_max_tokens="
                            f"{self.min_max_tokens}): {_message(exc)}"
                        ) from None
                    max_tokens //= 2
                    log.info("413 request too large: retrying with max_tokens=%d", max_tokens)
                    continue
                raise
            except BaseException:
                self.limiter.refund(reservation)
                raise
            return self._completion(raw, reservation, words, time.perf_counter() - started)

    def _sampling(self, max_tokens: int) -> dict[str, Any]:
        options = {
            "max_tokens": max_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "seed": self.seed,
            "stop": self.stop,
            **self._request_options(),
        }
        renamed = {self._renamed.get(key, key): value for key, value in options.items()}
        return {key: value for key, value in renamed.items() if key is not None and value is not None}

    def _adapt_to(self, exc: Any) -> bool:
        """Whether a 400 named a parameter this model does not take and the request can do without it."""
        param = getattr(exc, "param", None)
        if (
            exc.status_code != 400
            or getattr(exc, "code", None) not in UNSUPPORTED_CODES
            or param not in ADAPTABLE
            or param in self._renamed
        ):
            return False
        self._renamed[param] = ADAPTABLE[param]
        log.warning(
            "%s does not take %s: %s from now on (%s)",
            self.model,
            param,
            f"sending {ADAPTABLE[param]}" if ADAPTABLE[param] else "leaving it out",
            _message(exc),
        )
        return True

    def _completion(self, raw: Any, reservation: Any, words: int, latency_s: float) -> Completion:
        headers: Mapping[str, str] = raw.headers
        try:
            response = raw.parse()
        except (json.JSONDecodeError, self.sdk.APIResponseValidationError) as exc:
            self.limiter.settle(reservation, None, headers)
            raise MalformedCompletion(f"the response is not a valid chat completion ({exc})") from None
        choices = getattr(response, "choices", None)
        if not choices or getattr(choices[0], "message", None) is None:
            self.limiter.settle(reservation, None, headers)
            raise MalformedCompletion(f"the response has no choices: {str(response)[:200]!r}")
        usage = response.usage
        self.limiter.settle(reservation, usage.total_tokens if usage else None, headers)
        if usage:
            self._estimator.learn(words, usage.prompt_tokens, usage.completion_tokens)
        self.fingerprint = getattr(response, "system_fingerprint", None) or self.fingerprint
        choice = choices[0]
        message = choice.message
        content = "\n".join(p for p in ((message.content or "").strip(), tool_calls_text(message.tool_calls)) if p)
        reasoning = reasoning_of(message)
        if not content and not reasoning:
            raise EmptyCompletion(f"{self.model} returned an empty completion (finish_reason={choice.finish_reason})")
        return Completion(
            content,
            usage.prompt_tokens if usage else words,
            usage.completion_tokens if usage else count_words(content),
            latency_s,
            reasoning=reasoning,
            logprobs=top_logprobs_of(choice),
        )


def _message(exc: Any) -> str:
    """The server's error message (``{"error": {"message": …}}``), else the exception text."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
    return str(exc)
