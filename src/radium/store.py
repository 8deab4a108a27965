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
* **One writer per plan.** ``PlanLock`` holds an OS-level lock (``filelock``)
  for the whole run; the kernel releases it when the holder dies, so a stale
  lock from a killed process is taken over without any cleanup step.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator

from pydantic import ValidationError

from radium.errors import CheckpointWriteError, InvalidDataError, PlanLockedError
from radium.models import PlanManifest, PlanMetadata, PlanTask

MANIFEST_RELATIVE = Path("plan") / "plan_manifest.json"
TASK_ARTIFACTS_RELATIVE = Path("artifacts") / "tasks"


def atomic_write_text(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` atomically and durably (raises ``OSError``)."""
    directory = path.parent
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
    _fsync_directory(directory)


def _fsync_directory(directory: Path) -> None:
    # The rename is durable only once the directory entry is on disk.
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


def format_validation_error(path: Path, error: ValidationError) -> str:
    """``<file>: iterations[0].tasks[2].title: Field required`` (first problem, plus a count)."""
    problems = error.errors()
    first = problems[0]
    location = ""
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
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidDataError(
            f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})",
            hint=f"fix or restore the {what}",
        ) from None


def load_manifest(path: Path) -> PlanManifest:
    """Load and validate a ``plan_manifest.json``."""
    data = read_json(path, "plan manifest")
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


class PlanStore:
    """The files of one plan: manifest (checkpoint), ``plan.json``, task artifacts.

    ``plan_dir`` is the plan folder (``.../REQ-001-slug``); ``manifest_path`` is
    usually ``plan_dir/plan/plan_manifest.json`` but may be any manifest file a
    user pointed ``rad craft`` at. Saving is thread-safe: concurrent saves are
    serialized, so a final save on Ctrl+C waits for an in-flight one instead of
    racing it.
    """

    def __init__(self, plan_dir: Path, manifest_path: Path | None = None) -> None:
        self.plan_dir = plan_dir
        self.manifest_path = manifest_path or plan_dir / MANIFEST_RELATIVE
        self.metadata_path = plan_dir / "plan.json"
        self.tasks_dir = plan_dir / TASK_ARTIFACTS_RELATIVE
        self._write_lock = threading.Lock()
        self._metadata: PlanMetadata | None = None
        self.saves = 0

    def load(self) -> PlanManifest:
        return load_manifest(self.manifest_path)

    def load_metadata(self) -> PlanMetadata | None:
        """``plan.json`` if the plan has one (a bare manifest path may not)."""
        if self._metadata is None and self.metadata_path.is_file():
            self._metadata = load_metadata(self.metadata_path)
        return self._metadata

    def save(self, manifest: PlanManifest, text: str | None = None) -> None:
        """Checkpoint ``manifest`` (pass ``text`` if it was serialized already).

        Also brings ``plan.json``'s status and counts in step. Raises
        ``CheckpointWriteError`` if the manifest cannot be written.
        """
        if text is None:
            text = manifest.to_json()
        with self._write_lock:
            try:
                atomic_write_text(self.manifest_path, text)
            except OSError as exc:
                raise CheckpointWriteError(
                    f"cannot write checkpoint {self.manifest_path}: {exc.strerror or exc}",
                    hint="free disk space or fix permissions, then run `rad craft --resume`",
                ) from None
            self.saves += 1
            metadata = self.load_metadata()
            if metadata is not None:
                metadata.sync_with(manifest, int(time.time()))
                try:
                    atomic_write_text(self.metadata_path, metadata.to_json())
                except OSError as exc:
                    raise CheckpointWriteError(
                        f"cannot write {self.metadata_path}: {exc.strerror or exc}"
                    ) from None

    # ------------------------------------------------------------ artifacts

    def output_path(self, task_id: str) -> Path:
        return self.tasks_dir / f"{task_id}.md"

    def prompt_path(self, task_id: str) -> Path:
        return self.tasks_dir / f"{task_id}.prompt.md"

    def write_output(self, task_id: str, text: str) -> str:
        """Store a task's model output; returns its path relative to the plan folder."""
        path = self.output_path(task_id)
        self._write_artifact(path, text)
        return path.relative_to(self.plan_dir).as_posix()

    def write_prompt(self, task_id: str, text: str) -> None:
        """Store the exact prompt a task sent, beside its output, for debugging."""
        self._write_artifact(self.prompt_path(task_id), text)

    def _write_artifact(self, path: Path, text: str) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(path, text)
        except OSError as exc:
            raise CheckpointWriteError(f"cannot write {path}: {exc.strerror or exc}") from None

    def read_output(self, task: PlanTask) -> str | None:
        """A completed task's stored output, or None if there is none."""
        path = self.plan_dir / task.output_path if task.output_path else self.output_path(task.id)
        try:
            return path.read_text(encoding="utf-8")
        except OSError:
            return None

    @contextlib.contextmanager
    def lock(self) -> Iterator["PlanLock"]:
        plan_lock = PlanLock(self.manifest_path.parent / ".craft.lock")
        plan_lock.acquire()
        try:
            yield plan_lock
        finally:
            plan_lock.release()


class PlanLock:
    """Exclusive "one run per plan" lock, naming its holder.

    The lock itself is a ``filelock.FileLock`` (``flock``), which the kernel
    drops when the holding process dies: a stale lock is simply acquirable. The
    holder's pid and start time are written to a side file (``<lock>.json``) so
    a refused second run can say who holds the plan.
    """

    def __init__(self, path: Path) -> None:
        from filelock import FileLock

        self.path = path
        self.info_path = path.with_name(path.name + ".json")
        self._lock = FileLock(str(path), timeout=0)

    def acquire(self) -> None:
        from filelock import Timeout

        try:
            self._lock.acquire()
        except Timeout:
            raise PlanLockedError(
                f"plan is being executed by another rad craft ({self._describe_holder()})",
                hint=f"wait for it to finish or stop it; lock file {self.path}",
            ) from None
        except OSError as exc:
            raise CheckpointWriteError(f"cannot create lock file {self.path}: {exc.strerror}") from None
        info = {"pid": os.getpid(), "started_at": int(time.time()), "host": os.uname().nodename}
        with contextlib.suppress(OSError):
            atomic_write_text(self.info_path, json.dumps(info))

    def _describe_holder(self) -> str:
        try:
            info = json.loads(self.info_path.read_text(encoding="utf-8"))
            started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info["started_at"]))
            return f"pid {info['pid']} on {info.get('host', '?')}, started {started}"
        except (OSError, ValueError, KeyError, TypeError):
            return "holder unknown"

    def release(self) -> None:
        with contextlib.suppress(OSError):
            self.info_path.unlink()
        self._lock.release()
