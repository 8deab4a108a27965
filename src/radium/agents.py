"""Agents: a prompt template plus an engine and model, defined in TOML files.

::

    [agent]
    id = "writer"                    # kebab-case, unique
    name = "Writer"                  # optional (default: the id)
    description = "Writes things"
    prompt_path = "../prompts/writer.md"   # relative to this file (or the workspace root), or absolute
    engine = "openai"                # mock | openai | openai-compatible | ollama | anthropic | gemini | command
    model = "gpt-4o-mini"
    # optional: base_url, api_key_env, temperature, max_tokens, timeout_s,
    #           max_retries, base_delay_ms, max_delay_ms, command = ["claude", "-p"],
    #           fatal_exit_codes = [2], retry_exit_codes = [75]   (command engine)
    #           price = { input_per_mtok = 0.5, output_per_mtok = 1.5 }   # USD per million tokens

    [agent.resources]                # where the Ray backend may run this agent (local ignores it)
    num_cpus = 1
    num_gpus = 1
    memory_mb = 4096
    "gpu-node" = 1                   # any other key is a custom Ray resource

Discovery is deterministic: ``<workspace>/agents/``, then
``<workspace>/.radium/agents/``, then ``~/.radium/agents/``, each searched
recursively in sorted order. The first definition of an id wins; a later one
is reported as a duplicate naming both files. Keys Radium does not use (the
original's ``[persona]``, ``capabilities`` …) are ignored.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from radium.engines import ENGINE_NAMES, EngineSettings, canonical_engine_name
from radium.errors import InvalidDataError, register_secret_variable
from radium.files import format_validation_error
from radium.workspace import Workspace, load_toml

_KEBAB = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
RESOURCE_KEYS = ("num_cpus", "num_gpus", "memory_mb")
_RAY_OWN_RESOURCES = {"CPU", "GPU", "memory", "object_store_memory"}


def _check_resources(value: Any) -> dict[str, float]:
    """``[agent.resources]``: non-negative amounts; custom names are Ray resources."""
    if not isinstance(value, dict):
        raise ValueError("must be a table: [agent.resources] with num_cpus, num_gpus, memory_mb or custom resources")
    checked: dict[str, float] = {}
    for name, amount in value.items():
        if isinstance(amount, bool) or not isinstance(amount, (int, float)):
            raise ValueError(f"{name} must be a number, not {amount!r}")
        if amount < 0:
            raise ValueError(f"{name} must not be negative")
        if name in _RAY_OWN_RESOURCES or name.startswith("node:"):
            raise ValueError(f"{name!r} is set by Ray itself; use num_cpus, num_gpus or memory_mb")
        if name == "memory_mb" and amount != int(amount):
            raise ValueError("memory_mb must be a whole number of MiB")
        if name not in RESOURCE_KEYS and amount > 1 and amount != int(amount):
            raise ValueError(f"{name} = {amount}: Ray needs whole amounts above 1")
        checked[name] = amount
    return checked


class AgentPrice(BaseModel):
    """``price = { input_per_mtok = 0.5, output_per_mtok = 1.5 }``: USD per million tokens."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input_per_mtok: float = Field(ge=0)
    output_per_mtok: float = Field(ge=0)


