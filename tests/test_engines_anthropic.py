"""The anthropic engine, driven through the real ``anthropic`` SDK against a real local
HTTP server (``tests/fake_provider.py``)."""

from __future__ import annotations

import asyncio
import sys
import time

import pytest

try:
    from fake_provider import SECRET_KEY, FakeProvider, ok, stall, standard_faults, status
except ImportError:  # tests/ imported as a package
    from tests.fake_provider import SECRET_KEY, FakeProvider, ok, stall, standard_faults, status

from radium import errors
from radium.engines import EngineSettings, GenerationParams, create_engine

_ENV = (
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_AUTH_TOKEN",
    "ANTHROPIC_BASE_URL",
    "ANTHROPIC_PROFILE",
    "MY_CLAUDE_KEY",
)



@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in _ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ANTHROPIC_API_KEY", SECRET_KEY)


def _engine(fake: FakeProvider | None, engine: str = "anthropic", **kw):
    settings = dict(engine=engine, model="claude-test", agent_id="reviewer")
    if fake is not None and "base_url" not in kw:
        settings["base_url"] = fake.anthropic_base_url
    settings.update(kw)
    return create_engine(EngineSettings(**settings))


def _run(engine, prompt="hello", timeout_s=None):
    async def go():
        try:
            return await engine.generate(prompt, GenerationParams(timeout_s=timeout_s))
        finally:
            await engine.aclose()

    return asyncio.run(go())


def _fail(engine, **kw) -> errors.RadiumError:
    with pytest.raises(errors.RadiumError) as info:
        _run(engine, **kw)
    return info.value


def _sent_key(headers: dict[str, str]) -> str:
    """The key the SDK sent (``x-api-key``, or ``Authorization: Bearer`` in anthropic 2.x)."""
    if "x-api-key" in headers:
        return headers["x-api-key"]
    return headers.get("authorization", "").removeprefix("Bearer ")


def _assert_no_secret(err: errors.RadiumError) -> None:
    for text in (str(err), err.message, err.hint or "", repr(err), str(err.to_dict())):
        assert "SECRET-1234567890" not in text


def test_success_text_usage_and_request_shape(fake):
    fake.script("anthropic", ok("claude says", prompt_tokens=21, completion_tokens=5))
    engine = _engine(fake, temperature=0.5)
    engine.preflight()
    response = _run(engine, "review this")
    assert response.text == "claude says"
    assert (response.usage.prompt_tokens, response.usage.completion_tokens) == (21, 5)
    assert response.metadata["finish_reason"] == "end_turn"
    [request] = fake.requests_for("anthropic")
    assert request.path == "/v1/messages"
    assert request.body["messages"] == [{"role": "user", "content": "review this"}]
    assert request.body["max_tokens"] == 4096  # the default
    # anthropic 2.x dropped ``temperature`` from the Messages API: not sent, and said so
    import inspect

    import anthropic

    create = anthropic.AsyncAnthropic(api_key="x").messages.create
    if "temperature" in inspect.signature(create).parameters:
        assert request.body["temperature"] == 0.5
    else:
        assert "temperature" not in request.body
        assert "ignored" in response.metadata["temperature"]
    assert _sent_key(request.headers) == SECRET_KEY
    assert request.headers.get("x-stainless-retry-count", "0") == "0"


def test_max_tokens_from_settings(fake):
    _run(_engine(fake, max_tokens=123))
    assert fake.requests_for("anthropic")[0].body["max_tokens"] == 123


def test_large_max_tokens_is_not_refused_by_the_sdk(fake):
    # Without an explicit timeout the SDK refuses non-streaming calls it expects to be long.
    _run(_engine(fake, max_tokens=100_000))
    assert len(fake.requests_for("anthropic")) == 1


def test_claude_alias_and_base_url_env(fake, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_BASE_URL", fake.anthropic_base_url)
    engine = _engine(None, engine="claude")
    assert engine.name == "anthropic"
    _run(engine)
    assert len(fake.requests_for("anthropic")) == 1


def test_text_is_joined_from_text_blocks_only(fake):
    body = {
        "id": "msg_x",
        "type": "message",
        "role": "assistant",
        "model": "claude-test",
        "content": [
            {"type": "thinking", "thinking": "hmm", "signature": "s"},
            {"type": "text", "text": "part one, "},
            {"type": "text", "text": "part two"},
        ],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 3, "output_tokens": 4, "cache_read_input_tokens": 10},
    }
    fake.script("anthropic", status(200, body=body))
    response = _run(_engine(fake))
    assert response.text == "part one, part two"
    assert response.usage.prompt_tokens == 13


