"""Run events: the executor's only way of telling the world what happens.

The executor never prints. It emits ``Event`` objects to a sink; the CLI turns
them into progress lines, a live bar, or (``rad craft --json``) one JSON
object per line. Every event carries ``event`` (its type) and ``time`` (ISO
8601 UTC). The types and their fields:

==================  ===========================================================
event               fields
==================  ===========================================================
run_started         plan, project, mode (bounded|continuous), max_iterations,
                    total_tasks, completed_tasks, parallel, resume_from,
                    resume, backend (local|ray), where
iteration_started   iteration_id, number, name, goal, tasks_remaining
task_started        task_id, title, iteration_id, iteration_number, agent_id,
                    engine, model, completed_tasks, total_tasks
attempt_failed      task_id, attempt (1-based), category, kind, message,
                    delay_ms, retry_index (-1: server-timed), counted (uses
                    a retry?), provider, wait_source (header or "backoff"),
                    line (the human retry line, naming the task)
rate_limit_wait     task_id, provider, delay_ms, source, learned_by, line:
                    a task held at its provider's shared rate-limit gate
task_completed      task_id, attempts, duration_ms, prompt_tokens,
                    completion_tokens, rate_limit_wait_ms, output_path,
                    cost_usd (null: price unknown), completed_tasks,
                    total_tasks, percent
task_failed         task_id, attempts, category, kind, message
task_blocked        task_id, reason (``Dependency task not completed: I1.T1``)
task_planned        (dry run) task_id, title, iteration_id, agent_id, engine,
                    model, order
run_finished        outcome, exit_code, message, completed, failed, blocked,
                    remaining, total, retries, prompt_tokens,
                    completion_tokens, wall_ms, rate_limit_wait_ms,
                    rate_limited_requests, next_command, interrupted_tasks,
                    failures, blocked_tasks, cost_usd, unpriced_tasks, budget
==================  ===========================================================

``outcome`` is one of ``completed``, ``bound_reached``, ``sanity_limit``, ``budget_reached``,
``failed``, ``blocked``, ``interrupted``, ``dry_run``, ``filtered`` (a
``--task``/``--iteration`` run that finished its selection).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import msgspec

from radium.models import utc_now_iso

_ENCODER = msgspec.json.Encoder()


@dataclass(frozen=True)
class Event:
    type: str
    data: dict[str, Any] = field(default_factory=dict)
    time: str = field(default_factory=utc_now_iso)

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def to_json(self) -> str:
        return _ENCODER.encode({"event": self.type, "time": self.time, **self.data}).decode("utf-8")


EventSink = Callable[[Event], None]


def discard(event: Event) -> None:
    """The default sink: library use without a listener."""
