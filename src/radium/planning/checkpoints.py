"""Checkpoints of a run: what changed since the last save, and how it is saved.

Each task change is one journal line (the task's whole state); the manifest is
rewritten (compacted) at a stop, at the start of a run and whenever the store
says the journal has grown enough. Text is produced here, on the event-loop
thread that owns the manifest; only the I/O runs in a worker thread, so the
loop keeps serving parallel tasks meanwhile. Persistence itself (atomic writes,
fsyncs, the journal format) is ``radium.store``'s.
"""

from __future__ import annotations

import asyncio
from typing import Callable

from radium.models import Iteration, PlanManifest, PlanTask
from radium.store import ManifestSerializer, PlanStore


class Checkpointer:
    """Collects a run's task changes and saves them through the plan's store."""

    def __init__(self, store: PlanStore | None, iteration_of: Callable[[str], Iteration]) -> None:
        self.store = store
        self._iteration_of = iteration_of
        self._serializer = ManifestSerializer()
        self._changed: dict[int, Iteration] | None = None  # None: everything changed
        self._changed_tasks: dict[str, PlanTask] = {}

    def everything_changed(self) -> None:
        """The next save rewrites the whole manifest (after ``prepare`` reset states)."""
        self._changed = None

    def touch(self, task: PlanTask) -> None:
        """Note that ``task`` (and so its iteration) changed, for the next save."""
        if self._changed is not None:
            iteration = self._iteration_of(task.id)
            self._changed[id(iteration)] = iteration
        self._changed_tasks[task.id] = task

    async def save(self, manifest: PlanManifest, *, durable: bool = True, final: bool = False) -> None:
        """Persist every change since the last save (see the module docstring)."""
        store = self.store
        if store is None:
            return
        journal = "".join(store.journal_line(t) for t in self._changed_tasks.values())
        self._changed_tasks = {}
        if final or self._changed is None or store.wants_compaction(len(journal)):
            changed = None if self._changed is None else self._changed.values()
            # Iteration statuses are derived; they are brought up to date here, once
            # per compaction, rather than after every task (a full scan each time).
            for iteration in manifest.iterations if changed is None else changed:
                iteration.refresh_status()
            text = self._serializer.render(manifest, changed)
            self._changed = {}
            metadata = store.metadata_text(manifest, final=True)
            await asyncio.to_thread(store.write_checkpoint, text, metadata, durable=True)
            return
        metadata = store.metadata_text(manifest, final=False)
        if journal or metadata:
            await asyncio.to_thread(store.append_journal, journal, metadata, durable=durable)

    def save_now(self, manifest: PlanManifest) -> None:
        """Rewrite the whole manifest synchronously (after a cancellation: nothing may interrupt it)."""
        for iteration in manifest.iterations:
            iteration.refresh_status()
        if self.store is not None:
            text = self._serializer.render(manifest, None)
            self.store.write_checkpoint(text, self.store.metadata_text(manifest, final=True))
        self._changed_tasks = {}
