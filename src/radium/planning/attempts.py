"""One task's attempts: the provider's gate, the call, the retry loop, and their record.

``AttemptRunner.run`` is where a task meets the outside world. Every attempt
first passes its provider's shared limiter (``radium.ratelimit``), which holds
it while another task's reset is pending or the provider's limits are used up;
then the call is made (through the executor's dispatcher); then the limiter
learns from how it went. Between attempts the one retry loop
(``radium.retry.retry_call``) decides: a fatal error ends the task, a 429 whose
server said when to come back is waited out without using a retry, anything
else recoverable is retried with backoff. Each failed attempt is emitted as
``attempt_failed``, each wait at the gate as ``rate_limit_wait``, and each
attempt is appended to the task's ``attempt_log`` (start, end, outcome, the
wait after it and where that wait came from, the time it spent at the gate),
which is saved with the checkpoint and drawn by ``rad report``.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone
from typing import Awaitable, Callable

from radium.engines.base import Engine
from radium.errors import RadiumError, RateLimitError, RateLimitWaitExceededError
from radium.events import Event, EventSink
from radium.models import AttemptRecord, PlanTask, TokenUsage, utc_now_iso_ms
from radium.planning.run_types import TaskResult
from radium.ratelimit import GateWaitTooLong, RateLimiters, ServerWait
from radium.retry import RetryPolicy, RetryState, ServerHint, Wait, format_compact, retry_call


class AttemptRunner:
    """Runs tasks' attempts through their providers' limiters and the retry loop; records them."""

    def __init__(
        self,
        limiters: RateLimiters,
        emit: EventSink,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limiters = limiters
        self.emit = emit
        self._sleep = sleep
        self._clock = clock
        self.retries = 0
        """Retries (of any kind) announced in this run."""
        self._open: dict[str, tuple[str, int, int]] = {}
        """Task id -> (start time, attempts before it, gate wait ms) of the attempt in flight."""

    async def run(
        self,
        task: PlanTask,
        engine: Engine,
        policy: RetryPolicy,
        call: Callable[[], Awaitable[TaskResult]],
        *,
        prompt_chars: int = 0,
    ) -> TaskResult:
        """All of ``task``'s attempts of ``call`` (one engine call each) under ``policy``."""
        started = self._clock()
        usage = TokenUsage()
        spent = RetryState()
        made = 0
        identity, provider = engine.provider()
        limiter = self.limiters.get(identity, provider, (engine.name, engine.settings.base_url or ""))

        def gate_wait(seconds: float, source: str, learned_by: str | None) -> None:
            if learned_by == task.id or seconds < 0.01:
                return  # this task's own reset: its retry line already said so
            by = f", learned by {learned_by}" if learned_by else ""
            self.emit(
                Event(
                    "rate_limit_wait",
                    {
                        "task_id": task.id,
                        "provider": provider,
                        "delay_ms": round(seconds * 1000),
                        "source": source,
                        "learned_by": learned_by,
                        "line": f"{task.id} rate limited by {provider}: waiting {format_compact(seconds)} ({source}{by})",
                    },
                )
            )

        async def attempt(index: int) -> TaskResult:
            nonlocal made
            try:
                ticket = await limiter.acquire(
                    task.id, prompt_chars=prompt_chars, budget_s=spent.budget_left(policy), on_wait=gate_wait
                )
            except GateWaitTooLong as held:
                raise RateLimitWaitExceededError(
                    f"{task.id}: {provider} is rate limited for another {format_compact(held.seconds)} ({held.source}); "
                    f"with the {format_compact(spent.rate_limit_wait_s)} already waited that passes "
                    f"max_rate_limit_wait_s ({policy.max_rate_limit_wait_s:g} s)",
                    hint="raise --max-rate-limit-wait-s, lower --parallel, or resume later with `rad craft --resume`",
                ) from None
            spent.rate_limit_wait_s += ticket.waited_s
            self.begin(task, gate_wait_ms=round(ticket.waited_s * 1000))
            try:
                result = await call()
            finally:
                limiter.release(ticket)
            task.attempts += 1  # the manifest keeps the total over all runs
            made += 1
            self.record(task, result.error)
            if result.usage:
                usage.prompt_tokens += result.usage.prompt_tokens
                usage.completion_tokens += result.usage.completion_tokens
            if result.success:
                limiter.succeeded(ticket, result.rate_limits, task.id)
                return result
            error = result.error
            assert error is not None
            hint = ServerHint.of(error)
            throttled = isinstance(error, RateLimitError) or getattr(error, "status", None) in (503, 529)
            limiter.failed(ticket, ServerWait(hint.seconds, hint.source) if hint else None, task.id, throttled=throttled)
            raise error

        def announce(error: RadiumError, wait: Wait, index: int) -> None:
            self.retries += 1
            if wait.counted:
                line = f"{task.id} Attempt {index + 1}: Error ({error.kind}) → {wait.explain()}"
            else:
                line = f"{task.id} rate limited by {provider}: waiting {format_compact(wait.seconds)} ({wait.source})"
            self.record_wait(task, wait)
            self.emit(
                Event(
                    "attempt_failed",
                    {
                        "task_id": task.id,
                        "attempt": index + 1,
                        "category": error.category.value,
                        "kind": error.kind,
                        "message": str(error),
                        "delay_ms": round(wait.delay_ms),
                        "retry_index": wait.retry_index,
                        "counted": wait.counted,
                        "provider": provider,
                        "wait_source": wait.source or "backoff",
                        "line": line,
                    },
                )
            )

        try:
            result = await retry_call(attempt, policy, on_retry=announce, sleep=self._sleep, state=spent)
        except RadiumError as error:
            result = TaskResult(task.id, False, error=error)
        result.attempts = made
        result.duration_ms = int((self._clock() - started) * 1000)
        result.usage = usage if usage.total_tokens else None
        result.rate_limit_wait_ms = round(spent.rate_limit_wait_s * 1000)
        return result

    # ------------------------------------------------------------------ the record

    def begin(self, task: PlanTask, gate_wait_ms: int = 0) -> None:
        """An attempt is sent now, after waiting ``gate_wait_ms`` at its provider's gate."""
        self._open[task.id] = (utc_now_iso_ms(), task.attempts, gate_wait_ms)

    def record(self, task: PlanTask, error: RadiumError | None = None, *, interrupted: bool = False) -> AttemptRecord | None:
        """Append the attempt that just ended to ``task.attempt_log`` (saved with the next checkpoint).

        Called where an attempt ends: after the call returns (``error`` None means
        success), when the engine cannot even be created, and for in-flight
        attempts when the run is cancelled (``interrupted``). The attempt number
        counts over all runs. Returns None if no attempt is open.
        """
        opened = self._open.pop(task.id, None)
        if opened is None:
            return None
        started_at, attempts_before, gate_wait_ms = opened
        last = task.attempt_log[-1].attempt if task.attempt_log else 0
        record = AttemptRecord(
            attempt=max(attempts_before, last) + 1,
            started_at=started_at,
            ended_at=utc_now_iso_ms(),
            outcome="interrupted" if interrupted else "error" if error is not None else "ok",
            category=error.category.value if error is not None else None,
            kind=error.kind if error is not None else None,
            message=str(error) if error is not None else None,
            rate_limit_wait_ms=gate_wait_ms or None,
        )
        task.attempt_log.append(record)
        return record

    def record_interruption(self, task: PlanTask) -> None:
        """On cancellation: the attempt in flight is ``interrupted``; a wait in progress is cut short."""
        if self.record(task, interrupted=True) is None and task.attempt_log:
            last = task.attempt_log[-1]
            if last.wait_ms:
                ended = datetime.fromisoformat(last.ended_at)
                waited = (datetime.now(timezone.utc) - ended).total_seconds() * 1000
                last.wait_ms = max(0, min(last.wait_ms, round(waited)))

    @staticmethod
    def record_wait(task: PlanTask, wait: Wait) -> None:
        """Note on the last attempt the wait before the next one, and where it came from."""
        if task.attempt_log:
            record = task.attempt_log[-1]
            record.wait_ms = round(wait.delay_ms)
            # A server-timed wait names its header (retry-after, x-ratelimit-reset-requests, RetryInfo…).
            record.wait_source = wait.source or "backoff"
