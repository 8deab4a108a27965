"""Radium's error taxonomy and exit codes: the one place where failures are named.

Every failure Radium reports is an instance of this tree. The executor decides
whether to retry by looking at ``error.category`` only; it never inspects
message text. (The original implementation searched messages for digits, so
anything containing a ``5`` was "retryable".) Provider and OS exceptions are
mapped into this tree once, at the engine boundary (see ``radium.engines``).

::

    RadiumError                         .category, .exit_code, .hint
    ├── RecoverableError                category RECOVERABLE: worth another attempt
    │   ├── RateLimitError              HTTP 429; .retry_after (seconds) and .retry_after_source
    │   │                               (the header) when the server said when to come back
    │   ├── ServerError                 HTTP 408, 409, 5xx (incl. 529 "overloaded"); .status
    │   ├── ModelTimeoutError           connect/read timeout, per-attempt timeout
    │   ├── ConnectionFailedError       refused, reset, unreachable, closed mid-response
    │   ├── FileLockBusyError           a lock another process holds briefly
    │   ├── TemporaryIOError            EAGAIN, EBUSY, EINTR and friends
    │   ├── WorkerLostError             the Ray worker or node running an attempt died
    │   └── ModelExecutionError         an unclassified provider/agent failure
    └── FatalError                      category FATAL: retrying cannot help
        ├── AuthenticationError         HTTP 401/403: the key is wrong or lacks access
        ├── BadRequestError             other HTTP 4xx (400, 422…); .status
        │   └── ModelNotFoundError      HTTP 404: unknown model or endpoint
        ├── RetryAfterTooLongError      the server asked to wait longer than allowed
        ├── RateLimitWaitExceededError  a task waited on rate limits longer than allowed in total
        ├── AgentExitError              a command agent exited with a status it declares fatal
        ├── MissingConfigurationError   API key, agent, prompt file, engine SDK missing
        ├── InvalidDataError            malformed manifest, plan, agent file, config
        │   └── PlanValidationError     cycle, unknown/forward dependency, duplicate id
        ├── DependencyNotMetError       a task's dependency is not completed
        ├── AgentNotFoundError          a task names an agent nobody defined
        ├── PlanNotFoundError           PLAN does not name a plan of the workspace
        ├── WorkspaceNotFoundError      no ``.radium/`` here or above
        ├── PlanLockedError             another ``rad craft`` runs this plan
        ├── PlanExistsError             ``rad plan`` would overwrite a plan
        ├── UsageError                  contradictory command-line options
        ├── BackendUnavailableError     the Ray cluster cannot be reached or started
        ├── UnschedulableTaskError      no node of the cluster has the resources a task asks for
        └── CheckpointWriteError        the manifest could not be saved

``exit_code`` is what the CLI exits with when the error reaches it: ``2`` for
bad usage or bad input (the default for fatal errors), ``1`` for a failed run.
A task failing does not raise out of the executor: it is recorded, and the run
result carries exit code 1.
"""

from __future__ import annotations

import enum
import functools
import re


class ExitCode(enum.IntEnum):
    """Process exit codes, as documented in the README."""

    OK = 0
    """The run ended normally: plan complete, or the iteration bound reached."""
    TASK_FAILED = 1
    """A task failed (fatal error or retries exhausted) or tasks were left blocked."""
    USAGE = 2
    """Bad usage or bad input: unknown plan, invalid manifest, cycle, missing key…"""
    SIGINT = 130
    """Interrupted by SIGINT (Ctrl+C)."""
    SIGTERM = 143
    """Stopped by SIGTERM."""


class ErrorCategory(enum.Enum):
    """Whether another attempt of the same call could succeed."""

    RECOVERABLE = "recoverable"
    FATAL = "fatal"


class RadiumError(Exception):
    """Base of every error Radium reports to a user.

    ``message`` says what went wrong and where; ``hint`` (optional) says what to
    do about it. ``str(error)`` joins the two so a single line tells the story.
    """

    category: ErrorCategory = ErrorCategory.FATAL
    exit_code: ExitCode = ExitCode.USAGE
    kind: str = "error"
    """Short human label used in retry lines, e.g. ``Error (rate limit)``."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message

    def to_dict(self) -> dict[str, str]:
        """The form stored as a task's ``last_error`` and sent in JSON events."""
        return {"category": self.category.value, "kind": self.kind, "message": str(self)}


# ---------------------------------------------------------------- recoverable


