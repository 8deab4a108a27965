"""Plans from free-form specs: the planner model writes markdown, Radium checks it.

**Which model.** In order: the agent named by ``[planner] agent = "<id>"`` in
``.radium/config.toml``; else the engine and model in ``RADIUM_ENGINE`` /
``RADIUM_MODEL``; else a ``MissingConfigurationError`` saying how to set one.
The ``mock`` engine is refused: it echoes its prompt and cannot write a plan.

**Which prompt.** ``[planner] prompt_path`` (relative to the workspace root)
if set; else the planner agent's own prompt file when it uses ``{{spec}}``;
else the shipped default (``radium/data/planner.md``). Templates may use
``{{spec}}`` and ``{{agents}}`` (the available agent ids, one per line); what a
template does not name is appended after it, so the model always gets both.

**Checking and repair.** The answer is parsed (``parse_plan_text``) and
validated (``validate_plan`` with the workspace's agents). If either fails, the
model is asked again, up to ``max_attempts`` in all (3), with its previous
answer and the list of problems quoted in the follow-up prompt. After that the
generation fails with a ``PlanValidationError`` listing the problems. Problems
the model cannot fix (an agent's prompt file is missing) do not trigger a
repair; they are reported as warnings when the plan is created.

Transient provider failures (rate limits, 5xx, timeouts, dropped connections)
are retried with the usual backoff (``RetryPolicy``) before they count as a
failure; provider retries are off, as everywhere in Radium.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from radium.engines import EngineSettings, GenerationParams, canonical_engine_name, create_engine
from radium.errors import (
    InvalidDataError,
    MissingConfigurationError,
    PlanValidationError,
    redact,
)
from radium.models import PlanManifest
from radium.planning.markdown import looks_like_plan, parse_plan_text
from radium.planning.validation import Problem, validate_plan
from radium.prompts import placeholders, render_template
from radium.retry import RetryPolicy, retry_call

if TYPE_CHECKING:
    from radium.agents import AgentRegistry
    from radium.workspace import Workspace

MAX_ATTEMPTS = 3
"""The first answer plus up to two repairs."""
NEEDS_BASE_URL = frozenset({"openai-compatible"})
"""Engines that cannot be configured from RADIUM_ENGINE alone."""
UNFIXABLE_BY_MODEL = frozenset({"missing-prompt"})
"""Validation problems the planner cannot fix by rewriting the plan."""
CONFIGURE_HINT = (
    'set [planner] agent = "<agent id>" in .radium/config.toml, or RADIUM_ENGINE and RADIUM_MODEL '
    "(e.g. RADIUM_ENGINE=openai RADIUM_MODEL=gpt-4o-mini); or write the plan yourself in the "
    "markdown plan format (`rad plan --help`)"
)


def default_prompt() -> str:
    """The shipped planner prompt (``radium/data/planner.md``)."""
    return resources.files("radium").joinpath("data", "planner.md").read_text(encoding="utf-8")


@dataclass(frozen=True)
class Planner:
    """The model that writes plans, and the prompt it gets."""

    settings: EngineSettings
    template: str
    label: str
    """E.g. ``agent planner (openai-compatible, model m)``, for messages."""
    prompt_source: str
    """``shipped default`` or the template's path."""
    retry_policy: RetryPolicy = field(default_factory=RetryPolicy)
    """Retries of transient provider failures (the planner agent's overrides apply)."""


