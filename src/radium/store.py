"""Persistence: every byte Radium writes to disk goes through this module.

Guarantees:

* **Atomic replacement.** ``atomic_write_text`` writes a temporary file in the
  target's directory, flushes and fsyncs it, renames it over the target and
  fsyncs the directory. After a crash at any instant the target is either the
  old or the new version, never a mix, and never truncated.
* **Outputs before state.** A task's output file is written (atomically) before
  the checkpoint that marks the task completed, so a completed task never lacks
  its output.
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
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator

from pydantic import ValidationError

from radium.errors import CheckpointWriteError, InvalidDataError
from radium.models import Iteration, PlanManifest, PlanMetadata, PlanTask

if TYPE_CHECKING:
    from radium.lock import PlanLock

MANIFEST_RELATIVE = Path("plan") / "plan_manifest.json"
TASK_ARTIFACTS_RELATIVE = Path("artifacts") / "tasks"


# Files are created 0600 by mkstemp; give them the mode a plain open() would
# (read once here, at import, while the process is single-threaded).
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def atomic_write_text(path: Path, text: str, *, durable: bool = True) -> None:
    """Replace ``path`` with ``text`` atomically (raises ``OSError``).

    The replacement is always atomic: readers and crashes see the old or the
    new file. ``durable`` adds the fsyncs (file, then directory) that make it
    survive a power cut too; it is skipped for files whose loss only costs a
    re-run (an ``in_progress`` mark, a prompt copy, ``plan.json``'s summary),
    because each fsync costs milliseconds on every task.
    """
    directory = path.parent
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        try:
            mode = path.stat().st_mode & 0o777  # keep the existing file's permissions
        except OSError:
            mode = 0o666 & ~_UMASK
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
    if durable:
        fsync_directory(directory)


def fsync_directory(directory: Path) -> None:
    """Make renames and creations in ``directory`` durable (best effort where unsupported)."""
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def format_validation_error(path: Path, error: ValidationError, prefix: str = "") -> str:
    """``<file>: iterations[0].tasks[2].title: Field required`` (first problem, plus a count).

    ``prefix`` names the table the data came from (``agent`` for an agent file's ``[agent]``).
    """
    problems = error.errors()
    first = problems[0]
    location = prefix
    for part in first["loc"]:
        location += f"[{part}]" if isinstance(part, int) else (f".{part}" if location else str(part))
    more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
    return f"{path}: {location or 'top level'}: {first['msg']}{more}"


def read_json(path: Path, what: str) -> object:
    """Parse a JSON file; a missing or malformed file is an ``InvalidDataError`` naming it."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidDataError(f"{what} not found: {path}") from None
    except OSError as exc:
        raise InvalidDataError(f"cannot read {what} {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise InvalidDataError(
            f"{path}: not UTF-8 text (byte {exc.start})", hint=f"save the {what} as UTF-8 or restore it"
        ) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidDataError(
            f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})",
            hint=f"fix or restore the {what}",
        ) from None
    except RecursionError:
        data = None
    if data is None or _deeper_than(data, MAX_JSON_DEPTH):
        # Deeper data could not be written back (serializers have depth limits): refuse it now.
        raise InvalidDataError(
            f"{path}: JSON nested too deeply to be a {what} (more than {MAX_JSON_DEPTH} levels)",
            hint=f"fix or restore the {what}",
        )
    return data


MAX_JSON_DEPTH = 64
"""A manifest is about six levels deep; unknown keys may add some, not hundreds."""


def _deeper_than(data: object, limit: int) -> bool:
    """Whether JSON data nests containers more than ``limit`` levels (iterative, no recursion)."""
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(value, dict):
            stack.extend((child, depth + 1) for child in value.values() if isinstance(child, (dict, list)))
        elif isinstance(value, list):
            stack.extend((child, depth + 1) for child in value if isinstance(child, (dict, list)))
    return False


def load_manifest(path: Path) -> PlanManifest:
    """Load and validate a ``plan_manifest.json``."""
    return parse_manifest(path, read_json(path, "plan manifest"))


def parse_manifest(path: Path, data: object) -> PlanManifest:
    """Validate manifest data read from ``path`` (named in errors)."""
    try:
        return PlanManifest.model_validate(data)
    except ValidationError as exc:
        raise InvalidDataError(
            format_validation_error(path, exc), hint="fix the manifest field named"
        ) from None


def load_metadata(path: Path) -> PlanMetadata:
    """Load and validate a ``plan.json``."""
    data = read_json(path, "plan metadata")
    try:
        return PlanMetadata.model_validate(data)
    except ValidationError as exc:
        raise InvalidDataError(format_validation_error(path, exc)) from None