class RecoverableError(RadiumError):
    """A failure that another attempt, after a wait, may well get past."""

    category = ErrorCategory.RECOVERABLE
    exit_code = ExitCode.TASK_FAILED
    kind = "recoverable error"


class RateLimitError(RecoverableError):
    """The provider refused the call for now (HTTP 429).

    ``retry_after`` is the wait in seconds the server asked for, when it said
    (``Retry-After``, a reset header, Gemini's ``RetryInfo``…), and
    ``retry_after_source`` names where it said it. Such a server-timed wait is
    not counted as a retry (see ``radium.retry``).
    """

    kind = "rate limit"

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        retry_after_source: str | None = None,
        hint: str | None = None,
    ):
        super().__init__(message, hint=hint)
        self.retry_after = retry_after
        self.retry_after_source = retry_after_source if retry_after is not None else None


class ServerError(RecoverableError):
    """The provider failed on its side (5xx, 529 overloaded) or asked to retry (408, 409)."""

    kind = "server error"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        retry_after_source: str | None = None,
        hint: str | None = None,
    ):
        super().__init__(message, hint=hint)
        self.status = status
        self.retry_after = retry_after
        self.retry_after_source = retry_after_source if retry_after is not None else None


class ModelTimeoutError(RecoverableError):
    """The call did not finish in time (connect/read timeout or the agent's ``timeout_s``)."""

    kind = "timeout"


class ConnectionFailedError(RecoverableError):
    """The provider could not be reached, or the connection dropped mid-response."""

    kind = "connection"


class FileLockBusyError(RecoverableError):
    """A file lock was busy; it is usually released within moments."""

    kind = "file lock"


class TemporaryIOError(RecoverableError):
    """A transient operating-system error (EAGAIN, EBUSY, EINTR…)."""

    kind = "temporary I/O"


class WorkerLostError(RecoverableError):
    """The process or node running an attempt died (a Ray worker crashed, a node was lost)."""

    kind = "worker lost"


class ModelExecutionError(RecoverableError):
    """A provider or agent failed in a way we could not classify; worth a retry."""

    kind = "model execution"


# ---------------------------------------------------------------- fatal


class FatalError(RadiumError):
    """A failure that repeating the same call cannot fix."""

    category = ErrorCategory.FATAL
    kind = "fatal error"


