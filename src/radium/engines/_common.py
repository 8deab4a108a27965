"""Plumbing shared by the HTTP (SDK) engines: keys, base URLs, the status rule, messages.

Each SDK engine (``openai``, ``anthropic``, ``gemini``) maps its SDK's exceptions once, at
the engine boundary, by exception TYPE and HTTP STATUS (never by message text). The status
part of that mapping is the same for every provider and lives here::

    429                      RateLimitError(retry_after, retry_after_source)           recoverable
    408, 409, 499, 5xx, 529  ServerError(status, retry_after, retry_after_source)      recoverable
    401, 403                 AuthenticationError(status), hint names the key variable    fatal
    404                      ModelNotFoundError, hint: check the model name / base_url   fatal
    other 4xx                BadRequestError(status)                                     fatal
    anything else            ModelExecutionError (unclassified)                          recoverable

A 429 the provider marks, in a structured field, as "quota/spend limit exhausted" (OpenAI
``code == "insufficient_quota"``, Anthropic ``ContractSpendLimitReachedError`` /
``EnforcedSpendLimitReachedError``) is a ``BadRequestError(status=429)`` instead: waiting a
few seconds cannot refill a monthly budget, and calling it a "rate limit" would mislead.
499 ("client closed request") is a proxy's way of saying the call was cut off, not that it
was wrong, so it is retried like a 5xx.

``retry_after`` is read from every header a provider uses to say when to come back
(``radium.ratelimit.headers``: ``Retry-After``, ``retry-after-ms``, ``x-ratelimit-reset-*``,
``anthropic-ratelimit-*-reset``, LiteLLM's ``llm_provider-*``), with the header's name as
``retry_after_source``.

Every message names the engine, the status and the server, and goes through
``radium.errors.redact`` with the engine's secrets: the API key never reaches a message,
even when a server echoes it back in an error body.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sys
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Callable, ClassVar, Iterator, Mapping

from radium import errors
from radium.engines.base import Engine, EngineResponse, EngineSettings, GenerationParams
from radium.ratelimit.headers import ServerWait, server_wait

_DETAIL_LIMIT = 300


# ------------------------------------------------------------------ context


@dataclass(frozen=True)
class ProviderContext:
    """What an error message needs to say where a failure happened and what to fix."""

    engine: str
    base_url: str
    model: str
    key_env: str | None = None
    """The variable the key came from; ``None`` when the engine sends no real key."""
    agent_id: str = ""
    secrets: tuple[str, ...] = field(default=(), repr=False)  # never in a repr or a log line
    timeout_s: float | None = None

    def redact(self, text: str) -> str:
        return errors.redact(text, self.secrets)

    @property
    def agent_label(self) -> str:
        return f"agent '{self.agent_id}'" if self.agent_id else "the agent file"


def display_url(url: str) -> str:
    """``url`` without any ``user:password@`` part, for messages."""
    return re.sub(r"^(\w+://)[^/@\s]*@", r"\1", url)


def reason_phrase(status: int) -> str:
    """``Unauthorized`` for 401; also the non-standard 499 and 529."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return {499: "Client Closed Request", 529: "Overloaded"}.get(status, "Error")


