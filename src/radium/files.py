"""Durable file primitives and JSON file reading, shared by everything that writes or reads files.

* ``atomic_write_text`` / ``replace_atomically``: a temporary file in the
  target's directory, written, optionally fsynced, renamed over the target
  (whose permissions it keeps); ``fsync_directory`` then makes the rename
  durable. After a crash at any instant the target is the old or the new
  version, never a mix.
* ``write_all``: every byte of one or more chunks to a descriptor (``os.write``
  may write less than asked), then an fsync if asked.
* ``syncfs``: one ``syncfs(2)`` of a file system, cheaper than an fsync per file
  when many files must become durable at once.
* ``read_json``: a JSON file, or one ``InvalidDataError`` line naming it (missing,
  unreadable, not UTF-8, not JSON with line and column, nested too deeply).

``radium.store`` decides what is written when; this module only knows how.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from radium.errors import InvalidDataError

if TYPE_CHECKING:
    from pydantic import ValidationError

def atomic_write_text(path: Path, text: str, *, durable: bool = True) -> None:
    """Replace ``path`` with ``text`` atomically (raises ``OSError``).

    The replacement is always atomic: readers and crashes see the old or the
    new file. ``durable`` adds the fsyncs (file, then directory) that make it
    survive a power cut too; it is skipped for files whose loss only costs a
    re-run (an ``in_progress`` mark, a prompt copy, ``plan.json``'s summary),
    because each fsync costs milliseconds on every task.
    """
    directory = path.parent
    replace_atomically(path, text.encode("utf-8"), durable)
    if durable:
        fsync_directory(directory)


def replace_atomically(path: Path, data: "bytes | Iterable[bytes]", fsync: bool) -> None:
    """Temp file beside ``path`` (fsynced if asked), renamed over it; the directory is not fsynced.

    ``data`` may come in pieces (a compaction streams the manifest). The new
    file keeps the old one's permissions.
    """
    # One name per process and thread: no two writers share a temp file, and
    # no random-name retry loop (mkstemp) on the hot path. ``.*.tmp`` names
    # are what ``remove_stale_temp_files`` cleans up after a kill.
    tmp_name = f"{path.parent}/.{path.name}.{os.getpid()}-{threading.get_ident()}.tmp"
    mode = None
    with contextlib.suppress(OSError):
        mode = path.stat().st_mode & 0o777
    fd = os.open(tmp_name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), 0o666)
    try:
        try:
            if mode is not None:
                os.fchmod(fd, mode)  # O_CREAT's mode is filtered by the umask; an existing file's is not
            write_all(fd, data, fsync)
        finally:
            os.close(fd)
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise


READ_FLAGS = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
"""``O_NONBLOCK``: a FIFO planted as an output must not hang the run (no effect on regular files)."""


def write_all(fd: int, data: "bytes | Iterable[bytes]", fsync: bool) -> None:
    """Write every byte (``os.write`` may write less than asked), then fsync if asked."""
    for chunk in [data] if isinstance(data, bytes) else data:
        view = memoryview(chunk)
        while view:
            view = view[os.write(fd, view):]
    if fsync:
        os.fsync(fd)


_LIBC_SYNCFS: list = []


def syncfs(directory: Path) -> bool:
    """``syncfs(2)`` on ``directory``'s file system (every file's data and metadata); False where unavailable."""
    if not _LIBC_SYNCFS:
        function = None
        try:
            import ctypes
            import ctypes.util

            function = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True).syncfs
        except (OSError, AttributeError, ImportError):
            pass
        _LIBC_SYNCFS.append(function)
    function = _LIBC_SYNCFS[0]
    if function is None:
        return False
    fd = os.open(directory, os.O_RDONLY)
    try:
        return function(fd) == 0
    finally:
        os.close(fd)


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
