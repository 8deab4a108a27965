"""The plan data model: ``plan_manifest.json`` and ``plan.json``.

The JSON shapes are those of the original Radium (see the README, "Manifest
format"), so a manifest it wrote loads here and a manifest we write loads
there: ``requirement_id`` is an object ``{"number": N}``, optional fields are
omitted rather than ``null``, and keys we do not know are kept (pydantic
``extra="allow"``) and written back. Our additions per task (``status``,
``attempts``, ``last_error``, timestamps, ``usage``, ``output_path``) are
optional, so an original manifest validates as it is.

``PlanTask.completed`` (the original's only state) and ``PlanTask.status``
(ours) always agree: on load, ``completed`` wins when they disagree, because it
is the field people edit by hand to skip or re-run a task.
"""

from __future__ import annotations

import enum
import math
import re
from datetime import datetime, timezone
from typing import Any, Iterator

from pydantic import BaseModel, ConfigDict, Field, model_validator

_OMIT_NONE: Any = {"default": None, "exclude_if": lambda value: value is None}


def utc_now_iso() -> str:
    """Current time as an ISO 8601 UTC timestamp with second precision."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def utc_now_iso_ms() -> str:
    """Current time as an ISO 8601 UTC timestamp with millisecond precision."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class _Model(BaseModel):
    """Base for manifest objects: unknown keys are preserved, assignment is unchecked.

    Assignment is not re-validated because the executor updates task state on a
    hot path; the values it assigns are its own.
    """

    model_config = ConfigDict(extra="allow", populate_by_name=True)


_REQ_PATTERN = re.compile(r"^REQ-(\d+)$", re.IGNORECASE)


class RequirementId(_Model):
    """``REQ-001``; stored as ``{"number": 1}`` as the original does."""

    number: int = Field(ge=0)

    @model_validator(mode="before")
    @classmethod
    def _accept_string(cls, value: Any) -> Any:
        # Hand-written manifests often say "REQ-001"; accept it rather than fail.
        if isinstance(value, str):
            return {"number": cls.parse(value).number}
        if isinstance(value, int) and not isinstance(value, bool):
            return {"number": value}
        return value

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


class TaskErrorRecord(_Model):
    """The last error a task met: what kind, and the message shown to the user."""

    category: str
    message: str
    kind: str | None = Field(**_OMIT_NONE)


class TokenUsage(_Model):
    """Token counts reported by the provider for one task (summed over attempts)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class AttemptRecord(_Model):
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
    category: str | None = Field(**_OMIT_NONE)
    kind: str | None = Field(**_OMIT_NONE)
    message: str | None = Field(**_OMIT_NONE)
    wait_ms: int | None = Field(**_OMIT_NONE)
    wait_source: str | None = Field(**_OMIT_NONE)
    rate_limit_wait_ms: int | None = Field(**_OMIT_NONE)


_OMIT_EMPTY: Any = {"default_factory": list, "exclude_if": lambda value: not value}


class PlanTask(_Model):
    """One task: an agent applied to a piece of work, possibly after other tasks."""

    id: str
    number: int
    title: str
    description: str | None = Field(**_OMIT_NONE)
    completed: bool = False
    agent_id: str | None = Field(**_OMIT_NONE)
    dependencies: list[str] = Field(default_factory=list)
    acceptance_criteria: list[str] = Field(default_factory=list)
    # --- Radium (Python) additions; all optional so original manifests load.
    status: TaskStatus = TaskStatus.PENDING
    attempts: int = 0
    last_error: TaskErrorRecord | None = Field(**_OMIT_NONE)
    started_at: str | None = Field(**_OMIT_NONE)
    completed_at: str | None = Field(**_OMIT_NONE)
    duration_ms: int | None = Field(**_OMIT_NONE)
    usage: TokenUsage | None = Field(**_OMIT_NONE)
    output_path: str | None = Field(**_OMIT_NONE)
    rate_limit_wait_ms: int | None = Field(**_OMIT_NONE)
    """Total time this task has waited on rate limits, over all runs."""
    cost_usd: float | None = Field(**_OMIT_NONE)
    """Tokens x price of the task's model (all attempts); absent when the price is unknown."""
    attempt_log: list[AttemptRecord] = Field(**_OMIT_EMPTY)
    """Every attempt over all runs, oldest first (omitted while empty)."""

    @model_validator(mode="before")
    @classmethod
    def _reconcile_status(cls, data: Any) -> Any:
        # One Python call per task (a 100,000-task manifest loads in pydantic-core otherwise):
        # ``completed`` wins over ``status``; a null dependency or criteria list is empty.
        if not isinstance(data, dict):
            return data
        completed = data.get("completed", False)
        status = data.get("status")
        if completed is True and status != "completed":
            data = {**data, "status": "completed"}
        elif completed is False and (status is None or status == "completed"):
            data = {**data, "status": "pending"}
        if data.get("dependencies", ()) is None or data.get("acceptance_criteria", ()) is None:
            data = {**data}
            for key in ("dependencies", "acceptance_criteria"):
                if key in data and data[key] is None:
                    data[key] = []
        return data

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


class Iteration(_Model):
    """An ordered group of tasks; iterations run one after the other."""

    id: str
    number: int
    name: str
    description: str | None = Field(**_OMIT_NONE)
    goal: str | None = Field(**_OMIT_NONE)
    tasks: list[PlanTask]
    status: PlanStatus = PlanStatus.NOT_STARTED

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


class PlanManifest(_Model):
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

    def to_json(self) -> str:
        """The file text: 2-space indented JSON, field order as declared, extras last."""
        return self.model_dump_json(indent=2)


class PlanMetadata(_Model):
    """``plan.json``: what the plan is and a summary of its progress.

    Radium keeps the status and counts in step with the manifest after every
    checkpoint (the original left them stale).
    """

    requirement_id: RequirementId
    project_name: str
    folder_name: str
    stage: str = "backlog"
    status: PlanStatus = PlanStatus.NOT_STARTED
    created_at: int = 0
    updated_at: int = 0
    specification_path: str | None = Field(**_OMIT_NONE)
    total_iterations: int = 0
    completed_iterations: int = 0
    total_tasks: int = 0
    completed_tasks: int = 0

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

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)
