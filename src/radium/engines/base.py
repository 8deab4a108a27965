"""The engine interface: how Radium talks to a model, whatever serves it.

An engine turns a prompt into a response. It is created once per agent
configuration and reused for every task of the run, so SDK clients and their
connection pools are shared. Engines raise only errors from
``radium.errors``: each adapter maps its SDK's or the OS's exceptions there, by
type and HTTP status, at this boundary. The executor never sees an SDK type.

Engines never retry on their own (SDK retries are switched off with
``max_retries=0``): the executor's ``RetryPolicy`` owns every attempt, so counts,
waits and messages stay honest.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from radium.ratelimit.headers import RateLimitSnapshot


@dataclass(frozen=True)
class EngineSettings:
    """What an agent file configures for its engine (the ``[agent]`` table's engine keys)."""

    engine: str
    model: str | None = None
    base_url: str | None = None
    api_key_env: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    timeout_s: float | None = None
    command: tuple[str, ...] | None = None
    fatal_exit_codes: tuple[int, ...] = ()
    """``command`` engine: exit statuses that mean "do not retry" (the agent's own rule)."""
    retry_exit_codes: tuple[int, ...] = ()
    """``command`` engine: exit statuses worth retrying; when set, every other status is fatal."""
    agent_id: str = ""
    """The agent these settings came from, for error messages."""
    workdir: str | None = None
    """Working directory for subprocess engines (the workspace root)."""


@dataclass(frozen=True)
class GenerationParams:
    """Per-call parameters. ``timeout_s`` is the attempt's time limit, if any."""

    timeout_s: float | None = None


@dataclass(frozen=True)
class Usage:
    """Tokens the provider reported for one call."""

    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass(frozen=True)
class EngineResponse:
    """A model's answer: its text, the tokens it cost (when reported), the model that answered."""

    text: str
    usage: Usage | None = None
    model: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    rate_limits: "RateLimitSnapshot | None" = None
    """What the provider's headers said about its limits (remaining, resets), if anything."""


class Engine(ABC):
    """A model provider. Subclasses implement ``generate``; the rest is optional.

    ``name`` is the engine id used in agent files. ``secrets`` lists values that
    must be redacted from any message this engine produces (its API key).
    """

    name: ClassVar[str]
    default_model: ClassVar[str | None] = None
    timeout_grace_s: ClassVar[float] = 0.5
    """How long past its timeout the engine may take to report it (e.g. to kill a
    process group). The executor's safety-net timeout waits this long before it
    steps in, so the engine's own, more informative error wins."""

    def __init__(self, settings: EngineSettings) -> None:
        self.settings = settings
        self.secrets: tuple[str, ...] = ()

    @property
    def model(self) -> str:
        return self.settings.model or self.default_model or "default"

    def provider(self) -> tuple[tuple, str]:
        """(identity, label) of the provider this engine calls, for the shared rate limiter.

        Calls with the same identity share one limiter (see ``radium.ratelimit``);
        the label names it in messages. SDK engines use their endpoint and key.
        """
        return (self.name, self.settings.model or ""), self.name

    def preflight(self) -> None:
        """Check, before any task runs, that this engine can be used (key set, SDK installed).

        Raises ``MissingConfigurationError`` naming the variable or package.
        Makes no network call.
        """

    @abstractmethod
    async def generate(self, prompt: str, params: GenerationParams) -> EngineResponse:
        """Send ``prompt`` to the model and return its answer.

        Must be cancellable (the executor cancels it on Ctrl+C or timeout) and
        must raise only ``radium.errors`` types.
        """

    async def aclose(self) -> None:
        """Release clients and connections at the end of the run."""
