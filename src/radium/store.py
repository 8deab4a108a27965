"""Persistence of a plan: what is written when (the file primitives are ``radium.files``).

Guarantees:

* **Atomic replacement.** The manifest, ``plan.json`` and any existing file are
  replaced by ``radium.files.replace_atomically`` (temp file, fsync, rename,
  directory fsync for the manifest). After a crash at any instant the target
  is either the old or the new version, never a mix, and never truncated.
* **Outputs with state.** The journal line that marks a task completed carries
  the task's output text, and one fsync of the journal makes both durable at
  once (``PlanStore.commit``); the output file itself is written just before
  that line (created in place when new, replaced by temp file + rename when it
  exists), without an fsync of its own. So a completed task never lacks its
  output: after a power cut the output file may be missing, torn or stale, and
  the next ``rad craft`` rewrites it from the journal (at the compaction that
  starts every run) before any task reads it. Before a compaction drops the
  journal, every output written since the last one is fsynced (with its
  directory): the manifest never says "completed" for an output that is not
  durable on its own. Tasks that complete together share one journal fsync.
* **Failures are loud.** A checkpoint that cannot be written raises
  ``CheckpointWriteError`` naming the path; the previous checkpoint is intact.
* **One writer per plan.** ``PlanLock`` (``radium.lock``) holds an OS-level
  lock (``filelock``) for the whole run; the kernel releases it when the holder
  dies, so a stale lock from a killed process is taken over without any cleanup
  step.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator

import msgspec

from radium.artifacts import TaskArtifacts
from radium.codec import ModelError, encode, from_data, from_json, manifest_pieces, render_pieces, to_json
from radium.errors import CheckpointWriteError, InvalidDataError
from radium.files import (
    atomic_write_text,
    fsync_directory,
    read_json,
    replace_atomically,
    write_all,
)
from radium.journal import apply_journal, journal_path_for
from radium.models import PlanManifest, PlanMetadata, PlanTask

if TYPE_CHECKING:
    from radium.lock import PlanLock

MANIFEST_RELATIVE = Path("plan") / "plan_manifest.json"


def load_manifest(path: Path, raw: bytes | None = None) -> PlanManifest:
    """Load and validate a ``plan_manifest.json`` (``raw``: its bytes, if already read).

    A valid file of ours is decoded straight into the models by msgspec (no
    dicts in between: the fast path, see ``radium.models``); anything else (a
    file with keys we do not know, a lenient form, or an error to report) is
    read again the slow way, through ``read_json`` for a precise error.
    """
    if raw is None:
        try:
            raw = path.read_bytes()
        except OSError:
            raw = None
    if raw is not None:
        with contextlib.suppress(ValueError, RecursionError):
            return from_json(raw, PlanManifest, lenient=False)
    return parse_manifest(path, read_json(path, "plan manifest"))


def parse_manifest(path: Path, data: object) -> PlanManifest:
    """Validate manifest data read from ``path`` (named in errors)."""
    try:
        return from_data(PlanManifest, data)
    except ModelError as exc:
        raise InvalidDataError(f"{path}: {exc}", hint="fix the manifest field named") from None


def load_metadata(path: Path) -> PlanMetadata:
    """Load and validate a ``plan.json``."""
    data = read_json(path, "plan metadata")
    try:
        return from_data(PlanMetadata, data)
    except ModelError as exc:
        raise InvalidDataError(f"{path}: {exc}") from None


class PlanStore:
    """The files of one plan: manifest (checkpoint), journal, ``plan.json``, task artifacts.

    ``plan_dir`` is the plan folder (``.../REQ-001-slug``); ``manifest_path`` is
    usually ``plan_dir/plan/plan_manifest.json`` but may be any manifest file a
    user pointed ``rad craft`` at.

    **Checkpoints are journaled.** Rewriting the whole manifest after every
    task would make a run quadratic in plan size (a 10,000-task plan would
    write gigabytes). Instead each task change appends one line (the task's
    whole state) to ``plan_manifest.journal`` beside the manifest; the manifest
    itself is rewritten (compacted, and the journal emptied) when the journal
    outgrows half the manifest, and at every stop. Loading replays the
    journal, so every reader sees the latest state; the manifest file alone is
    always valid and at most one compaction behind.

    Text is produced by the caller (on the thread that owns the manifest);
    the methods that write are safe to call from a worker thread and are
    serialized by a lock, so a final save on Ctrl+C waits for an in-flight one.
    """

    JOURNAL_MIN_BYTES = 16 * 1024

    def __init__(self, plan_dir: Path, manifest_path: Path | None = None) -> None:
        self.plan_dir = plan_dir
        self.manifest_path = manifest_path or plan_dir / MANIFEST_RELATIVE
        self.journal_path = journal_path_for(self.manifest_path)
        self.metadata_path = plan_dir / "plan.json"
        self.artifacts = TaskArtifacts(plan_dir)
        """The task outputs and prompt copies (names, writes, reads); the methods below forward to it."""
        self.tasks_dir = self.artifacts.tasks_dir
        self._write_lock = threading.Lock()
        self._metadata: PlanMetadata | None = None
        self._metadata_synced = float("-inf")
        self._metadata_interval = 1.0
        self._journal_bytes = 0
        self._journal_fd: int | None = None
        self._journal_outputs: dict[Path, str] = {}
        """Output path -> text carried by the journal ``load`` replayed (made durable at the next compaction)."""
        self._unsynced_outputs: list[Path] = []
        """Output files written since the last compaction, not yet fsynced (their journal lines hold them)."""
        self._manifest_bytes = 0
        self._manifest_sha256: str | None = None
        self.compact_first = True
        """False only when ``load`` found the manifest exactly as this store last wrote it (its hash is
        in ``written_hash_path``) and no journal: a run may then start with a journal line. Otherwise it
        compacts before its first task, so that a replayed journal's outputs are rewritten and durable
        before any task reads them, a stale journal goes, and a manifest written by hand or by the
        original Radium is brought to this version's layout."""
        self.written_hash_path = self.manifest_path.with_name(f".{self.manifest_path.name}.sha256")
        self.stale_journal = False
        """True when ``load`` found a journal that does not extend this manifest (and ignored it)."""
        self.saves = 0
        self.compactions = 0

    def files_signature(self) -> tuple:
        """Size and modification time of the manifest and journal: what ``load`` read, if unchanged."""
        signature = []
        for path in (self.manifest_path, self.journal_path):
            try:
                info = path.stat()
                signature.append((info.st_size, info.st_mtime_ns, info.st_ino))
            except OSError:
                signature.append(None)
        return tuple(signature)

    def load(self) -> PlanManifest:
        """The manifest with any journaled updates applied."""
        try:
            raw = self.manifest_path.read_bytes()
        except OSError:
            raw = b""  # load_manifest reports the problem
        manifest = load_manifest(self.manifest_path, raw or None)
        self._manifest_sha256 = hashlib.sha256(raw).hexdigest()
        self._manifest_bytes = len(raw)
        self._unsynced_outputs = []
        self._journal_outputs = {}
        self._close_journal()
        outputs: dict[str, str] = {}
        applied = apply_journal(manifest, self.journal_path, self._manifest_sha256, outputs)
        for task_id, text in outputs.items():
            with contextlib.suppress(InvalidDataError):  # an id that cannot name a file has no output file
                self._journal_outputs[self.output_path(task_id)] = text
        self.stale_journal = applied is None
        self.compact_first = True
        if applied == 0:
            try:
                written = self.written_hash_path.read_text(encoding="ascii").strip()
            except OSError:
                written = ""
            # A journal that replayed nothing (a header, or a first line torn by a crash) must go
            # too: lines appended after a torn one would never be read back.
            self.compact_first = written != self._manifest_sha256 or self.journal_path.exists()
        with contextlib.suppress(OSError):
            self._journal_bytes = self.journal_path.stat().st_size if self.journal_path.exists() else 0
        return manifest

    # ------------------------------------------------------------ checkpoints

    def save(self, manifest: PlanManifest) -> None:
        """Write the whole manifest durably (and ``plan.json``); empties the journal."""
        self.write_checkpoint(render_pieces(manifest_pieces(manifest, snapshot=False)), self.metadata_text(manifest, final=True))

    @staticmethod
    def journal_line(task: PlanTask, output: str | None = None) -> str:
        """One task's whole state (and, when it just completed, its output text)."""
        line = '{"task": ' + encode(task).decode("utf-8")
        if output is not None:
            line += ', "output": ' + msgspec.json.encode(output).decode("utf-8")
        return line + "}\n"

    def wants_compaction(self, extra_bytes: int) -> bool:
        """Whether appending ``extra_bytes`` would make the journal outgrow its budget."""
        return self._journal_bytes + extra_bytes > max(self.JOURNAL_MIN_BYTES, self._manifest_bytes // 2)

    def write_checkpoint(self, content: "bytes | Iterable[bytes]", metadata_text: str | None, *, durable: bool = True) -> None:
        """Replace the manifest with ``content`` (its UTF-8 text, whole or in pieces) and empty the journal."""
        digest = hashlib.sha256()
        size = 0

        def hashed(chunks: Iterable[bytes]) -> Iterator[bytes]:
            nonlocal size
            for chunk in chunks:
                digest.update(chunk)
                size += len(chunk)
                yield chunk

        with self._write_lock:
            self.artifacts.wait_for_prompt_copies()  # inside the lock: a write waiting here must not fall behind a later one
            try:
                self._sync_outputs()
            except OSError as exc:
                raise CheckpointWriteError(f"cannot sync task outputs in {self.tasks_dir}: {exc.strerror or exc}") from None
            try:
                replace_atomically(self.manifest_path, hashed([content] if isinstance(content, bytes) else content), durable)
                if durable:
                    fsync_directory(self.manifest_path.parent)
            except OSError as exc:
                raise self._write_error(self.manifest_path, exc) from None
            # The manifest now holds everything the journal held. (Should the
            # unlink be lost in a power cut, the journal names the old manifest's
            # hash and is ignored.)
            self._close_journal()
            self._journal_outputs = {}
            try:
                self.journal_path.unlink()
                if durable:
                    fsync_directory(self.journal_path.parent)
            except FileNotFoundError:
                pass
            self._journal_bytes = 0
            self._manifest_bytes = size
            self._manifest_sha256 = digest.hexdigest()
            # Which text this store wrote (not fsynced: if lost or stale, the next run compacts first).
            with contextlib.suppress(OSError):
                atomic_write_text(self.written_hash_path, self._manifest_sha256 + "\n", durable=False)
            self.saves += 1
            self.compactions += 1
            self._write_metadata(metadata_text)

    def append_journal(self, text: str, metadata_text: str | None, *, durable: bool) -> None:
        """Append task updates; ``durable`` fsyncs them before returning."""
        self.commit((), text, metadata_text, durable=durable)

    def commit(
        self, outputs: "Iterable[tuple[Path, str]]", journal: str, metadata_text: str | None, *, durable: bool
    ) -> None:
        """Store task outputs, then append the journal lines that mark those tasks completed.

        The journal lines of completed tasks carry their outputs (``journal_line``),
        so the journal's one fsync makes outputs and states durable together; the
        output files are written first (``_write_output_file``) and fsynced
        later, at the next compaction, before the journal that backs them is
        dropped. Raises ``CheckpointWriteError``.
        """
        with self._write_lock:
            for path, text in outputs:
                self._write_output_file(path, text, fsync=not journal)
                self._journal_outputs.pop(path, None)  # superseded
                if journal:
                    self._unsynced_outputs.append(path)
            if journal:
                self._append(journal, durable)
            elif outputs:
                fsync_directory(self.tasks_dir)
            self.saves += 1
            self._write_metadata(metadata_text)

    def _sync_outputs(self) -> None:
        """Make every output the journal backs durable on its own, before a compaction drops the journal.

        That is the outputs written since the last compaction, and those of the
        journal ``load`` replayed (a crashed run's): a file that lost its content
        in a power cut is rewritten from the journal here.
        """
        for path, text in self._journal_outputs.items():
            try:
                if path.read_text(encoding="utf-8", errors="replace") == text:
                    self._unsynced_outputs.append(path)  # maybe only in the page cache of a killed run
                    continue
            except OSError:
                pass
            self._write_output_file(path, text, fsync=True)
            self._unsynced_outputs.append(path)  # its rename needs the directory fsync below
        self._journal_outputs = {}
        self.artifacts.make_durable(self._unsynced_outputs)
        self._unsynced_outputs = []

    def _write_output_file(self, path: Path, text: str, fsync: bool = True) -> None:
        try:
            self.artifacts.write_output(path, text, fsync)
        except OSError as exc:
            raise CheckpointWriteError(f"cannot write {path}: {exc.strerror or exc}") from None

    def _append(self, text: str, durable: bool) -> None:
        try:
            if self._journal_fd is None:
                created = self._journal_bytes == 0 and not self.journal_path.exists()
                if created:
                    if self._manifest_sha256 is None:
                        self._manifest_sha256 = hashlib.sha256(self.manifest_path.read_bytes()).hexdigest()
                    header = {"journal": 1, "manifest_sha256": self._manifest_sha256}
                    text = json.dumps(header) + "\n" + text
                flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
                self._journal_fd = os.open(self.journal_path, flags, 0o666)
                if created and durable:
                    fsync_directory(self.journal_path.parent)
            data = text.encode("utf-8")
            write_all(self._journal_fd, data, durable)
        except OSError as exc:
            self._close_journal()
            raise self._write_error(self.journal_path, exc) from None
        self._journal_bytes += len(data)

    def _close_journal(self) -> None:
        if self._journal_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._journal_fd)
            self._journal_fd = None

    def metadata_text(self, manifest: PlanManifest, final: bool) -> str | None:
        """``plan.json``'s new text, on ``final`` saves and otherwise at most once a second.

        Computing it walks the whole plan, so it is throttled; ``None`` means
        "leave plan.json as it is".
        """
        metadata = self.load_metadata()
        now = time.monotonic()
        if metadata is None or not (final or now - self._metadata_synced >= self._metadata_interval):
            return None
        metadata.sync_with(manifest, int(time.time()))
        self._metadata_synced = time.monotonic()
        # A full scan per second is 5% of a run at 1,000,000 tasks: keep it under ~1%.
        self._metadata_interval = max(1.0, 100 * (self._metadata_synced - now))
        return to_json(metadata)

    def _write_metadata(self, text: str | None) -> None:
        if text is None:
            return
        try:
            atomic_write_text(self.metadata_path, text, durable=False)  # a summary, derivable
        except OSError as exc:
            raise self._write_error(self.metadata_path, exc) from None

    @staticmethod
    def _write_error(path: Path, exc: OSError) -> CheckpointWriteError:
        return CheckpointWriteError(
            f"cannot write checkpoint {path}: {exc.strerror or exc}",
            hint="free disk space or fix permissions, then run `rad craft --resume`",
        )

    def load_metadata(self) -> PlanMetadata | None:
        """``plan.json`` if the plan has one (a bare manifest path may not)."""
        if self._metadata is None and self.metadata_path.is_file():
            self._metadata = load_metadata(self.metadata_path)
        return self._metadata

    # ------------------------------------------------------------ artifacts

    def output_path(self, task_id: str) -> Path:
        return self.artifacts.output_path(task_id)

    def relative_output_path(self, task_id: str) -> str:
        return self.artifacts.relative_output_path(task_id)

    def write_prompt(self, task_id: str, text: str) -> None:
        self.artifacts.write_prompt(task_id, text)

    def remove_stale_temp_files(self) -> int:
        """Delete temporary files a killed run left mid-write; call only while holding the lock."""
        removed = 0
        for directory in (self.manifest_path.parent, self.plan_dir, self.tasks_dir):
            if not directory.is_dir():
                continue
            for path in directory.glob(".*.tmp"):
                with contextlib.suppress(OSError):
                    path.unlink()
                    removed += 1
        return removed

    def write_output(self, task_id: str, text: str) -> str:
        """Store a task's model output durably; returns its path relative to the plan folder.

        (The executor does not call this: it passes outputs to ``commit`` with
        their journal lines.)"""
        path = self.output_path(task_id)
        self.commit([(path, text)], "", None, durable=True)
        return self.relative_output_path(task_id)

    def read_output(self, task: PlanTask) -> str | None:
        """A completed task's stored output, or None if there is none (see ``TaskArtifacts.read_output``).

        An output journaled but not yet made durable as a file is read from the journal.
        """
        journaled = self._journal_outputs.get(self.output_path(task.id))
        if journaled is not None:
            return journaled  # the file may not have survived a power cut
        return self.artifacts.read_output(task)

    @contextlib.contextmanager
    def lock(self) -> Iterator["PlanLock"]:
        from radium.lock import PlanLock

        plan_lock = PlanLock(self.manifest_path.parent / ".craft.lock")
        plan_lock.acquire()
        try:
            yield plan_lock
        finally:
            plan_lock.release()