def resolve_planner(
    workspace: "Workspace", registry: "AgentRegistry", environ: dict[str, str] | None = None
) -> Planner:
    """The planner to use (see the module docstring); raises ``MissingConfigurationError``."""
    env = os.environ if environ is None else environ
    config = workspace.config().get("planner") or {}
    if not isinstance(config, dict):
        raise InvalidDataError(f"{workspace.config_path}: [planner] must be a table")
    agent_id = config.get("agent")
    template: str | None = None
    prompt_source = "shipped default"
    policy = RetryPolicy()
    if agent_id:
        agent = registry.get(str(agent_id))
        if agent is None:
            known = ", ".join(sorted(registry.agents)) or "none"
            broken = f"; unreadable agent files: {registry.errors[0]}" if registry.errors else ""
            raise MissingConfigurationError(
                f"planner agent {agent_id!r} (set in {workspace.config_path} [planner]) is not defined "
                f"(agents found: {known}){broken}",
                hint="add agents/<id>.toml with that id, or change [planner] agent",
            )
        settings = agent.engine_settings(workspace.root)
        try:
            policy = policy.with_overrides(
                max_retries=agent.max_retries,
                base_delay_ms=agent.base_delay_ms,
                max_delay_ms=agent.max_delay_ms
                if agent.max_delay_ms is not None
                else (max(policy.max_delay_ms, agent.base_delay_ms) if agent.base_delay_ms else None),
            )
        except ValueError as exc:
            raise InvalidDataError(f"agent {agent.id} ({agent.source}): {exc}") from None
        model = settings.model or "default"
        label = f"agent {agent.id} ({settings.engine}, model {model})"
        try:
            agent_template = agent.prompt_file.read_text(encoding="utf-8")
        except OSError:
            agent_template = None
        if agent_template is not None and "spec" in placeholders(agent_template):
            template, prompt_source = agent_template, str(agent.prompt_file)
    elif env.get("RADIUM_ENGINE"):
        engine = env["RADIUM_ENGINE"]
        if canonical_engine_name(engine) is None:
            raise MissingConfigurationError(
                f"RADIUM_ENGINE={engine!r} is not a known engine", hint=CONFIGURE_HINT
            )
        settings = EngineSettings(
            engine=canonical_engine_name(engine) or engine,
            model=env.get("RADIUM_MODEL") or None,
            agent_id="planner",
            workdir=str(workspace.root),
        )
        label = f"{settings.engine} (model {settings.model or 'default'}, from RADIUM_ENGINE)"
    else:
        raise MissingConfigurationError(
            "no planner model is configured to turn a free-form spec into a plan", hint=CONFIGURE_HINT
        )
    if canonical_engine_name(settings.engine) == "mock":
        raise MissingConfigurationError(
            f"the planner is {label}: the mock engine only echoes its prompt and cannot write a plan "
            "from a free-form spec",
            hint="write the plan in the markdown plan format (see `rad plan --help`), or configure a "
            'real planner: [planner] agent = "<id>" in .radium/config.toml, or RADIUM_ENGINE/RADIUM_MODEL',
        )
    if not agent_id and settings.engine in NEEDS_BASE_URL:
        raise MissingConfigurationError(
            f"RADIUM_ENGINE={settings.engine} needs a server address, which only an agent file can give",
            hint='define a planner agent with base_url (agents/planner.toml) and set [planner] agent = "planner" '
            "in .radium/config.toml",
        )
    prompt_path = config.get("prompt_path")
    if prompt_path:
        path = Path(str(prompt_path)).expanduser()
        path = path if path.is_absolute() else workspace.root / path
        try:
            template, prompt_source = path.read_text(encoding="utf-8"), str(path)
        except OSError as exc:
            raise MissingConfigurationError(
                f"cannot read planner prompt {path} ([planner] prompt_path): {exc.strerror}",
                hint="fix prompt_path in .radium/config.toml",
            ) from None
    if template is None:
        template = default_prompt()
    return Planner(settings, template, label, prompt_source, policy)


# ---------------------------------------------------------------- prompts


def describe_agents(registry: "AgentRegistry") -> str:
    """The agent list shown to the planner: ``- id: name — description`` per line."""
    if not registry.agents:
        return (
            "(no agents are defined in this workspace yet: use short kebab-case ids such as "
            "`developer`, `tester` and `writer`; the user will define them)"
        )
    lines = []
    for agent_id in sorted(registry.agents):
        agent = registry.agents[agent_id]
        about = " — ".join(part for part in (agent.name, agent.description) if part)
        lines.append(f"- {agent_id}" + (f": {about}" if about else ""))
    return "\n".join(lines)


def build_prompt(template: str, spec: str, registry: "AgentRegistry") -> str:
    """Render the planner template; append the spec and agents if it does not name them."""
    agents = describe_agents(registry)
    named = placeholders(template)
    text = render_template(template, {"spec": spec.strip(), "agents": agents})
    extra = []
    if "agents" not in named:
        extra.append(f"Available agents (use these ids exactly):\n{agents}")
    if "spec" not in named:
        extra.append(f"Specification:\n\n{spec.strip()}")
    return text.rstrip() + ("\n\n" + "\n\n".join(extra) if extra else "") + "\n"


def repair_prompt(prompt: str, answer: str, problems: list[str], attempt: int) -> str:
    """The follow-up prompt: the original request, the rejected answer, what is wrong."""
    listed = "\n".join(f"- {p}" for p in problems)
    return (
        f"{prompt.rstrip()}\n\n"
        "---\n\n"
        f"Your previous answer (attempt {attempt}) could not be used. It was:\n\n"
        "<previous-answer>\n"
        f"{answer.strip()}\n"
        "</previous-answer>\n\n"
        f"It has these problems:\n{listed}\n\n"
        "Write the whole plan again in the required format, fixing every problem listed. "
        "Answer with the plan only.\n"
    )


