"""An answer the provider cut at max_tokens or filtered is a fatal error, never a task output.

Real SDKs against the local fake provider, which reports each provider's own
finish/stop reason.
"""

from __future__ import annotations

import asyncio

import pytest

from radium import errors
from radium.engines import EngineSettings, GenerationParams, create_engine

CASES = [
    ("openai", "length", "cut at max_tokens"),
    ("openai", "content_filter", "stopped the answer"),
    ("anthropic", "max_tokens", "cut at max_tokens"),
    ("anthropic", "refusal", "refused"),
    ("gemini", "MAX_TOKENS", "cut at max_tokens"),
    ("gemini", "SAFETY", "stopped the answer"),
]
KEYS = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY", "gemini": "GEMINI_API_KEY"}


def _generate(fake, engine: str):
    base_url = {"openai": fake.openai_base_url, "anthropic": fake.anthropic_base_url, "gemini": fake.gemini_base_url}[engine]
    instance = create_engine(EngineSettings(engine=engine, model="m", base_url=base_url, agent_id="w", max_tokens=50))

    async def go():
        try:
            return await instance.generate("hello", GenerationParams(timeout_s=5))
        finally:
            await instance.aclose()

    return asyncio.run(go())


@pytest.mark.parametrize(("engine", "reason", "message"), CASES)
def test_truncated_or_filtered_answers_fail(fake, monkeypatch, engine: str, reason: str, message: str) -> None:
    monkeypatch.setenv(KEYS[engine], "sk-test-finish-0000000000")
    fake.script(engine, {"kind": "ok", "text": "half an answ", "finish_reason": reason})
    with pytest.raises(errors.BadRequestError) as caught:
        _generate(fake, engine)
    assert message in str(caught.value)
    assert caught.value.category is errors.ErrorCategory.FATAL
    if "max_tokens" in message:
        assert "raise max_tokens for agent w" in str(caught.value) and "(50 tokens)" in str(caught.value)


@pytest.mark.parametrize("engine", ["openai", "anthropic", "gemini"])
def test_a_normal_stop_is_a_success(fake, monkeypatch, engine: str) -> None:
    monkeypatch.setenv(KEYS[engine], "sk-test-finish-0000000000")
    fake.script(engine, {"kind": "ok", "text": "complete"})
    assert _generate(fake, engine).text == "complete"
