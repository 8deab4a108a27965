"""The ``anthropic`` engine (alias ``claude``): Anthropic Messages through the official SDK.

Key: ``api_key_env`` of the agent, else ``ANTHROPIC_API_KEY`` (passed explicitly, so the
SDK's profile and workload-identity lookups never run). Base URL: the agent's ``base_url``,
else ``ANTHROPIC_BASE_URL``, else Anthropic's. One ``AsyncAnthropic(max_retries=0)`` client
per engine, created on the first call, closed by ``aclose()``. Each call sends one user
message with ``max_tokens`` (agent value, default 4096) and ``temperature`` when set and the
installed SDK still has that parameter (2.x dropped it: then it is left out and the answer's
``metadata["temperature"]`` says so); the
answer is the text of its ``text`` content blocks; usage is ``input_tokens`` (plus cache
tokens) and ``output_tokens``. A timeout is always passed explicitly (the agent's, or 600 s),
which also keeps the SDK from refusing large non-streaming ``max_tokens``.

Errors are mapped by ``map_anthropic_exception`` (type and status, never message text):

=============================================  ==============================  ===========
SDK exception                                  radium error                    category
=============================================  ==============================  ===========
APITimeoutError (and our per-attempt limit)    ModelTimeoutError               recoverable
APIConnectionError                             ConnectionFailedError           recoverable
RateLimitError (429) and its subclasses        RateLimitError(retry_after)     recoverable
ContractSpendLimitReachedError,                BadRequestError(429)            fatal
EnforcedSpendLimitReachedError (429)
RequestTimeoutError (408), ConflictError       ServerError(status)             recoverable
(409), ClientClosedRequestError (499),
InternalServerError and subclasses (500, 501,
503, 504, 529 OverloadedError…)
AuthenticationError (401),                     AuthenticationError             fatal
PermissionDeniedError (403) and subclasses
NotFoundError (404) and subclasses             ModelNotFoundError              fatal
BadRequestError (400), PaymentRequired (402),  BadRequestError(status)         fatal
PreconditionFailed (412), ContentTooLarge
(413), Unprocessable (422), 431, subclasses
CredentialsError, IdentityTokenFileError       MissingConfigurationError       fatal
RetryableError, APIResponseValidationError,    ModelExecutionError             recoverable
APIWebhookValidationError, WorkloadIdentity-
Error (not on an api-key path), AnthropicError,
APIError, any other exception
=============================================  ==============================  ===========

Every ``APIStatusError`` subclass (the SDK has dozens, keyed by ``error.details.error_code``)
is mapped by its HTTP status; only the two spend-limit classes are singled out.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace
import inspect
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

ANTHROPIC_DEFAULT_BASE_URL = "https://api.anthropic.com"
DEFAULT_MAX_TOKENS = 4096
DEFAULT_TIMEOUT_S = 600.0

_SPEND_LIMIT_CLASSES = ("ContractSpendLimitReachedError", "EnforcedSpendLimitReachedError")


def _status_detail(exc: Any) -> str | None:
    message = getattr(exc, "api_message", None)
    if message:
        return str(message)
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
    elif isinstance(body, str) and body.strip():
        return body
    return None


def _is_spend_limit(exc: BaseException) -> bool:
    import anthropic

    classes = tuple(
        cls for name in _SPEND_LIMIT_CLASSES if isinstance(cls := getattr(anthropic, name, None), type)
    )
    return bool(classes) and isinstance(exc, classes)


def _accepts(function: Any, parameter: str) -> bool:
    """Whether ``function`` takes ``parameter`` (newer SDKs dropped ``temperature``)."""
    try:
        return parameter in inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False


def map_anthropic_exception(exc: BaseException, ctx: ProviderContext) -> errors.RadiumError:
    """The radium error for an exception raised by the ``anthropic`` SDK (see the module table)."""
    if isinstance(exc, errors.RadiumError):
        return exc
    import anthropic

    if isinstance(exc, anthropic.APITimeoutError):
        return timeout_error(ctx)
    if isinstance(exc, anthropic.APIConnectionError):
        return cause_chain_transport(ctx, exc) or connection_error(ctx, exc.__cause__)
    if isinstance(exc, anthropic.APIStatusError):
        return error_for_status(
            ctx,
            exc.status_code,
            headers=exc.response.headers,
            detail=_status_detail(exc),
            quota_exhausted=_is_spend_limit(exc),
        )
    credentials_error = getattr(anthropic, "CredentialsError", None)
    if isinstance(credentials_error, type) and isinstance(exc, credentials_error):
        return errors.MissingConfigurationError(
            ctx.redact(f"{ctx.engine}: credentials could not be loaded: {one_line(exc)}"),
            hint=f"set {ctx.key_env or 'ANTHROPIC_API_KEY'}",
        )
    if isinstance(exc, anthropic.APIResponseValidationError):
        return unclassified(ctx, exc, "a response that does not match the API schema")
    return transport_error(ctx, exc) or unclassified(ctx, exc)


@contextlib.contextmanager
def map_anthropic_errors(ctx: ProviderContext) -> Iterator[None]:
    """Turn anything the ``anthropic`` SDK raises inside the block into a radium error."""
    with error_boundary(ctx, map_anthropic_exception):
        yield


class AnthropicEngine(SDKEngine):
    """Anthropic Messages through the official SDK."""

    name = "anthropic"
    sdk_module = "anthropic"
    sdk_package = "anthropic"
    sdk_extra = "anthropic"
    key_envs = ("ANTHROPIC_API_KEY",)

    def base_url(self) -> str:
        return (
            self.settings.base_url or os.environ.get("ANTHROPIC_BASE_URL") or ANTHROPIC_DEFAULT_BASE_URL
        ).rstrip("/")

    def make_client(self, sdk: Any, api_key: str) -> Any:
        return sdk.AsyncAnthropic(
            api_key=api_key,
            base_url=self.base_url(),
            max_retries=0,
            timeout=self.settings.timeout_s or DEFAULT_TIMEOUT_S,
        )

    def map_exception(self, exc: BaseException, ctx: ProviderContext) -> errors.RadiumError:
        return map_anthropic_exception(exc, ctx)

    async def call(self, client: Any, prompt: str, timeout_s: float | None) -> EngineResponse:
        request: dict[str, Any] = {
            "model": self.model,
            "max_tokens": self.settings.max_tokens or DEFAULT_MAX_TOKENS,
            "messages": [{"role": "user", "content": prompt}],
            "timeout": timeout_s or DEFAULT_TIMEOUT_S,
        }
        ignored_temperature = False
        if self.settings.temperature is not None:
            if _accepts(client.messages.create, "temperature"):
                request["temperature"] = self.settings.temperature
            else:
                ignored_temperature = True
        # The raw response carries the anthropic-ratelimit-* headers the shared limiter reads.
        raw = await client.messages.with_raw_response.create(**request)
        response = replace(self._response(await raw.parse()), rate_limits=parse_snapshot(raw.headers))
        if ignored_temperature:
            response.metadata["temperature"] = "ignored: not supported by this anthropic SDK"
        return response

    def _response(self, message: Any) -> EngineResponse:
        parts = [
            getattr(block, "text", "") or ""
            for block in (getattr(message, "content", None) or [])
            if getattr(block, "type", None) == "text"
        ]
        usage = None
        raw = getattr(message, "usage", None)
        if raw is not None:
            prompt_tokens = sum(
                int(getattr(raw, name, 0) or 0)
                for name in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
            )
            usage = Usage(prompt_tokens=prompt_tokens, completion_tokens=int(getattr(raw, "output_tokens", 0) or 0))
        metadata = {}
        stop = getattr(message, "stop_reason", None)
        if stop:
            metadata["finish_reason"] = str(stop)
        if stop == "refusal":
            raise errors.BadRequestError(
                self._context().redact(f"{self.engine_label}: the model refused to answer (model {self.model})"),
                hint="rephrase the task or its context",
            )
        self.check_finish(stop)
        return EngineResponse(
            text="".join(parts),
            usage=usage,
            model=getattr(message, "model", None) or self.model,
            metadata=metadata,
        )
