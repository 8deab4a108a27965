"""The shared per-provider limiter's rules, on an injected clock (no real waiting).

Its behaviour against a real server through the CLI is in ``test_rate_limits.py``;
here each rule is pinned down exactly: blocks, budgets, credits, adaptive concurrency.
"""

from __future__ import annotations

import asyncio

import pytest

from radium.ratelimit import GateWaitTooLong, LimitState, ProviderLimiter, RateLimitSnapshot, ServerWait


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 6))
        self.now += seconds
        await asyncio.sleep(0)


def limiter(time: FakeTime, concurrency: int = 8, **kw) -> ProviderLimiter:
    return ProviderLimiter("openai", concurrency, clock=time.clock, sleep=time.sleep, **kw)


def requests(remaining: int, reset_s: float, limit: int = 10) -> RateLimitSnapshot:
    reset = ServerWait(reset_s, "x-ratelimit-reset-requests")
    return RateLimitSnapshot((LimitState("requests", remaining=remaining, limit=limit, reset=reset),))


def test_a_learned_reset_holds_every_task_until_it_passes() -> None:
    async def scenario() -> None:
        time = FakeTime()
        gate = limiter(time)
        first = await gate.acquire("I1.T1")
        gate.release(first)
        gate.failed(first, ServerWait(2.0, "retry-after"), "I1.T1", throttled=True)
        waits = []
        second = await gate.acquire("I1.T2", on_wait=lambda s, src, by: waits.append((s, src, by)))
        assert waits == [(2.0, "retry-after", "I1.T1")]
        assert second.waited_s == 2.0 and time.now == 2.0

    asyncio.run(scenario())


def test_a_wait_past_the_tasks_budget_is_refused_and_absurd_blocks_are_not_installed() -> None:
    async def scenario() -> None:
        time = FakeTime()
        gate = limiter(time, max_block_s=300)
        gate.block(ServerWait(60, "retry-after"), "I1.T1")
        with pytest.raises(GateWaitTooLong) as held:
            await gate.acquire("I1.T2", budget_s=30)
        assert (held.value.seconds, held.value.source) == (60, "retry-after")
        time.now = 61
        gate.block(ServerWait(3600, "retry-after"), "I1.T1")  # above max_block_s: the task fails alone
        ticket = await gate.acquire("I1.T3")
        assert ticket.waited_s == 0

    asyncio.run(scenario())


def test_nothing_remaining_makes_the_next_request_wait_for_the_reset() -> None:
    async def scenario() -> None:
        time = FakeTime()
        gate = limiter(time, concurrency=1)
        ticket = await gate.acquire("I1.T1")
        gate.release(ticket)
        gate.succeeded(ticket, requests(remaining=0, reset_s=1.5), "I1.T1")
        waits = []
        await gate.acquire("I1.T2", on_wait=lambda s, src, by: waits.append((s, src, by)))
        assert waits == [(1.5, "x-ratelimit-reset-requests", "I1.T1")]

    asyncio.run(scenario())


def test_spent_credits_wait_for_answers_in_flight_before_sleeping_to_the_reset() -> None:
    async def scenario() -> None:
        time = FakeTime()
        gate = limiter(time)
        one = await gate.acquire("I1.T1")
        two = await gate.acquire("I1.T2")
        # One's answer: 1 left when it arrived; two was already on its way, so it may have
        # taken that last slot: nothing is surely left, but an answer is still in flight.
        gate.release(one)
        gate.succeeded(one, requests(remaining=1, reset_s=5), "I1.T1")
        third = asyncio.ensure_future(gate.acquire("I1.T3"))
        await asyncio.sleep(0)
        assert not third.done() and time.slept == []  # waiting for news, not sleeping 5 s
        gate.release(two)
        # Two's answer: 2 left when it arrived, with one possibly counted after it: 1 surely left.
        gate.succeeded(two, requests(remaining=2, reset_s=5), "I1.T2")
        ticket = await third
        assert ticket.waited_s == 0 and time.slept == []

    asyncio.run(scenario())


def test_concurrency_halves_once_per_burst_of_429s_and_grows_back() -> None:
    async def scenario() -> None:
        time = FakeTime()
        gate = limiter(time, concurrency=8)
        burst = [await gate.acquire(f"I1.T{n}") for n in range(1, 9)]
        for ticket in burst[4:]:
            gate.release(ticket)
            gate.failed(ticket, None, "x", throttled=True)
        assert gate.concurrency == 4  # four 429s of one burst: one decrease
        for ticket in burst[:4]:
            gate.release(ticket)
        later = await gate.acquire("I1.T9")
        gate.release(later)
        gate.failed(later, None, "I1.T9", throttled=True)
        assert gate.concurrency == 2  # a request sent after the decrease still refused: halve again
        for n in range(2 + 3):
            ticket = await gate.acquire(f"I2.T{n}")
            gate.release(ticket)
            gate.succeeded(ticket, None, f"I2.T{n}")
        assert gate.concurrency == 4  # +1 per window of successes
        assert gate.rate_limited == 5

    asyncio.run(scenario())


def test_in_flight_calls_never_exceed_the_adaptive_concurrency() -> None:
    async def scenario() -> None:
        time = FakeTime()
        gate = limiter(time, concurrency=2)
        a = await gate.acquire("a")
        b = await gate.acquire("b")
        third = asyncio.ensure_future(gate.acquire("c"))
        await asyncio.sleep(0)
        assert not third.done() and gate.in_flight == 2
        gate.release(a)
        await third
        assert gate.in_flight == 2
        gate.release(b)

    asyncio.run(scenario())
