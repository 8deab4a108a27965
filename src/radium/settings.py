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
    timeout_s: float | None = Field(None, gt=0)
    parallel: int = Field(1, ge=1)
    keep_going: bool = False
    dependency_output_chars: int = Field(4000, ge=100)
    context_files: list[str] = Field(default_factory=list)
    engine: str | None = None
    model: str | None = None
    backend: Literal["local", "ray"] = "local"
    """Where attempts run: in this process, or as Ray tasks (``radium.dispatch``)."""
    ray_address: str | None = None
    """An existing Ray cluster to join (``auto``: ``RAY_ADDRESS``); none starts a local Ray instance."""
    ray_schedule_timeout_s: float = Field(60.0, ge=0)
    """How long a task no node has the resources for waits for one to join before it fails."""

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
