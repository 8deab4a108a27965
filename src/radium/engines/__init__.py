"""Model engines behind one interface (``radium.engines.base.Engine``).

Engines are looked up by the name an agent file gives (``engine = "openai"``)
and imported only when a run needs them, so ``rad --help`` never pays for a
provider SDK.
"""

from __future__ import annotations

import importlib

from radium.engines.base import Engine, EngineResponse, EngineSettings, GenerationParams, Usage
from radium.errors import MissingConfigurationError

# engine name -> (module, class). Aliases point at the same entry.
_REGISTRY: dict[str, tuple[str, str]] = {
    "mock": ("radium.engines.mock", "MockEngine"),
    "openai": ("radium.engines.openai", "OpenAIEngine"),
    "openai-compatible": ("radium.engines.openai", "OpenAICompatibleEngine"),
    "ollama": ("radium.engines.openai", "OllamaEngine"),
    "anthropic": ("radium.engines.anthropic", "AnthropicEngine"),
    "gemini": ("radium.engines.gemini", "GeminiEngine"),
    "command": ("radium.engines.command", "CommandEngine"),
}
ALIASES: dict[str, str] = {
    "claude": "anthropic",
    "universal": "openai-compatible",
    "local": "openai-compatible",
}
ENGINE_NAMES: tuple[str, ...] = tuple(sorted([*_REGISTRY, *ALIASES]))


def canonical_engine_name(name: str) -> str | None:
    """The registry name for ``name`` (case-insensitive, aliases resolved), or None."""
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    return key if key in _REGISTRY else None


def engine_class(name: str) -> type[Engine]:
    """Import and return the engine class for ``name``."""
    canonical = canonical_engine_name(name)
    if canonical is None:
        raise MissingConfigurationError(
            f"unknown engine {name!r}",
            hint=f"use one of: {', '.join(ENGINE_NAMES)}",
        )
    module_name, class_name = _REGISTRY[canonical]
    module = importlib.import_module(module_name)
    return getattr(module, class_name)


def create_engine(settings: EngineSettings) -> Engine:
    """Build the engine an agent asks for (no network call is made)."""
    return engine_class(settings.engine)(settings)


__all__ = [
    "ALIASES",
    "ENGINE_NAMES",
    "Engine",
    "EngineResponse",
    "EngineSettings",
    "GenerationParams",
    "Usage",
    "canonical_engine_name",
    "create_engine",
    "engine_class",
]
