"""The retry policy: one immutable, documented object, and the backoff arithmetic.

The executor owns every retry (provider SDKs have theirs switched off), so the
number of attempts, the waits and the lines printed for them all come from
here. Before retry ``k`` (``k = 0, 1, 2…``) the wait is::

    delay = min(base_delay_ms * 2**k, max_delay_ms)
    if jitter:  delay = delay * uniform(0.5, 1.0)        # "equal jitter"
    if the server sent Retry-After / retry-after-ms:
        delay = max(delay, retry_after)                   # never retry earlier than asked
        if retry_after > max_retry_after_s: fail now      # rather than hang for hours

Equal jitter keeps at least half of the exponential wait (so a crowd of
clients spreads out without any of them hammering the server early).
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field, replace
from email.utils import parsedate_to_datetime
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable, Mapping, TypeVar

from radium.errors import RadiumError

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
    """Longest server-requested wait (Retry-After) we honour; above it the task fails. Default 300 s."""
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

    def plan_wait(self, retry_index: int, retry_after_s: float | None) -> "Wait":
        """The wait before retry ``retry_index``, given what the server asked for."""
        backoff = self.backoff_ms(retry_index)
        floor_ms = retry_after_s * 1000 if retry_after_s is not None else None
        if floor_ms is not None and floor_ms > backoff:
            return Wait(floor_ms, backoff, retry_index, self, from_server=True)
        return Wait(backoff, backoff, retry_index, self, from_server=False)


@dataclass(frozen=True)
class Wait:
    """One planned backoff wait and how it was computed (for the retry line)."""

    delay_ms: float
    backoff_ms: float
    retry_index: int
    policy: RetryPolicy
    from_server: bool

    @property
    def seconds(self) -> float:
        return self.delay_ms / 1000

    def explain(self) -> str:
        """E.g. ``Wait 1 second (1000ms * 2^0)`` or ``Wait 2 seconds (Retry-After from server)``."""
        if self.from_server:
            why = "Retry-After from server"
        else:
            exact = self.policy.base_delay_ms * 2**self.retry_index
            why = f"{self.policy.base_delay_ms}ms * 2^{self.retry_index}"
            if exact > self.policy.max_delay_ms:
                why += f", capped at {self.policy.max_delay_ms}ms"
            if self.policy.jitter:
                why += ", jittered"
        return f"Wait {format_duration_ms(self.delay_ms)} ({why})"


def format_duration_ms(ms: float) -> str:
    """``1 second``, ``2 seconds``, ``1.5 seconds``, ``250ms``."""
    if ms < 1000:
        return f"{ms:.0f}ms"
    seconds = ms / 1000
    if abs(seconds - round(seconds)) < 0.005:
        whole = int(round(seconds))
        return f"{whole} second" if whole == 1 else f"{whole} seconds"
    return f"{seconds:.2f}".rstrip("0").rstrip(".") + " seconds"


def parse_retry_after(headers: Mapping[str, str] | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms``, ``Retry-After`` (seconds or HTTP date), or None.

    ``headers`` is any mapping (SDK header objects or a plain dict); names are
    matched case-insensitively. Unparseable values are ignored: a garbled
    header must not turn a retryable error into a crash.
    """
    if not headers:
        return None
    headers = {str(name).lower(): value for name, value in headers.items()}
    raw_ms = headers.get("retry-after-ms")
    if raw_ms:
        try:
            return max(float(raw_ms) / 1000, 0.0)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if not raw:
        return None
    try:
        return max(float(raw), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    now = now or datetime.now(timezone.utc)
    return max((when - now).total_seconds(), 0.0)


async def retry_call(
    attempt: Callable[[int], Awaitable[T]],
    policy: RetryPolicy,
    *,
    on_retry: Callable[[RadiumError, Wait, int], None] = lambda error, wait, index: None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> T:
    """Call ``attempt(index)`` until it succeeds, under ``policy``: the one retry loop.

    ``attempt`` raises a ``RadiumError`` to fail. A fatal error is raised at
    once; a recoverable one is retried after ``policy.plan_wait`` until
    ``max_retries`` retries are spent, then raised. A server asking for a wait
    above ``max_retry_after_s`` raises ``RetryAfterTooLongError`` instead of
    waiting. ``on_retry(error, wait, index)`` runs before each wait (to print the
    retry line); ``sleep`` is injectable so tests need not wait.
    """
    from radium.errors import ErrorCategory, RetryAfterTooLongError

    index = 0
    while True:
        try:
            return await attempt(index)
        except RadiumError as error:
            if error.category is ErrorCategory.FATAL or index >= policy.max_retries:
                raise
            retry_after = getattr(error, "retry_after", None)
            if retry_after is not None and retry_after > policy.max_retry_after_s:
                raise RetryAfterTooLongError(
                    f"{error.message}; the server asked to wait {format_duration_ms(retry_after * 1000)}, "
                    f"more than the {policy.max_retry_after_s:g} s allowed",
                    hint="raise max_retry_after_s, or resume later with `rad craft --resume`",
                ) from error
            wait = policy.plan_wait(index, retry_after)
            on_retry(error, wait, index)
            await sleep(wait.seconds)
            index += 1
