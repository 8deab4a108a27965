"""JSON plans (read): the original Radium's ``ParsedPlan`` shape, or a whole ``plan_manifest.json``.

``parse_plan_json`` turns either into a fresh manifest (every task pending,
requirement number 0, as ``radium.planning.markdown.parse_plan_text`` does for
markdown, which hands JSON text here). A ``ParsedPlan``'s iteration names and
dependency strings follow the markdown format's rules (``Iteration 2: Build``
becomes ``Build``; ``"I1.T1, I1.T2"`` is two dependencies); a manifest keeps its
ids and unknown keys and loses its execution state.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from radium.codec import ModelError, from_data
from radium.errors import InvalidDataError
from radium.files import format_validation_error
from radium.models import Iteration, PlanManifest, PlanStatus, PlanTask, RequirementId, TaskStatus

FORMAT_HINT = "the plan format is described in `rad plan --help` and docs/plan-format.md"


class _JsonModel(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _ParsedTask(_JsonModel):
    number: int | None = None
    title: str
    description: str | None = None
    agent_id: str | None = None
    dependencies: list[str] | None = None
    acceptance_criteria: list[str] | None = None


class _ParsedIteration(_JsonModel):
    number: int | None = None
    name: str = ""
    description: str | None = None
    goal: str | None = None
    tasks: list[_ParsedTask] = []


class _ParsedPlan(_JsonModel):
    project_name: str
    description: str | None = None
    tech_stack: list[str] | None = None
    iterations: list[_ParsedIteration]

    @field_validator("project_name")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value.strip()


def parse_plan_json(text: str, source: str, *, line_offset: int = 0) -> PlanManifest:
    """A JSON plan (``ParsedPlan`` or manifest shape) as a fresh manifest."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidDataError(
            f"{source}: line {exc.lineno + line_offset}: invalid JSON: {exc.msg}", hint=FORMAT_HINT
        ) from None
    if not isinstance(data, dict):
        raise InvalidDataError(f"{source}: a JSON plan must be an object", hint=FORMAT_HINT)
    if not isinstance(data.get("iterations"), list):
        raise InvalidDataError(f"{source}: no iterations: the JSON plan needs an 'iterations' list", hint=FORMAT_HINT)
    is_manifest = "requirement_id" in data or any(
        isinstance(it, dict) and any(isinstance(t, dict) and "id" in t for t in it.get("tasks") or [])
        for it in data["iterations"]
    )
    try:
        manifest = _from_manifest(data) if is_manifest else _from_parsed_plan(_ParsedPlan.model_validate(data))
    except ValidationError as exc:
        raise InvalidDataError(format_validation_error(Path(source), exc), hint=FORMAT_HINT) from None
    except ModelError as exc:
        raise InvalidDataError(f"{source}: {exc}", hint=FORMAT_HINT) from None
    if not manifest.iterations:
        raise InvalidDataError(f"{source}: no iterations: the 'iterations' list is empty", hint=FORMAT_HINT)
    if not any(iteration.tasks for iteration in manifest.iterations):
        raise InvalidDataError(f"{source}: no tasks in any iteration", hint=FORMAT_HINT)
    return manifest


_STATE_KEYS = ("last_error", "started_at", "completed_at", "duration_ms", "usage", "output_path")


def _from_manifest(data: dict[str, Any]) -> PlanManifest:
    data = dict(data)
    data["requirement_id"] = {"number": 0}
    manifest = from_data(PlanManifest, data)
    for iteration in manifest.iterations:
        iteration.status = PlanStatus.NOT_STARTED
        for task in iteration.tasks:
            task.set_status(TaskStatus.PENDING)
            task.attempts = 0
            for key in _STATE_KEYS:
                setattr(task, key, None)
    return manifest


def _from_parsed_plan(plan: _ParsedPlan) -> PlanManifest:
    # The markdown format's rules for names and dependency lists apply to JSON plans too.
    from radium.planning.markdown import ITERATION_NAME_PREFIX, split_dependencies

    iterations = []
    for i, parsed in enumerate(plan.iterations, start=1):
        name = ITERATION_NAME_PREFIX.sub("", parsed.name.strip(), count=1).strip() or f"Iteration {i}"
        tasks = []
        for m, parsed_task in enumerate(parsed.tasks, start=1):
            dependencies = [
                dep for raw in parsed_task.dependencies or [] for dep in split_dependencies(raw)
            ]
            tasks.append(
                PlanTask(
                    id=f"I{i}.T{m}",
                    number=m,
                    title=parsed_task.title.strip(),
                    description=(parsed_task.description or "").strip() or None,
                    agent_id=(parsed_task.agent_id or "").strip() or None,
                    dependencies=dependencies,
                    acceptance_criteria=[c.strip() for c in parsed_task.acceptance_criteria or [] if c.strip()],
                )
            )
        iterations.append(
            Iteration(
                id=f"I{i}",
                number=i,
                name=name,
                description=(parsed.description or "").strip() or None,
                goal=(parsed.goal or "").strip() or None,
                tasks=tasks,
            )
        )
    manifest = PlanManifest(requirement_id=RequirementId(number=0), project_name=plan.project_name, iterations=iterations)
    parts = [(plan.description or "").strip()]
    if plan.tech_stack:
        parts.append("## Tech Stack\n" + "\n".join(f"- {item}" for item in plan.tech_stack))
    description = "\n\n".join(p for p in parts if p)
    if description:
        manifest.extras = {"description": description}
    return manifest
