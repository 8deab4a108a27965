"""OpenAI Chat Completions engines: ``openai``, ``openai-compatible`` and ``ollama``.

All three use the official ``openai`` SDK (``pip install 'radium[openai]'``), imported only
when a run needs it. One ``AsyncOpenAI`` client per engine, created on the first call with
``max_retries=0`` (the executor owns every retry) and closed by ``aclose()``. Each call sends
one user message; ``temperature`` and ``max_tokens`` go along when the agent sets them.
The per-attempt timeout goes to the request (``timeout=``) and also bounds the whole call.

==================  =======================================  ==================================
engine              key                                      base URL
==================  =======================================  ==================================
openai              ``api_key_env`` or ``OPENAI_API_KEY``    agent ``base_url``, else
                    (required)                               ``OPENAI_BASE_URL``, else OpenAI
openai-compatible   ``api_key_env`` if the agent names one;  agent ``base_url`` (required)
                    else none is sent ("not-needed")
ollama              ``api_key_env`` if named; else none      agent ``base_url``, else
                                                             ``http://localhost:11434/v1``
==================  =======================================  ==================================

``openai-compatible`` and ``ollama`` never fall back to ``OPENAI_API_KEY``: a self-hosted
server must not receive an OpenAI key it did not ask for. The ``openai`` engine sends
``max_completion_tokens`` (what current OpenAI models accept); the others send
``max_tokens`` (what compatible servers understand).

Errors are mapped by ``map_openai_exception`` (type and status, never message text):

===========================================  ==============================  ===========
SDK exception                                radium error                    category
===========================================  ==============================  ===========
APITimeoutError (and our per-attempt limit)  ModelTimeoutError               recoverable
APIConnectionError                           ConnectionFailedError           recoverable
RateLimitError (429)                         RateLimitError(retry_after)     recoverable
RateLimitError, ``code=insufficient_quota``  BadRequestError(429)            fatal
InternalServerError (5xx incl. 529),         ServerError(status)             recoverable
ConflictError (409), APIStatusError 408/499
AuthenticationError/OAuthError (401),        AuthenticationError             fatal
PermissionDeniedError (403)
NotFoundError (404)                          ModelNotFoundError              fatal
BadRequestError (400), Unprocessable… (422)  BadRequestError                 fatal
  and any other 4xx APIStatusError
LengthFinishReasonError,                     BadRequestError                 fatal
ContentFilterFinishReasonError
APIResponseValidationError, OpenAIError,     ModelExecutionError             recoverable
APIError, SubjectTokenProviderError,
WebSocketConnectionClosedError, WebSocket-
QueueFullError, InvalidWebhookSignature-
Error (not raised by chat completions),
any other exception
===========================================  ==============================  ===========
"""

from __future__ import annotations

import contextlib
from dataclasses import replace
import os
from typing import Any, Iterator

from radium import errors
from radium.engines._common import (
    ProviderContext,
    SDKEngine,
    cause_chain_transport,
    connection_error,
    error_boundary,
    error_for_status,
    one_line,
    timeout_error,
    transport_error,
    unclassified,
)
from radium.engines.base import EngineResponse, Usage
from radium.ratelimit.headers import parse_snapshot

OPENAI_DEFAULT_BASE_URL = "https://api.openai.com/v1"
OLLAMA_DEFAULT_BASE_URL = "http://localhost:11434/v1"


def _status_detail(exc: Any) -> str | None:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        message = body.get("message")
        if message is None and isinstance(body.get("error"), dict):
            message = body["error"].get("message")
        if message:
            return str(message)
    elif isinstance(body, str) and body.strip():
        return body
    return None


def map_openai_exception(exc: BaseException, ctx: ProviderContext) -> errors.RadiumError:
    """The radium error for an exception raised by the ``openai`` SDK (see the module table)."""
    if isinstance(exc, errors.RadiumError):
        return exc
    import openai

    if isinstance(exc, openai.APITimeoutError):
        return timeout_error(ctx)
    if isinstance(exc, openai.APIConnectionError):
        return cause_chain_transport(ctx, exc) or connection_error(ctx, exc.__cause__)
    if isinstance(exc, openai.APIStatusError):
        return error_for_status(
            ctx,
            exc.status_code,
            headers=exc.response.headers,
            detail=_status_detail(exc),
            quota_exhausted=exc.status_code == 429 and getattr(exc, "code", None) == "insufficient_quota",
        )
    if isinstance(exc, openai.LengthFinishReasonError):
        return errors.BadRequestError(
            ctx.redact(f"{ctx.engine}: the answer was cut at max_tokens (model {ctx.model})"),
            hint=f"raise max_tokens in {ctx.agent_label}",
        )
    if isinstance(exc, openai.ContentFilterFinishReasonError):
        return errors.BadRequestError(
            ctx.redact(f"{ctx.engine}: the provider's content filter rejected the request (model {ctx.model})"),
            hint="rephrase the task or its context",
        )
    if isinstance(exc, openai.APIResponseValidationError):
        return unclassified(ctx, exc, "a response that does not match the API schema")
    return transport_error(ctx, exc) or unclassified(ctx, exc)


