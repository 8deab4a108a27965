"""Plan validation: everything that can be checked without calling a model.

Errors (a plan with any of them does not run; exit 2):

* ``bad-id``: an id that is not a plain name (ids become file names, so
  ``../x``, ``a/b``, an empty id, a trailing newline or more than 200 bytes
  are refused);
* ``bad-output-path``: a task's ``output_path`` outside ``artifacts/tasks/``;
* ``duplicate-id``: two iterations or two tasks share an id;
* ``unknown-dependency``: a dependency names no task (with a "did you mean");
* ``cycle``: dependencies loop (the loop is printed, ``I1.T1 → I1.T2 → I1.T1``);
* ``forward-dependency``: a task depends on a task of a later iteration;
* ``unknown-agent``: a task names an agent no agent file defines;
* ``missing-prompt``: an agent's prompt file cannot be read.

Warnings (reported, the plan still runs): ``no-agent`` (a task names no
agent: like the original Radium, ``rad craft`` skips it), ``empty-iteration``,
``unknown-placeholder`` (a template names a variable Radium does not set),
and agent-file duplicates.

Every check is linear in the size of the plan, so validating a 10,000-task
plan before each run costs milliseconds.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

from radium.artifacts import TASK_ARTIFACTS_RELATIVE
from radium.errors import PlanValidationError
from radium.models import PlanManifest

if TYPE_CHECKING:
    from radium.agents import AgentRegistry


@dataclass(frozen=True)
class Problem:
    code: str
    message: str
    task_id: str | None = None

    def to_dict(self) -> dict[str, str | None]:
        return {"code": self.code, "message": self.message, "task_id": self.task_id}


@dataclass
class ValidationReport:
    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def raise_if_errors(self, where: str = "plan") -> None:
        if self.errors:
            messages = [p.message for p in self.errors]
            more = f" (and {len(messages) - 1} more; run `rad validate` for all)" if len(messages) > 1 else ""
            raise PlanValidationError(f"invalid {where}: {messages[0]}{more}", problems=messages)


def _suggest(name: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def validate_plan(
    manifest: PlanManifest,
    agents: "AgentRegistry | None" = None,
    *,
    check_prompts: bool = True,
) -> ValidationReport:
    """Check a plan's structure and, when ``agents`` is given, its agents and prompts."""
    report = ValidationReport()
    _check_structure(manifest, report)
    if agents is not None:
        _check_agents(manifest, agents, report, check_prompts)
    return report


_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
MAX_ID_BYTES = 200
"""Ids become file names (``<id>.prompt.md`` must fit the usual 255-byte limit)."""


def _check_ids(manifest: PlanManifest, report: ValidationReport) -> None:
    for iteration in manifest.iterations:
        for kind, object_id in (("iteration", iteration.id), *(("task", t.id) for t in iteration.tasks)):
            # fullmatch, not match with "$": "$" also accepts a trailing newline.
            if not _SAFE_ID.fullmatch(object_id) or ".." in object_id:
                shown = object_id if len(object_id) <= 60 else object_id[:60] + "…"
                report.errors.append(
                    Problem(
                        "bad-id",
                        f"{kind} id {shown!r} is not a plain name (letters, digits, '.', '_', '-'; "
                        "ids are used as file names)",
                        object_id if kind == "task" else None,
                    )
                )
            elif len(object_id.encode("utf-8")) > MAX_ID_BYTES:
                report.errors.append(
                    Problem(
                        "bad-id",
                        f"{kind} id {object_id[:40]!r}… is {len(object_id.encode('utf-8'))} bytes long "
                        f"(at most {MAX_ID_BYTES}; ids are used as file names)",
                        object_id if kind == "task" else None,
                    )
                )


_OUTPUT_PREFIX = TASK_ARTIFACTS_RELATIVE.as_posix() + "/"


def _is_plain_output_path(path: str) -> bool:
    """``artifacts/tasks/<name>``, the form Radium writes: checked without a ``PurePosixPath`` (10 µs a task)."""
    name = path[len(_OUTPUT_PREFIX) :]
    return path.startswith(_OUTPUT_PREFIX) and name not in ("", ".", "..") and "/" not in name and "\\" not in name


def _check_output_paths(manifest: PlanManifest, report: ValidationReport) -> None:
    """A recorded ``output_path`` must name a file in the plan's ``artifacts/tasks/``.

    Outputs are read back into dependents' prompts, so a manifest must not be
    able to point one at ``/etc/passwd`` or ``../../secret``.
    """
    for _, task in manifest.tasks():
        path = task.output_path
        if path is None or _is_plain_output_path(path):
            continue
        parts = PurePosixPath(path).parts
        inside = (
            not PurePosixPath(path).is_absolute()
            and "\\" not in path
            and len(parts) == 3
            and parts[:2] == ("artifacts", "tasks")
            and parts[2] not in (".", "..")
        )
        if not inside:
            report.errors.append(
                Problem(
                    "bad-output-path",
                    f"task {task.id}: output_path {path!r} is outside the plan's artifacts/tasks/ "
                    "(outputs are only read from there; remove the field or fix it)",
                    task.id,
                )
            )


