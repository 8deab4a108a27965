"""Checkpoints of a run: what changed since the last save, and how it is saved.

Each task change is one journal line (the task's whole state); the manifest is
rewritten (compacted) at a stop, at the start of a run and whenever the store
says the journal has grown enough. A completed task's output is staged here
(``stage_output``) and written by the same save that journals its completion,
output first (``PlanStore.commit``): tasks that complete in the same loop turn
share one directory fsync and one journal fsync. Text is produced here, on the
event-loop thread that owns the manifest; the I/O runs in a worker thread while
other tasks are in flight (so the loop keeps serving them), and inline when
nothing else is running (a thread hop costs more than it saves then).
Persistence itself (atomic writes, fsyncs, the journal format) is
``radium.store``'s.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Callable

from radium.models import Iteration, PlanManifest, PlanTask, TaskStatus
from radium.store import ManifestSerializer, PlanStore


class Checkpointer:
    """Collects a run's task changes and saves them through the plan's store."""

    def __init__(self, store: PlanStore | None, iteration_of: Callable[[str], Iteration]) -> None:
        self.store = store
        self._iteration_of = iteration_of
        self._serializer = ManifestSerializer()
        self._changed: dict[int, Iteration] | None = None  # None: everything changed
        self._changed_tasks: dict[str, PlanTask] = {}
        self._outputs: list[tuple[Path, str]] = []
        self._output_tasks: list[PlanTask] = []

    def everything_changed(self) -> None:
        """The next save rewrites the whole manifest (after ``prepare`` reset states)."""
        self._changed = None

    def start(self, manifest: PlanManifest) -> bool:
        """Begin a run: if the manifest file is as the store last wrote it, reuse its text.

        Then only what ``touch``/``touch_iteration`` report is re-serialized (a
        resume of a 100,000-task plan need not re-render 100,000 tasks) and
        the run starts with a journal line rather than a full rewrite. Returns
        whether the text was reused; if not, everything counts as changed.
        """
        rendered = self.store.rendered_iterations if self.store is not None else None
        if rendered is None:
            self._changed = None
            return False
        self._serializer.prime(manifest, rendered)
        self._changed = {}
        return True

    def refresh_iterations(self, manifest: PlanManifest) -> None:
        """Derive every iteration's status; those that change are re-serialized at the next compaction."""
        for iteration in manifest.iterations:
            before = iteration.status
            iteration.refresh_status()
            if iteration.status is not before and self._changed is not None:
                self._changed[id(iteration)] = iteration

    def touch(self, task: PlanTask) -> None:
        """Note that ``task`` (and so its iteration) changed, for the next save."""
        if self._changed is not None:
            iteration = self._iteration_of(task.id)
            self._changed[id(iteration)] = iteration
        self._changed_tasks[task.id] = task

    def stage_output(self, task: PlanTask, text: str) -> None:
        """Keep ``task``'s output for the next save, which writes it before the task's journal line."""
        if self.store is not None:
            task.output_path = self.store.relative_output_path(task.id)
            self._outputs.append((self.store.output_path(task.id), text))
            self._output_tasks.append(task)

    async def save(
        self, manifest: PlanManifest, *, durable: bool = True, final: bool = False, inline: bool = False
    ) -> None:
        """Persist every change since the last save (see the module docstring).

        ``inline`` does the I/O on this thread (when no other task is in flight).
        """
        store = self.store
        if store is None:
            return
        outputs, self._outputs = self._outputs, []
        staged, self._output_tasks = self._output_tasks, []
        texts = {task.id: text for task, (_, text) in zip(staged, outputs)}
        journal = "".join(store.journal_line(t, texts.get(t.id)) for t in self._changed_tasks.values())
        self._changed_tasks = {}
        if outputs:
            durable = True  # an output's journal line is never written before the output is durable
        try:
            await self._write(manifest, store, journal, outputs, durable, final, inline)
        except BaseException:
            for task in staged:  # never saved as completed without its output (a later save, e.g. at the stop)
                if task.completed and task.output_path and not store.output_path(task.id).is_file():
                    task.set_status(TaskStatus.PENDING)
                    task.output_path = task.completed_at = None
            raise

    async def _write(self, manifest, store, journal, outputs, durable, final, inline) -> None:  # noqa: ANN001
        if final or self._changed is None or store.wants_compaction(len(journal)):
            if outputs:
                await self._io(inline, store.commit, outputs, "", None, durable=True)
            changed = None if self._changed is None else self._changed.values()
            # Iteration statuses are derived; they are brought up to date here, once
            # per compaction, rather than after every task (a full scan each time).
            for iteration in manifest.iterations if changed is None else changed:
                iteration.refresh_status()
            text = self._serializer.render(manifest, changed)
            self._changed = {}
            metadata = store.metadata_text(manifest, final=True)
            await self._io(inline, store.write_checkpoint, text, metadata, durable=True)
            return
        metadata = store.metadata_text(manifest, final=False)
        if journal or metadata or outputs:
            await self._io(inline, store.commit, outputs, journal, metadata, durable=durable)

    @staticmethod
    async def _io(inline: bool, function: Callable[..., None], *args: object, **kwargs: object) -> None:
        if inline:
            function(*args, **kwargs)
        else:
            await asyncio.to_thread(function, *args, **kwargs)

    def save_now(self, manifest: PlanManifest) -> None:
        """Rewrite the whole manifest synchronously (after a cancellation: nothing may interrupt it)."""
        for iteration in manifest.iterations:
            iteration.refresh_status()
        if self.store is not None:
            outputs, self._outputs = self._outputs, []
            self._output_tasks = []
            if outputs:
                self.store.commit(outputs, "", None, durable=True)
            text = self._serializer.render(manifest, None)
            self.store.write_checkpoint(text, self.store.metadata_text(manifest, final=True))
        self._changed_tasks = {}
