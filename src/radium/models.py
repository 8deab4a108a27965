"""The plan data model: ``plan_manifest.json`` and ``plan.json``.

The JSON shapes are those of the original Radium (see the README, "Manifest
format"), so a manifest it wrote loads here and a manifest we write loads
there: ``requirement_id`` is an object ``{"number": N}``, optional fields are
omitted rather than ``null``, and keys we do not know are kept and written
back. Our additions per task (``status``, ``attempts``, ``last_error``,
timestamps, ``usage``, ``output_path``) are optional, so an original manifest
validates as it is.

The models are ``msgspec`` structs, not pydantic models, because a manifest
can hold 100,000 tasks: msgspec decodes the file straight into the structs
about ten times faster than pydantic and at a quarter of its memory per
task (1.3 KB against 4.9 KB, see ``benchmarks/PROFILE.md``), and encodes it
back in a tenth of a second. Their JSON, both ways, is ``radium.codec``'s
(with what msgspec does not do: unknown keys kept, lenient input).

``PlanTask.completed`` (the original's only state) and ``PlanTask.status``
(ours) always agree: on load, ``completed`` wins when they disagree, because it
is the field people edit by hand to skip or re-run a task.
"""

from __future__ import annotations

import enum
import math
import re
import sys
import time
from datetime import datetime, timezone
from typing import Annotated, Any, Iterator

from msgspec import Meta, Struct, field

EXTRAS_KEY = "__radium_extras__"
"""Where an object's unknown keys travel inside msgspec (never written: ``encode`` merges them)."""


_last_stamp: dict[str, tuple[int, str]] = {"seconds": (-1, ""), "milliseconds": (-1, "")}


