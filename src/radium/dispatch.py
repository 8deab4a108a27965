"""Where one attempt runs: in this process (``local``) or elsewhere (``ray``).

The executor decides *what* runs and *when*: dependency order, retries and
their waits, the shared per-provider rate limits, checkpoints and events all
stay in the driver (the ``rad craft`` process), which is the only writer of
the manifest and the journal. A ``Dispatcher`` decides only *where* one
attempt -- one engine call with an already rendered prompt -- runs, and hands
back the engine's answer or its typed error (``radium.errors``). That is the
whole seam: the run loop calls ``dispatcher.call`` and nothing else differs
between backends.

``LocalDispatcher`` awaits the engine in the driver's event loop. The Ray
dispatcher (``radium.dispatch_ray``, installed with ``radium[ray]``) sends the
same ``AttemptCall`` to a Ray task; it is imported only when asked for.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Mapping

from radium.engines.base import EngineSettings, GenerationParams

if TYPE_CHECKING:
    from radium.engines.base import Engine, EngineResponse

BACKENDS = ("local", "ray")


@dataclass(frozen=True)
class AttemptCall:
    """Everything one attempt needs, in a form that can cross a process boundary."""

    task_id: str
    settings: EngineSettings
    """The engine configuration (no secret: keys are read from the environment where it runs)."""
    prompt: str
    timeout_s: float | None = None
    resources: Mapping[str, Any] = field(default_factory=dict)
    """The agent's ``[agent.resources]`` (CPUs, GPUs, memory, custom resources); local ignores them."""


class Dispatcher(ABC):
    """Runs attempts somewhere. Subclasses implement ``call``; start/close are optional."""

    name: ClassVar[str]

    def describe(self) -> str:
        """Where attempts run, for the run header and ``run_started`` (``this machine``, a Ray address)."""
        return "this machine"

    async def start(self) -> None:
        """Connect or start what the backend needs, before the first task (exit 2 if impossible)."""

    @abstractmethod
    async def call(self, engine: "Engine", call: AttemptCall) -> "EngineResponse":
        """Run one attempt and return the answer, or raise a ``radium.errors`` error.

        ``engine`` is the driver's engine for ``call.settings`` (already
        preflighted); a remote backend may rebuild it from the settings instead.
        Must be cancellable: cancelling the awaiting task cancels the attempt.
        """

    async def aclose(self) -> None:
        """Release what ``start`` acquired, at the end of the run."""


class LocalDispatcher(Dispatcher):
    """Attempts run in the driver's own event loop (the default backend)."""

    name = "local"

    async def call(self, engine: "Engine", call: AttemptCall) -> "EngineResponse":
        return await engine.generate(call.prompt, GenerationParams(timeout_s=call.timeout_s))


def create_dispatcher(backend: str = "local", **options: Any) -> Dispatcher:
    """The dispatcher for ``backend`` (``local`` or ``ray``); ``options`` go to its constructor."""
    if backend == "local":
        return LocalDispatcher()
    if backend == "ray":
        from radium.dispatch_ray import RayDispatcher

        return RayDispatcher(**options)
    from radium.errors import InvalidDataError

    raise InvalidDataError(f"unknown backend {backend!r}", hint=f"use one of: {', '.join(BACKENDS)}")
