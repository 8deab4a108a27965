"""The openai / openai-compatible / ollama engines, driven through the real ``openai`` SDK
against a real local HTTP server (``tests/fake_provider.py``)."""

from __future__ import annotations

import asyncio
import socket
import sys
import time
from email.utils import format_datetime
from datetime import datetime, timedelta, timezone

import pytest

try:
    from fake_provider import SECRET_KEY, FakeProvider, drop, ok, stall, standard_faults, status
except ImportError:  # tests/ imported as a package
    from tests.fake_provider import SECRET_KEY, FakeProvider, drop, ok, stall, standard_faults, status

from radium import errors
from radium.engines import EngineSettings, GenerationParams, create_engine

_ENV = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_ORG_ID", "OPENAI_PROJECT_ID", "MY_OPENAI_KEY", "LOCAL_KEY")



@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in _ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", SECRET_KEY)


def _engine(fake: FakeProvider | None, engine: str = "openai", **kw):
    settings = dict(engine=engine, model="gpt-test", agent_id="writer")
    if fake is not None and "base_url" not in kw:
        settings["base_url"] = fake.openai_base_url
    settings.update(kw)
    return create_engine(EngineSettings(**settings))


def _run(engine, prompt="hello", timeout_s=None, close=True):
    async def go():
        try:
            return await engine.generate(prompt, GenerationParams(timeout_s=timeout_s))
        finally:
            if close:
                await engine.aclose()

    return asyncio.run(go())


def _fail(engine, **kw) -> errors.RadiumError:
    with pytest.raises(errors.RadiumError) as info:
        _run(engine, **kw)
    return info.value


def _assert_no_secret(err: errors.RadiumError) -> None:
    for text in (str(err), err.message, err.hint or "", repr(err), str(err.to_dict())):
        assert SECRET_KEY not in text
        assert "SECRET-1234567890" not in text


# ------------------------------------------------------------------ success


def test_success_returns_text_usage_and_sends_one_user_message(fake):
    fake.script("openai", ok("the answer", prompt_tokens=12, completion_tokens=34))
    engine = _engine(fake, temperature=0.3, max_tokens=99)
    engine.preflight()
    response = _run(engine, "say hi")
    assert response.text == "the answer"
    assert (response.usage.prompt_tokens, response.usage.completion_tokens) == (12, 34)
    assert response.model == "gpt-test"
    [request] = fake.requests_for("openai")
    assert request.path == "/v1/chat/completions"
    assert request.body["messages"] == [{"role": "user", "content": "say hi"}]
    assert request.body["model"] == "gpt-test"
    assert request.body["temperature"] == 0.3
    assert request.body["max_completion_tokens"] == 99  # what current OpenAI models accept
    assert "max_tokens" not in request.body
    assert request.headers["authorization"] == f"Bearer {SECRET_KEY}"
    # the SDK's own retry counter: always the first try, because the SDK never retries
    assert request.headers.get("x-stainless-retry-count", "0") == "0"


def test_optional_parameters_are_not_sent_when_unset(fake):
    _run(_engine(fake))
    body = fake.requests_for("openai")[0].body
    assert "temperature" not in body and "max_completion_tokens" not in body and "max_tokens" not in body


