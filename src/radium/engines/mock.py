"""The offline ``mock`` engine: deterministic answers and scripted failures.

It answers ``Mock response (model <model>) for:`` followed by the whole prompt (less
its ``mock-`` directive lines),
so what the model was sent is visible in each task's output. Token usage is
the word count of the prompt and of the answer.

A prompt (usually through a task's description or the prompt template) can
script the mock with directive lines, so demos and tests show retries with no
network::

    mock-fail: rate_limit(0.5)*2, server_error(502)
    mock-delay-ms: 20

``mock-fail`` lists failures for successive attempts of the same prompt; after
the list is used up the call succeeds. An item is ``kind[(arg)][*count]``,
where ``count`` is a number or ``always``. Kinds:

=================  =====================================  ===========
kind               raises                                 category
=================  =====================================  ===========
rate_limit(s)      RateLimitError, retry_after = s        recoverable
server_error(code) ServerError, status = code (503)       recoverable
overloaded         ServerError, status 529                recoverable
timeout            ModelTimeoutError                      recoverable
connection         ConnectionFailedError                  recoverable
error              ModelExecutionError (unclassified)     recoverable
auth               AuthenticationError, status 401        fatal
forbidden          AuthenticationError, status 403        fatal
bad_request        BadRequestError, status 400            fatal
not_found          ModelNotFoundError, status 404         fatal
=================  =====================================  ===========

``mock-delay-ms`` makes every call take that long (cancellable), which is how
crash and Ctrl+C tests catch a task mid-flight.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from dataclasses import dataclass

from radium.engines.base import Engine, EngineResponse, GenerationParams, Usage
from radium import errors

_FAIL_LINE = re.compile(r"^\s*mock-fail:\s*(.+?)\s*$", re.MULTILINE)
_DELAY_LINE = re.compile(r"^\s*mock-delay-ms:\s*(\d+)\s*$", re.MULTILINE)
_DIRECTIVE_LINE = re.compile(r"^\s*mock-(?:fail|delay-ms):.*(?:\n|$)", re.MULTILINE)
_ITEM = re.compile(r"^(?P<kind>[a-z_]+)(?:\((?P<arg>[^)]*)\))?(?:\*(?P<count>\d+|always))?$")
ALWAYS = -1


@dataclass(frozen=True)
class ScriptedFailure:
    kind: str
    arg: str | None
    count: int  # ALWAYS for "always"


def parse_script(prompt: str) -> list[ScriptedFailure]:
    """The scripted failures named by ``mock-fail:`` lines, in order."""
    script: list[ScriptedFailure] = []
    for line in _FAIL_LINE.findall(prompt):
        for raw in line.split(","):
            item = raw.strip()
            if not item:
                continue
            match = _ITEM.match(item)
            if not match or match["kind"] not in _RAISERS:
                raise errors.InvalidDataError(
                    f"mock engine: bad mock-fail item {item!r}",
                    hint=f"use kind[(arg)][*count] with kind one of {', '.join(sorted(_RAISERS))}",
                )
            count = match["count"]
            script.append(
                ScriptedFailure(
                    match["kind"], match["arg"], ALWAYS if count == "always" else int(count or 1)
                )
            )
    return script


def _failure_for(script: list[ScriptedFailure], attempt_index: int) -> ScriptedFailure | None:
    position = 0
    for failure in script:
        if failure.count == ALWAYS or attempt_index < position + failure.count:
            return failure
        position += failure.count
    return None


def _status(arg: str | None, default: int) -> int:
    return int(arg) if arg and arg.strip().isdigit() else default


_RAISERS = {
    "rate_limit": lambda a: errors.RateLimitError(
        "mock: 429 Too Many Requests", retry_after=float(a) if a else None, retry_after_source="retry-after"
    ),
    "server_error": lambda a: errors.ServerError(
        f"mock: HTTP {_status(a, 503)} server error", status=_status(a, 503)
    ),
    "overloaded": lambda a: errors.ServerError("mock: HTTP 529 overloaded", status=529),
    "timeout": lambda a: errors.ModelTimeoutError("mock: request timed out"),
    "connection": lambda a: errors.ConnectionFailedError("mock: connection reset by peer"),
    "error": lambda a: errors.ModelExecutionError("mock: unclassified model failure"),
    "auth": lambda a: errors.AuthenticationError(
        "mock: HTTP 401 invalid API key", status=401, hint="fix the API key for this agent's engine"
    ),
    "forbidden": lambda a: errors.AuthenticationError(
        "mock: HTTP 403 permission denied", status=403, hint="check the key's access to this model"
    ),
    "bad_request": lambda a: errors.BadRequestError("mock: HTTP 400 bad request", status=400),
    "not_found": lambda a: errors.ModelNotFoundError(
        "mock: HTTP 404 model not found", status=404, hint="check the agent's model name"
    ),
}


class MockEngine(Engine):
    """Offline, deterministic engine for demos and tests."""

    name = "mock"
    default_model = "mock-1"

    def __init__(self, settings) -> None:
        super().__init__(settings)
        self._attempts: dict[str, int] = {}
        """Attempts so far per scripted prompt (by hash); prompts without ``mock-fail`` lines are
        not counted, so a long run keeps nothing per task."""

    def resume_script(self, prompt: str, earlier_attempts: int) -> None:
        """Say that ``prompt`` had ``earlier_attempts`` attempts elsewhere, so its ``mock-fail``
        script goes on from there (the Ray backend sends each attempt to whichever worker is free)."""
        self._attempts[hashlib.sha256(prompt.encode()).hexdigest()] = earlier_attempts

    async def generate(self, prompt: str, params: GenerationParams) -> EngineResponse:
        script = parse_script(prompt)
        attempt_index = 0
        if script:
            key = hashlib.sha256(prompt.encode()).hexdigest()
            attempt_index = self._attempts.get(key, 0)
            self._attempts[key] = attempt_index + 1
        delay = _DELAY_LINE.search(prompt)
        if delay:
            await asyncio.sleep(int(delay.group(1)) / 1000)
        failure = _failure_for(script, attempt_index)
        if failure is not None:
            raise _RAISERS[failure.kind](failure.arg)
        # Directive lines are left out of the echo so that they do not reach
        # (and script) the tasks that receive this output as a dependency.
        echoed = _DIRECTIVE_LINE.sub("", prompt)
        text = f"Mock response (model {self.model}) for:\n{echoed}"
        usage = Usage(prompt_tokens=len(prompt.split()), completion_tokens=len(text.split()))
        return EngineResponse(text=text, usage=usage, model=self.model)
