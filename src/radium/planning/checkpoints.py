"""Checkpoints of a run: what changed since the last save, and how it is saved.

Each task change is one journal line (the task's whole state); the manifest is
rewritten (compacted) at a stop, at the start of a run unless the manifest is
exactly as the store last wrote it with no journal beside it
(``PlanStore.compact_first``), and whenever the store says the journal has
grown enough; a compaction re-encodes the whole manifest (msgspec: ~0.15 s for
100,000 tasks). A completed task's output is staged here
(``stage_output``) and written by the same save that journals its completion,
output first (``PlanStore.commit``): tasks that complete in the same loop turn
share one directory fsync and one journal fsync. Text is produced here, on the
event-loop thread that owns the manifest; the I/O runs in this checkpointer's
one writer thread while other tasks are in flight (so the loop keeps serving
them), and inline when nothing else is running (a thread hop costs more than it
saves then). A write in that thread is not stopped by Ctrl+C: the save after a
cancellation waits for it, so an older state never lands after the newer one.
Persistence itself (atomic writes, fsyncs, the journal format) is
``radium.store``'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterator

from radium.codec import manifest_pieces, render_pieces
from radium.models import PlanManifest, PlanTask, TaskStatus
from radium.store import PlanStore


class Checkpointer:
    """Collects a run's task changes and saves them through the plan's store."""

    def __init__(self, store: PlanStore | None) -> None:
        self.store = store
        self._compact_next = True
        self._changed_tasks: dict[str, PlanTask] = {}
        self._outputs: list[tuple[Path, str]] = []
        self._output_tasks: list[PlanTask] = []
        self._writer: ThreadPoolExecutor | None = None
        self._in_flight: Future[None] | None = None

    def start(self) -> None:
        """Begin a run: its first save compacts unless the store says the file needs nothing (``compact_first``)."""
        self._compact_next = self.store is None or self.store.compact_first

    def touch(self, task: PlanTask) -> None:
        """Note that ``task`` changed, for the next save."""
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
        if final or self._compact_next or store.wants_compaction(len(journal)):
            if outputs:
                await self._io(inline, store.commit, outputs, "", None, durable=True)
            self._compact_next = False
            encoded = _compacted(manifest, inline)
            metadata = store.metadata_text(manifest, final=True)
            await self._io(inline, store.write_checkpoint, encoded, metadata, durable=True)
            return
        metadata = store.metadata_text(manifest, final=False)
        if journal or metadata or outputs:
            await self._io(inline, store.commit, outputs, journal, metadata, durable=durable)

    async def _io(self, inline: bool, function: Callable[..., None], *args: object, **kwargs: object) -> None:
        if inline:
            function(*args, **kwargs)
            return
        if self._writer is None:
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="radium-checkpoints")
        self._in_flight = self._writer.submit(functools.partial(function, *args, **kwargs))
        await asyncio.wrap_future(self._in_flight)

    def _wait_for_in_flight(self) -> None:
        """Let a write already running in the writer thread finish (its own error is not ours to raise)."""
        in_flight, self._in_flight = self._in_flight, None
        if in_flight is not None:
            with contextlib.suppress(BaseException):
                in_flight.result()

    def save_now(self, manifest: PlanManifest) -> None:
        """Rewrite the whole manifest synchronously (after a cancellation: nothing may interrupt it)."""
        self._wait_for_in_flight()
        if self.store is not None:
            outputs, self._outputs = self._outputs, []
            self._output_tasks = []
            if outputs:
                self.store.commit(outputs, "", None, durable=True)
            encoded = _compacted(manifest, inline=True)
            self.store.write_checkpoint(encoded, self.store.metadata_text(manifest, final=True))
        self._changed_tasks = {}


def _compacted(manifest: PlanManifest, inline: bool) -> Iterator[bytes]:
    """The manifest file's new content, rendered as it is written: from the live tasks when the
    write is ``inline`` (nothing runs meanwhile), else from a snapshot taken now, on the loop's
    thread. Iteration statuses are derived; they are brought up to date here, once per
    compaction, rather than after every task (a full scan each time)."""
    for iteration in manifest.iterations:
        iteration.refresh_status()
    return render_pieces(manifest_pieces(manifest, snapshot=not inline))