class ManifestSerializer:
    """Renders a manifest's file text, re-serializing only the iterations that changed.

    Each iteration's JSON is cached (already indented for its place in the
    file) until it is reported changed, so compacting a 10,000-task manifest
    does not re-serialize 10,000 tasks. The text is identical to
    ``PlanManifest.to_json()``.
    """

    def __init__(self) -> None:
        self._cache: dict[int, str] = {}

    def render(self, manifest: PlanManifest, changed: "Iterable[Iteration] | None" = None) -> str:
        """The file text; ``changed=None`` means everything may have changed."""
        if changed is None:
            self._cache.clear()
        else:
            for iteration in changed:
                self._cache.pop(id(iteration), None)
        parts = []
        for iteration in manifest.iterations:
            text = self._cache.get(id(iteration))
            if text is None:
                text = "    " + iteration.model_dump_json(indent=2).replace("\n", "\n    ")
                self._cache[id(iteration)] = text
            parts.append(text)
        top = manifest.model_dump(mode="json", exclude={"iterations"})
        lines = []
        for key, value in top.items():
            rendered = json.dumps(value, indent=2, ensure_ascii=False).replace("\n", "\n  ")
            lines.append(f"  {json.dumps(key, ensure_ascii=False)}: {rendered}")
            if key == "project_name":
                body = "[\n" + ",\n".join(parts) + "\n  ]" if parts else "[]"
                lines.append(f'  "iterations": {body}')
        return "{\n" + ",\n".join(lines) + "\n}"


def journal_path_for(manifest_path: Path) -> Path:
    return manifest_path.with_name(manifest_path.stem + ".journal")


def apply_journal(manifest: PlanManifest, path: Path, manifest_sha256: str) -> int | None:
    """Replay task updates journaled after the manifest was last written; return how many.

    The journal's first line names (by SHA-256) the manifest text it extends.
    If the manifest on disk is not that text (it was edited by hand, or a
    crash left an old journal beside a newer manifest) the journal is stale:
    nothing is replayed and ``None`` is returned. Each later line holds one
    task's whole state, so replaying is idempotent. A line that does not parse
    can only be the last, torn by a crash mid-append: it and anything after it
    are ignored (that update was never acknowledged).
    """
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return 0
    except OSError as exc:
        raise InvalidDataError(f"cannot read checkpoint journal {path}: {exc.strerror}") from None
    lines = text.splitlines()
    try:
        header = json.loads(lines[0]) if lines else {}
    except (ValueError, RecursionError):
        header = {}
    positions = {
        task.id: (iteration, position)
        for iteration in manifest.iterations
        for position, task in enumerate(iteration.tasks)
    }
    if not isinstance(header, dict) or header.get("manifest_sha256") != manifest_sha256:
        # A kill between compaction's rename and the journal's removal leaves the old
        # journal beside the new manifest that already holds every line of it: not stale.
        return 0 if _journal_contained(lines[1:], positions) else None
    touched: dict[int, Iteration] = {}
    applied = 0
    for line in lines[1:]:
        try:
            task = PlanTask.model_validate(json.loads(line)["task"])
        except (ValueError, KeyError, TypeError, ValidationError, RecursionError):
            break
        found = positions.get(task.id)
        if found is None:
            continue
        iteration, position = found
        iteration.tasks[position] = task
        touched[id(iteration)] = iteration
        applied += 1
    for iteration in touched.values():
        iteration.refresh_status()
    return applied