@contextlib.contextmanager
def map_openai_errors(ctx: ProviderContext) -> Iterator[None]:
    """Turn anything the ``openai`` SDK raises inside the block into a radium error."""
    with error_boundary(ctx, map_openai_exception):
        yield


class OpenAIEngine(SDKEngine):
    """OpenAI Chat Completions through the official SDK."""

    name = "openai"
    sdk_module = "openai"
    sdk_package = "openai"
    sdk_extra = "openai"
    key_envs = ("OPENAI_API_KEY",)
    max_tokens_param = "max_completion_tokens"

    def base_url(self) -> str:
        return (self.settings.base_url or os.environ.get("OPENAI_BASE_URL") or OPENAI_DEFAULT_BASE_URL).rstrip("/")

    def make_client(self, sdk: Any, api_key: str) -> Any:
        kwargs: dict[str, Any] = {"api_key": api_key, "base_url": self.base_url(), "max_retries": 0}
        if self.settings.timeout_s:
            kwargs["timeout"] = self.settings.timeout_s
        return sdk.AsyncOpenAI(**kwargs)

    def map_exception(self, exc: BaseException, ctx: ProviderContext) -> errors.RadiumError:
        return map_openai_exception(exc, ctx)

    async def call(self, client: Any, prompt: str, timeout_s: float | None) -> EngineResponse:
        request: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": "user", "content": prompt}],
        }
        if self.settings.temperature is not None:
            request["temperature"] = self.settings.temperature
        if self.settings.max_tokens is not None:
            request[self.max_tokens_param] = self.settings.max_tokens
        if timeout_s:
            request["timeout"] = timeout_s
        # The raw response carries the x-ratelimit-* headers the shared limiter reads.
        raw = await client.chat.completions.with_raw_response.create(**request)
        return replace(self._response(raw.parse()), rate_limits=parse_snapshot(raw.headers))

    def _response(self, completion: Any) -> EngineResponse:
        choices = getattr(completion, "choices", None) or []
        if not choices:
            raise errors.ModelExecutionError(
                self._context().redact(f"{self.engine_label}: the answer from {self.base_url()} has no choices")
            )
        choice = choices[0]
        message = getattr(choice, "message", None)
        text = getattr(message, "content", None)
        if text is None:
            refusal = getattr(message, "refusal", None)
            if refusal:
                raise errors.BadRequestError(
                    self._context().redact(f"{self.engine_label}: the model refused: {one_line(refusal)}"),
                    hint="rephrase the task or its context",
                )
            text = ""
        usage = None
        raw_usage = getattr(completion, "usage", None)
        if raw_usage is not None:
            usage = Usage(
                prompt_tokens=int(getattr(raw_usage, "prompt_tokens", 0) or 0),
                completion_tokens=int(getattr(raw_usage, "completion_tokens", 0) or 0),
            )
        metadata = {}
        finish = getattr(choice, "finish_reason", None)
        if finish:
            metadata["finish_reason"] = str(finish)
        self.check_finish(finish)
        return EngineResponse(
            text=text,
            usage=usage,
            model=getattr(completion, "model", None) or self.model,
            metadata=metadata,
        )


class OpenAICompatibleEngine(OpenAIEngine):
    """Any OpenAI-compatible server (vLLM, llama.cpp, LM Studio…) at the agent's ``base_url``."""

    name = "openai-compatible"
    key_envs = ()
    placeholder_key = "not-needed"
    max_tokens_param = "max_tokens"

    def base_url(self) -> str:
        return (self.settings.base_url or "").rstrip("/")

    def preflight(self) -> None:
        if not self.settings.base_url:
            agent = f"agent '{self.settings.agent_id}'" if self.settings.agent_id else "the agent"
            raise errors.MissingConfigurationError(
                f"{self.engine_label}: {agent} has no base_url",
                hint='add base_url = "http://host:port/v1" to the agent file',
            )
        super().preflight()

    def _ensure_client(self, ctx: ProviderContext) -> Any:
        if not self.settings.base_url:
            self.preflight()
        return super()._ensure_client(ctx)


class OllamaEngine(OpenAIEngine):
    """A local Ollama server through its OpenAI-compatible API."""

    name = "ollama"
    key_envs = ()
    placeholder_key = "ollama"
    max_tokens_param = "max_tokens"

    def base_url(self) -> str:
        return (self.settings.base_url or OLLAMA_DEFAULT_BASE_URL).rstrip("/")
