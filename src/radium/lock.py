"""The "one run per plan" lock and the note naming its holder."""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Iterable

from radium.errors import CheckpointWriteError, PlanLockedError
from radium.files import atomic_write_text


class PlanLock:
    """Exclusive "one run per plan" lock, naming its holder.

    The lock itself is a ``filelock.FileLock`` (``flock``), which the kernel
    drops when the holding process dies: a stale lock is simply acquirable. The
    holder's pid, host, start time and running tasks are written to a side file
    (``<lock>.json``, atomically, not fsynced: it is only informative) so a
    refused second run and ``rad status`` can say who holds the plan and what
    it is doing.
    """

    def __init__(self, path: Path) -> None:
        from filelock import FileLock

        self.path = path
        self.info_path = path.with_name(path.name + ".json")
        self._lock = FileLock(str(path), timeout=0)
        self._info: dict[str, object] = {}

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
        self._info = {"pid": os.getpid(), "started_at": int(time.time()), "host": os.uname().nodename, "current_tasks": []}
        self._write_info()

    def note_running(self, task_ids: Iterable[str]) -> None:
        """Record the tasks running now (for ``rad status``); cheap, best effort."""
        self._info["current_tasks"] = list(task_ids)
        self._write_info()

    def _write_info(self) -> None:
        with contextlib.suppress(OSError):
            atomic_write_text(self.info_path, json.dumps(self._info), durable=False)

    @staticmethod
    def live_holder(info_path: Path) -> dict | None:
        """The holder's details if its side file names a live process on this host, else None.

        A run killed with ``kill -9`` leaves its side file behind; its pid is
        then dead, and the plan is not running.
        """
        try:
            info = json.loads(info_path.read_text(encoding="utf-8"))
            pid = int(info["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if info.get("host") not in (None, os.uname().nodename) or pid == os.getpid():
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass  # alive, owned by someone else
        except OSError:
            return None
        return info

    @staticmethod
    def describe(info: dict) -> str:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.get("started_at", 0)))
        return f"pid {info['pid']} on {info.get('host', '?')}, started {started}"

    def _describe_holder(self) -> str:
        info = self.live_holder(self.info_path)
        if info is None:
            # The holder takes the lock, then writes its details: we looked in between
            # (or saw the note of a run that has since died).
            return "a process that has just started and not yet written its details"
        return self.describe(info)

    def release(self) -> None:
        with contextlib.suppress(OSError):
            self.info_path.unlink()
        self._lock.release()