def _stamp(timespec: str, units: int) -> str:
    # Tasks that start or end within the same second (or millisecond) share one string:
    # a 100,000-task run keeps four timestamps per task, 75 bytes each when not shared.
    count = time.time_ns() // (1_000_000_000 // units)
    last_count, text = _last_stamp[timespec]
    if count != last_count:
        seconds, fraction = divmod(count, units)
        moment = datetime.fromtimestamp(seconds, timezone.utc).replace(microsecond=fraction * (1_000_000 // units))
        text = moment.isoformat(timespec=timespec)
        _last_stamp[timespec] = (count, text)
    return text


def utc_now_iso() -> str:
    """Current time as an ISO 8601 UTC timestamp with second precision."""
    return _stamp("seconds", 1)


def utc_now_iso_ms() -> str:
    """Current time as an ISO 8601 UTC timestamp with millisecond precision."""
    return _stamp("milliseconds", 1000)


def _always(value: Any) -> Any:
    """A default that is still written: ``omit_defaults`` omits plain defaults, never a factory's."""
    if isinstance(value, list):
        return field(default_factory=lambda: [])
    return field(default_factory=lambda: value)


class ManifestModel(Struct, kw_only=True, omit_defaults=True, forbid_unknown_fields=True, gc=False):
    """Base for manifest objects: ``None`` fields are omitted, unknown keys ride in ``extras``.

    Assignment is not validated (structs never are): the executor updates task
    state on a hot path, and the values it assigns are its own. ``gc=False``:
    the objects are plain JSON data and can form no reference cycle, so the
    garbage collector need not track 300,000 of them (decoding 100,000 tasks
    takes 0.27 s instead of 0.46 s, mostly collections it no longer runs).
    """

    extras: dict[str, Any] | None = field(default=None, name=EXTRAS_KEY)
    """Keys of the file this version does not know, written back as they were."""


_REQ_PATTERN = re.compile(r"^REQ-(\d+)$", re.IGNORECASE)


class RequirementId(ManifestModel):
    """``REQ-001``; stored as ``{"number": 1}`` as the original does."""

    number: Annotated[int, Meta(ge=0)]

    @classmethod
    def parse(cls, text: str) -> "RequirementId":
        """Parse ``REQ-7``/``REQ-007`` (case-insensitive); raise ``ValueError`` otherwise."""
        match = _REQ_PATTERN.match(text.strip())
        if not match:
            raise ValueError(f"invalid requirement id {text!r}: expected REQ-<number>, e.g. REQ-001")
        return cls(number=int(match.group(1)))

    def __str__(self) -> str:
        return f"REQ-{self.number:03d}"


class PlanStatus(str, enum.Enum):
    """Status of a plan or an iteration (the original's ``PlanStatus``)."""

    NOT_STARTED = "not_started"
    IN_PROGRESS = "in_progress"
    PAUSED = "paused"
    BLOCKED = "blocked"
    COMPLETED = "completed"
    FAILED = "failed"

    @property
    def label(self) -> str:
        return self.value.replace("_", " ").title()


class TaskStatus(str, enum.Enum):
    """Execution state of one task."""

    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"
    BLOCKED = "blocked"



class TaskErrorRecord(ManifestModel):
    """The last error a task met: what kind, and the message shown to the user."""

    category: str
    message: str
    kind: str | None = None


class TokenUsage(ManifestModel):
    """Token counts reported by the provider for one task (summed over attempts)."""

    prompt_tokens: int = _always(0)
    completion_tokens: int = _always(0)

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class AttemptRecord(ManifestModel):
    """One attempt of a task, kept in the checkpoint (``PlanTask.attempt_log``).

    ``attempt`` counts over all runs (1-based). ``started_at``/``ended_at`` are
    ISO 8601 UTC with milliseconds; ``started_at`` is when the attempt began,
    including any time it spent at the shared per-provider rate-limit gate
    (``rate_limit_wait_ms``, the first part of the attempt). ``outcome`` is
    ``ok``, ``error`` or ``interrupted`` (the run was cancelled mid-attempt).
    ``wait_ms``/``wait_source`` describe the wait *after* this attempt, before
    the next one (``backoff``, ``retry-after``, ``x-ratelimit-reset-requests``…).
    """

    attempt: int
    started_at: str
    ended_at: str
    outcome: str
    category: str | None = None
    kind: str | None = None
    message: str | None = None
    wait_ms: int | None = None
    wait_source: str | None = None
    rate_limit_wait_ms: int | None = None


class PlanTask(ManifestModel):
    """One task: an agent applied to a piece of work, possibly after other tasks."""

    id: str
    number: int
    title: str
    description: str | None = None
    completed: bool = _always(False)
    agent_id: str | None = None
    dependencies: list[str] = _always([])
    acceptance_criteria: list[str] = _always([])
    # --- Radium (Python) additions; all optional so original manifests load.
    status: TaskStatus = _always(TaskStatus.PENDING)
    attempts: int = _always(0)
    last_error: TaskErrorRecord | None = None
    started_at: str | None = None
    completed_at: str | None = None
    duration_ms: int | None = None
    usage: TokenUsage | None = None
    output_path: str | None = None
    rate_limit_wait_ms: int | None = None
    """Total time this task has waited on rate limits, over all runs."""
    cost_usd: float | None = None
    """Tokens x price of the task's model (all attempts); absent when the price is unknown."""
    attempt_log: list[AttemptRecord] = []
    """Every attempt over all runs, oldest first (omitted while empty)."""

    def __post_init__(self) -> None:
        if self.agent_id is not None:
            self.agent_id = sys.intern(self.agent_id)  # a few agents, 100,000 tasks
        # ``completed`` wins over ``status`` (it is what people edit by hand).
        if self.completed:
            if self.status is not TaskStatus.COMPLETED:
                self.status = TaskStatus.COMPLETED
        elif self.status is TaskStatus.COMPLETED:
            self.status = TaskStatus.PENDING

    def set_status(self, status: TaskStatus) -> None:
        """Change the status and keep the original's ``completed`` flag in step."""
        self.status = status
        self.completed = status is TaskStatus.COMPLETED

    def reset(self) -> None:
        """Forget every trace of execution (``--restart``): pending, no attempts, no results."""
        self.set_status(TaskStatus.PENDING)
        self.attempts = 0
        self.last_error = None
        self.started_at = self.completed_at = None
        self.duration_ms = None
        self.usage = None
        self.output_path = None
        self.rate_limit_wait_ms = None
        self.cost_usd = None
        self.attempt_log = []


class Iteration(ManifestModel, kw_only=True):
    """An ordered group of tasks; iterations run one after the other."""

    id: str
    number: int
    name: str
    description: str | None = None
    goal: str | None = None
    tasks: list[PlanTask]
    status: PlanStatus = _always(PlanStatus.NOT_STARTED)

    def is_complete(self) -> bool:
        """True when the iteration has tasks and all of them completed (as the original)."""
        return bool(self.tasks) and all(task.completed for task in self.tasks)

    def refresh_status(self) -> None:
        """Derive the iteration's status from its tasks' states."""
        if self.is_complete():
            self.status = PlanStatus.COMPLETED
        elif any(t.status is TaskStatus.FAILED for t in self.tasks):
            self.status = PlanStatus.FAILED
        elif any(t.status is not TaskStatus.PENDING for t in self.tasks):
            self.status = PlanStatus.IN_PROGRESS
        else:
            self.status = PlanStatus.NOT_STARTED


class PlanManifest(ManifestModel):
    """``plan/plan_manifest.json``: the plan and its execution state (the checkpoint)."""

    requirement_id: RequirementId
    project_name: str
    iterations: list[Iteration]

    def tasks(self) -> Iterator[tuple[Iteration, PlanTask]]:
        """Every task with its iteration, in file order."""
        for iteration in self.iterations:
            for task in iteration.tasks:
                yield iteration, task

    def task_index(self) -> dict[str, tuple[Iteration, PlanTask]]:
        """Task id → (iteration, task). The first occurrence wins for duplicate ids."""
        index: dict[str, tuple[Iteration, PlanTask]] = {}
        for iteration, task in self.tasks():
            index.setdefault(task.id, (iteration, task))
        return index

    def counts(self) -> tuple[int, int]:
        """(completed tasks, total tasks)."""
        total = completed = 0
        for _, task in self.tasks():
            total += 1
            completed += task.completed
        return completed, total

    def calculate_progress(self) -> int:
        """Percent complete, ``floor(completed / total * 100)``; 0 for an empty plan."""
        completed, total = self.counts()
        return math.floor(completed * 100 / total) if total else 0

    def has_incomplete_tasks(self) -> bool:
        return any(not task.completed for _, task in self.tasks())


class PlanMetadata(ManifestModel):
    """``plan.json``: what the plan is and a summary of its progress.

    Radium keeps the status and counts in step with the manifest after every
    checkpoint (the original left them stale).
    """

    requirement_id: RequirementId
    project_name: str
    folder_name: str
    stage: str = _always("backlog")
    status: PlanStatus = _always(PlanStatus.NOT_STARTED)
    created_at: int = _always(0)
    updated_at: int = _always(0)
    specification_path: str | None = None
    total_iterations: int = _always(0)
    completed_iterations: int = _always(0)
    total_tasks: int = _always(0)
    completed_tasks: int = _always(0)

    def sync_with(self, manifest: PlanManifest, now: int) -> None:
        """Refresh counts and status from the manifest."""
        completed, total = manifest.counts()
        self.total_iterations = len(manifest.iterations)
        self.completed_iterations = sum(it.is_complete() for it in manifest.iterations)
        self.total_tasks = total
        self.completed_tasks = completed
        failed = any(t.status is TaskStatus.FAILED for _, t in manifest.tasks())
        if total and completed == total:
            self.status = PlanStatus.COMPLETED
        elif failed:
            self.status = PlanStatus.FAILED
        elif completed or any(t.status is not TaskStatus.PENDING for _, t in manifest.tasks()):
            self.status = PlanStatus.IN_PROGRESS
        else:
            self.status = PlanStatus.NOT_STARTED
        self.updated_at = now
