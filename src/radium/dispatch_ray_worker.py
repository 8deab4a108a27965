"""The worker side of the Ray backend: what runs inside a Ray worker for one attempt.

``run_attempt`` is the Ray task (``radium.dispatch_ray`` submits it as
``radium:<task id>``). It builds the engine from the call's settings (cached
per worker process, so SDK clients are reused), checks it on this node (key,
program, SDK), runs ``engine.generate`` on the worker's event loop and returns
the answer or the ``radium.errors`` error as a value. Nothing here imports Ray.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import subprocess
import sys
import threading
from typing import TYPE_CHECKING, Any

from radium import errors
from radium.dispatch import AttemptCall
from radium.engines.base import GenerationParams

if TYPE_CHECKING:
    from radium.engines.base import Engine

_ENGINES: dict[Any, "Engine"] = {}
"""Engines of this worker process, by settings, so SDK clients are reused across attempts."""
_LOOP: asyncio.AbstractEventLoop | None = None
_LOOP_LOCK = threading.Lock()


def _worker_loop() -> asyncio.AbstractEventLoop:
    """One event loop per worker process, in a thread, kept for the engines' clients."""
    global _LOOP
    with _LOOP_LOCK:
        if _LOOP is None:
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="radium-engines", daemon=True).start()
            _LOOP = loop
        return _LOOP


def run_attempt(call: AttemptCall, earlier_attempts: int = 0) -> Any:
    """The Ray task: run one attempt here and return the answer or the ``radium.errors`` error.

    ``ray.cancel(force=False)`` arrives as KeyboardInterrupt in this (main)
    thread: the engine call is cancelled and given time to clean up.
    ``earlier_attempts`` lets the mock engine's failure scripts go on where the
    driver's count is, whichever worker ran the earlier attempts.
    """
    future = asyncio.run_coroutine_threadsafe(_generate(call, earlier_attempts), _worker_loop())
    try:
        while True:
            try:
                return future.result(timeout=0.25)  # returns at once when done; the timeout lets a cancel in
            except concurrent.futures.TimeoutError:
                continue
    except BaseException:
        future.cancel()
        with contextlib.suppress(BaseException):
            concurrent.futures.wait([future], timeout=10)
        raise


async def _generate(call: AttemptCall, earlier_attempts: int) -> Any:
    from radium.engines import create_engine

    try:
        engine = _ENGINES.get(call.settings)
        if engine is None:
            engine = create_engine(call.settings)
            engine.preflight()  # this node must have the key, the program, the SDK
            _ENGINES[call.settings] = engine
        if engine.name == "command":
            _watch_command_groups()
        elif engine.name == "mock":
            engine.resume_script(call.prompt, earlier_attempts)  # type: ignore[attr-defined]
        return await engine.generate(call.prompt, GenerationParams(timeout_s=call.timeout_s))
    except errors.RadiumError as exc:
        exc.__context__ = exc.__cause__ = None
        exc.__traceback__ = None
        return exc
    except Exception as exc:  # an engine bug: retryable, and say what it was
        return errors.ModelExecutionError(f"{call.settings.engine}: unexpected {type(exc).__name__}: {exc}")


def _watch_command_groups() -> None:
    from radium.engines.command import CommandEngine

    if CommandEngine.group_watch is None:
        CommandEngine.group_watch = _GroupReaper()


_REAPER = r"""
import os, signal, sys, time
if os.fork():  # Ray kills a dying worker's direct children: the reaper must be a grandchild
    os._exit(0)
os.setsid()
groups = set()
for line in sys.stdin:
    sign, pgid = line[:1], line[1:].strip()
    if pgid.isdigit():
        (groups.add if sign == "+" else groups.discard)(int(pgid))
def alive(g):
    try:
        os.killpg(g, 0)
        return True
    except OSError:
        return False
for g in groups:
    try:
        os.killpg(g, signal.SIGTERM)
    except OSError:
        pass
deadline = time.monotonic() + 2.0
while any(alive(g) for g in groups) and time.monotonic() < deadline:
    time.sleep(0.05)
for g in groups:
    try:
        os.killpg(g, signal.SIGKILL)
    except OSError:
        pass
"""


class _GroupReaper:
    """A helper process that outlives this worker to kill the command agents' process groups.

    A worker ended by ``ray.cancel(force=True)``, a crash or ``kill -9`` runs no
    cleanup, and a command agent runs in a session of its own, so nothing else
    would stop it. The helper holds the read end of a pipe whose write end only
    this worker has: when the worker dies the pipe closes, and the helper sends
    SIGTERM, then SIGKILL 2 s later, to every group still registered. It is not
    this worker's child (Ray kills those with the worker), but its grandchild.
    """

    def __init__(self) -> None:
        read_end, self._write_end = os.pipe()  # not inherited by the agents (O_CLOEXEC)
        try:
            subprocess.run(
                [sys.executable, "-S", "-c", _REAPER],
                stdin=read_end,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                check=False,
            )
        finally:
            os.close(read_end)
        self._lock = threading.Lock()

    def _send(self, line: str) -> None:
        with self._lock, contextlib.suppress(OSError):
            os.write(self._write_end, line.encode())

    def add(self, pgid: int) -> None:
        self._send(f"+{pgid}\n")

    def discard(self, pgid: int) -> None:
        self._send(f"-{pgid}\n")

