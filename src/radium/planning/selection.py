"""Which tasks a run covers: ``--task``/``--iteration`` filters, ``--restart`` scope, resets.

A run covers every incomplete task, or only those ``--task``/``--iteration``
select; work selected by a filter must have its outside dependencies completed
(else ``DependencyNotMetError`` before anything runs). ``--restart`` forgets the
progress of exactly the tasks in the run's scope; otherwise tasks an earlier run
left ``in_progress``, ``failed`` or ``blocked`` are pending again.
"""

from __future__ import annotations

from radium.errors import DependencyNotMetError, PlanValidationError
from radium.models import Iteration, PlanManifest, PlanTask, TaskStatus
from radium.planning.run_types import ExecutionConfig
from radium.planning.schedule import unmet_dependency

Index = dict[str, tuple[Iteration, PlanTask]]
Selected = list[tuple[Iteration, list[PlanTask]]]


def scope(manifest: PlanManifest, config: ExecutionConfig, index: Index) -> set[str]:
    """Ids of the tasks ``--task``/``--iteration`` put in reach of this run (all by default)."""
    if config.only_task is not None:
        return {config.only_task}
    if config.only_iteration is not None:
        return {t.id for it in manifest.iterations if it.id == config.only_iteration for t in it.tasks}
    return set(index)


def reset_for_run(manifest: PlanManifest, config: ExecutionConfig, index: Index) -> list[PlanTask]:
    """Forget progress for ``--restart`` (only in scope); make interrupted/failed/blocked tasks pending.

    Returns the tasks changed (for the next checkpoint; iteration statuses are the caller's).
    """
    restart = config.restart or not config.skip_completed
    in_scope = scope(manifest, config, index)
    changed = []
    for _, task in manifest.tasks():
        if restart and task.id in in_scope:
            task.reset()  # --restart forgets only what this run will redo
            changed.append(task)
        elif task.status in (TaskStatus.IN_PROGRESS, TaskStatus.BLOCKED, TaskStatus.FAILED):
            task.set_status(TaskStatus.PENDING)
            changed.append(task)
    return changed


def select(manifest: PlanManifest, config: ExecutionConfig, index: Index) -> Selected:
    """The incomplete tasks this run covers, per iteration, in plan order."""
    if config.only_task is not None:
        entry = index.get(config.only_task)
        if entry is None:
            raise PlanValidationError(f"--task {config.only_task}: no such task in the plan")
        iteration, task = entry
        if config.only_iteration is not None and iteration.id != config.only_iteration:
            raise PlanValidationError(f"--task {task.id} is in iteration {iteration.id}, not {config.only_iteration}")
        _require_outside_dependencies([task], {task.id}, index, config.plan_label)
        return [] if task.completed else [(iteration, [task])]
    if config.only_iteration is not None:
        for iteration in manifest.iterations:
            if iteration.id == config.only_iteration:
                tasks = [t for t in iteration.tasks if not t.completed]
                _require_outside_dependencies(tasks, {t.id for t in iteration.tasks}, index, config.plan_label)
                return [(iteration, tasks)] if tasks else []
        ids = ", ".join(it.id for it in manifest.iterations)
        raise PlanValidationError(f"--iteration {config.only_iteration}: no such iteration (have {ids})")
    return [
        (iteration, tasks)
        for iteration in manifest.iterations
        if (tasks := [t for t in iteration.tasks if not t.completed])
    ]


def _require_outside_dependencies(tasks: list[PlanTask], inside: set[str], index: Index, plan_label: str) -> None:
    for task in tasks:
        unmet = unmet_dependency(task, index, skip=inside)
        if unmet is not None:
            raise DependencyNotMetError(
                f"task {task.id} depends on {unmet[0]}, which has not completed",
                hint=f"run it first (rad craft {plan_label} --task {unmet[0]}) or drop the filter",
            )
