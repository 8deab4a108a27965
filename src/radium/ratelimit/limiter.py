"""One rate limiter per provider, shared by every task of a run.

A *provider* is an endpoint plus a key (``Engine.provider()``): two agents on
the same OpenAI key share one limiter, an agent on another key or another
server has its own. Every attempt passes the provider's gate before it is sent
and reports back how it went. The gate holds a request while:

* **the provider is blocked**: some task learned a reset time (a 429's
  ``Retry-After``, ``x-ratelimit-reset-*``…, or a 503/529 that said when),
  and no task sends before it;
* **a limit is used up**: a success said ``remaining = 0`` (requests or
  tokens), so the next request waits for that reset. For requests the
  limiter keeps a lower bound of what is left (``remaining`` from an answer,
  minus the requests sent after it and those unanswered when it was sent;
  the best bound any answer gives), so parallel tasks stop *before*
  the server has to refuse them, instead of stampeding into 429s. After a
  known full reset the window holds exactly the limit, so counting our own
  sends is exact (until a 429 says someone else shares the key); when the
  estimate is spent while answers are in flight, requests wait for them;
* **the adaptive concurrency is full**: repeated 429s halve how many calls may
  be in flight to this provider (once per burst: 429s to requests sent before
  the last decrease do not count again), and successes raise it again by one
  per window of successes; it stays between 1 and ``--parallel``;
* **client-side pacing** is configured (``rpm``/``tpm`` in
  ``[rate_limits.<engine or base_url>]``), through ``aiolimiter``'s leaky
  bucket: requests evenly spaced at ``60/rpm`` seconds, prompt tokens
  (estimated at 4 characters per token) at ``tpm/60`` per second.

Waits on a known reset time are reported (``on_wait``) and counted against the
task's rate-limit wait budget; waiting for a concurrency slot is like waiting
for a ``--parallel`` slot and is not. Blocks longer than the policy's
``max_retry_after_s`` are not installed: the task that met one fails at once,
and the others find out for themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from dataclasses import dataclass
from typing import Awaitable, Callable, Mapping

from radium.ratelimit.headers import RateLimitSnapshot, ServerWait

WaitListener = Callable[[float, str, str | None], None]
"""``on_wait(seconds, source, learned_by_task)``, called before a timed wait at the gate."""

CHARS_PER_TOKEN = 4


@dataclass(frozen=True)
class Pacing:
    """Client-side limits for one provider (``[rate_limits.<name>]`` in the config)."""

    rpm: float | None = None
    tpm: float | None = None


@dataclass
class Ticket:
    """One admitted request: its send order and how long it waited on known resets."""

    seq: int
    waited_s: float
    unanswered_at_send: int = 0
    """Calls to the provider still unanswered when this one was sent."""


@dataclass
class _Block:
    until: float
    source: str
    learned_by: str | None


class GateWaitTooLong(Exception):
    """The gate would hold the request past the task's remaining wait budget."""

    def __init__(self, seconds: float, source: str) -> None:
        super().__init__(seconds, source)
        self.seconds = seconds
        self.source = source


