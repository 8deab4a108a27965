"""Run settings: one precedence, in one place.

Each ``rad craft`` setting can come from a command-line flag, a ``RADIUM_*``
environment variable, the ``[execution]`` table of ``.radium/config.toml``, or
the default, in that order of precedence. ``--iterations`` is
``RADIUM_ITERATIONS`` and ``iterations = 5`` in the config file, and so on for
every field of ``ExecutionSettings``. A bad value is reported with where it
came from (``RADIUM_MAX_RETRIES=abc: …``).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from radium.errors import InvalidDataError

if TYPE_CHECKING:
    from radium.ratelimit import Pacing
    from radium.reporting.budget import Budget
    from radium.retry import RetryPolicy


class ExecutionSettings(BaseModel):
    """Every setting of a run, with its default."""

    model_config = ConfigDict(extra="forbid")

    iterations: int = Field(5, ge=1)
    yolo: bool = False
    max_retries: int = Field(3, ge=0)
    base_delay_ms: int = Field(1000, ge=0)
    max_delay_ms: int = Field(60_000, ge=0)
    jitter: bool = False
    max_retry_after_s: float = Field(300.0, ge=0)
    max_rate_limit_wait_s: float = Field(900.0, ge=0)
    shared_rate_limits: bool = True
    timeout_s: float | None = Field(None, gt=0)
    parallel: int = Field(1, ge=1)
    keep_going: bool = False
    dependency_output_chars: int = Field(4000, ge=100)
    context_files: list[str] = Field(default_factory=list)
    engine: str | None = None
    model: str | None = None
    max_tokens: int | None = Field(None, ge=1)
    max_cost_usd: float | None = Field(None, gt=0)
    backend: Literal["local", "ray"] = "local"
    """Where attempts run: in this process, or as Ray tasks (``radium.dispatch``)."""
    ray_address: str | None = None
    """An existing Ray cluster to join (``auto``: ``RAY_ADDRESS``); none starts a local Ray instance."""
    ray_schedule_timeout_s: float = Field(60.0, ge=0)
    """How long a task no node has the resources for waits for one to join before it fails."""

    def budget(self) -> "Budget | None":
        """The run's budget, or None when neither limit is set."""
        if self.max_tokens is None and self.max_cost_usd is None:
            return None
        from radium.reporting.budget import Budget

        return Budget(max_tokens=self.max_tokens, max_cost_usd=self.max_cost_usd)

    def dispatcher_options(self) -> dict[str, Any]:
        """The options ``radium.dispatch.create_dispatcher`` takes for this run's backend."""
        if self.backend != "ray":
            return {}
        return {"address": self.ray_address, "schedule_timeout_s": self.ray_schedule_timeout_s}

    def retry_policy(self) -> "RetryPolicy":
        """The run's retry policy from these settings."""
        from radium.retry import RetryPolicy

        return RetryPolicy(
            max_retries=self.max_retries,
            base_delay_ms=self.base_delay_ms,
            max_delay_ms=self.max_delay_ms,
            jitter=self.jitter,
            max_retry_after_s=self.max_retry_after_s,
            max_rate_limit_wait_s=self.max_rate_limit_wait_s,
            timeout_s=self.timeout_s,
        )


ENV_PREFIX = "RADIUM_"


