"""The ``gemini`` engine: Google Gemini through the official ``google-genai`` SDK.

Key: ``api_key_env`` of the agent, else ``GEMINI_API_KEY``, else ``GOOGLE_API_KEY`` (passed
explicitly). Base URL: the agent's ``base_url``, else ``GOOGLE_GEMINI_BASE_URL``, else
Google's; the SDK honours it through ``HttpOptions(base_url=...)``, so tests point it at a
local fake server. The client is always the Gemini Developer API one (``vertexai=False``),
whatever ``GOOGLE_GENAI_USE_VERTEXAI`` says. One ``genai.Client`` per engine, created on the
first call and closed by ``aclose()``; calls go through ``client.aio.models.generate_content``.

SDK retries are off: ``HttpOptions(retry_options=HttpRetryOptions(attempts=1))`` (one
attempt; setting it also disables the SDK's hidden retry of aiohttp connection errors). The
per-attempt timeout goes to the request as ``HttpOptions(timeout=<ms>)``.

The answer is the text of the first candidate's non-thought parts; usage is
``prompt_token_count`` and ``candidates_token_count`` (+ ``thoughts_token_count``).

Errors are mapped by ``map_gemini_exception`` (type, HTTP code and structured details; never
message text):

==============================================  ==============================  ===========
SDK / transport exception                       radium error                    category
==============================================  ==============================  ===========
httpx2/httpx ``TimeoutException``, our limit    ModelTimeoutError               recoverable
httpx2/httpx ``TransportError`` (connect,       ConnectionFailedError           recoverable
read, dropped mid-body), aiohttp connection
``ClientError``/``APIError`` code 429           RateLimitError(retry_after)     recoverable
  (any reset header, else the body's
  ``google.rpc.RetryInfo.retryDelay``)
code 408, 409, 499 and ``ServerError`` (5xx)    ServerError(status)             recoverable
code 401, 403; code 400 whose ``ErrorInfo``     AuthenticationError             fatal
  reason is ``API_KEY_INVALID``/``_EXPIRED``
code 404                                        ModelNotFoundError              fatal
other 4xx                                       BadRequestError(status)         fatal
a prompt blocked by ``prompt_feedback``         BadRequestError                 fatal
UnknownApiResponseError, ContinuationInter-     ModelExecutionError             recoverable
ruptedError, UnknownFunctionCallArgumentError,
UnsupportedFunctionError, FunctionInvocation-
Error, APIError without a usable code, any
other exception
==============================================  ==============================  ===========
"""

from __future__ import annotations

import contextlib
from dataclasses import replace
import os
import re
from typing import Any, Iterator

from radium import errors
from radium.engines._common import (
    ProviderContext,
    SDKEngine,
    error_boundary,
    error_for_status,
    one_line,
    transport_error,
    unclassified,
)
from radium.engines.base import EngineResponse, Usage
from radium.ratelimit.headers import ServerWait, parse_snapshot

GEMINI_DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"
_BAD_KEY_REASONS = frozenset({"API_KEY_INVALID", "API_KEY_EXPIRED"})
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$")


def _error_object(exc: Any) -> dict:
    details = getattr(exc, "details", None)
    if isinstance(details, dict):
        inner = details.get("error")
        return inner if isinstance(inner, dict) else details
    return {}


