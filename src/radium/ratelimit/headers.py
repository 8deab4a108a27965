"""Every way a provider says "come back at T", read from response headers.

Providers announce their limits in different dialects; this module turns all of
them into two things: a ``ServerWait`` (how long to wait, and which header said
so, for the retry line) and a ``RateLimitSnapshot`` (what is left of each limit
after a successful call). Engines parse headers where the response is (so a
Ray worker can send the result back as plain data); the shared limiter
(``radium.ratelimit.limiter``) acts on it.

=========================================  ==========================================
header                                     meaning
=========================================  ==========================================
``retry-after-ms``                         milliseconds to wait (OpenAI, Azure)
``retry-after``                            seconds, or an HTTP date (RFC 9110)
``llm_provider-retry-after``               LiteLLM forwarding its provider's header;
                                           any ``llm_provider-`` header is read like
                                           the header it prefixes
``x-ratelimit-{limit,remaining,reset}-     OpenAI: limit, what is left, and a Go-style
{requests,tokens}``                        duration until it resets (``250ms``, ``6s``,
                                           ``1m30.5s``, ``2h0m0s``)
``anthropic-ratelimit-{requests,tokens,    Anthropic: limit, remaining, and the RFC
input-tokens,output-tokens}-{limit,        3339 time at which it resets
remaining,reset}``
=========================================  ==========================================

On an error response (429, 503, 529) the wait is the explicit ``retry-after-ms``
or ``retry-after`` if present (the server's own answer to "when");
otherwise the reset of every limit that is exhausted (``remaining == 0``);
otherwise, when only reset times are sent, the longest of them. Gemini's
``google.rpc.RetryInfo.retryDelay`` lives in the error body and is read by the
Gemini engine. Unparseable values are ignored: a garbled header must never turn
a retryable error into a crash.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Mapping

LITELLM_PREFIX = "llm_provider-"
_EXPLICIT = ("retry-after-ms", "retry-after")
_GO_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|us|µs|ns|h|m|s)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
_OPENAI_DIMENSIONS = ("requests", "tokens")
_ANTHROPIC_DIMENSIONS = ("requests", "tokens", "input-tokens", "output-tokens")


@dataclass(frozen=True)
class ServerWait:
    """A wait the server timed: ``seconds`` from now, announced by header ``source``."""

    seconds: float
    source: str


@dataclass(frozen=True)
class LimitState:
    """One limit of a provider (``requests``, ``tokens``…) as a response reported it."""

    name: str
    remaining: int | None = None
    limit: int | None = None
    reset: ServerWait | None = None


@dataclass(frozen=True)
class RateLimitSnapshot:
    """What a response's headers say about the provider's limits."""

    limits: tuple[LimitState, ...] = ()

    def exhausted(self) -> ServerWait | None:
        """The longest reset among limits at ``remaining == 0`` (when the next call may go)."""
        waits = [s.reset for s in self.limits if s.remaining == 0 and s.reset is not None]
        return max(waits, key=lambda w: w.seconds, default=None)

    def get(self, name: str) -> LimitState | None:
        return next((s for s in self.limits if s.name == name), None)


def parse_go_duration(text: str) -> float | None:
    """Seconds in an OpenAI reset value: ``250ms``, ``6s``, ``1m30.5s``, ``2h0m0s`` (or plain ``1.5``)."""
    text = text.strip()
    try:
        return max(float(text), 0.0)
    except ValueError:
        pass
    position, total = 0, 0.0
    for match in _GO_DURATION.finditer(text):
        if match.start() != position:
            return None
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        position = match.end()
    return total if position == len(text) and position else None


def _seconds_until(when: datetime, now: datetime) -> float:
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max((when - now).total_seconds(), 0.0)


def parse_http_date_or_seconds(text: str, now: datetime) -> float | None:
    """``Retry-After``: delta seconds, or an HTTP date."""
    try:
        return max(float(text), 0.0)
    except ValueError:
        pass
    try:
        return _seconds_until(parsedate_to_datetime(text), now)
    except (TypeError, ValueError, IndexError):
        return None


def parse_rfc3339(text: str, now: datetime) -> float | None:
    """Seconds until an RFC 3339 time (``2025-01-01T00:00:30Z``); ``None`` if unparseable."""
    try:
        return _seconds_until(datetime.fromisoformat(text.strip().replace("Z", "+00:00")), now)
    except ValueError:
        return None


class _Headers:
    """Case-insensitive lookup that also reads LiteLLM's ``llm_provider-`` forwards."""

    def __init__(self, headers: Mapping[str, str]) -> None:
        self._values = {str(name).lower(): str(value) for name, value in headers.items()}

    def get(self, name: str) -> tuple[str, str] | None:
        """(the header actually present, its value) for ``name`` or its LiteLLM forward."""
        for candidate in (name, LITELLM_PREFIX + name):
            value = self._values.get(candidate)
            if value is not None and value.strip():
                return candidate, value.strip()
        return None

    def number(self, name: str) -> int | None:
        found = self.get(name)
        if found is None:
            return None
        try:
            return int(float(found[1]))
        except ValueError:
            return None


