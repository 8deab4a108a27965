"""The retry policy: one immutable, documented object, and the one retry loop.

The executor owns every retry (provider SDKs have theirs switched off), so the
number of attempts, the waits and the lines printed for them all come from
here. After a recoverable error the next attempt waits::

    delay = min(base_delay_ms * 2**k, max_delay_ms)       # k = retries used so far
    if jitter:  delay = delay * uniform(0.5, 1.0)        # "equal jitter"
    if the server said when to come back (Retry-After, a reset header, RetryInfo):
        if that wait > max_retry_after_s: fail now       # one absurd reset: don't hang
        delay = max(delay, server wait)                   # never retry earlier than asked

**A wait the server timed is not a failed attempt.** A 429 that says when to
come back is waited out without using one of the ``max_retries`` retries; the
seed's formula and its retries govern every other recoverable error (a 429
without a hint, 5xx, timeouts…). What bounds server-timed waits instead is
their total per task, ``max_rate_limit_wait_s`` (15 minutes by default),
which also counts the time the task spent at its provider's shared gate
(``radium.ratelimit``); past it the task fails saying so.

Equal jitter keeps at least half of the exponential wait (so a crowd of
clients spreads out without any of them hammering the server early).
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field, replace
from typing import Any, Awaitable, Callable, TypeVar

from radium.errors import RadiumError, RateLimitError

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a task is retried after a recoverable error."""

    max_retries: int = 3
    """Retries after the first attempt (so at most ``max_retries + 1`` attempts). Default 3."""
    base_delay_ms: int = 1000
    """Wait before the first retry; doubles for each further retry. Default 1000 ms."""
    max_delay_ms: int = 60_000
    """Cap on one computed backoff wait. Default 60 000 ms."""
    jitter: bool = False
    """Multiply each computed wait by a uniform factor in [0.5, 1.0). Default off."""
    max_retry_after_s: float = 300.0
    """Longest single server-requested wait we honour; above it the task fails at once. Default 300 s."""
    max_rate_limit_wait_s: float = 900.0
    """Total a task may wait on rate limits (server-timed waits, its provider's gate). Default 15 min."""
    timeout_s: float | None = None
    """Per-attempt time limit; ``None`` means the engine's own default. Default none."""
    random: Callable[[], float] = field(default=random.random, compare=False, repr=False)
    """Source of jitter, injectable for tests."""

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError("max_retries must be 0 or more")
        if self.base_delay_ms < 0:
            raise ValueError("base_delay_ms must be 0 or more")
        if self.max_delay_ms < self.base_delay_ms:
            raise ValueError("max_delay_ms must be at least base_delay_ms")
        if self.max_retry_after_s < 0:
            raise ValueError("max_retry_after_s must be 0 or more")
        if self.max_rate_limit_wait_s < 0:
            raise ValueError("max_rate_limit_wait_s must be 0 or more")
        if self.timeout_s is not None and self.timeout_s <= 0:
            raise ValueError("timeout_s must be positive")

    @property
    def max_attempts(self) -> int:
        return self.max_retries + 1

    def with_overrides(self, **overrides: Any) -> "RetryPolicy":
        """A copy with the given fields replaced; ``None`` values are ignored."""
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})

    def backoff_ms(self, retry_index: int) -> float:
        """The exponential wait before retry ``retry_index`` (0-based), capped, jittered."""
        delay = min(self.base_delay_ms * (2**retry_index), self.max_delay_ms)
        if self.jitter:
            delay *= 0.5 + self.random() / 2
        return float(delay)

    def plan_wait(self, retry_index: int, server: ServerHint | None = None) -> "Wait":
        """The wait before counted retry ``retry_index``, never shorter than what the server asked."""
        backoff = self.backoff_ms(retry_index)
        if server is not None and server.seconds * 1000 > backoff:
            return Wait(server.seconds * 1000, backoff, retry_index, self, source=server.source)
        return Wait(backoff, backoff, retry_index, self)

    def server_timed_wait(self, server: ServerHint) -> "Wait":
        """The wait a server timed for a rate limit: exactly what it asked, not counted as a retry."""
        return Wait(server.seconds * 1000, 0.0, -1, self, source=server.source, counted=False)


@dataclass(frozen=True)
class ServerHint:
    """When the server said to come back: ``seconds`` from now, and which header said so."""

    seconds: float
    source: str

    @classmethod
    def of(cls, error: RadiumError) -> "ServerHint | None":
        seconds = getattr(error, "retry_after", None)
        if seconds is None:
            return None
        return cls(float(seconds), getattr(error, "retry_after_source", None) or "Retry-After")


