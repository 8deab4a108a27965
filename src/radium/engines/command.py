"""The ``command`` engine: a CLI agent (``claude -p``, ``codex exec``, ``aider --message``…) as a subprocess.

The agent file gives ``command`` as an argv list; it is run with
``asyncio.create_subprocess_exec`` -- never through a shell, so quotes, ``$()``, backticks
and newlines in a prompt are just bytes. Where an argv element contains ``{prompt}``, the
prompt is put there (only that literal placeholder is replaced, once per element, and the
prompt's own text is never re-scanned) and stdin is ``/dev/null``; otherwise the prompt is
written to the program's stdin (UTF-8), which is then closed. The working directory is the
workspace root (``settings.workdir``). The program's stdout, decoded as UTF-8 with
``errors="replace"``, is the answer; token usage is not reported.

The program runs in a session and process group of its own (``start_new_session=True``).
On a timeout or a cancellation (Ctrl+C, SIGTERM, the executor giving up) the whole group
gets SIGTERM, then SIGKILL after ``term_grace_s`` (2 s) if the program is still there, and
the child is reaped: no agent, nor any helper it started in its group, outlives the call.
If the program exits but something it started still holds its stdout/stderr open, Radium
waits ``drain_s`` (0.5 s) for the pipes to close, then ends the group the same way.
(A helper that makes itself a new session with ``setsid`` escapes any group kill.)

Per-attempt timeout: ``params.timeout_s``, else the agent's ``timeout_s``, else none.

Outcome rules (what a demanding user expects: a CLI agent that crashes is often transient;
one that cannot be started is a configuration problem):

===========================================  ==========================  ===========
outcome                                      radium error                category
===========================================  ==========================  ===========
exit status 0                                success (stdout)            --
timeout                                      ModelTimeoutError           recoverable
program missing / not executable at spawn    MissingConfigurationError   fatal
  (FileNotFoundError, PermissionError),
  working directory missing
exit status 126 (cannot execute) or 127      MissingConfigurationError   fatal
  (command not found, e.g. from a wrapper)
exit status 64 (EX_USAGE), 78 (EX_CONFIG)    MissingConfigurationError   fatal
prompt too long for argv (E2BIG) or          BadRequestError             fatal
  containing NUL with ``{prompt}``
killed by a signal (incl. the 128+N statuses ModelExecutionError         recoverable
  a wrapper shell reports), 75 (EX_TEMPFAIL)
any other non-zero status                    ModelExecutionError         recoverable
spawn fails with EAGAIN/ENOMEM etc.          TemporaryIOError            recoverable
===========================================  ==========================  ===========

Every failure message names the program (``argv[0]``, never the full argv, which may hold
the prompt), the status, and the last lines of its stderr, redacted: the values of
``api_key_env`` and of the usual provider key variables never appear.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import shutil
import signal
from typing import ClassVar

from radium import errors
from radium.engines.base import Engine, EngineResponse, EngineSettings, GenerationParams

PLACEHOLDER = "{prompt}"
_KEY_VARIABLES = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY")
_FATAL_CONFIG_STATUSES = {126: "cannot execute", 127: "command not found", 64: "usage error (EX_USAGE)", 78: "configuration error (EX_CONFIG)"}
_TRANSIENT_SPAWN_ERRNOS = {errno.EAGAIN, errno.ENOMEM, errno.EINTR, errno.EMFILE, errno.ENFILE, errno.EBUSY}
_STDERR_KEEP_BYTES = 64 * 1024


def classify_exit(returncode: int) -> type[errors.RadiumError] | None:
    """The radium error type for a program's exit status (``None`` for success)."""
    if returncode == 0:
        return None
    if returncode in _FATAL_CONFIG_STATUSES:
        return errors.MissingConfigurationError
    return errors.ModelExecutionError


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _kill_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