def _explicit_wait(headers: _Headers, now: datetime) -> ServerWait | None:
    """The first of ``retry-after-ms`` (precise) and ``retry-after`` that parses, or their forwards."""
    for name in _EXPLICIT:
        found = headers.get(name)
        if found is None:
            continue
        header, value = found
        if name == "retry-after-ms":
            try:
                return ServerWait(max(float(value) / 1000, 0.0), header)
            except ValueError:
                continue
        seconds = parse_http_date_or_seconds(value, now)
        if seconds is not None:
            return ServerWait(seconds, header)
    return None


def parse_snapshot(headers: Mapping[str, str] | None, now: datetime | None = None) -> RateLimitSnapshot | None:
    """The limits a response reports (OpenAI and Anthropic dialects), or ``None`` if none."""
    if not headers:
        return None
    now = now or datetime.now(timezone.utc)
    view = _Headers(headers)
    states = []
    for name in _OPENAI_DIMENSIONS:
        reset = view.get(f"x-ratelimit-reset-{name}")
        seconds = parse_go_duration(reset[1]) if reset else None
        state = LimitState(
            name,
            remaining=view.number(f"x-ratelimit-remaining-{name}"),
            limit=view.number(f"x-ratelimit-limit-{name}"),
            reset=ServerWait(seconds, reset[0]) if reset and seconds is not None else None,
        )
        if state != LimitState(name):
            states.append(state)
    for name in _ANTHROPIC_DIMENSIONS:
        prefix = f"anthropic-ratelimit-{name}"
        reset = view.get(f"{prefix}-reset")
        seconds = parse_rfc3339(reset[1], now) if reset else None
        state = LimitState(
            name,
            remaining=view.number(f"{prefix}-remaining"),
            limit=view.number(f"{prefix}-limit"),
            reset=ServerWait(seconds, reset[0]) if reset and seconds is not None else None,
        )
        if state != LimitState(name) and not any(s.name == name for s in states):
            states.append(state)
    return RateLimitSnapshot(tuple(states)) if states else None


def server_wait(headers: Mapping[str, str] | None, now: datetime | None = None) -> ServerWait | None:
    """How long an error response (429/503/529) asks us to wait, and which header said so."""
    if not headers:
        return None
    now = now or datetime.now(timezone.utc)
    explicit = _explicit_wait(_Headers(headers), now)
    if explicit is not None:
        return explicit
    snapshot = parse_snapshot(headers, now)
    if snapshot is None:
        return None
    exhausted = snapshot.exhausted()
    if exhausted is not None:
        return exhausted
    resets = [s.reset for s in snapshot.limits if s.reset is not None]
    return max(resets, key=lambda w: w.seconds, default=None)