@dataclass(frozen=True)
class Wait:
    """One planned wait before the next attempt, and how it was computed (for the retry line)."""

    delay_ms: float
    backoff_ms: float
    retry_index: int
    """Which counted retry this wait precedes (0-based); -1 for a server-timed wait."""
    policy: RetryPolicy
    source: str | None = None
    """The header (or ``RetryInfo.retryDelay``) that set the wait, when the server did."""
    counted: bool = True
    """False for a server-timed rate-limit wait, which does not use up a retry."""

    @property
    def seconds(self) -> float:
        return self.delay_ms / 1000

    @property
    def from_server(self) -> bool:
        return self.source is not None

    def explain(self) -> str:
        """E.g. ``Wait 1 second (1000ms * 2^0)`` or ``Wait 2 seconds (retry-after from server)``."""
        if self.source is not None:
            why = f"{self.source} from server" + ("" if self.counted else "; not counted as a retry")
        else:
            exact = self.policy.base_delay_ms * 2**self.retry_index
            why = f"{self.policy.base_delay_ms}ms * 2^{self.retry_index}"
            if exact > self.policy.max_delay_ms:
                why += f", capped at {self.policy.max_delay_ms}ms"
            if self.policy.jitter:
                why += ", jittered"
        return f"Wait {format_duration_ms(self.delay_ms)} ({why})"


@dataclass
class RetryState:
    """What one task has spent so far across its attempts (shared by the loop and the gate)."""

    retries_used: int = 0
    rate_limit_wait_s: float = 0.0
    """Time spent waiting on rate limits: server-timed waits, backoff after 429s, gate waits."""

    def budget_left(self, policy: RetryPolicy) -> float:
        return max(policy.max_rate_limit_wait_s - self.rate_limit_wait_s, 0.0)


def format_duration_ms(ms: float) -> str:
    """``1 second``, ``2 seconds``, ``1.5 seconds``, ``250ms``."""
    if ms < 1000:
        return f"{ms:.0f}ms"
    seconds = ms / 1000
    if abs(seconds - round(seconds)) < 0.005:
        whole = int(round(seconds))
        return f"{whole} second" if whole == 1 else f"{whole} seconds"
    return f"{seconds:.2f}".rstrip("0").rstrip(".") + " seconds"


def format_compact(seconds: float) -> str:
    """``250ms``, ``12s``, ``1.5s``, ``1m30s``, ``1h2m``: for the rate-limit lines."""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 10:
        return f"{seconds:.1f}".rstrip("0").rstrip(".") + "s"
    whole = int(round(seconds))
    if whole < 60:
        return f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{secs}s" if secs else f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes}m" if minutes else f"{hours}h"


async def retry_call(
    attempt: Callable[[int], Awaitable[T]],
    policy: RetryPolicy,
    *,
    on_retry: Callable[[RadiumError, Wait, int], None] = lambda error, wait, index: None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    state: RetryState | None = None,
) -> T:
    """Call ``attempt(index)`` until it succeeds, under ``policy``: the one retry loop.

    ``attempt`` raises a ``RadiumError`` to fail. A fatal error is raised at
    once. A 429 whose server said when to come back is waited out without
    using a retry, while the task's rate-limit waits stay within
    ``max_rate_limit_wait_s`` (else ``RateLimitWaitExceededError``); any other
    recoverable error is retried after ``policy.plan_wait`` until
    ``max_retries`` retries are spent, then raised. A server asking for a single
    wait above ``max_retry_after_s`` raises ``RetryAfterTooLongError`` instead
    of waiting. ``on_retry(error, wait, index)`` runs before each wait (to print
    the retry line); ``sleep`` is injectable so tests need not wait; ``state``
    carries what the task spent (the executor shares it with the provider gate).
    """
    from radium.errors import ErrorCategory, RateLimitWaitExceededError, RetryAfterTooLongError

    state = state if state is not None else RetryState()
    index = 0
    while True:
        try:
            return await attempt(index)
        except RadiumError as error:
            if error.category is ErrorCategory.FATAL:
                raise
            server = ServerHint.of(error)
            if server is not None and server.seconds > policy.max_retry_after_s:
                raise RetryAfterTooLongError(
                    f"{error.message}; the server asked to wait {format_duration_ms(server.seconds * 1000)} "
                    f"({server.source}), more than the {policy.max_retry_after_s:g} s allowed",
                    hint="raise max_retry_after_s, or resume later with `rad craft --resume`",
                ) from error
            rate_limited = isinstance(error, RateLimitError)
            if rate_limited and server is not None:
                wait = policy.server_timed_wait(server)
            elif state.retries_used >= policy.max_retries:
                raise
            else:
                wait = policy.plan_wait(state.retries_used, server)
                state.retries_used += 1
            if rate_limited:
                if state.rate_limit_wait_s + wait.seconds > policy.max_rate_limit_wait_s:
                    raise RateLimitWaitExceededError(
                        f"{error.message}; waiting another {format_compact(wait.seconds)} would bring this task's "
                        f"rate-limit waits to {format_compact(state.rate_limit_wait_s + wait.seconds)}, more than "
                        f"max_rate_limit_wait_s ({policy.max_rate_limit_wait_s:g} s)",
                        hint="raise --max-rate-limit-wait-s, lower --parallel, or resume later with `rad craft --resume`",
                    ) from error
                state.rate_limit_wait_s += wait.seconds
            on_retry(error, wait, index)
            await sleep(wait.seconds)
            index += 1