class AuthenticationError(FatalError):
    """The provider rejected the credentials (HTTP 401) or the access (HTTP 403)."""

    exit_code = ExitCode.TASK_FAILED
    kind = "authentication"

    def __init__(self, message: str, *, status: int | None = None, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.status = status


class BadRequestError(FatalError):
    """The provider rejected the request itself (HTTP 400, 422 and other 4xx)."""

    exit_code = ExitCode.TASK_FAILED
    kind = "bad request"

    def __init__(self, message: str, *, status: int | None = None, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.status = status


class ModelNotFoundError(BadRequestError):
    """HTTP 404: the model (or the endpoint behind ``base_url``) does not exist."""

    kind = "not found"


class RetryAfterTooLongError(FatalError):
    """The server asked for a wait above ``max_retry_after_s``; waiting would look like a hang."""

    exit_code = ExitCode.TASK_FAILED
    kind = "retry-after too long"


class RateLimitWaitExceededError(FatalError):
    """A task's waits on rate limits added up past ``max_rate_limit_wait_s``: stop, don't hang."""

    exit_code = ExitCode.TASK_FAILED
    kind = "rate limit wait exceeded"


class AgentExitError(FatalError):
    """A ``command`` agent exited with a status its agent file declares fatal (``fatal_exit_codes``),
    or one not among its declared recoverable ``retry_exit_codes``."""

    exit_code = ExitCode.TASK_FAILED
    kind = "agent exit"


class MissingConfigurationError(FatalError):
    """Something the run needs is not configured: an API key, a file, an engine's SDK."""

    kind = "missing configuration"


class InvalidDataError(FatalError):
    """A file Radium reads is malformed: manifest, plan, agent file, config."""

    kind = "invalid data"


class PlanValidationError(InvalidDataError):
    """A plan is structurally wrong: cycle, unknown or forward dependency, duplicate id.

    ``problems`` holds every problem found, so a user can fix them in one go.
    """

    kind = "invalid plan"

    def __init__(self, message: str, *, problems: list[str] | None = None, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.problems = problems or [message]


class DependencyNotMetError(FatalError):
    """A task's dependency has not completed, so the task cannot run yet."""

    kind = "dependency not met"


class AgentNotFoundError(FatalError):
    """A task names an agent that no agent file defines."""

    kind = "agent not found"


class PlanNotFoundError(FatalError):
    """PLAN does not name a plan of this workspace."""

    kind = "plan not found"


class WorkspaceNotFoundError(FatalError):
    """No ``.radium/`` directory in the current directory or any parent."""

    kind = "workspace not found"


class PlanLockedError(FatalError):
    """Another live ``rad craft`` holds this plan's lock."""

    kind = "plan locked"


class PlanExistsError(FatalError):
    """``rad plan`` would create a plan folder that already exists."""

    kind = "plan exists"


class UsageError(FatalError):
    """The command line contradicts itself (``--resume --restart``…)."""

    kind = "usage"


class BackendUnavailableError(FatalError):
    """The execution backend (a Ray cluster) cannot be reached or started; nothing ran."""

    kind = "backend unavailable"


class UnschedulableTaskError(FatalError):
    """No node of the cluster has the resources a task asks for (``[agent.resources]``)."""

    exit_code = ExitCode.TASK_FAILED
    kind = "unschedulable"


class CheckpointWriteError(FatalError):
    """The checkpoint could not be written; the previous one is intact."""

    exit_code = ExitCode.TASK_FAILED
    kind = "checkpoint write"


# Secrets that must never reach a message: provider keys look like these.
_KEY_SHAPES = re.compile(r"\b(sk-[A-Za-z0-9_\-]{8,}|sk-ant-[A-Za-z0-9_\-]{8,}|AIza[0-9A-Za-z_\-]{20,})")

PROVIDER_KEY_VARIABLES = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY")
"""The variables whose values are always treated as secrets (plus every agent's ``api_key_env``)."""

FRAGMENT_CHARS = 8
"""A run of this many characters of a known key, or more, is redacted wherever it appears."""

_secret_variables: set[str] = set(PROVIDER_KEY_VARIABLES)


def register_secret_variable(name: str) -> None:
    """Treat the value of environment variable ``name`` as a secret from now on (an agent's ``api_key_env``)."""
    _secret_variables.add(name)


def known_secrets() -> tuple[str, ...]:
    """The current values of every secret variable (provider keys and registered ``api_key_env``)."""
    import os

    values = {os.environ.get(name, "").strip() for name in _secret_variables}
    return tuple(sorted(v for v in values if len(v) >= 4))


@functools.lru_cache(maxsize=32)
def _fragment_pattern(secrets: tuple[str, ...]) -> "re.Pattern[str] | None":
    grams = {s[i : i + FRAGMENT_CHARS] for s in secrets for i in range(len(s) - FRAGMENT_CHARS + 1)}
    if not grams:
        return None
    return re.compile("|".join(re.escape(g) for g in sorted(grams, key=len, reverse=True)))


def _redact_fragments(text: str, secrets: tuple[str, ...]) -> str:
    """Replace every run of ``FRAGMENT_CHARS`` or more characters that occurs in a secret."""
    pattern = _fragment_pattern(secrets)
    if pattern is None:
        return text
    out: list[str] = []
    position = 0
    while True:
        match = pattern.search(text, position)
        if match is None:
            break
        start, end = match.start(), match.end()
        # Extend the run as far as it is still part of one of the secrets.
        while end < len(text) and any(text[start : end + 1] in s for s in secrets):
            end += 1
        out.append(text[position:start])
        out.append("[REDACTED]")
        position = end
    out.append(text[position:])
    return "".join(out)


def redact(text: str, secrets: list[str] | tuple[str, ...] = ()) -> str:
    """Remove secrets from ``text``: the given values, every known key (``known_secrets``),
    any run of 8+ characters of one of them, and anything shaped like a provider key.

    Providers sometimes echo part of a bad key back in a 401 body, and a model
    may repeat a key it saw; messages and model outputs are passed through here
    before they are stored, printed or emitted.
    """
    every = tuple(sorted({s.strip() for s in (*secrets, *known_secrets()) if s and len(s.strip()) >= 4}))
    for secret in sorted(every, key=len, reverse=True):
        text = text.replace(secret, "[REDACTED]")
    long_enough = tuple(s for s in every if len(s) >= FRAGMENT_CHARS)
    if long_enough:
        text = _redact_fragments(text, long_enough)
    return _KEY_SHAPES.sub("[REDACTED]", text)