def resolve_settings(
    flags: Mapping[str, Any],
    config: Mapping[str, Any],
    env: Mapping[str, str] | None = None,
    config_path: str = ".radium/config.toml",
) -> tuple[ExecutionSettings, frozenset[str]]:
    """Merge the layers; return the settings and the names given on the command line.

    ``flags`` holds command-line values, ``None`` meaning "not given".
    """
    env = os.environ if env is None else env
    table = config.get("execution", {})
    if not isinstance(table, dict):
        raise InvalidDataError(f"{config_path}: [execution] must be a table")
    fields = ExecutionSettings.model_fields
    merged: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name, value in table.items():
        if name not in fields:
            raise InvalidDataError(
                f"{config_path}: unknown setting execution.{name}",
                hint=f"known settings: {', '.join(fields)}",
            )
        merged[name], sources[name] = value, f"{config_path}: execution.{name}"
    for name in fields:
        raw = env.get(ENV_PREFIX + name.upper())
        if raw is not None and raw != "":
            merged[name] = raw.split(os.pathsep) if name == "context_files" else raw
            sources[name] = f"{ENV_PREFIX}{name.upper()}={raw}"
    explicit = set()
    for name, value in flags.items():
        if value is not None and not (isinstance(value, tuple) and not value):
            merged[name] = [str(v) for v in value] if isinstance(value, tuple) else value
            sources[name] = "--" + name.replace("_", "-")
            explicit.add(name)
    try:
        settings = ExecutionSettings.model_validate(merged)
    except ValidationError as exc:
        problem = exc.errors()[0]
        name = str(problem["loc"][0]) if problem["loc"] else "?"
        raise InvalidDataError(f"{sources.get(name, name)}: {problem['msg']}") from None
    if settings.max_delay_ms < settings.base_delay_ms:
        raise InvalidDataError(
            f"max_delay_ms ({settings.max_delay_ms}) is below base_delay_ms ({settings.base_delay_ms})",
            hint="raise --max-delay-ms or lower --base-delay-ms",
        )
    if "ray_address" in explicit and settings.backend != "ray":
        raise InvalidDataError("--ray-address needs the ray backend", hint="add --backend ray")
    return settings, frozenset(explicit)


class _PacingTable(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rpm: float | None = Field(None, gt=0)
    tpm: float | None = Field(None, gt=0)


def rate_limit_pacing(config: Mapping[str, Any], config_path: str = ".radium/config.toml") -> dict[str, "Pacing"]:
    """Client-side pacing per provider, from ``[rate_limits.<engine name or base_url>]``.

    ::

        [rate_limits.openai]                       # every openai agent
        rpm = 500
        tpm = 200000
        [rate_limits."http://localhost:8000/v1"]   # one self-hosted server
        rpm = 60
    """
    from radium.ratelimit import Pacing

    table = config.get("rate_limits", {})
    if not isinstance(table, dict):
        raise InvalidDataError(f"{config_path}: [rate_limits] must be a table of tables")
    pacing = {}
    for name, values in table.items():
        if not isinstance(values, dict):
            raise InvalidDataError(
                f"{config_path}: rate_limits.{name} must be a table", hint=f'write [rate_limits."{name}"] with rpm/tpm'
            )
        try:
            parsed = _PacingTable.model_validate(values)
        except ValidationError as exc:
            problem = exc.errors()[0]
            where = ".".join(str(part) for part in problem["loc"])
            raise InvalidDataError(
                f"{config_path}: rate_limits.{name}.{where}: {problem['msg']}", hint="use rpm = N and tpm = N"
            ) from None
        pacing[str(name).rstrip("/")] = Pacing(rpm=parsed.rpm, tpm=parsed.tpm)
    return pacing


class ContextSettings(BaseModel):
    """The ``[context]`` table: what context files may be read (see ``radium.prompts.ContextPolicy``)."""

    model_config = ConfigDict(extra="forbid")

    allow_dirs: list[str] = Field(default_factory=list)
    """Directories outside the workspace that AGENTS.md and ``@path`` imports may read from."""
    max_file_bytes: int = Field(1024 * 1024, ge=1)
    """The largest context file (and import) read, in bytes."""


def resolve_context_settings(config: Mapping[str, Any], config_path: str = ".radium/config.toml") -> ContextSettings:
    table = config.get("context", {})
    if not isinstance(table, dict):
        raise InvalidDataError(f"{config_path}: [context] must be a table")
    try:
        return ContextSettings.model_validate(table)
    except ValidationError as exc:
        problem = exc.errors()[0]
        name = ".".join(str(part) for part in problem["loc"]) or "?"
        known = ", ".join(ContextSettings.model_fields)
        raise InvalidDataError(f"{config_path}: context.{name}: {problem['msg']}", hint=f"known settings: {known}") from None