def _check_structure(manifest: PlanManifest, report: ValidationReport) -> None:
    _check_ids(manifest, report)
    _check_output_paths(manifest, report)
    iteration_of: dict[str, int] = {}
    seen_iterations: set[str] = set()
    for position, iteration in enumerate(manifest.iterations):
        if iteration.id in seen_iterations:
            report.errors.append(Problem("duplicate-id", f"duplicate iteration id {iteration.id}"))
        seen_iterations.add(iteration.id)
        if not iteration.tasks:
            report.warnings.append(
                Problem("empty-iteration", f"iteration {iteration.id} ({iteration.name}) has no tasks")
            )
        for task in iteration.tasks:
            if task.id in iteration_of:
                report.errors.append(Problem("duplicate-id", f"duplicate task id {task.id}", task.id))
            else:
                iteration_of[task.id] = position

    all_ids = list(iteration_of)
    for position, iteration in enumerate(manifest.iterations):
        for task in iteration.tasks:
            for dep in task.dependencies:
                if dep not in iteration_of:
                    report.errors.append(
                        Problem(
                            "unknown-dependency",
                            f"task {task.id} depends on unknown task {dep}"
                            f"{_suggest(dep, [i for i in all_ids if i != task.id])}",
                            task.id,
                        )
                    )
                elif iteration_of[dep] > position:
                    later = manifest.iterations[iteration_of[dep]].id
                    report.errors.append(
                        Problem(
                            "forward-dependency",
                            f"task {task.id} (iteration {iteration.id}) depends on {dep} "
                            f"of later iteration {later}",
                            task.id,
                        )
                    )
    for cycle in find_cycles(manifest):
        report.errors.append(
            Problem("cycle", "dependency cycle: " + " → ".join([*cycle, cycle[0]]), cycle[0])
        )


def find_cycles(manifest: PlanManifest, limit: int = 5) -> list[list[str]]:
    """Up to ``limit`` dependency cycles, each as the list of task ids on it.

    Iterative depth-first search with three colours (no recursion limit on
    long chains); unknown dependencies are ignored here (reported elsewhere).
    """
    graph: dict[str, list[str]] = {}
    for _, task in manifest.tasks():
        graph.setdefault(task.id, task.dependencies)
    WHITE, GREY, BLACK = 0, 1, 2
    colour = dict.fromkeys(graph, WHITE)
    cycles: list[list[str]] = []
    for root in graph:
        if colour[root] != WHITE:
            continue
        path: list[str] = [root]
        iterators = [iter(graph[root])]
        colour[root] = GREY
        while iterators:
            dep = next(iterators[-1], None)
            if dep is None:
                colour[path.pop()] = BLACK
                iterators.pop()
                continue
            if dep not in colour:
                continue
            if colour[dep] == GREY:
                cycles.append(path[path.index(dep) :])
                if len(cycles) >= limit:
                    return cycles
            elif colour[dep] == WHITE:
                colour[dep] = GREY
                path.append(dep)
                iterators.append(iter(graph[dep]))
    return cycles


def _check_agents(
    manifest: PlanManifest, agents: "AgentRegistry", report: ValidationReport, check_prompts: bool
) -> None:
    from radium.prompts import KNOWN_VARIABLES, placeholders

    for message in agents.warnings:
        report.warnings.append(Problem("duplicate-agent", message))
    used: dict[str, str] = {}
    known = sorted(agents.agents)
    for _, task in manifest.tasks():
        if not task.agent_id:
            # The original Radium skips such a task ("No agent assigned, skipping"); so does rad craft.
            report.warnings.append(
                Problem("no-agent", f"task {task.id} names no agent: rad craft skips it (tasks depending on it are blocked)", task.id)
            )
        elif agents.get(task.agent_id) is None:
            hint = _suggest(task.agent_id, known) or (f" (known: {', '.join(known)})" if known else "")
            report.errors.append(
                Problem("unknown-agent", f"task {task.id} uses unknown agent {task.agent_id}{hint}", task.id)
            )
        else:
            used.setdefault(task.agent_id, task.id)
    if not check_prompts:
        return
    for agent_id, first_task in used.items():
        agent = agents.agents[agent_id]
        try:
            template = agent.prompt_file.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            report.errors.append(
                Problem("missing-prompt", f"agent {agent_id}: prompt file {agent.prompt_file} is not UTF-8 text", first_task)
            )
            continue
        except OSError as exc:
            report.errors.append(
                Problem(
                    "missing-prompt",
                    f"agent {agent_id} (used by {first_task}): cannot read prompt file "
                    f"{agent.prompt_file}: {exc.strerror} ({agent.prompt_hint(exc)})",
                    first_task,
                )
            )
            continue
        unknown = sorted(placeholders(template) - KNOWN_VARIABLES)
        if unknown:
            report.warnings.append(
                Problem(
                    "unknown-placeholder",
                    f"prompt {agent.prompt_file} of agent {agent_id} uses unknown variable(s) "
                    f"{', '.join(unknown)}; they are left as written",
                )
            )