def one_line(text: Any, limit: int = _DETAIL_LIMIT) -> str:
    """``text`` as a single line of at most ``limit`` characters."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _format_seconds(seconds: float) -> str:
    return f"{seconds:g}s" if seconds < 10 else f"{seconds:.0f}s"


# ------------------------------------------------------------------ the status rule

RECOVERABLE_STATUSES = frozenset({408, 409, 499})
"""4xx statuses that say "try again", not "this request is wrong"."""


def error_for_status(
    ctx: ProviderContext,
    status: int,
    *,
    headers: Mapping[str, str] | None = None,
    fallback_wait: ServerWait | None = None,
    detail: Any = None,
    quota_exhausted: bool = False,
) -> errors.RadiumError:
    """The radium error for an HTTP error status (the table in this module's docstring).

    The wait comes from ``headers``; ``fallback_wait`` (Gemini's ``RetryInfo``) is used
    when they say nothing. ``quota_exhausted`` is set by a provider mapper from a
    structured field of the error.
    """
    wait = (server_wait(headers) if headers is not None else None) or fallback_wait
    where = f"{ctx.engine}: HTTP {status} {reason_phrase(status)} from {ctx.base_url}"
    text = one_line(detail) if detail not in (None, "", {}) else ""
    message = ctx.redact(f"{where}: {text}" if text else where)
    if wait is not None:
        message += f" (server asks to wait {_format_seconds(wait.seconds)}: {wait.source})"

    return scrub(_status_error(ctx, status, message, wait, quota_exhausted), ctx.secrets)


def _status_error(
    ctx: ProviderContext, status: int, message: str, wait: ServerWait | None, quota_exhausted: bool
) -> errors.RadiumError:
    retry_after = wait.seconds if wait is not None else None
    source = wait.source if wait is not None else None
    if status == 429 and quota_exhausted:
        key = f"the account behind {ctx.key_env}" if ctx.key_env else "the account"
        return errors.BadRequestError(
            message,
            status=status,
            hint=f"quota or spend limit exhausted: check the plan and billing of {key}; retrying will not help",
        )
    if status == 429:
        return errors.RateLimitError(message, retry_after=retry_after, retry_after_source=source)
    if status in RECOVERABLE_STATUSES or 500 <= status <= 599:
        return errors.ServerError(message, status=status, retry_after=retry_after, retry_after_source=source)
    if status in (401, 403):
        return errors.AuthenticationError(message, status=status, hint=auth_hint(ctx, status))
    if status == 404:
        hint = f"check the model name '{ctx.model}' in {ctx.agent_label}, and its base_url"
        if ctx.engine == "ollama":
            hint = f"pull the model first (ollama pull {ctx.model}), or fix its name in {ctx.agent_label}"
        return errors.ModelNotFoundError(message, status=status, hint=hint)
    if 400 <= status <= 499:
        hint = "the provider rejected the request: check the model and its parameters in " + ctx.agent_label
        if status == 413:
            hint = "the prompt is too large for this model: shorten the context or dependency outputs"
        elif status == 402:
            hint = "payment required: check the billing of this provider account"
        return errors.BadRequestError(message, status=status, hint=hint)
    return errors.ModelExecutionError(message)


def auth_hint(ctx: ProviderContext, status: int) -> str:
    if ctx.key_env is None:
        return (
            f"the server at {ctx.base_url} wants an API key: set api_key_env in "
            f"{ctx.agent_label} to the variable that holds it"
        )
    if status == 403:
        return f"check {ctx.key_env}: the key (or its account) may not use model '{ctx.model}'"
    return f"check {ctx.key_env}"


# ------------------------------------------------------------------ transport errors


# module -> (its timeout exception names, its transport exception names)
_HTTPX_NAMES = (
    ("TimeoutException",),
    ("TransportError", "NetworkError", "ProtocolError", "ConnectError", "ReadError"),
)
_HTTP_EXCEPTION_NAMES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "httpx2": _HTTPX_NAMES,
    "httpx": _HTTPX_NAMES,
    "httpcore2": _HTTPX_NAMES,
    "httpcore": _HTTPX_NAMES,
    "aiohttp": (
        ("ServerTimeoutError", "ConnectionTimeoutError", "SocketTimeoutError"),
        ("ClientConnectionError", "ClientPayloadError"),
    ),
    "anyio": ((), ("EndOfStream", "BrokenResourceError", "ClosedResourceError")),
}


def _http_library_exceptions() -> tuple[tuple[type[BaseException], ...], tuple[type[BaseException], ...]]:
    """(timeout classes, transport classes) of the HTTP libraries that are loaded.

    Only modules already imported are consulted (an SDK that raises them has imported them).
    """
    timeouts: list[type[BaseException]] = []
    transports: list[type[BaseException]] = []
    for name, (timeout_names, transport_names) in _HTTP_EXCEPTION_NAMES.items():
        module = sys.modules.get(name)
        if module is None:
            continue
        for names, found in ((timeout_names, timeouts), (transport_names, transports)):
            for attr in names:
                cls = getattr(module, attr, None)
                if isinstance(cls, type):
                    found.append(cls)
    import ssl

    transports.append(ssl.SSLError)
    return tuple(timeouts), tuple(transports)


def timeout_error(ctx: ProviderContext) -> errors.ModelTimeoutError:
    limit = f" within {ctx.timeout_s:g}s" if ctx.timeout_s else ""
    return errors.ModelTimeoutError(
        ctx.redact(f"{ctx.engine}: no complete answer from {ctx.base_url}{limit} (timed out)"),
        hint="raise timeout_s for this agent if the model needs longer" if ctx.timeout_s else None,
    )


def connection_error(ctx: ProviderContext, cause: BaseException | None) -> errors.ConnectionFailedError:
    why = f": {type(cause).__name__}: {one_line(cause, 200)}" if cause is not None and str(cause) else (
        f": {type(cause).__name__}" if cause is not None else ""
    )
    hint = None
    if ctx.engine == "ollama":
        hint = "check that Ollama is running (ollama serve) and base_url is right"
    elif _is_local(ctx.base_url):
        hint = "check that the server is running and base_url is right"
    return errors.ConnectionFailedError(ctx.redact(f"{ctx.engine}: connection to {ctx.base_url} failed{why}"), hint=hint)


def _is_local(url: str) -> bool:
    return bool(re.match(r"^https?://(localhost|127\.|\[::1\]|0\.0\.0\.0)", url))


def transport_error(ctx: ProviderContext, exc: BaseException) -> errors.RadiumError | None:
    """The radium error for a raw timeout / network exception, or None if ``exc`` is not one."""
    timeouts, transports = _http_library_exceptions()
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError, *timeouts)):
        return timeout_error(ctx)
    if isinstance(exc, (ConnectionError, *transports)):
        return connection_error(ctx, exc)
    return None


def unclassified(ctx: ProviderContext, exc: BaseException, what: str | None = None) -> errors.ModelExecutionError:
    """An SDK failure no rule names: recoverable, with the exception type for the record."""
    text = one_line(exc) if str(exc) else ""
    label = what or type(exc).__name__
    return errors.ModelExecutionError(
        ctx.redact(f"{ctx.engine}: {label} from {ctx.base_url}" + (f": {text}" if text else ""))
    )


def cause_chain_transport(ctx: ProviderContext, exc: BaseException) -> errors.RadiumError | None:
    """A transport error found in ``exc``'s ``__cause__`` chain (SDKs wrap httpx errors)."""
    seen = 0
    current: BaseException | None = exc.__cause__
    while current is not None and seen < 5:
        mapped = transport_error(ctx, current)
        if mapped is not None:
            return mapped
        current = current.__cause__
        seen += 1
    return None


@contextlib.contextmanager
def error_boundary(
    ctx: ProviderContext, mapper: Callable[[BaseException, ProviderContext], errors.RadiumError]
) -> Iterator[None]:
    """Re-raise every non-radium exception raised inside as ``mapper(exc, ctx)``.

    ``CancelledError`` and other ``BaseException`` that are not ``Exception`` pass through
    untouched. The original exception is not chained (``from None``): its text may hold a
    secret a server echoed back.
    """
    try:
        yield
    except errors.RadiumError as err:
        scrub(err, ctx.secrets)
        raise
    except Exception as exc:  # noqa: BLE001 - this is the boundary
        raise scrub(mapper(exc, ctx), ctx.secrets) from None


def scrub(error: errors.RadiumError, secrets: tuple[str, ...]) -> errors.RadiumError:
    """``error`` with its message and hint passed through ``redact`` (a last safety net)."""
    error.message = errors.redact(error.message, secrets)
    if error.hint:
        error.hint = errors.redact(error.hint, secrets)
    error.args = (error.message,)
    return error


def deadline(timeout_s: float | None) -> "asyncio.Timeout":
    """An overall per-attempt time limit (raises ``TimeoutError``); none when ``timeout_s`` is None."""
    return asyncio.timeout(timeout_s or None)


# ------------------------------------------------------------------ configuration


def sdk_missing(engine: str, package: str, extra: str, exc: BaseException | None = None) -> errors.MissingConfigurationError:
    detail = f" ({type(exc).__name__}: {one_line(exc, 120)})" if exc is not None and str(exc) else ""
    return errors.MissingConfigurationError(
        f"{engine}: the '{package}' package is not installed{detail}",
        hint=f"pip install 'radium[{extra}]'",
    )


def missing_key(engine: str, env_names: tuple[str, ...], agent_id: str, *, explicit: bool) -> errors.MissingConfigurationError:
    names = " or ".join(env_names)
    if explicit and agent_id:
        where = f" (named by api_key_env of agent '{agent_id}')"
    elif agent_id:
        where = f" (needed by agent '{agent_id}')"
    else:
        where = ""
    return errors.MissingConfigurationError(
        f"{engine}: {names} is not set{where}",
        hint=f"export {env_names[0]}=<your key>" + ("" if explicit else ", or name another variable with api_key_env"),
    )


def read_env_key(names: tuple[str, ...]) -> tuple[str | None, str | None, tuple[str, ...]]:
    """(variable, stripped value, secrets) for the first of ``names`` that is set and not blank."""
    for name in names:
        raw = os.environ.get(name)
        if raw is not None and raw.strip():
            value = raw.strip()
            secrets = tuple({raw, value})
            return name, value, secrets
    return None, None, ()


def check_base_url(engine: str, url: str, agent_id: str) -> None:
    if not re.match(r"^https?://[^/\s]+", url):
        raise errors.InvalidDataError(
            f"{engine}: base_url {url!r} is not an http(s) URL",
            hint=f"fix base_url in agent '{agent_id}', e.g. http://localhost:11434/v1" if agent_id else None,
        )


# ------------------------------------------------------------------ the shared engine shape


class SDKEngine(Engine):
    """An engine that calls a provider through its official Python SDK.

    Subclasses name the SDK and the key variables, build the client (once per engine,
    lazily, SDK retries off) and make one call; this class owns the key check, the
    per-attempt deadline and the single error boundary.
    """

    sdk_module: ClassVar[str]
    sdk_package: ClassVar[str]
    sdk_extra: ClassVar[str]
    key_envs: ClassVar[tuple[str, ...]] = ()
    """Default key variables, first set wins; empty when the engine needs no key."""
    placeholder_key: ClassVar[str | None] = None
    """Sent when no key is configured and none is required (local servers)."""

    def __init__(self, settings: EngineSettings) -> None:
        super().__init__(settings)
        self._client: Any = None
        self._client_loop: asyncio.AbstractEventLoop | None = None
        self._key_env: str | None = None
        self._api_key: str | None = None
        self._load_key()

    # -- configuration

    @property
    def engine_label(self) -> str:
        return self.name

    # Why a provider stopped generating, normalised to lower case.
    TRUNCATED_REASONS: ClassVar[frozenset[str]] = frozenset({"length", "max_tokens"})
    FILTERED_REASONS: ClassVar[frozenset[str]] = frozenset(
        {"content_filter", "safety", "prohibited_content", "blocklist", "spii", "recitation"}
    )

    def check_finish(self, reason: str | None) -> None:
        """Refuse an answer the provider cut short or filtered: it must not become a task's output.

        A truncated answer saved as a success would silently feed dependent
        tasks half a result; it is a fatal error whose hint says how to fix it.
        """
        normalised = (reason or "").strip().lower()
        if normalised in self.TRUNCATED_REASONS:
            limit = f" ({self.settings.max_tokens} tokens)" if self.settings.max_tokens else ""
            raise errors.BadRequestError(
                self._context().redact(f"{self.engine_label}: the answer was cut at max_tokens{limit} (model {self.model})"),
                hint=f"raise max_tokens for agent {self.settings.agent_id or '?'}",
            )
        if normalised in self.FILTERED_REASONS:
            raise errors.BadRequestError(
                self._context().redact(
                    f"{self.engine_label}: the provider stopped the answer ({normalised}) (model {self.model})"
                ),
                hint="rephrase the task or its context",
            )

    def _key_candidates(self) -> tuple[str, ...]:
        if self.settings.api_key_env:
            return (self.settings.api_key_env,)
        return self.key_envs

    def _load_key(self) -> None:
        names = self._key_candidates()
        env, value, secrets = read_env_key(names) if names else (None, None, ())
        self._key_env, self._api_key = env, value
        self.secrets = secrets

    def base_url(self) -> str:
        raise NotImplementedError

    def provider(self) -> tuple[tuple, str]:
        """Endpoint plus key: calls with the same key to the same server share rate limits."""
        import hashlib

        key = self._api_key or ""
        fingerprint = hashlib.sha256(key.encode()).hexdigest()[:16] if key else ""
        url = self.base_url()
        label = self.engine_label if not self.settings.base_url else f"{self.engine_label} ({display_url(url)})"
        return (self.engine_label, url, fingerprint), label

    def _context(self, timeout_s: float | None = None) -> ProviderContext:
        key_env = self._key_env or (self._key_candidates()[0] if self._key_candidates() else None)
        if self._api_key is None and self.placeholder_key is not None:
            key_env = None
        return ProviderContext(
            engine=self.engine_label,
            base_url=display_url(self.base_url()),
            model=self.model,
            key_env=key_env,
            agent_id=self.settings.agent_id,
            secrets=self.secrets,
            timeout_s=timeout_s,
        )

    def import_sdk(self) -> Any:
        import importlib

        try:
            return importlib.import_module(self.sdk_module)
        except ImportError as exc:
            raise sdk_missing(self.engine_label, self.sdk_package, self.sdk_extra, exc) from None

    def preflight(self) -> None:
        """Model, base URL and key (cheap checks first, no network), then the SDK import."""
        if not self.settings.model:
            raise errors.MissingConfigurationError(
                f"{self.engine_label}: {self._agent_label()} sets no model",
                hint='add model = "<model name>" to the agent file, or pass --model',
            )
        check_base_url(self.engine_label, self.base_url(), self.settings.agent_id)
        self._load_key()
        names = self._key_candidates()
        if self._api_key is None and names and self.placeholder_key is None:
            raise missing_key(self.engine_label, names, self.settings.agent_id, explicit=bool(self.settings.api_key_env))
        if self._api_key is None and self.settings.api_key_env:
            # The agent named a variable on purpose: an unset one is a mistake, not "no key".
            raise missing_key(self.engine_label, names, self.settings.agent_id, explicit=True)
        self.import_sdk()

    def _agent_label(self) -> str:
        return f"agent '{self.settings.agent_id}'" if self.settings.agent_id else "the agent"

    def _key_for_client(self) -> str:
        if self._api_key is None:
            self._load_key()
        if self._api_key is not None:
            return self._api_key
        if self.placeholder_key is not None and not self.settings.api_key_env:
            return self.placeholder_key
        raise missing_key(self.engine_label, self._key_candidates(), self.settings.agent_id, explicit=bool(self.settings.api_key_env))

    # -- the call

    def _ensure_client(self, ctx: ProviderContext) -> Any:
        loop = asyncio.get_running_loop()
        if self._client is not None and self._client_loop is not loop:
            # Connection pools are bound to the loop that created them; a caller that
            # runs each call in a fresh loop gets a fresh client (the old one is dropped).
            self._client = None
        if self._client is None:
            self._client_loop = loop
            sdk = self.import_sdk()
            key = self._key_for_client()
            try:
                self._client = self.make_client(sdk, key)
            except errors.RadiumError:
                raise
            except Exception as exc:  # noqa: BLE001 - a local, configuration failure
                raise errors.MissingConfigurationError(
                    ctx.redact(f"{self.engine_label}: cannot create the {self.sdk_package} client: {one_line(exc)}"),
                    hint=f"check base_url and the key variable of {ctx.agent_label}",
                ) from None
        return self._client

    def make_client(self, sdk: Any, api_key: str) -> Any:
        raise NotImplementedError

    async def call(self, client: Any, prompt: str, timeout_s: float | None) -> EngineResponse:
        raise NotImplementedError

    def map_exception(self, exc: BaseException, ctx: ProviderContext) -> errors.RadiumError:
        raise NotImplementedError

    async def generate(self, prompt: str, params: GenerationParams) -> EngineResponse:
        timeout_s = params.timeout_s or self.settings.timeout_s
        ctx = self._context(timeout_s)
        client = self._ensure_client(ctx)
        with error_boundary(ctx, self.map_exception):
            async with deadline(timeout_s):
                return await self.call(client, prompt, timeout_s)

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await self.close_client(client)

    async def close_client(self, client: Any) -> None:
        await client.close()