def _journal_contained(lines: list[str], positions: dict[str, tuple[Iteration, int]]) -> bool:
    """Whether each task's last complete journal line equals its state in the manifest."""
    last: dict[str, dict] = {}
    for line in lines:
        try:
            entry = json.loads(line)["task"]
            last[entry["id"]] = entry
        except (ValueError, KeyError, TypeError, RecursionError):
            continue  # a line torn by a crash was never acknowledged
    for task_id, entry in last.items():
        place = positions.get(task_id)
        if place is None or place[0].tasks[place[1]].model_dump(mode="json") != entry:
            return False
    return bool(last)


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
        self.tasks_dir = plan_dir / TASK_ARTIFACTS_RELATIVE
        self._write_lock = threading.Lock()
        self._metadata: PlanMetadata | None = None
        self._metadata_synced = float("-inf")
        self._tasks_dir_ready = False
        self._journal_bytes = 0
        self._manifest_bytes = 0
        self._manifest_sha256: str | None = None
        self.stale_journal = False
        """True when ``load`` found a journal that does not extend this manifest (and ignored it)."""
        self.saves = 0
        self.compactions = 0

    def load(self) -> PlanManifest:
        """The manifest with any journaled updates applied."""
        try:
            raw = self.manifest_path.read_bytes()
        except OSError:
            raw = b""  # load_manifest reports the problem
        manifest = load_manifest(self.manifest_path)
        self._manifest_sha256 = hashlib.sha256(raw).hexdigest()
        self._manifest_bytes = len(raw)
        self.stale_journal = apply_journal(manifest, self.journal_path, self._manifest_sha256) is None
        with contextlib.suppress(OSError):
            self._journal_bytes = self.journal_path.stat().st_size if self.journal_path.exists() else 0
        return manifest

    # ------------------------------------------------------------ checkpoints

    def save(self, manifest: PlanManifest) -> None:
        """Write the whole manifest durably (and ``plan.json``); empties the journal."""
        self.write_checkpoint(manifest.to_json(), self.metadata_text(manifest, final=True))

    @staticmethod
    def journal_line(task: PlanTask) -> str:
        return json.dumps({"task": task.model_dump(mode="json")}, ensure_ascii=False) + "\n"

    def wants_compaction(self, extra_bytes: int) -> bool:
        """Whether appending ``extra_bytes`` would make the journal outgrow its budget."""
        return self._journal_bytes + extra_bytes > max(self.JOURNAL_MIN_BYTES, self._manifest_bytes // 2)

    def write_checkpoint(self, manifest_text: str, metadata_text: str | None, *, durable: bool = True) -> None:
        """Replace the manifest with ``manifest_text`` and empty the journal."""
        with self._write_lock:
            try:
                atomic_write_text(self.manifest_path, manifest_text, durable=durable)
            except OSError as exc:
                raise self._write_error(self.manifest_path, exc) from None
            # The manifest now holds everything the journal held. (Should the
            # unlink be lost in a power cut, the journal names the old manifest's
            # hash and is ignored.)
            try:
                self.journal_path.unlink()
                if durable:
                    fsync_directory(self.journal_path.parent)
            except FileNotFoundError:
                pass
            self._journal_bytes = 0
            encoded = manifest_text.encode("utf-8")
            self._manifest_bytes = len(encoded)
            self._manifest_sha256 = hashlib.sha256(encoded).hexdigest()
            self.saves += 1
            self.compactions += 1
            self._write_metadata(metadata_text)

    def append_journal(self, text: str, metadata_text: str | None, *, durable: bool) -> None:
        """Append task updates; ``durable`` fsyncs them before returning."""
        with self._write_lock:
            try:
                created = not self.journal_path.exists()
                if created:
                    if self._manifest_sha256 is None:
                        self._manifest_sha256 = hashlib.sha256(self.manifest_path.read_bytes()).hexdigest()
                    header = {"journal": 1, "manifest_sha256": self._manifest_sha256}
                    text = json.dumps(header) + "\n" + text
                with open(self.journal_path, "a", encoding="utf-8", newline="") as handle:
                    handle.write(text)
                    handle.flush()
                    if durable:
                        os.fsync(handle.fileno())
                if created and durable:
                    fsync_directory(self.journal_path.parent)
            except OSError as exc:
                raise self._write_error(self.journal_path, exc) from None
            self._journal_bytes += len(text)
            self.saves += 1
            self._write_metadata(metadata_text)

    def metadata_text(self, manifest: PlanManifest, final: bool) -> str | None:
        """``plan.json``'s new text, on ``final`` saves and otherwise at most once a second.

        Computing it walks the whole plan, so it is throttled; ``None`` means
        "leave plan.json as it is".
        """
        metadata = self.load_metadata()
        now = time.monotonic()
        if metadata is None or not (final or now - self._metadata_synced >= 1.0):
            return None
        self._metadata_synced = now
        metadata.sync_with(manifest, int(time.time()))
        return metadata.to_json()

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
        return self._artifact(f"{task_id}.md")

    def prompt_path(self, task_id: str) -> Path:
        return self._artifact(f"{task_id}.prompt.md")

    def _artifact(self, name: str) -> Path:
        # Task ids are validated (radium.planning.validation), but ids come from
        # files users receive; never let one address a file outside tasks/.
        if "/" in name or "\\" in name or name.startswith("."):
            raise InvalidDataError(f"task id in {name!r} cannot be used as a file name")
        return self.tasks_dir / name

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
        """Store a task's model output; returns its path relative to the plan folder."""
        path = self.output_path(task_id)
        self._write_artifact(path, text)
        return path.relative_to(self.plan_dir).as_posix()

    def write_prompt(self, task_id: str, text: str) -> None:
        """Store the exact prompt a task sent, beside its output, for debugging (not fsynced)."""
        self._write_artifact(self.prompt_path(task_id), text, durable=False)

    def _write_artifact(self, path: Path, text: str, durable: bool = True) -> None:
        try:
            if not self._tasks_dir_ready:
                path.parent.mkdir(parents=True, exist_ok=True)
                self._tasks_dir_ready = True
            atomic_write_text(path, text, durable=durable)
        except OSError as exc:
            raise CheckpointWriteError(f"cannot write {path}: {exc.strerror or exc}") from None

    def read_output(self, task: PlanTask) -> str | None:
        """A completed task's stored output, or None if there is none.

        Only a regular file inside this plan's ``artifacts/tasks/`` is read
        (validation refuses other ``output_path`` values; this is the guard
        behind it), so a manifest cannot feed another file to a model.
        """
        path = self.plan_dir / task.output_path if task.output_path else self.output_path(task.id)
        try:
            if not path.resolve().is_relative_to(self.tasks_dir.resolve()) or not path.is_file():
                return None
            # An output edited into another encoding must not stop the run.
            return path.read_text(encoding="utf-8", errors="replace")
        except (OSError, ValueError):
            return None

    @contextlib.contextmanager
    def lock(self) -> Iterator["PlanLock"]:
        from radium.lock import PlanLock

        plan_lock = PlanLock(self.manifest_path.parent / ".craft.lock")
        plan_lock.acquire()
        try:
            yield plan_lock
        finally:
            plan_lock.release()