@pytest.mark.parametrize(
    "step,kind,code,retry_after",
    [pytest.param(step, kind, code, ra, id=name) for name, step, kind, code, ra in standard_faults()],
)
def test_each_fault_maps_after_exactly_one_request(fake, step, kind, code, retry_after):
    fake.script("anthropic", step)
    err = _fail(_engine(fake), timeout_s=0.3 if kind == "ModelTimeoutError" else 10)
    assert type(err) is getattr(errors, kind)
    if code is not None:
        assert err.status == code
    if kind in ("RateLimitError", "ServerError"):
        assert err.retry_after == retry_after
    fatal = kind in ("AuthenticationError", "ModelNotFoundError", "BadRequestError")
    assert err.category is (errors.ErrorCategory.FATAL if fatal else errors.ErrorCategory.RECOVERABLE)
    assert err.message.startswith("anthropic: ")
    _assert_no_secret(err)
    time.sleep(0.05)
    assert len(fake.requests_for("anthropic")) == 1


@pytest.mark.parametrize(
    "code,kind",
    [(402, errors.BadRequestError), (413, errors.BadRequestError), (499, errors.ServerError), (504, errors.ServerError)],
)
def test_more_statuses(fake, code, kind):
    fake.script("anthropic", status(code))
    err = _fail(_engine(fake))
    assert type(err) is kind and err.status == code


def test_x_should_retry_header_does_not_make_the_sdk_retry(fake):
    fake.script("anthropic", status(500, headers={"x-should-retry": "true"}), ok())
    assert type(_fail(_engine(fake))) is errors.ServerError
    assert len(fake.requests_for("anthropic")) == 1


@pytest.mark.parametrize("code", ["enforced_spend_limit_reached", "contract_spend_limit_reached"])
def test_spend_limit_429_is_fatal(fake, code):
    fake.script("anthropic", status(429, error_code=code))
    err = _fail(_engine(fake))
    assert type(err) is errors.BadRequestError and err.status == 429
    assert err.category is errors.ErrorCategory.FATAL
    assert "ANTHROPIC_API_KEY" in err.hint


def test_ramp_limit_429_stays_a_rate_limit(fake):
    fake.script("anthropic", status(429, error_code="ramp_limit_exceeded", headers={"retry-after": "3"}))
    err = _fail(_engine(fake))
    assert type(err) is errors.RateLimitError and err.retry_after == 3.0


def test_401_message_and_hint(fake):
    fake.script("anthropic", status(401, echo_key=True))
    err = _fail(_engine(fake))
    assert str(err).startswith(f"anthropic: HTTP 401 Unauthorized from {fake.anthropic_base_url}")
    assert "check ANTHROPIC_API_KEY" in str(err)
    _assert_no_secret(err)


def test_agent_key_variable(fake, monkeypatch):
    monkeypatch.setenv("MY_CLAUDE_KEY", "sk-ant-other-abcdefghijklmnop")
    fake.script("anthropic", ok(), status(403))
    engine = _engine(fake, api_key_env="MY_CLAUDE_KEY")
    _run(engine)
    assert _sent_key(fake.requests_for("anthropic")[0].headers) == "sk-ant-other-abcdefghijklmnop"
    err = _fail(_engine(fake, api_key_env="MY_CLAUDE_KEY"))
    assert "MY_CLAUDE_KEY" in err.hint and "sk-ant-other" not in str(err)


def test_missing_key_fails_in_preflight_with_zero_requests(fake, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    engine = _engine(fake)
    with pytest.raises(errors.MissingConfigurationError) as info:
        engine.preflight()
    assert "ANTHROPIC_API_KEY" in str(info.value)
    assert type(_fail(engine)) is errors.MissingConfigurationError
    assert fake.requests == []


def test_sdk_missing_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "anthropic", None)
    with pytest.raises(errors.MissingConfigurationError) as info:
        _engine(None, base_url="http://127.0.0.1:1").preflight()
    assert "pip install 'radium[anthropic]'" in str(info.value)


def test_timeout_from_agent_settings(fake):
    fake.script("anthropic", stall(1.0))
    assert type(_fail(_engine(fake, timeout_s=0.2))) is errors.ModelTimeoutError