def _detail_entries(exc: Any) -> list[dict]:
    entries = _error_object(exc).get("details")
    return [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []


def _retry_delay(exc: Any) -> float | None:
    """``google.rpc.RetryInfo.retryDelay`` ("2s", "1.5s") from the error body, in seconds."""
    for entry in _detail_entries(exc):
        if str(entry.get("@type", "")).endswith("google.rpc.RetryInfo"):
            delay = entry.get("retryDelay")
            if isinstance(delay, str) and (match := _DURATION.match(delay)):
                return float(match.group(1))
            if isinstance(delay, dict):  # {"seconds": 2, "nanos": 0}
                try:
                    return float(delay.get("seconds", 0)) + float(delay.get("nanos", 0)) / 1e9
                except (TypeError, ValueError):
                    return None
    return None


def _error_reasons(exc: Any) -> set[str]:
    return {
        str(entry.get("reason"))
        for entry in _detail_entries(exc)
        if str(entry.get("@type", "")).endswith("google.rpc.ErrorInfo") and entry.get("reason")
    }


def _headers(exc: Any) -> Any:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    return headers


def map_gemini_exception(exc: BaseException, ctx: ProviderContext) -> errors.RadiumError:
    """The radium error for an exception raised by ``google-genai`` (see the module table)."""
    if isinstance(exc, errors.RadiumError):
        return exc
    from google.genai import errors as genai_errors

    if isinstance(exc, genai_errors.APIError):
        code = getattr(exc, "code", None)
        if not isinstance(code, int) or isinstance(code, bool) or code < 100:
            return unclassified(ctx, exc, "an API error without an HTTP status")
        detail = getattr(exc, "message", None) or _error_object(exc).get("message")
        if getattr(exc, "status", None):
            detail = f"{exc.status}: {detail}" if detail else str(exc.status)
        if code == 400 and _error_reasons(exc) & _BAD_KEY_REASONS:
            return errors.AuthenticationError(
                ctx.redact(f"{ctx.engine}: HTTP 400 API key rejected by {ctx.base_url}: {one_line(detail)}"),
                status=400,
                hint=f"check {ctx.key_env}" if ctx.key_env else "check the API key",
            )
        delay = _retry_delay(exc)
        fallback = ServerWait(delay, "RetryInfo.retryDelay") if delay is not None else None
        return error_for_status(ctx, code, headers=_headers(exc), fallback_wait=fallback, detail=detail)
    mapped = transport_error(ctx, exc)
    if mapped is not None:
        return mapped
    if isinstance(exc, genai_errors.UnknownApiResponseError):
        return unclassified(ctx, exc, "a response that is not valid JSON")
    return unclassified(ctx, exc)


@contextlib.contextmanager
def map_gemini_errors(ctx: ProviderContext) -> Iterator[None]:
    """Turn anything ``google-genai`` raises inside the block into a radium error."""
    with error_boundary(ctx, map_gemini_exception):
        yield


class GeminiEngine(SDKEngine):
    """Google Gemini through the ``google-genai`` SDK."""

    name = "gemini"
    sdk_module = "google.genai"
    sdk_package = "google-genai"
    sdk_extra = "gemini"
    key_envs = ("GEMINI_API_KEY", "GOOGLE_API_KEY")

    def base_url(self) -> str:
        return (
            self.settings.base_url or os.environ.get("GOOGLE_GEMINI_BASE_URL") or GEMINI_DEFAULT_BASE_URL
        ).rstrip("/")

    def make_client(self, sdk: Any, api_key: str) -> Any:
        from google.genai import types

        options: dict[str, Any] = {
            "base_url": self.base_url(),
            "retry_options": types.HttpRetryOptions(attempts=1),
        }
        if self.settings.timeout_s:
            options["timeout"] = max(1, int(self.settings.timeout_s * 1000))
        return sdk.Client(api_key=api_key, vertexai=False, http_options=types.HttpOptions(**options))

    def map_exception(self, exc: BaseException, ctx: ProviderContext) -> errors.RadiumError:
        return map_gemini_exception(exc, ctx)

    async def call(self, client: Any, prompt: str, timeout_s: float | None) -> EngineResponse:
        from google.genai import types

        config: dict[str, Any] = {}
        if self.settings.temperature is not None:
            config["temperature"] = self.settings.temperature
        if self.settings.max_tokens is not None:
            config["max_output_tokens"] = self.settings.max_tokens
        if timeout_s:
            config["http_options"] = types.HttpOptions(timeout=max(1, int(timeout_s * 1000)))
        response = await client.aio.models.generate_content(
            model=self.model,
            contents=prompt,
            config=types.GenerateContentConfig(**config) if config else None,
        )
        http = getattr(response, "sdk_http_response", None)
        return replace(self._response(response), rate_limits=parse_snapshot(getattr(http, "headers", None)))

    def _response(self, response: Any) -> EngineResponse:
        candidates = getattr(response, "candidates", None) or []
        if not candidates:
            feedback = getattr(response, "prompt_feedback", None)
            reason = getattr(feedback, "block_reason", None) if feedback is not None else None
            if reason:
                raise errors.BadRequestError(
                    self._context().redact(f"{self.engine_label}: the prompt was blocked ({reason})"),
                    hint="rephrase the task or its context",
                )
            raise errors.ModelExecutionError(
                self._context().redact(f"{self.engine_label}: the answer from {self.base_url()} has no candidates")
            )
        candidate = candidates[0]
        content = getattr(candidate, "content", None)
        parts = getattr(content, "parts", None) or []
        text = "".join(
            getattr(part, "text", None) or "" for part in parts if not getattr(part, "thought", False)
        )
        usage = None
        meta = getattr(response, "usage_metadata", None)
        if meta is not None:
            usage = Usage(
                prompt_tokens=int(getattr(meta, "prompt_token_count", 0) or 0),
                completion_tokens=int(getattr(meta, "candidates_token_count", 0) or 0)
                + int(getattr(meta, "thoughts_token_count", 0) or 0),
            )
        metadata = {}
        finish = getattr(candidate, "finish_reason", None)
        if finish is not None:
            metadata["finish_reason"] = str(getattr(finish, "value", finish))
            self.check_finish(metadata["finish_reason"])
        return EngineResponse(
            text=text,
            usage=usage,
            model=getattr(response, "model_version", None) or self.model,
            metadata=metadata,
        )

    async def close_client(self, client: Any) -> None:
        try:
            await client.aio.aclose()
        finally:
            client.close()
