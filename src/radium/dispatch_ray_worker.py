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
import uuid
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
            _watch_command_groups()  # before the agent is spawned
        elif engine.name == "mock":
            engine.resume_script(call.prompt, earlier_attempts)  # type: ignore[attr-defined]
        return await engine.generate(call.prompt, GenerationParams(timeout_s=call.timeout_s))
    except errors.RadiumError as exc:
        exc.__context__ = exc.__cause__ = None
        exc.__traceback__ = None
        return exc
    except Exception as exc:  # an engine bug: retryable, and say what it was
        return errors.ModelExecutionError(f"{call.settings.engine}: unexpected {type(exc).__name__}: {exc}")


MARK_VARIABLE = "RADIUM_RAY_WORKER"
_reaper_pipe: int | None = None


def _watch_command_groups() -> None:
    """Make sure no command agent outlives this worker (once per worker process).

    A worker ended by ``ray.cancel(force=True)``, a crash or ``kill -9`` runs no
    cleanup, and a command agent runs in a session of its own, so nothing else
    would stop it or the helpers it started. Every process this worker starts
    from now on inherits ``RADIUM_RAY_WORKER=<pid>-<random>`` in its
    environment. A reaper process holds the read end of a pipe whose write end
    only this worker has: when the worker dies, however it dies, the pipe
    closes, and the reaper sends SIGTERM, then SIGKILL 2 s later, to every
    process that carries the mark. Marking at spawn leaves no gap: an agent is
    covered from its first instruction, and so is anything it starts (Linux:
    the reaper reads ``/proc/<pid>/environ``).
    """
    global _reaper_pipe
    if _reaper_pipe is not None or not os.path.isdir("/proc"):
        return
    mark = f"{os.getpid()}-{uuid.uuid4().hex}"
    os.environ[MARK_VARIABLE] = mark
    read_end, write_end = os.pipe()  # not inherited by the agents (O_CLOEXEC)
    try:
        subprocess.run(
            [sys.executable, "-S", "-c", _REAPER, f"{MARK_VARIABLE}={mark}"],
            stdin=read_end,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
        )
    finally:
        os.close(read_end)
    _reaper_pipe = write_end  # kept open for the worker's lifetime; its end is the signal


_REAPER = r"""
import os, signal, sys, time
if os.fork():  # Ray kills a dying worker's direct children: the reaper is its grandchild
    os._exit(0)
os.setsid()
mark = sys.argv[1].encode()
sys.stdin.buffer.read()  # returns at EOF: the worker is gone
me = os.getpid()
def marked():
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) != me:
            try:
                with open("/proc/%s/environ" % name, "rb") as fh:
                    if mark in fh.read().split(b"\0"):
                        found.append(int(name))
            except OSError:
                pass
    return found
targets = marked()
for pid in targets:
    try:
        os.kill(pid, signal.SIGTERM)
    except OSError:
        pass
deadline = time.monotonic() + 2.0
while targets and time.monotonic() < deadline:
    time.sleep(0.05)
    targets = marked()  # a process that exited (or is a zombie) shows no environment
for pid in targets:
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass
"""