_OPEN_FENCE = re.compile(r"^\s*(```|~~~)\s*(markdown|md|text)?\s*$", re.IGNORECASE)
_TITLE_LINE = re.compile(r"^#[ \t]+\S")


def extract_plan_text(answer: str) -> str:
    """The plan part of a model's answer.

    Models often wrap the plan in a ```` ```markdown ```` fence or add a
    sentence before it: an outer fence opened before the ``# `` title is
    removed (up to the last fence line), and lines before the title are dropped.
    A JSON answer is returned as it is.
    """
    text = answer.strip()
    if text.startswith("{"):
        return text
    lines = text.splitlines()
    title_at = next((i for i, line in enumerate(lines) if _TITLE_LINE.match(line)), None)
    fence_at = next((i for i, line in enumerate(lines) if _OPEN_FENCE.match(line)), None)
    if fence_at is not None and (title_at is None or fence_at < title_at):
        closing = [i for i in range(fence_at + 1, len(lines)) if _OPEN_FENCE.match(lines[i])]
        end = closing[-1] if closing else len(lines)
        inner = lines[fence_at + 1 : end]
        if any(_TITLE_LINE.match(line) for line in inner):
            lines = inner
            title_at = next((i for i, line in enumerate(lines) if _TITLE_LINE.match(line)), None)
    if title_at and looks_like_plan("\n".join(lines)) == "markdown":
        lines = lines[title_at:]
    return "\n".join(lines).strip() + "\n"


# ---------------------------------------------------------------- generation


@dataclass
class GeneratedPlan:
    manifest: PlanManifest
    answer: str
    """The accepted answer, as the model wrote it."""
    attempts: int
    warnings: list[Problem] = field(default_factory=list)
    """Validation warnings and problems the model could not fix."""


def check_answer(answer: str, registry: "AgentRegistry") -> tuple[PlanManifest | None, list[str], list[Problem]]:
    """Parse and validate one answer: (manifest or None, blocking problems, warnings)."""
    try:
        manifest = parse_plan_text(extract_plan_text(answer), "answer")
    except InvalidDataError as exc:
        return None, [exc.message.removeprefix("answer: ")], []
    report = validate_plan(manifest, registry if registry.agents else None)
    blocking = [p.message for p in report.errors if p.code not in UNFIXABLE_BY_MODEL]
    warnings = [*(p for p in report.errors if p.code in UNFIXABLE_BY_MODEL), *report.warnings]
    return manifest, blocking, warnings


async def generate_plan(
    planner: Planner,
    spec: str,
    registry: "AgentRegistry",
    *,
    notify: Callable[[str], None] = lambda message: None,
    max_attempts: int = MAX_ATTEMPTS,
    retry_policy: RetryPolicy | None = None,
) -> GeneratedPlan:
    """Ask the planner for a plan; repair it up to ``max_attempts - 1`` times."""
    engine = create_engine(planner.settings)
    engine.preflight()
    policy = retry_policy or planner.retry_policy
    base_prompt = build_prompt(planner.template, spec, registry)
    prompt = base_prompt
    problems: list[str] = []
    try:
        for attempt in range(1, max_attempts + 1):
            notify(f"Asking the planner ({planner.label}), attempt {attempt}/{max_attempts}…")
            # A planner may echo a key: keep it out of the plan, the messages and the repair prompt.
            answer = redact(await _call(engine, prompt, planner.settings, policy, notify), engine.secrets)
            manifest, problems, warnings = check_answer(answer, registry)
            if manifest is not None and not problems:
                return GeneratedPlan(manifest, answer, attempt, warnings)
            shown = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
            notify(f"  The answer is not a valid plan: {shown}")
            prompt = repair_prompt(base_prompt, answer, problems, attempt)
    finally:
        await engine.aclose()
    shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
    raise PlanValidationError(
        f"the planner did not produce a valid plan in {max_attempts} attempts: {shown}",
        problems=problems,
        hint="refine the spec, use a stronger planner model, or write the plan in the markdown format",
    )


async def _call(engine, prompt: str, settings: EngineSettings, policy: RetryPolicy, notify) -> str:  # noqa: ANN001
    params = GenerationParams(timeout_s=settings.timeout_s or policy.timeout_s)

    async def attempt(index: int) -> str:
        return (await engine.generate(prompt, params)).text

    def announce(error, wait, index) -> None:  # noqa: ANN001
        notify(f"  Attempt {index + 1}: Error ({error.kind}) → {wait.explain()}")

    return await retry_call(attempt, policy, on_retry=announce)
