"""The Groq and OpenAI-compatible teachers against the local chat server, over real HTTP with the real SDKs."""

from __future__ import annotations

import math
import time

import openai
import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from test_rate_limit import FakeClock

from deepcoder.agent.factory import build_agent
from deepcoder.core.names import SPAN_INDEX
from deepcoder.policies.chat_api import EmptyCompletion, MalformedCompletion, RequestTooLarge
from deepcoder.policies.groq import GroqTeacher
from deepcoder.policies.openai_compat import OpenAITeacher
from deepcoder.policies.rate_limit import RateLimiter
from deepcoder.problems import load_sample
from deepcoder.spans.render import label_tokens
from deepcoder.spans.strategies import StructuredSpans
from deepcoder.testing.chat_server import ChatServer, Reply, turn_script

from conftest import ROOT

KEY = "gsk_test_key_for_the_local_server"
MESSAGES = [{"role": "system", "content": "You are a coding agent."}, {"role": "user", "content": "Write add(a, b)."}]
ACTION = "Thought: Let me test it.\nAction: python\nAction Input:\n```python\nprint(1 + 2)\n```"
FINAL = "Thought: It works.\nFinal Answer:\n```python\ndef add(a, b):\n    return a + b\n```"


@pytest.fixture(autouse=True)
def keys(monkeypatch):
    monkeypatch.setenv("GROQ_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)


@pytest.fixture
def server():
    with ChatServer(turn_script([ACTION, FINAL]), api_key=KEY) as chat:
        yield chat


@pytest.fixture(scope="module")
def agent():
    return build_agent(tools=("python",), max_steps=3)


def groq(chat: ChatServer, **kwargs) -> GroqTeacher:
    return GroqTeacher("openai/gpt-oss-120b", base_url=chat.url, **{"timeout_s": 5.0, **kwargs})


def test_groq_teacher_completes_with_usage_fingerprint_and_the_key(server):
    teacher = groq(server)
    completion = teacher.complete(MESSAGES, problem=None)
    assert completion.text == ACTION and completion.reasoning is None and completion.logprobs is None
    assert completion.prompt_tokens > 0 and completion.completion_tokens == math.ceil(len(ACTION) / 4)
    assert teacher.fingerprint == "fp_test" and server.stats.authorizations == {f"Bearer {KEY}"}
    assert "logprobs" not in server.stats.requests[-1]  # Groq serves none


@pytest.mark.parametrize(
    "reply",
    [
        Reply(ACTION, reasoning="First I add them up.", reasoning_field="reasoning"),  # Groq parsed / gpt-oss
        Reply(ACTION, reasoning="First I add them up.", reasoning_field="reasoning_content"),  # vLLM, DeepSeek
        Reply(f"<think>\nFirst I add them up.\n</think>\n\n{ACTION}"),  # R1 raw
    ],
    ids=["reasoning", "reasoning_content", "inline_think"],
)
def test_reasoning_lands_in_the_step_the_chat_and_the_reason_span(reply, agent, tiny_tokenizer):
    problem = load_sample()[0]
    with ChatServer(turn_script([reply, FINAL]), api_key=KEY) as chat:
        record = agent.run(groq(chat, reasoning_format="parsed"), problem)
    step, assistant = record["steps"][0], record["messages"][2]
    assert assistant["role"] == "assistant" and assistant["content"].startswith("<think>\nFirst I add them up.")
    assert step["thought"] == "First I add them up.\nLet me test it." and step["action"]["tool"] == "python"
    rendered = tiny_tokenizer.apply_chat_template(record["messages"], tokenize=False)
    char_spans = label_tokens(tiny_tokenizer, record, StructuredSpans()).char_spans
    reason_text = "".join(ch for ch, span in zip(rendered, char_spans) if span == SPAN_INDEX["reason"])
    assert "First I add them up." in reason_text and "<think>" in reason_text


def test_native_tool_calls_become_the_text_protocol(agent):
    problem = load_sample()[0]
    reply = Reply(None, tool_calls=[("python", '{"code": "print(1 + 2)"}')])
    with ChatServer(turn_script([reply, FINAL]), api_key=KEY) as chat:
        record = agent.run(groq(chat), problem)
    step = record["steps"][0]
    assert step["action"] == {"tool": "python", "input": "print(1 + 2)"} and step["observation"].strip() == "3"


def test_openai_teacher_requests_and_records_top_k_logprobs(server, agent):
    teacher = OpenAITeacher("test-model", base_url=server.openai_url, top_logprobs=3)
    record = agent.run(teacher, load_sample()[0])
    assert server.stats.requests[0]["logprobs"] is True and server.stats.requests[0]["top_logprobs"] == 3
    logprobs = record["steps"][0]["logprobs"]
    assert "".join(t["token"] for t in logprobs) == ACTION
    assert all(len(t["top"]) == 3 and t["top"][0] == [t["token"], t["logprob"]] for t in logprobs)
    assert record["teacher"] == {"provider": "openai", "model": "test-model", "fingerprint": "fp_test"}


def test_a_reasoning_model_rejecting_parameters_gets_max_completion_tokens_and_no_sampling_options(caplog):
    """OpenAI's o-series / gpt-5 answer 400 unsupported_parameter to max_tokens, temperature and stop."""
    with ChatServer(turn_script([ACTION]), api_key=KEY, unsupported=("max_tokens", "temperature", "stop")) as chat:
        teacher = OpenAITeacher("test-model", base_url=chat.openai_url, max_tokens=777)
        assert teacher.complete(MESSAGES, problem=None).text == ACTION
        assert chat.stats.statuses[400] == 3  # one rejection per parameter, then it adapts
        request = chat.stats.requests[-1]
        assert request["max_completion_tokens"] == 777 and not {"max_tokens", "temperature", "stop"} & request.keys()
        teacher.complete(MESSAGES, problem=None)
        assert chat.stats.statuses[400] == 3 and len(chat.stats.requests) == 5  # remembered: no new 400
    assert "does not take max_tokens: sending max_completion_tokens from now on" in caplog.text
    with (
        ChatServer(turn_script([ACTION]), api_key=KEY, unsupported=("logprobs",)) as chat,
        pytest.raises(openai.BadRequestError, match="'logprobs' is not supported"),  # asked for: never dropped
    ):
        OpenAITeacher("test-model", base_url=chat.openai_url, top_logprobs=5).complete(MESSAGES, problem=None)


def test_a_misspelt_model_fails_fast_naming_it_and_the_served_ones(server):
    started = time.perf_counter()
    with pytest.raises(ValueError) as error:
        GroqTeacher("deepseek-r1-distill-llama-70b", base_url=server.url)
    assert time.perf_counter() - started < 5
    message = str(error.value)
    assert "teacher.model='deepseek-r1-distill-llama-70b'" in message and "teacher.model=ID" in message
    assert "openai/gpt-oss-120b" in message and "test-model" in message


def test_missing_or_wrong_key_is_a_clear_error(server, monkeypatch):
    with pytest.raises(ValueError, match="rejected the API key in GROQ_API_KEY"):
        monkeypatch.setenv("GROQ_API_KEY", "gsk_wrong")
        groq(server)
    monkeypatch.delenv("GROQ_API_KEY")
    with pytest.raises(ValueError, match="GROQ_API_KEY is not set"):
        groq(server)


def test_an_unreachable_server_fails_fast():
    started = time.perf_counter()
    with pytest.raises(ConnectionError, match="cannot reach"):
        GroqTeacher("openai/gpt-oss-120b", base_url="http://127.0.0.1:9")
    assert time.perf_counter() - started < 5


def test_sdk_retries_500_and_timeouts(server):
    teacher = groq(server, timeout_s=0.5, max_retries=2)
    server.inject("500")
    assert teacher.complete(MESSAGES, problem=None).text == ACTION
    server.inject("timeout", delay_s=1.5)
    assert teacher.complete(MESSAGES, problem=None).text == ACTION
    assert len(server.stats.requests) == 4 and server.stats.statuses[500] == 1


def test_a_retry_after_past_the_sdks_60_s_cap_pauses_the_pool_not_the_sdk(server):
    clock = FakeClock()
    teacher = groq(server, limiter=RateLimiter(clock=clock, sleep=clock.sleep))
    server.inject("429", retry_after=90)
    started = time.perf_counter()
    assert teacher.complete(MESSAGES, problem=None).text == ACTION
    assert time.perf_counter() - started < 5  # the SDK itself did not sleep
    assert sum(clock.slept) == pytest.approx(90) and len(server.stats.requests) == 2  # one 429, one resend
    assert teacher.limiter.n_rate_limited == 1


def test_429s_beyond_rate_limit_retries_fail_the_call(server):
    teacher = groq(server, rate_limit_retries=2)
    server.inject("429", times=3, retry_after=0.01)
    with pytest.raises(RuntimeError, match="429 3 times"):
        teacher.complete(MESSAGES, problem=None)


def test_413_halves_max_tokens_and_stops_at_the_floor(server):
    teacher = groq(server, max_tokens=1024, min_max_tokens=256)
    server.inject("413", times=2)
    assert teacher.complete(MESSAGES, problem=None).text == ACTION
    assert [r["max_tokens"] for r in server.stats.requests] == [1024, 512, 256]
    server.inject("413", times=5)
    with pytest.raises(RequestTooLarge, match="max_tokens=256"):
        teacher.complete(MESSAGES, problem=None)
    assert len(server.stats.requests) == 6  # 1024, 512, 256 and no more


@pytest.mark.parametrize("fault,error", [("truncated", MalformedCompletion), ("empty", EmptyCompletion)])
def test_malformed_and_empty_completions_raise(server, fault, error):
    teacher = groq(server)
    server.inject(fault)
    with pytest.raises(error):
        teacher.complete(MESSAGES, problem=None)


@pytest.mark.parametrize("option", ["groq", "groq-r1", "openai", "vllm-r1", "vllm-qwen"])
def test_shipped_api_teacher_configs_instantiate_against_the_server(option):
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("generate", [f"teacher={option}"])
    model = cfg.teacher.model if option != "openai" else "test-model"
    with ChatServer(api_key=KEY, models=[model]) as chat:
        url = chat.openai_url if "openai" in cfg.teacher._target_ else chat.url
        teacher = instantiate(cfg.teacher, base_url=url, model=model)
        assert teacher.model == model and teacher.complete(MESSAGES, problem=None).text
    if option == "vllm-qwen":  # vLLM's extra request field reaches the server: ids, not text, name the tokens
        assert chat.stats.requests[-1]["return_tokens_as_token_ids"] is True
        assert chat.stats.requests[-1]["top_logprobs"] == 20


def test_the_limiter_follows_the_servers_headers_instead_of_hitting_429s():
    with ChatServer(turn_script([ACTION]), api_key=KEY, tokens_per_minute=6000, bucket_s=1) as chat:
        teacher = groq(chat)  # told no limit: it learns 100 tokens/s, a 100-token bucket, from the headers
        for _ in range(4):
            teacher.complete(MESSAGES, problem=None)
        assert teacher.limiter.buckets["tokens"].capacity == 100
        assert teacher.limiter.buckets["tokens"].rate == pytest.approx(100, rel=0.05)
        assert chat.stats.statuses[429] == 0 and teacher.limiter.waited_s > 0
