"""What a run is configured with and what it produces: the executor's plain data types.

``ExecutionConfig`` (the seed's fields plus retry, parallelism, rate-limit and
budget settings), ``RunMode``, ``TaskResult`` (one task's attempts), ``RunResult``
(the whole run, what the CLI exits with) and ``RunState`` (the bookkeeping of one
``run()`` call). ``radium.planning.executor`` re-exports the public ones.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from radium.errors import RadiumError
from radium.models import PlanManifest, PlanTask, TokenUsage
from radium.ratelimit import Pacing
from radium.retry import RetryPolicy

if TYPE_CHECKING:
    from radium.ratelimit import RateLimitSnapshot
    from radium.reporting.budget import Budget
    from radium.reporting.spend import Spend

CONTINUOUS_SANITY_LIMIT = 1000
"""Continuous mode stops after this many iterations in one run."""


@dataclass(frozen=True)
class RunMode:
    """Bounded (at most ``max_iterations`` iterations per run) or continuous (``None``)."""

    max_iterations: int | None = 5

    @classmethod
    def bounded(cls, iterations: int = 5) -> "RunMode":
        if iterations < 1:
            raise ValueError("iterations must be at least 1")
        return cls(iterations)

    @classmethod
    def continuous(cls) -> "RunMode":
        return cls(None)

    @property
    def is_continuous(self) -> bool:
        return self.max_iterations is None

    @property
    def limit(self) -> int:
        return CONTINUOUS_SANITY_LIMIT if self.max_iterations is None else self.max_iterations


@dataclass
class ExecutionConfig:
    """How a run behaves. The first six fields and their defaults are the seed's."""

    resume: bool = False
    """Say where the run resumes (completed tasks are skipped either way)."""
    skip_completed: bool = True
    """Never re-run completed tasks. ``False`` (or ``restart``) re-runs everything."""
    check_dependencies: bool = True
    """Refuse to run a task whose dependencies have not completed (blocks it)."""
    state_path: Path = Path("plan/plan_manifest.json")
    """Manifest path, relative to the plan folder unless absolute."""
    context_files: str | None = None
    """Context text injected into every prompt (already loaded and formatted)."""
    run_mode: RunMode = field(default_factory=RunMode)
    """Bounded (default 5 iterations) or continuous."""
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    """Retry policy; agents may override fields not set explicitly on the command line."""
    retry_explicit: frozenset[str] = frozenset()
    """Retry fields given on the command line: agent settings do not override these."""
    parallel: int = 1
    """Run up to this many ready tasks of an iteration at once."""
    keep_going: bool = False
    """After a failure, still run the tasks that do not depend on it."""
    restart: bool = False
    """Forget recorded progress and run every task again."""
    only_iteration: str | None = None
    only_task: str | None = None
    dependency_output_chars: int = 4000
    """Each dependency output is cut to this many characters in a prompt."""
    engine_override: str | None = None
    model_override: str | None = None
    plan_label: str = ""
    """How the user names this plan (for the next command in messages)."""
    save_prompts: bool = True
    """Store each task's rendered prompt beside its output."""
    shared_rate_limits: bool = True
    """One limiter per provider shared by all tasks (``False``: each task honours only its own waits)."""
    rate_limit_pacing: dict[str, Pacing] = field(default_factory=dict)
    """Client-side ``rpm``/``tpm`` per engine name or base URL (``[rate_limits.<name>]``)."""
    budget: "Budget | None" = None
    """Token/USD limits of this run's spend (``--max-tokens``, ``--max-cost-usd``)."""


@dataclass
class TaskResult:
    """The outcome of executing one task (one attempt, or all attempts with retries)."""

    task_id: str
    success: bool
    output: str | None = None
    error: RadiumError | None = None
    attempts: int = 0
    duration_ms: int = 0
    usage: TokenUsage | None = None
    rate_limit_wait_ms: int = 0
    """Time spent waiting on rate limits (server-timed waits, the provider's gate)."""
    rate_limits: "RateLimitSnapshot | None" = None
    """What the provider's headers said about its limits, on success."""


@dataclass
class RunResult:
    """What a whole run did; ``exit_code`` is what the CLI exits with."""

    outcome: str
    exit_code: int
    message: str
    completed: int = 0
    failed: int = 0
    blocked: int = 0
    remaining: int = 0
    total: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    wall_ms: int = 0
    rate_limit_wait_ms: int = 0
    """Time tasks of this run spent waiting on rate limits (summed over tasks)."""
    rate_limited_requests: int = 0
    """Requests of this run that providers refused with 429."""
    next_command: str | None = None
    failures: list[tuple[str, RadiumError]] = field(default_factory=list)
    blocked_reasons: dict[str, str] = field(default_factory=dict)
    interrupted_tasks: list[str] = field(default_factory=list)
    cost_usd: float | None = None
    """Cost of this run's priced tasks; None when no task of the run had a known price."""
    unpriced_tasks: list[str] = field(default_factory=list)
    """Tasks of this run whose cost is unknown (no price for their model, or no usage reported)."""
    budget: str | None = None
    """Why the budget stopped the run (``tokens 1,204 of max 1,000``), if it did."""


@dataclass
class RunState:
    """Mutable bookkeeping of one ``run()`` call."""

    manifest: PlanManifest
    started: float
    counts: tuple[int, int]
    """(completed, total) tasks of the plan, kept up to date as tasks complete."""
    spend: "Spend"
    """This run's tokens and cost, and its budget."""
    rate_limit_wait_ms: int = 0
    failures: list[tuple[str, RadiumError]] = field(default_factory=list)
    blocked: dict[str, str] = field(default_factory=dict)
    interrupted: list[str] = field(default_factory=list)
    running: dict["asyncio.Task[TaskResult]", PlanTask] = field(default_factory=dict)
    """The attempts in flight (read by the cancellation handler)."""
    dependents: dict[str, list[str]] | None = None


def format_elapsed(seconds: float) -> str:
    """``H:MM:SS`` as in the seed's progress line (``0:05:23``)."""
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