def test_openai_base_url_env_is_honoured(fake, monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", fake.openai_base_url)
    engine = _engine(None)
    assert engine.base_url() == fake.openai_base_url
    assert _run(engine).text.startswith("fake answer")
    assert len(fake.requests_for("openai")) == 1


def test_agent_base_url_wins_over_env(fake, monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    _run(_engine(fake))
    assert len(fake.requests_for("openai")) == 1


def test_api_key_env_of_the_agent_is_used(fake, monkeypatch):
    monkeypatch.setenv("MY_OPENAI_KEY", "sk-other-key-abcdefghijk")
    _run(_engine(fake, api_key_env="MY_OPENAI_KEY"))
    assert fake.requests_for("openai")[0].headers["authorization"] == "Bearer sk-other-key-abcdefghijk"


def test_one_client_per_engine_reused_and_closed(fake):
    engine = _engine(fake)

    async def go():
        await engine.generate("a", GenerationParams())
        first = engine._client
        await engine.generate("b", GenerationParams())
        assert engine._client is first
        await engine.aclose()
        assert engine._client is None
        await engine.generate("c", GenerationParams())  # usable again after aclose
        await engine.aclose()

    asyncio.run(go())
    assert len(fake.requests_for("openai")) == 3


# ------------------------------------------------------------------ faults


@pytest.mark.parametrize(
    "step,kind,code,retry_after",
    [pytest.param(step, kind, code, ra, id=name) for name, step, kind, code, ra in standard_faults()],
)
def test_each_fault_maps_after_exactly_one_request(fake, step, kind, code, retry_after):
    fake.script("openai", step)
    err = _fail(_engine(fake), timeout_s=0.3 if kind == "ModelTimeoutError" else 10)
    assert type(err) is getattr(errors, kind)
    if code is not None:
        assert err.status == code
    if kind in ("RateLimitError", "ServerError"):
        assert err.retry_after == retry_after
    expected_category = errors.ErrorCategory.FATAL if kind in (
        "AuthenticationError", "ModelNotFoundError", "BadRequestError"
    ) else errors.ErrorCategory.RECOVERABLE
    assert err.category is expected_category
    assert err.message.startswith("openai: ")
    _assert_no_secret(err)
    # exactly one request: the SDK's own retries are off
    time.sleep(0.05)
    assert len(fake.requests_for("openai")) == 1


def test_retry_after_http_date(fake):
    when = datetime.now(timezone.utc) + timedelta(seconds=30)
    fake.script("openai", status(429, headers={"Retry-After": format_datetime(when, usegmt=True)}))
    err = _fail(_engine(fake))
    assert isinstance(err, errors.RateLimitError)
    assert 25 <= err.retry_after <= 31


def test_messages_name_engine_status_server_and_fix(fake):
    fake.script("openai", status(401), status(404), status(403))
    err = _fail(_engine(fake))
    assert str(err).startswith(f"openai: HTTP 401 Unauthorized from {fake.openai_base_url}")
    assert "check OPENAI_API_KEY" in str(err)
    err = _fail(_engine(fake))
    assert "HTTP 404" in str(err) and "gpt-test" in err.hint and "model name" in err.hint
    err = _fail(_engine(fake))
    assert "HTTP 403" in str(err) and "OPENAI_API_KEY" in err.hint


def test_auth_hint_names_the_agents_key_variable(fake, monkeypatch):
    monkeypatch.setenv("MY_OPENAI_KEY", "sk-other-key-abcdefghijk")
    fake.script("openai", status(401))
    err = _fail(_engine(fake, api_key_env="MY_OPENAI_KEY"))
    assert "check MY_OPENAI_KEY" in str(err)
    assert "sk-other-key-abcdefghijk" not in str(err)


def test_insufficient_quota_is_fatal_not_a_rate_limit(fake):
    fake.script("openai", status(429, error_code="insufficient_quota", message="You exceeded your current quota"))
    err = _fail(_engine(fake))
    assert type(err) is errors.BadRequestError
    assert err.status == 429 and err.category is errors.ErrorCategory.FATAL
    assert "quota" in err.hint


def test_key_echoed_in_a_401_body_is_redacted(fake):
    fake.script("openai", status(401, echo_key=True), status(400, echo_key=True), status(500, echo_key=True))
    for _ in range(3):
        err = _fail(_engine(fake))
        assert "[REDACTED]" in err.message
        _assert_no_secret(err)


def test_connection_refused_is_connection_error():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    err = _fail(_engine(None, base_url=f"http://127.0.0.1:{port}/v1"))
    assert type(err) is errors.ConnectionFailedError
    assert f"127.0.0.1:{port}" in err.message


def test_agent_timeout_setting_applies_when_params_have_none(fake):
    fake.script("openai", stall(1.0))
    err = _fail(_engine(fake, timeout_s=0.2))
    assert type(err) is errors.ModelTimeoutError
    assert "0.2s" in err.message


def test_params_timeout_wins_over_agent_timeout(fake):
    fake.script("openai", stall(0.4))
    # the agent allows 5 s but this attempt only 0.15 s
    err = _fail(_engine(fake, timeout_s=5), timeout_s=0.15)
    assert type(err) is errors.ModelTimeoutError


def test_cancellation_propagates_unmapped(fake):
    fake.script("openai", stall(1.0))
    engine = _engine(fake)

    async def go():
        task = asyncio.create_task(engine.generate("x", GenerationParams()))
        await asyncio.sleep(0.2)
        task.cancel()
        try:
            await task
        finally:
            await engine.aclose()

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(go())


# ------------------------------------------------------------------ configuration


def test_missing_key_fails_in_preflight_naming_the_variable(fake, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    engine = _engine(fake)
    with pytest.raises(errors.MissingConfigurationError) as info:
        engine.preflight()
    assert "OPENAI_API_KEY" in str(info.value)
    assert info.value.category is errors.ErrorCategory.FATAL
    # generate() without preflight fails the same way, before any request
    err = _fail(engine)
    assert type(err) is errors.MissingConfigurationError
    assert fake.requests == []


def test_blank_key_counts_as_missing(fake, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "   ")
    with pytest.raises(errors.MissingConfigurationError):
        _engine(fake).preflight()


def test_missing_agent_key_variable_is_named(fake):
    engine = _engine(fake, api_key_env="MY_OPENAI_KEY")
    with pytest.raises(errors.MissingConfigurationError) as info:
        engine.preflight()
    assert "MY_OPENAI_KEY" in str(info.value)
    assert fake.requests == []


def test_missing_model_fails_in_preflight(fake):
    with pytest.raises(errors.MissingConfigurationError) as info:
        _engine(fake, model=None).preflight()
    assert "model" in str(info.value)


def test_bad_base_url_fails_in_preflight():
    with pytest.raises(errors.InvalidDataError):
        _engine(None, base_url="localhost:8080").preflight()


def test_sdk_missing_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "openai", None)  # makes "import openai" raise ImportError
    with pytest.raises(errors.MissingConfigurationError) as info:
        _engine(None, base_url="http://127.0.0.1:1/v1").preflight()
    assert "pip install 'radium[openai]'" in str(info.value)


# ------------------------------------------------------------------ openai-compatible / ollama


def test_compatible_requires_base_url():
    engine = _engine(None, engine="openai-compatible")
    with pytest.raises(errors.MissingConfigurationError) as info:
        engine.preflight()
    assert "base_url" in str(info.value)


def test_compatible_sends_no_openai_key_and_uses_max_tokens(fake):
    engine = _engine(fake, engine="openai-compatible", max_tokens=50)
    engine.preflight()
    assert _run(engine).text.startswith("fake answer")
    [request] = fake.requests_for("openai")
    assert request.headers["authorization"] == "Bearer not-needed"
    assert SECRET_KEY not in str(request.headers)
    assert request.body["max_tokens"] == 50


def test_compatible_uses_the_agents_key_variable(fake, monkeypatch):
    monkeypatch.setenv("LOCAL_KEY", "local-secret-value")
    engine = _engine(fake, engine="openai-compatible", api_key_env="LOCAL_KEY")
    engine.preflight()
    _run(engine)
    assert fake.requests_for("openai")[0].headers["authorization"] == "Bearer local-secret-value"
    fake.script("openai", status(401, echo_key=True))
    err = _fail(_engine(fake, engine="openai-compatible", api_key_env="LOCAL_KEY"))
    assert "local-secret-value" not in str(err) and "check LOCAL_KEY" in str(err)


def test_compatible_named_key_variable_must_be_set(fake):
    with pytest.raises(errors.MissingConfigurationError) as info:
        _engine(fake, engine="openai-compatible", api_key_env="LOCAL_KEY").preflight()
    assert "LOCAL_KEY" in str(info.value)


def test_compatible_401_without_key_says_how_to_configure_one(fake):
    fake.script("openai", status(401))
    err = _fail(_engine(fake, engine="openai-compatible"))
    assert type(err) is errors.AuthenticationError
    assert "api_key_env" in err.hint and "writer" in err.hint


def test_ollama_default_base_url_and_no_key(fake):
    assert _engine(None, engine="ollama").base_url() == "http://localhost:11434/v1"
    engine = _engine(fake, engine="ollama")
    engine.preflight()
    _run(engine)
    assert fake.requests_for("openai")[0].headers["authorization"] == "Bearer ollama"


@pytest.mark.parametrize("engine_name", ["openai-compatible", "ollama"])
def test_compatible_engines_map_faults_too(fake, engine_name):
    fake.script("openai", status(503), stall(0.8), drop(), status(404))
    kinds = []
    for timeout in (10, 0.3, 10, 10):
        kinds.append(type(_fail(_engine(fake, engine=engine_name), timeout_s=timeout)))
    assert kinds == [errors.ServerError, errors.ModelTimeoutError, errors.ConnectionFailedError, errors.ModelNotFoundError]
    assert len(fake.requests_for("openai")) == 4


def test_ollama_hints(fake):
    fake.script("openai", status(404))
    err = _fail(_engine(fake, engine="ollama"))
    assert "ollama pull gpt-test" in err.hint


def test_credentials_in_base_url_are_not_shown(fake):
    url = fake.openai_base_url.replace("http://", "http://user:hunter2@")
    fake.script("openai", status(500))
    err = _fail(_engine(fake, base_url=url))
    assert "hunter2" not in str(err) and fake.openai_base_url in err.message


def test_a_new_event_loop_gets_a_new_client(fake):
    engine = _engine(fake)
    # two separate asyncio.run() calls without aclose() in between
    assert asyncio.run(engine.generate("a", GenerationParams())).text
    assert asyncio.run(engine.generate("b", GenerationParams())).text
    asyncio.run(engine.aclose())
    assert len(fake.requests_for("openai")) == 2