class AgentConfig(BaseModel):
    """The ``[agent]`` table of an agent file."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str
    name: str = ""
    """Optional; defaults to the id."""
    description: str = ""
    prompt_path: str
    engine: str
    model: str | None = None
    base_url: str | None = None
    api_key_env: str | None = None
    temperature: float | None = None
    max_tokens: int | None = Field(default=None, gt=0)
    timeout_s: float | None = Field(default=None, gt=0)
    max_retries: int | None = Field(default=None, ge=0)
    base_delay_ms: int | None = Field(default=None, ge=0)
    max_delay_ms: int | None = Field(default=None, ge=0)
    command: tuple[str, ...] | None = None
    fatal_exit_codes: tuple[int, ...] = ()
    retry_exit_codes: tuple[int, ...] = ()
    price: AgentPrice | None = None
    """Overrides the price database (self-hosted or unlisted models); see radium.reporting.pricing."""
    resources: dict[str, float] = Field(default_factory=dict)
    """``[agent.resources]``: Ray task options for this agent's attempts (the local backend ignores them)."""
    # Set by discovery, not read from the file.
    source: Path = Field(default=Path("."), exclude=True)
    prompt_file: Path = Field(default=Path("."), exclude=True)

    @field_validator("id")
    @classmethod
    def _kebab_case(cls, value: str) -> str:
        if not _KEBAB.match(value):
            raise ValueError("must be kebab-case: lowercase letters, digits and single dashes")
        return value

    @model_validator(mode="before")
    @classmethod
    def _name_defaults_to_id(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("name") and isinstance(data.get("id"), str):
            data = {**data, "name": data["id"]}
        return data
    @field_validator("resources", mode="before")
    @classmethod
    def _valid_resources(cls, value: Any) -> dict[str, float]:
        return _check_resources(value)

    @field_validator("engine")
    @classmethod
    def _known_engine(cls, value: str) -> str:
        canonical = canonical_engine_name(value)
        if canonical is None:
            raise ValueError(f"unknown engine {value!r}; use one of {', '.join(ENGINE_NAMES)}")
        return canonical

    @field_validator("fatal_exit_codes", "retry_exit_codes")
    @classmethod
    def _exit_statuses(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(not 1 <= code <= 255 for code in value):
            raise ValueError("exit statuses are between 1 and 255")
        return value

    @model_validator(mode="after")
    def _command_engine_needs_argv(self) -> "AgentConfig":
        if self.engine == "command" and not self.command:
            raise ValueError('engine "command" needs command = ["program", "arg", ...]')
        if set(self.fatal_exit_codes) & set(self.retry_exit_codes):
            both = sorted(set(self.fatal_exit_codes) & set(self.retry_exit_codes))
            raise ValueError(f"exit status {both[0]} is in both fatal_exit_codes and retry_exit_codes")
        return self

    def engine_settings(self, workdir: Path | None = None, **overrides: Any) -> EngineSettings:
        """The engine configuration this agent asks for (``overrides`` from the CLI win)."""
        values = {
            "engine": self.engine,
            "model": self.model,
            "base_url": self.base_url,
            "api_key_env": self.api_key_env,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "timeout_s": self.timeout_s,
            "command": self.command,
            "fatal_exit_codes": self.fatal_exit_codes,
            "retry_exit_codes": self.retry_exit_codes,
            "agent_id": self.id,
            "workdir": str(workdir) if workdir else None,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        if "engine" in overrides and overrides["engine"]:
            values["engine"] = canonical_engine_name(overrides["engine"]) or overrides["engine"]
        return EngineSettings(**values)

    def prompt_hint(self, exc: OSError) -> str:
        """What to do when the prompt file cannot be read: the fix depends on why."""
        import errno

        if exc.errno in (errno.EACCES, errno.EPERM):
            return f"make {self.prompt_file} readable by this user (its permissions refuse it)"
        if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.ELOOP, errno.ENAMETOOLONG):
            return f"fix prompt_path in {self.source}"
        return f"check {self.prompt_file}"

    def read_prompt(self) -> str:
        """The prompt template's text (``MissingConfigurationError`` if unreadable)."""
        from radium.errors import MissingConfigurationError

        try:
            return self.prompt_file.read_text(encoding="utf-8")
        except OSError as exc:
            raise MissingConfigurationError(
                f"agent {self.id}: cannot read prompt file {self.prompt_file}: {exc.strerror}",
                hint=self.prompt_hint(exc),
            ) from None
        except UnicodeDecodeError:
            raise InvalidDataError(
                f"agent {self.id}: prompt file {self.prompt_file} is not UTF-8 text",
                hint="save it as UTF-8",
            ) from None


@dataclass
class AgentRegistry:
    """The agents found by discovery, plus the problems met on the way."""

    agents: dict[str, AgentConfig] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    """Agent files that could not be loaded (``<file>: <problem>``)."""
    warnings: list[str] = field(default_factory=list)
    """Duplicate ids and similar non-fatal notes."""

    def get(self, agent_id: str) -> AgentConfig | None:
        return self.agents.get(agent_id)

    def raise_if_errors(self) -> None:
        if self.errors:
            more = f" (and {len(self.errors) - 1} more)" if len(self.errors) > 1 else ""
            raise InvalidDataError(f"invalid agent file {self.errors[0]}{more}", hint="fix or remove it")


def agent_directories(workspace: Workspace) -> list[Path]:
    """Where agents are searched, highest precedence first."""
    home = Path(os.environ.get("HOME") or Path.home())
    return [workspace.root / "agents", workspace.radium_dir / "agents", home / ".radium" / "agents"]


def discover_agents(workspace: Workspace) -> AgentRegistry:
    """Load every agent file, in precedence order, collecting errors and duplicates."""
    registry = AgentRegistry()
    seen_dirs: set[Path] = set()
    for directory in agent_directories(workspace):
        if not directory.is_dir() or directory.resolve() in seen_dirs:
            continue
        seen_dirs.add(directory.resolve())
        for path in sorted(directory.rglob("*.toml")):
            try:
                agent = load_agent_file(path, workspace.root)
            except InvalidDataError as exc:
                registry.errors.append(exc.message)  # the one hint is added where it is reported
                continue
            existing = registry.agents.get(agent.id)
            if existing is not None:
                registry.warnings.append(
                    f"duplicate agent id {agent.id!r}: {path} is ignored, {existing.source} is used"
                )
                continue
            registry.agents[agent.id] = agent
            if agent.api_key_env:
                register_secret_variable(agent.api_key_env)  # its value is redacted everywhere
    return registry


def load_agent_file(path: Path, workspace_root: Path) -> AgentConfig:
    """Parse and validate one agent file; resolve its prompt path."""
    data = load_toml(path)
    table = data.get("agent")
    if not isinstance(table, dict):
        raise InvalidDataError(f"{path}: missing [agent] table")
    try:
        agent = AgentConfig.model_validate(table)
    except ValidationError as exc:
        raise InvalidDataError(format_validation_error(path, exc, prefix="agent")) from None
    prompt = Path(agent.prompt_path).expanduser()
    if not prompt.is_absolute():
        beside = path.parent / prompt
        # The original resolved prompt paths against the working directory (its
        # workspace root); accept that layout too, but prefer the agent's folder.
        prompt = beside if beside.exists() or not (workspace_root / prompt).exists() else workspace_root / prompt
    return agent.model_copy(update={"source": path, "prompt_file": prompt.resolve()})