class _Collector:
    """Reads a stream to EOF, keeping what it got even if cancelled half-way."""

    def __init__(self, limit: int | None = None) -> None:
        self.chunks: list[bytes] = []
        self.size = 0
        self.limit = limit

    async def read(self, stream: asyncio.StreamReader | None) -> None:
        if stream is None:
            return
        while True:
            chunk = await stream.read(65536)
            if not chunk:
                return
            self.chunks.append(chunk)
            self.size += len(chunk)
            if self.limit is not None:
                while self.size > self.limit and len(self.chunks) > 1:
                    self.size -= len(self.chunks.pop(0))

    @property
    def data(self) -> bytes:
        data = b"".join(self.chunks)
        return data[-self.limit :] if self.limit is not None else data


class CommandEngine(Engine):
    """A CLI agent run as a subprocess (see the module docstring for the rules)."""

    name = "command"
    term_grace_s: ClassVar[float] = 2.0
    """Wait between SIGTERM and SIGKILL of the process group."""
    timeout_grace_s: ClassVar[float] = term_grace_s + 1.0
    """Killing the group on a timeout takes up to ``term_grace_s``; the executor waits for it."""
    drain_s: ClassVar[float] = 0.5
    """After the program exits, how long its pipes may stay open (held by its children)."""
    stderr_tail_lines: ClassVar[int] = 10
    stderr_tail_chars: ClassVar[int] = 1500

    def __init__(self, settings: EngineSettings) -> None:
        super().__init__(settings)
        names = ([settings.api_key_env] if settings.api_key_env else []) + list(_KEY_VARIABLES)
        secrets: list[str] = []
        for name in names:
            value = os.environ.get(name)
            if value and value.strip():
                secrets.extend({value, value.strip()})
        self.secrets = tuple(secrets)

    # ------------------------------------------------------------ configuration

    @property
    def model(self) -> str:
        return self.settings.model or "command"

    def _agent(self) -> str:
        return f"agent '{self.settings.agent_id}'" if self.settings.agent_id else "the agent"

    def _argv_template(self) -> list[str]:
        command = self.settings.command
        if isinstance(command, str):
            raise errors.InvalidDataError(
                f"command: {self._agent()} gives command as a string; it must be an argv list",
                hint='write command = ["claude", "-p"] (Radium never runs a shell)',
            )
        if not command:
            raise errors.MissingConfigurationError(
                f"command: {self._agent()} has no command",
                hint='add command = ["your-agent", "--flag"] to the agent file',
            )
        if not all(isinstance(part, str) for part in command):
            raise errors.InvalidDataError(
                f"command: every element of the command of {self._agent()} must be a string",
            )
        return list(command)

    def _program(self) -> str:
        return self._argv_template()[0]

    def preflight(self) -> None:
        argv = self._argv_template()
        workdir = self.settings.workdir
        if workdir and not os.path.isdir(workdir):
            raise errors.MissingConfigurationError(
                f"command: working directory {workdir} does not exist",
                hint=f"check the workspace of {self._agent()}",
            )
        program = argv[0]
        if os.sep in program:
            path = program if os.path.isabs(program) else os.path.join(workdir or os.getcwd(), program)
            if not os.path.isfile(path):
                raise errors.MissingConfigurationError(
                    f"command: program {program!r} of {self._agent()} not found",
                    hint="fix the first element of command (relative paths start at the workspace root)",
                )
            if not os.access(path, os.X_OK):
                raise errors.MissingConfigurationError(
                    f"command: program {program!r} of {self._agent()} is not executable",
                    hint=f"chmod +x {path}",
                )
        elif shutil.which(program) is None:
            raise errors.MissingConfigurationError(
                f"command: {program!r} (the command of {self._agent()}) was not found on PATH",
                hint="install it, or give its full path as the first element of command",
            )

    # ------------------------------------------------------------ the call

    def _build(self, prompt: str) -> tuple[list[str], bytes | None]:
        template = self._argv_template()
        try:
            prompt.encode("utf-8")
        except UnicodeEncodeError:
            raise errors.BadRequestError(
                "command: the prompt holds characters that cannot be encoded as UTF-8 (lone surrogates)",
                hint="remove them from the task or its context",
            ) from None
        if any(PLACEHOLDER in part for part in template):
            return [part.replace(PLACEHOLDER, prompt) for part in template], None
        return template, prompt.encode("utf-8")

    def _redact(self, text: str) -> str:
        return errors.redact(text, self.secrets)

    def _stderr_tail(self, data: bytes) -> str:
        text = data.decode("utf-8", errors="replace").strip()
        if not text:
            return ""
        lines = [line.rstrip() for line in text.splitlines() if line.strip()]
        tail = " | ".join(lines[-self.stderr_tail_lines :])
        if len(tail) > self.stderr_tail_chars:
            tail = "…" + tail[-(self.stderr_tail_chars - 1) :]
        return self._redact(tail)

    def _with_stderr(self, message: str, stderr: bytes) -> str:
        tail = self._stderr_tail(stderr)
        return self._redact(f"{message}; stderr: {tail}" if tail else message)

    def _spawn_error(self, exc: BaseException) -> errors.RadiumError:
        program = self._program()
        workdir = self.settings.workdir
        if isinstance(exc, ValueError):  # "embedded null byte" in an argv element
            return errors.BadRequestError(
                f"command: the prompt cannot be passed as an argument to {program!r}: {exc}",
                hint="remove {prompt} from the command so the prompt goes on stdin",
            )
        if isinstance(exc, FileNotFoundError):
            if workdir and not os.path.isdir(workdir):
                return errors.MissingConfigurationError(
                    f"command: working directory {workdir} does not exist",
                    hint=f"check the workspace of {self._agent()}",
                )
            return errors.MissingConfigurationError(
                f"command: {program!r} (the command of {self._agent()}) was not found",
                hint="install it, or give its full path as the first element of command",
            )
        if isinstance(exc, PermissionError):
            return errors.MissingConfigurationError(
                f"command: {program!r} (the command of {self._agent()}) cannot be executed: permission denied",
                hint="make it executable (chmod +x) or fix the command",
            )
        if isinstance(exc, OSError) and exc.errno == errno.E2BIG:
            return errors.BadRequestError(
                f"command: the prompt is too long to pass as an argument to {program!r}",
                hint="remove {prompt} from the command so the prompt goes on stdin",
            )
        if isinstance(exc, OSError) and exc.errno in _TRANSIENT_SPAWN_ERRNOS:
            return errors.TemporaryIOError(f"command: could not start {program!r}: {exc.strerror or exc}")
        return errors.ModelExecutionError(self._redact(f"command: could not start {program!r}: {exc}"))

    async def generate(self, prompt: str, params: GenerationParams) -> EngineResponse:
        argv, stdin_data = self._build(prompt)
        timeout_s = params.timeout_s or self.settings.timeout_s
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE if stdin_data is not None else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd=self.settings.workdir or None,
                start_new_session=True,
            )
        except (OSError, ValueError) as exc:
            raise self._spawn_error(exc) from None

        stdout = _Collector()
        stderr = _Collector(limit=_STDERR_KEEP_BYTES)
        try:
            async with asyncio.timeout(timeout_s or None):
                returncode = await self._communicate(proc, stdin_data, stdout, stderr)
        except TimeoutError:
            await self._terminate(proc)
            raise errors.ModelTimeoutError(
                self._with_stderr(
                    f"command: {self._program()!r} did not finish within {timeout_s:g}s "
                    "(its process group was killed)",
                    stderr.data,
                ),
                hint="raise timeout_s for this agent if it needs longer",
            ) from None
        except BaseException:
            # Cancellation (Ctrl+C, SIGTERM, the executor) or anything unexpected:
            # never leave the agent or its helpers running.
            await self._terminate(proc)
            raise

        await self._stop_leftovers(proc.pid)
        return self._result(returncode, stdout.data, stderr.data)

    async def _stop_leftovers(self, pgid: int) -> None:
        """After the program exits, end what it left running in its group (a task is over when
        its agent is; background helpers would otherwise outlive the run). Costs nothing when
        the group is already empty."""
        if not _group_alive(pgid):
            return
        _kill_group(pgid, signal.SIGTERM)
        deadline = asyncio.get_running_loop().time() + self.term_grace_s
        while _group_alive(pgid) and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        _kill_group(pgid, signal.SIGKILL)

    async def _communicate(
        self, proc: asyncio.subprocess.Process, data: bytes | None, stdout: _Collector, stderr: _Collector
    ) -> int:
        readers = {
            asyncio.ensure_future(stdout.read(proc.stdout)),
            asyncio.ensure_future(stderr.read(proc.stderr)),
        }
        feeder = asyncio.ensure_future(self._feed(proc, data)) if data is not None else None
        exited = asyncio.ensure_future(self._exit_status(proc))
        try:
            # Until the program has exited and both pipes are closed -- or the program
            # exited while something it started still holds the pipes open.
            pending = set(readers)
            while pending and not exited.done():
                _, still = await asyncio.wait(pending | {exited}, return_when=asyncio.FIRST_COMPLETED)
                pending = still - {exited}
            if pending:
                _, pending = await asyncio.wait(pending, timeout=self.drain_s)
            if pending:
                await self._terminate(proc)
                await asyncio.wait(pending, timeout=1.0)
            return await exited
        finally:
            tasks = [task for task in (*readers, feeder, exited) if task is not None]
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks)
            for task in tasks:  # retrieve outcomes so none is reported as "never retrieved"
                if not task.cancelled():
                    task.exception()

    @staticmethod
    async def _exit_status(proc: asyncio.subprocess.Process) -> int:
        """The exit status, as soon as the child is reaped.

        (``Process.wait()`` also waits for the stdout/stderr pipes to close, which a
        grandchild can hold open for ever; ``returncode`` is set at exit.)
        """
        while proc.returncode is None:
            await asyncio.sleep(0.02)
        return proc.returncode

    @staticmethod
    async def _feed(proc: asyncio.subprocess.Process, data: bytes) -> None:
        stdin = proc.stdin
        if stdin is None:
            return
        try:
            stdin.write(data)
            await stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the program does not read its stdin: fine
        finally:
            with contextlib.suppress(Exception):
                stdin.close()
            with contextlib.suppress(Exception):
                await stdin.wait_closed()

    async def _terminate(self, proc: asyncio.subprocess.Process) -> None:
        """SIGTERM the process group, SIGKILL it after the grace period, and reap the child."""
        pgid = proc.pid  # start_new_session: the child leads its own group
        _kill_group(pgid, signal.SIGTERM)
        try:
            if proc.returncode is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._exit_status(proc), self.term_grace_s)
        finally:
            # Whatever happened (even a second cancellation), stragglers get SIGKILL.
            _kill_group(pgid, signal.SIGKILL)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._exit_status(proc), 5.0)

    def _result(self, returncode: int, out: bytes, err: bytes) -> EngineResponse:
        program = self._program()
        kind = classify_exit(returncode)
        if kind is None:
            return EngineResponse(
                text=out.decode("utf-8", errors="replace"),
                usage=None,
                model=self.settings.model or None,
                metadata={"exit_status": "0"},
            )
        if returncode < 0 or 129 <= returncode <= 128 + 64:
            number = -returncode if returncode < 0 else returncode - 128
            how = (
                f"was killed by {_signal_name(number)}"
                if returncode < 0
                else f"exited with status {returncode} (killed by {_signal_name(number)}?)"
            )
            raise errors.ModelExecutionError(self._with_stderr(f"command: {program!r} {how}", err))
        if kind is errors.MissingConfigurationError:
            why = _FATAL_CONFIG_STATUSES[returncode]
            raise errors.MissingConfigurationError(
                self._with_stderr(f"command: {program!r} exited with status {returncode} ({why})", err),
                hint=f"fix the command of {self._agent()} (or install what it runs)",
            )
        suffix = " (EX_TEMPFAIL)" if returncode == 75 else ""
        raise errors.ModelExecutionError(
            self._with_stderr(f"command: {program!r} exited with status {returncode}{suffix}", err)
        )
