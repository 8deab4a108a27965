"""The gemini engine, driven through the real ``google-genai`` SDK against a real local HTTP
server (``tests/fake_provider.py``).

google-genai lets the base URL be set (``HttpOptions(base_url=...)``, which the engine fills
from the agent's ``base_url`` or ``GOOGLE_GEMINI_BASE_URL``), so these tests use the same
fake server as the OpenAI and Anthropic ones: no limitation to state.
"""

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
    "GEMINI_API_KEY",
    "GOOGLE_API_KEY",
    "GOOGLE_GEMINI_BASE_URL",
    "GOOGLE_GENAI_USE_VERTEXAI",
    "GOOGLE_GENAI_USE_ENTERPRISE",
    "GOOGLE_CLOUD_PROJECT",
    "MY_GEMINI_KEY",
)



@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in _ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GEMINI_API_KEY", SECRET_KEY)


def _engine(fake: FakeProvider | None, **kw):
    settings = dict(engine="gemini", model="gemini-test", agent_id="planner")
    if fake is not None and "base_url" not in kw:
        settings["base_url"] = fake.gemini_base_url
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


def _assert_no_secret(err: errors.RadiumError) -> None:
    for text in (str(err), err.message, err.hint or "", repr(err), str(err.to_dict())):
        assert "SECRET-1234567890" not in text


def test_success_text_usage_and_request_shape(fake):
    fake.script("gemini", ok("gemini says", prompt_tokens=8, completion_tokens=3))
    engine = _engine(fake, temperature=0.2, max_tokens=77)
    engine.preflight()
    response = _run(engine, "plan this")
    assert response.text == "gemini says"
    assert (response.usage.prompt_tokens, response.usage.completion_tokens) == (8, 3)
    [request] = fake.requests_for("gemini")
    assert request.path.endswith("/models/gemini-test:generateContent")
    assert request.body["contents"][0]["parts"] == [{"text": "plan this"}]
    assert request.body["generationConfig"]["temperature"] == 0.2
    assert request.body["generationConfig"]["maxOutputTokens"] == 77
    assert request.headers["x-goog-api-key"] == SECRET_KEY


def test_thought_parts_are_left_out(fake):
    body = {
        "candidates": [
            {
                "content": {"parts": [{"text": "thinking…", "thought": True}, {"text": "answer"}], "role": "model"},
                "finishReason": "STOP",
            }
        ],
        "usageMetadata": {"promptTokenCount": 2, "candidatesTokenCount": 1, "thoughtsTokenCount": 5},
    }
    fake.script("gemini", status(200, body=body))
    response = _run(_engine(fake))
    assert response.text == "answer"
    assert response.usage.completion_tokens == 6


def test_blocked_prompt_is_fatal(fake):
    fake.script("gemini", status(200, body={"promptFeedback": {"blockReason": "SAFETY"}}))
    err = _fail(_engine(fake))
    assert type(err) is errors.BadRequestError and "SAFETY" in err.message


def test_google_api_key_fallback_and_gemini_key_preferred(fake, monkeypatch):
    monkeypatch.delenv("GEMINI_API_KEY")
    monkeypatch.setenv("GOOGLE_API_KEY", "AIza-google-key-0000000000000000")
    _run(_engine(fake))
    assert fake.requests_for("gemini")[-1].headers["x-goog-api-key"] == "AIza-google-key-0000000000000000"
    monkeypatch.setenv("GEMINI_API_KEY", SECRET_KEY)
    _run(_engine(fake))
    assert fake.requests_for("gemini")[-1].headers["x-goog-api-key"] == SECRET_KEY


def test_base_url_env_and_vertex_env_ignored(fake, monkeypatch):
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", fake.gemini_base_url)
    monkeypatch.setenv("GOOGLE_GENAI_USE_VERTEXAI", "true")
    _run(_engine(None))
    assert len(fake.requests_for("gemini")) == 1


@pytest.mark.parametrize(
    "step,kind,code,retry_after",
    [pytest.param(step, kind, code, ra, id=name) for name, step, kind, code, ra in standard_faults()],
)
def test_each_fault_maps_after_exactly_one_request(fake, step, kind, code, retry_after):
    fake.script("gemini", step)
    err = _fail(_engine(fake), timeout_s=0.3 if kind == "ModelTimeoutError" else 10)
    assert type(err) is getattr(errors, kind)
    if code is not None:
        assert err.status == code
    if kind in ("RateLimitError", "ServerError"):
        assert err.retry_after == retry_after
    fatal = kind in ("AuthenticationError", "ModelNotFoundError", "BadRequestError")
    assert err.category is (errors.ErrorCategory.FATAL if fatal else errors.ErrorCategory.RECOVERABLE)
    assert err.message.startswith("gemini: ")
    _assert_no_secret(err)
    time.sleep(0.05)
    assert len(fake.requests_for("gemini")) == 1


def test_retry_info_in_the_body_gives_retry_after(fake):
    body = {
        "error": {
            "code": 429,
            "message": "Resource has been exhausted",
            "status": "RESOURCE_EXHAUSTED",
            "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1.5s"}],
        }
    }
    fake.script("gemini", status(429, body=body))
    err = _fail(_engine(fake))
    assert type(err) is errors.RateLimitError and err.retry_after == 1.5


def test_invalid_key_400_is_an_authentication_error(fake):
    # Gemini answers a bad key with 400 INVALID_ARGUMENT + ErrorInfo reason API_KEY_INVALID.
    fake.script("gemini", status(400, error_code="API_KEY_INVALID", echo_key=True))
    err = _fail(_engine(fake))
    assert type(err) is errors.AuthenticationError and err.status == 400
    assert "check GEMINI_API_KEY" in str(err)
    _assert_no_secret(err)


def test_missing_key_fails_in_preflight_with_zero_requests(fake, monkeypatch):
    monkeypatch.delenv("GEMINI_API_KEY")
    engine = _engine(fake)
    with pytest.raises(errors.MissingConfigurationError) as info:
        engine.preflight()
    assert "GEMINI_API_KEY" in str(info.value) and "GOOGLE_API_KEY" in str(info.value)
    assert type(_fail(engine)) is errors.MissingConfigurationError
    assert fake.requests == []


def test_sdk_missing_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "google.genai", None)
    with pytest.raises(errors.MissingConfigurationError) as info:
        _engine(None, base_url="http://127.0.0.1:1").preflight()
    assert "pip install 'radium[gemini]'" in str(info.value)


def test_timeout_from_agent_settings(fake):
    fake.script("gemini", stall(1.0))
    assert type(_fail(_engine(fake, timeout_s=0.2))) is errors.ModelTimeoutError
