"""Task order: which task of an iteration may run next, and what a failure blocks.

One rule serves the scheduler and ``--dry-run`` alike: tasks run in dependency
order, and among tasks that are ready at the same time, in file order (a
topological order that keeps the plan's order where it can).
"""

from __future__ import annotations

import heapq
from typing import Iterable, Iterator

from radium.models import Iteration, PlanTask


class DependencyOrder:
    """The ready queue of one iteration's tasks (ids), in dependency-then-file order.

    ``position`` gives each task's place in the plan file. Tasks in ``excluded``
    (already blocked) never become ready, nor does anything depending on them.
    ``pop()`` the next ready task; ``done(id)`` when it completed, which may make
    its dependents ready.
    """

    def __init__(self, tasks: list[PlanTask], position: dict[str, int], excluded: Iterable[str] = ()) -> None:
        in_run = {t.id for t in tasks}
        self._position = position
        self._excluded = set(excluded)
        self._waiting: dict[str, int] = {}
        self._dependents: dict[str, list[str]] = {}
        for task in tasks:
            self._waiting[task.id] = sum(1 for dep in task.dependencies if dep in in_run)
            for dep in task.dependencies:
                if dep in in_run:
                    self._dependents.setdefault(dep, []).append(task.id)
        self._ready = [
            (position[t.id], t.id) for t in tasks if self._waiting[t.id] == 0 and t.id not in self._excluded
        ]
        heapq.heapify(self._ready)

    def __bool__(self) -> bool:
        return bool(self._ready)

    def pop(self) -> str:
        return heapq.heappop(self._ready)[1]

    def done(self, task_id: str) -> None:
        for dependent in self._dependents.get(task_id, ()):
            self._waiting[dependent] -= 1
            if self._waiting[dependent] == 0 and dependent not in self._excluded:
                heapq.heappush(self._ready, (self._position[dependent], dependent))

    def drain(self) -> Iterator[str]:
        """Every task in order, as if each completed (the planned order of ``--dry-run``)."""
        while self:
            task_id = self.pop()
            yield task_id
            self.done(task_id)


def unmet_dependency(
    task: PlanTask, index: dict[str, tuple[Iteration, PlanTask]], skip: set[str] = frozenset()
) -> tuple[str, str] | None:
    """The first dependency of ``task`` (outside ``skip``) that is unknown or not completed,
    with the seed's message for it (``Dependency task not completed: I1.T1``)."""
    for dep in task.dependencies:
        if dep in skip:
            continue
        entry = index.get(dep)
        if entry is None:
            return dep, f"Dependency task not found: {dep}"
        if not entry[1].completed:
            return dep, f"Dependency task not completed: {dep}"
    return None