class ProviderLimiter:
    """The shared gate of one provider (see the module docstring)."""

    def __init__(
        self,
        label: str,
        max_concurrency: int,
        *,
        pacing: Pacing | None = None,
        max_block_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.label = label
        self.max_concurrency = max(1, max_concurrency)
        self.concurrency = self.max_concurrency
        """How many calls may be in flight now (adapts between 1 and ``max_concurrency``)."""
        self.max_block_s = max_block_s
        self.in_flight = 0
        self.rate_limited = 0
        """429s seen (for the summary and tests)."""
        self._clock = clock
        self._sleep = sleep
        self._block: _Block | None = None
        self._credits: int | None = None
        """Requests we may still send before ``_credits_reset`` (None: unknown, no limit known)."""
        self._credits_reset: _Block | None = None
        self._full_limit: int | None = None
        self._seq = 0
        self._refused_at_seq = 0
        self._clean_window = False
        """Credits were refilled at a known full reset: counting our own sends is exact."""
        """Answers to calls sent before the latest 429 carry stale ``remaining`` counts."""
        self._decreased_at_seq = 0
        self._successes = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._rpm = self._tpm = None
        pacing = pacing or Pacing()
        if pacing.rpm or pacing.tpm:
            from aiolimiter import AsyncLimiter

            # Evenly spaced: a bucket of one request refilled every 60/rpm s (a bucket of
            # ``rpm`` would let a whole minute's quota out at once); tokens per second.
            self._rpm = AsyncLimiter(1, 60 / pacing.rpm) if pacing.rpm else None
            self._tpm = AsyncLimiter(pacing.tpm / 60, 1) if pacing.tpm else None

    # ------------------------------------------------------------ admission

    async def acquire(
        self, task_id: str, *, prompt_chars: int = 0, budget_s: float = float("inf"), on_wait: WaitListener | None = None
    ) -> Ticket:
        """Wait until a request may be sent to this provider; raise ``GateWaitTooLong`` past ``budget_s``."""
        waited = 0.0
        while True:
            block = self._gate(self._clock())
            if block is not None:
                delay = block.until - self._clock()
                if delay > 0:
                    if waited + delay > budget_s:
                        raise GateWaitTooLong(delay, block.source)
                    if on_wait is not None:
                        on_wait(delay, block.source, block.learned_by)
                    await self._sleep(delay)
                    waited += delay
                continue
            if self.in_flight < self.concurrency and (self._credits is None or self._credits > 0):
                break
            await self._wait_for_news()
        ticket = Ticket(self._seq + 1, waited, unanswered_at_send=self.in_flight)
        self.in_flight += 1
        self._seq += 1
        if self._credits is not None:
            self._credits -= 1
        try:
            started = self._clock()
            if self._rpm is not None:
                await self._rpm.acquire()
            if self._tpm is not None:
                tokens = max(1.0, prompt_chars / CHARS_PER_TOKEN)
                await self._tpm.acquire(min(tokens, self._tpm.max_rate))
            ticket.waited_s += self._clock() - started
        except BaseException:
            self.release(ticket)
            raise
        return ticket

    async def _wait_for_news(self) -> None:
        """Sleep until a call to this provider ends (a slot frees, or an answer says what is left)."""
        future = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        try:
            await future
        finally:
            if not future.done():
                future.cancel()
            with contextlib.suppress(ValueError):
                self._waiters.remove(future)

    def _gate(self, now: float) -> _Block | None:
        """The known reset time that holds requests back at ``now``, if any.

        A block (someone's 429, an exhausted token limit) holds everyone. Used-up
        request credits hold requests only once no call is in flight: until then
        the answers still travelling will say exactly what is left (the estimate
        is conservative), which may well be more than nothing.
        """
        if self._block is not None:
            if now < self._block.until:
                return self._block
            self._block = None
        if self._credits is not None and self._credits <= 0 and self.in_flight == 0:
            reset = self._credits_reset
            if reset is not None and now < reset.until:
                return reset
            # The window has reset: a fresh window holds the full limit, if we know it
            # (else nothing in flight will tell us more: let the server decide).
            self._credits = self._full_limit if reset is not None else None
            self._credits_reset = None
            self._clean_window = self._credits is not None
        return None

    def release(self, ticket: Ticket) -> None:
        """The request admitted with ``ticket`` is over (whatever happened): free its slot."""
        self.in_flight = max(0, self.in_flight - 1)
        self._wake()

    def _wake(self) -> None:
        # Wake as many waiters as there are free slots (at least one, so that a waiter
        # held by used-up credits re-checks what the answer that just ended said).
        free = max(1, self.concurrency - self.in_flight)
        while free > 0 and self._waiters:
            future = self._waiters.popleft()
            if not future.done():
                future.set_result(None)
                free -= 1

    # ------------------------------------------------------------ what the provider said

    def block(self, wait: ServerWait, learned_by: str | None) -> None:
        """No request goes to this provider for ``wait.seconds`` (if within ``max_block_s``)."""
        if wait.seconds <= 0 or wait.seconds > self.max_block_s:
            return
        until = self._clock() + wait.seconds
        if self._block is None or until > self._block.until:
            self._block = _Block(until, wait.source, learned_by)

    def succeeded(self, ticket: Ticket, snapshot: RateLimitSnapshot | None, task_id: str) -> None:
        """A call admitted with ``ticket`` succeeded; learn from its rate-limit headers."""
        self._successes += 1
        if self._successes >= self.concurrency and self.concurrency < self.max_concurrency:
            self.concurrency += 1
            self._successes = 0
            self._wake()
        if snapshot is None:
            return
        requests = snapshot.get("requests")
        if requests is not None and requests.remaining is not None and ticket.seq > self._refused_at_seq:
            if requests.limit is not None:
                self._full_limit = requests.limit
            if requests.reset is not None:
                until = self._clock() + requests.reset.seconds
                if self._credits_reset is None or until > self._credits_reset.until:
                    self._credits_reset = _Block(until, requests.reset.source, task_id)
        if (
            requests is not None
            and requests.remaining is not None
            and ticket.seq > self._refused_at_seq
            and not self._clean_window
        ):
            # ``remaining`` was counted when this call reached the server. Only calls
            # answered before it was sent surely reached the server first (arrival order
            # is not send order): calls sent after it, and those unanswered when it was
            # sent, may not be in the count yet. Subtracting them all gives a lower bound
            # on what is left now. Every answer gives one; keep the best.
            bound = requests.remaining - (self._seq - ticket.seq) - ticket.unanswered_at_send
            self._credits = bound if self._credits is None else max(self._credits, bound)
            if requests.reset is None and self._credits <= 0:
                self._credits = None  # used up, but no reset time to wait for: let the server decide
        for state in snapshot.limits:
            if state.name != "requests" and state.remaining == 0 and state.reset is not None:
                self.block(state.reset, task_id)

    def failed(self, ticket: Ticket, wait: ServerWait | None, task_id: str, *, throttled: bool) -> None:
        """A call admitted with ``ticket`` failed; ``throttled`` for 429 (and 503/529 overload)."""
        if wait is not None:
            self.block(wait, task_id)
        if not throttled:
            return
        self.rate_limited += 1
        if ticket.seq > self._decreased_at_seq:
            # Halve once per burst: the other 429s of requests already in flight say nothing new.
            self.concurrency = max(1, self.concurrency // 2)
            self._decreased_at_seq = self._seq
            self._successes = 0
        self._refused_at_seq = max(self._refused_at_seq, ticket.seq)
        self._clean_window = False  # someone else uses this key too, or the limit changed
        self._credits = None if wait is None else 0
        if wait is not None:
            self._credits_reset = self._block


class RateLimiters:
    """The run's limiters, one per provider, created on first use.

    ``shared=False`` gives every attempt a limiter of its own (no sharing, no
    adaptive concurrency, no pacing): each task then only honours the waits
    it was told itself, as before this existed (``--no-shared-rate-limits``).
    """

    def __init__(
        self,
        max_concurrency: int,
        *,
        shared: bool = True,
        pacing: Mapping[str, Pacing] | None = None,
        max_block_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.max_concurrency = max_concurrency
        self.shared = shared
        self.pacing = dict(pacing or {})
        self.max_block_s = max_block_s
        self._clock = clock
        self._sleep = sleep
        self._limiters: dict[tuple, ProviderLimiter] = {}

    def get(self, identity: tuple, label: str, names: tuple[str, ...] = ()) -> ProviderLimiter:
        """The limiter of provider ``identity``; ``names`` (engine name, base URL) select its pacing."""
        if not self.shared:
            return ProviderLimiter(label, self.max_concurrency, max_block_s=0, clock=self._clock, sleep=self._sleep)
        limiter = self._limiters.get(identity)
        if limiter is None:
            pacing = next((self.pacing[n] for n in names if n in self.pacing), None)
            limiter = ProviderLimiter(
                label, self.max_concurrency, pacing=pacing, max_block_s=self.max_block_s, clock=self._clock, sleep=self._sleep
            )
            self._limiters[identity] = limiter
        return limiter

    @property
    def rate_limited(self) -> int:
        return sum(limiter.rate_limited for limiter in self._limiters.values())
