"""A plan's task artifacts: ``artifacts/tasks/<id>.md`` (outputs) and ``<id>.prompt.md`` (prompt copies).

``radium.store`` decides when an output is written and when it must be
durable (its journal line carries the text; see there); this module knows
where the files are and how each is written and read:

* names come from task ids, which come from files users receive, so an id that
  could address a file outside ``tasks/`` is refused;
* a new output is created in place, an existing one replaced atomically;
* prompt copies are written by one background thread, off the task's path;
* an output is read back only if it is a regular file inside ``tasks/``, so a
  manifest cannot feed another file (or a FIFO, or a symlink) to a model.
"""

from __future__ import annotations

import contextlib
import os
import stat
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from radium.errors import InvalidDataError
from radium.files import READ_FLAGS, fsync_directory, replace_atomically, syncfs, write_all
from radium.models import PlanTask

TASK_ARTIFACTS_RELATIVE = Path("artifacts") / "tasks"
_TASKS_POSIX = TASK_ARTIFACTS_RELATIVE.as_posix()


class TaskArtifacts:
    """The ``artifacts/tasks/`` folder of one plan."""

    def __init__(self, plan_dir: Path) -> None:
        self.plan_dir = plan_dir
        self.tasks_dir = plan_dir / TASK_ARTIFACTS_RELATIVE
        self._ready = False
        self._resolved: Path | None = None
        self._prompt_writer: ThreadPoolExecutor | None = None
        self._last_prompt_write: Future[None] | None = None

    # ------------------------------------------------------------ names

    def output_path(self, task_id: str) -> Path:
        return self._artifact(f"{task_id}.md")

    def prompt_path(self, task_id: str) -> Path:
        return self._artifact(f"{task_id}.prompt.md")

    def relative_output_path(self, task_id: str) -> str:
        """``artifacts/tasks/<id>.md``: the output's path relative to the plan folder."""
        self._artifact(f"{task_id}.md")  # validates the id
        return f"{_TASKS_POSIX}/{task_id}.md"

    def _artifact(self, name: str) -> Path:
        # Task ids are validated (radium.planning.validation), but ids come from
        # files users receive; never let one address a file outside tasks/.
        if "/" in name or "\\" in name or name.startswith("."):
            raise InvalidDataError(f"task id in {name!r} cannot be used as a file name")
        return self.tasks_dir / name

    # ------------------------------------------------------------ outputs

    def ensure_dir(self) -> None:
        if not self._ready:
            if not self.tasks_dir.is_dir():
                self.tasks_dir.mkdir(parents=True, exist_ok=True)
                fsync_directory(self.tasks_dir.parent)  # artifacts/ holds the new tasks/
                fsync_directory(self.plan_dir)  # and may itself be new
            self._ready = True

    def write_output(self, path: Path, text: str, fsync: bool) -> None:
        """A new output file is created in place, an existing one replaced atomically (raises ``OSError``).

        A new file has no old content to protect, and it is torn only by a
        crash before its journal line (the task did not complete and will
        rewrite it) or by a power cut after (the next run rewrites it from the
        journal before any task reads it); in place saves a rename per task. An
        existing file (a re-run) is replaced by temp file + rename, keeping its
        permissions, so a completed task's output is never torn.
        """
        data = text.encode("utf-8")
        self.ensure_dir()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
        except FileExistsError:
            replace_atomically(path, data, fsync)
            return
        try:
            try:
                write_all(fd, data, fsync)
            finally:
                os.close(fd)
        except BaseException:
            with contextlib.suppress(OSError):
                path.unlink()
            raise

    def make_durable(self, paths: list[Path]) -> None:
        """fsync these outputs and the folder (one ``syncfs`` when there are many); raises ``OSError``."""
        if not paths:
            return
        if len(paths) > 8 and syncfs(self.tasks_dir):
            return  # one flush of the file system: cheaper than an fsync per file
        for path in paths:
            try:
                fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            except FileNotFoundError:
                continue  # replaced since (a re-run); its newer write is in the list too
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_directory(self.tasks_dir)

    def read_output(self, task: PlanTask) -> str | None:
        """A task's output file, or None unless it is a regular file inside ``tasks/``."""
        path = self.plan_dir / task.output_path if task.output_path else self.output_path(task.id)
        try:
            if self._resolved is None:
                self._resolved = self.tasks_dir.resolve()
            if path.parent == self.tasks_dir:
                # The usual case, checked without resolving every component per read:
                # the directory was resolved once, and O_NOFOLLOW refuses a symlinked file.
                fd = os.open(path, READ_FLAGS | os.O_NOFOLLOW)
            elif path.resolve().is_relative_to(self._resolved):
                fd = os.open(path, READ_FLAGS)
            else:
                return None
            with open(fd, "rb") as file:
                if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
                    return None
                # An output edited into another encoding must not stop the run.
                return file.read().decode("utf-8", errors="replace")
        except (OSError, ValueError):
            return None

    # ------------------------------------------------------------ prompt copies

    def write_prompt(self, task_id: str, text: str) -> None:
        """Store the exact prompt a task sent, beside its output, for debugging; returns at once.

        The copy is written by one background thread, in submission order, and
        every compaction (so every stop) waits for the writes before it. Creating
        a file costs 0.2-0.5 ms on this project's disk, as much as the rest of a
        task's overhead, and nothing in the run reads the copy back: off the
        critical path it overlaps the model call (or the next task). Written in
        place (no temp file, no fsync): a copy torn by a crash belongs to a task
        that did not complete, and its next attempt rewrites it. A copy that
        cannot be written is skipped (the task's own result does not depend on it).
        """
        path = self.prompt_path(task_id)
        if self._prompt_writer is None:
            self._prompt_writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="radium-prompt-copies")
        self._last_prompt_write = self._prompt_writer.submit(self._write_prompt_file, path, text)

    def _write_prompt_file(self, path: Path, text: str) -> None:
        try:
            self.ensure_dir()
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), 0o666)
            try:
                write_all(fd, text.encode("utf-8"), fsync=False)
            finally:
                os.close(fd)
        except OSError:
            pass  # a debugging copy; the task's own checkpoint is what matters

    def wait_for_prompt_copies(self) -> None:
        """Block until every prompt copy submitted so far is on disk (or was skipped)."""
        last, self._last_prompt_write = self._last_prompt_write, None
        if last is not None:
            last.result()
