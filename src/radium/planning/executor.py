"""The plan executor: runs a plan's tasks in order, with retries and checkpoints.

This mirrors the original Radium's ``radium_core::planning::executor`` API
(``PlanExecutor``, ``ExecutionConfig``, ``RunMode``, ``ExecutionError``,
``ErrorCategory``, ``TaskResult``) but owns the whole run loop, which the
original left in its CLI. Semantics (see the README, "How a run proceeds"):

* **Iterations run in order.** The next iteration starts when the current one
  has no runnable work left. Inside an iteration, tasks run in dependency order:
  a topological order that keeps file order among independent tasks; with
  ``parallel > 1`` up to that many ready tasks run at once.
* **Bounded mode** runs at most N iterations that still have work, then stops
  (``bound_reached``) if work remains; **continuous mode** runs everything, with
  a sanity limit of 1000 iterations per run.
* **Completed tasks are skipped**; a task left ``in_progress`` by a crash, a
  task that failed or was blocked in an earlier run is attempted again.
* **Failure**: a fatal error or exhausted retries marks the task ``failed`` and
  every task depending on it (directly or not) ``blocked``. By default no new
  task starts after that (in-flight ones finish and are saved); with
  ``keep_going`` the independent rest still runs.
* **Checkpoints** are written when a task starts, completes, fails or is
  returned to pending, and at every stop; the task's output is stored before
  the checkpoint that marks it completed.
* **Cancellation** (the CLI cancels the run on SIGINT/SIGTERM) stops in-flight
  model calls and backoff waits at once, returns their tasks to ``pending``,
  saves, emits ``run_finished`` with outcome ``interrupted`` and re-raises.

The executor is quiet: it reports through events (``radium.events``) and never
prints or exits, except ``print_progress`` which exists for API parity.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import math
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Awaitable, Callable

from radium.engines.base import Engine, EngineResponse, GenerationParams
from radium.errors import (
    AgentNotFoundError,
    DependencyNotMetError,
    ErrorCategory,
    InvalidDataError,
    ExitCode,
    ModelExecutionError,
    ModelTimeoutError,
    PlanValidationError,
    RadiumError,
    redact,
)
from radium.errors import RadiumError as ExecutionError
from radium.events import Event, EventSink, discard
from radium.models import Iteration, PlanManifest, PlanTask, TaskErrorRecord, TaskStatus, TokenUsage, utc_now_iso
from radium.prompts import DependencyOutput, TaskPromptInput, build_task_prompt
from radium.retry import RetryPolicy, Wait, retry_call
from radium.store import ManifestSerializer, PlanStore, load_manifest

if TYPE_CHECKING:
    from radium.agents import AgentConfig, AgentRegistry

__all__ = [
    "CONTINUOUS_SANITY_LIMIT",
    "ErrorCategory",
    "ExecutionConfig",
    "ExecutionError",
    "PlanExecutor",
    "RunMode",
    "RunResult",
    "TaskResult",
]

CONTINUOUS_SANITY_LIMIT = 1000
"""Continuous mode stops after this many iterations in one run."""


@dataclass(frozen=True)
class RunMode:
    """Bounded (at most ``max_iterations`` iterations per run) or continuous (``None``)."""

    max_iterations: int | None = 5

    @classmethod
    def bounded(cls, iterations: int = 5) -> "RunMode":
        if iterations < 1:
            raise ValueError("iterations must be at least 1")
        return cls(iterations)

    @classmethod
    def continuous(cls) -> "RunMode":
        return cls(None)

    @property
    def is_continuous(self) -> bool:
        return self.max_iterations is None

    @property
    def limit(self) -> int:
        return CONTINUOUS_SANITY_LIMIT if self.max_iterations is None else self.max_iterations


@dataclass
class ExecutionConfig:
    """How a run behaves. The first six fields and their defaults are the seed's."""

    resume: bool = False
    """Say where the run resumes (completed tasks are skipped either way)."""
    skip_completed: bool = True
    """Never re-run completed tasks. ``False`` (or ``restart``) re-runs everything."""
    check_dependencies: bool = True
    """Refuse to run a task whose dependencies have not completed (blocks it)."""
    state_path: Path = Path("plan/plan_manifest.json")
    """Manifest path, relative to the plan folder unless absolute."""
    context_files: str | None = None
    """Context text injected into every prompt (already loaded and formatted)."""
    run_mode: RunMode = field(default_factory=RunMode)
    """Bounded (default 5 iterations) or continuous."""
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    """Retry policy; agents may override fields not set explicitly on the command line."""
    retry_explicit: frozenset[str] = frozenset()
    """Retry fields given on the command line: agent settings do not override these."""
    parallel: int = 1
    """Run up to this many ready tasks of an iteration at once."""
    keep_going: bool = False
    """After a failure, still run the tasks that do not depend on it."""
    restart: bool = False
    """Forget recorded progress and run every task again."""
    only_iteration: str | None = None
    only_task: str | None = None
    dependency_output_chars: int = 4000
    """Each dependency output is cut to this many characters in a prompt."""
    engine_override: str | None = None
    model_override: str | None = None
    plan_label: str = ""
    """How the user names this plan (for the next command in messages)."""
    save_prompts: bool = True
    """Store each task's rendered prompt beside its output."""


@dataclass
class TaskResult:
    """The outcome of executing one task (one attempt, or all attempts with retries)."""

    task_id: str
    success: bool
    output: str | None = None
    error: RadiumError | None = None
    attempts: int = 0
    duration_ms: int = 0
    usage: TokenUsage | None = None


@dataclass
class RunResult:
    """What a whole run did; ``exit_code`` is what the CLI exits with."""

    outcome: str
    exit_code: int
    message: str
    completed: int = 0
    failed: int = 0
    blocked: int = 0
    remaining: int = 0
    total: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    wall_ms: int = 0
    next_command: str | None = None
    failures: list[tuple[str, RadiumError]] = field(default_factory=list)
    blocked_reasons: dict[str, str] = field(default_factory=dict)
    interrupted_tasks: list[str] = field(default_factory=list)


class PlanExecutor:
    """Executes a plan manifest with an agent registry, reporting through events.

    ``sleep`` and ``clock`` are injectable so retry behaviour can be tested
    without waiting; ``engine_factory`` builds an engine from settings (default
    ``radium.engines.create_engine``).
    """

    def __init__(
        self,
        config: ExecutionConfig | None = None,
        *,
        store: PlanStore | None = None,
        agents: "AgentRegistry | None" = None,
        workdir: Path | None = None,
        on_event: EventSink = discard,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        engine_factory: Callable[..., Engine] | None = None,
    ) -> None:
        self.config = config or ExecutionConfig()
        self.store = store
        self.agents = agents
        self.workdir = workdir
        self.emit = on_event
        self._sleep = sleep
        self._clock = clock
        if engine_factory is None:
            from radium.engines import create_engine

            engine_factory = create_engine
        self._engine_factory = engine_factory
        self._engines: dict[object, Engine] = {}
        self._manifest: PlanManifest | None = None
        self._index: dict[str, tuple[Iteration, PlanTask]] = {}
        self._position: dict[str, int] = {}
        self._templates: dict[str, str] = {}
        self._serializer = ManifestSerializer()
        self._changed: dict[int, Iteration] | None = None  # None: everything changed
        self._changed_tasks: dict[str, PlanTask] = {}
        self._prompts: dict[str, str] = {}
        """Prompts of the running tasks, rendered once at start and reused by every attempt."""
        self.retries = 0
        self.interrupt_exit_code = int(ExitCode.SIGINT)
        """Exit code reported when the run is cancelled (the CLI sets 143 for SIGTERM)."""

    # ------------------------------------------------------------------ seed API

    def load_manifest(self, path: Path) -> PlanManifest:
        """Load and validate a manifest (``InvalidDataError`` names file and field)."""
        manifest = load_manifest(path)
        self._attach(manifest)
        return manifest

    def save_manifest(self, manifest: PlanManifest, path: Path | None = None) -> None:
        """Write the whole manifest atomically and durably (to the store, or to ``path``)."""
        store = self.store if path is None else PlanStore(path.parent.parent, path)
        if store is None:
            raise ValueError("no store configured and no path given")
        store.save(manifest)

    def check_dependencies(self, manifest: PlanManifest, task: PlanTask) -> None:
        """Raise ``DependencyNotMetError`` if a dependency is unknown or not completed."""
        index = self._index if manifest is self._manifest else manifest.task_index()
        unmet = _unmet_dependency(task, index)
        if unmet is not None:
            raise DependencyNotMetError(unmet[1])

    def calculate_progress(self, manifest: PlanManifest) -> int:
        """Percent of tasks completed, ``floor(completed / total * 100)``."""
        return manifest.calculate_progress()

    def format_progress(
        self, manifest: PlanManifest, iteration: int, elapsed_s: float, current_task: str | None
    ) -> str:
        """The seed's two progress lines."""
        completed, total = manifest.counts()
        percent = math.floor(completed * 100 / total) if total else 0
        return (
            f"[Iteration {iteration}] Progress: {completed}/{total} tasks | "
            f"Current: {current_task or 'Evaluating next task'} | Elapsed: {format_elapsed(elapsed_s)}\n"
            f"• Progress: {percent}%"
        )

    def print_progress(
        self, manifest: PlanManifest, iteration: int, elapsed_s: float, current_task: str | None
    ) -> None:
        """Print the progress lines (API parity with the seed; the CLI uses events)."""
        print(self.format_progress(manifest, iteration, elapsed_s, current_task))

    async def execute_task(
        self, task: PlanTask, model: Engine, *, timeout_s: float | None = None
    ) -> TaskResult:
        """One attempt: render the prompt, call the model. Errors become a failed result."""
        started = self._clock()
        try:
            prompt = self._prompts.get(task.id) or self.render_prompt(task)
            response = await self._call_engine(model, prompt, timeout_s)
        except RadiumError as exc:
            return TaskResult(task.id, False, error=exc, attempts=1, duration_ms=self._ms_since(started))
        usage = (
            TokenUsage(
                prompt_tokens=response.usage.prompt_tokens,
                completion_tokens=response.usage.completion_tokens,
            )
            if response.usage
            else None
        )
        return TaskResult(
            task.id, True, output=response.text, attempts=1, duration_ms=self._ms_since(started), usage=usage
        )

    async def execute_task_with_retry(
        self,
        task: PlanTask,
        model: Engine,
        max_retries: int | None = None,
        base_delay_ms: int | None = None,
    ) -> TaskResult:
        """Execute ``task`` with retries for recoverable errors.

        ``max_retries``/``base_delay_ms`` default to the effective policy (3 and
        1000 ms unless configured). Before retry ``k`` the executor waits
        ``base_delay_ms * 2^k`` (capped, optionally jittered, never less than a
        server's Retry-After). Each failed attempt is recorded on the task and
        emitted as ``attempt_failed``.
        """
        policy = self.policy_for(task).with_overrides(max_retries=max_retries, base_delay_ms=base_delay_ms)
        started = self._clock()
        usage = TokenUsage()
        made = 0

        async def attempt(index: int) -> TaskResult:
            nonlocal made
            result = await self.execute_task(task, model, timeout_s=policy.timeout_s)
            task.attempts += 1  # the manifest keeps the total over all runs
            made += 1
            if result.usage:
                usage.prompt_tokens += result.usage.prompt_tokens
                usage.completion_tokens += result.usage.completion_tokens
            if not result.success:
                assert result.error is not None
                raise result.error
            return result

        def announce(error: RadiumError, wait: Wait, index: int) -> None:
            self.retries += 1
            self.emit(
                Event(
                    "attempt_failed",
                    {
                        "task_id": task.id,
                        "attempt": index + 1,
                        "category": error.category.value,
                        "kind": error.kind,
                        "message": str(error),
                        "delay_ms": round(wait.delay_ms),
                        "retry_index": index,
                        "line": f"Attempt {index + 1}: Error ({error.kind}) → {wait.explain()}",
                    },
                )
            )

        try:
            result = await retry_call(attempt, policy, on_retry=announce, sleep=self._sleep)
        except RadiumError as error:
            result = TaskResult(task.id, False, error=error)
        result.attempts = made
        result.duration_ms = self._ms_since(started)
        result.usage = usage if usage.total_tokens else None
        return result

    # ------------------------------------------------------------------ prompts and engines

    def _attach(self, manifest: PlanManifest) -> None:
        self._manifest = manifest
        self._index = manifest.task_index()
        self._position = {task_id: n for n, task_id in enumerate(self._index)}

    def agent_for(self, task: PlanTask) -> "AgentConfig | None":
        if self.agents is None or not task.agent_id:
            return None
        return self.agents.get(task.agent_id)

    def policy_for(self, task: PlanTask) -> RetryPolicy:
        """The run's retry policy with the task's agent overrides (CLI flags still win)."""
        policy = self.config.retry
        agent = self.agent_for(task)
        if agent is None:
            return policy
        overrides = {
            name: getattr(agent, name)
            for name in ("max_retries", "base_delay_ms", "max_delay_ms", "timeout_s")
            if name not in self.config.retry_explicit
        }
        base = overrides.get("base_delay_ms")
        if base is not None and overrides.get("max_delay_ms") is None and "max_delay_ms" not in self.config.retry_explicit:
            # An agent raising its base delay above the run's (default) cap raises the cap too.
            overrides["max_delay_ms"] = max(policy.max_delay_ms, base)
        try:
            return policy.with_overrides(**overrides)
        except ValueError as exc:
            raise InvalidDataError(
                f"agent {agent.id} ({agent.source}): retry settings conflict with the run's: {exc}",
                hint="make max_delay_ms at least base_delay_ms, in the agent file or on the command line",
            ) from None

    def engine_for(self, task: PlanTask) -> Engine:
        """The (shared) engine for a task's agent, created on first use."""
        agent = self.agent_for(task)
        if agent is None:
            if self.agents is not None and task.agent_id:
                raise AgentNotFoundError(f"task {task.id}: agent {task.agent_id!r} not found")
            from radium.engines.base import EngineSettings

            settings = EngineSettings(
                engine=self.config.engine_override or "mock", model=self.config.model_override
            )
        else:
            settings = agent.engine_settings(
                self.workdir, engine=self.config.engine_override, model=self.config.model_override
            )
        engine = self._engines.get(settings)
        if engine is None:
            engine = self._engine_factory(settings)
            engine.preflight()
            self._engines[settings] = engine
        return engine

    def render_prompt(self, task: PlanTask) -> str:
        """The exact prompt ``task`` sends: its agent's template plus everything it omits."""
        if self._manifest is None:
            raise RuntimeError("no manifest loaded")
        iteration = self._index[task.id][0]
        agent = self.agent_for(task)
        template = ""
        if agent is not None:
            template = self._templates.get(agent.id)
            if template is None:
                template = self._templates[agent.id] = agent.read_prompt()
        dependencies = []
        for dep_id in task.dependencies:
            entry = self._index.get(dep_id)
            if entry is None:
                continue
            dep = entry[1]
            text = self.store.read_output(dep) if self.store is not None and dep.completed else None
            dependencies.append(DependencyOutput(dep.id, dep.title, text))
        return build_task_prompt(
            template,
            TaskPromptInput(
                task_id=task.id,
                task_title=task.title,
                task_description=task.description,
                acceptance_criteria=task.acceptance_criteria,
                iteration_id=iteration.id,
                iteration_name=iteration.name,
                iteration_goal=iteration.goal,
                project_name=self._manifest.project_name,
                dependencies=dependencies,
                context=self.config.context_files or "",
                output_limit=self.config.dependency_output_chars,
            ),
        )

    async def _call_engine(self, engine: Engine, prompt: str, timeout_s: float | None) -> EngineResponse:
        # The engine enforces the timeout itself (and maps it); the outer limit
        # is a safety net for engines that cannot, with a small grace period.
        params = GenerationParams(timeout_s=timeout_s)
        try:
            if timeout_s is None:
                return await engine.generate(prompt, params)
            async with asyncio.timeout(timeout_s + engine.timeout_grace_s):
                return await engine.generate(prompt, params)
        except TimeoutError:
            raise ModelTimeoutError(f"{engine.name}: no answer within {timeout_s:g} s") from None
        except RadiumError as exc:
            if engine.secrets:
                exc.message = redact(exc.message, engine.secrets)
            # The provider's own exception (hidden by ``from None``) may hold an
            # echoed key; drop it so nothing that walks __context__ can print it.
            exc.__context__ = None
            raise
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # an engine bug or an unmapped error: retryable, and say what it was
            raise ModelExecutionError(
                redact(f"{engine.name}: unexpected {type(exc).__name__}: {exc}", engine.secrets)
            ) from exc

    async def aclose(self) -> None:
        for engine in self._engines.values():
            try:
                await engine.aclose()
            except Exception:  # closing is best effort; the run's outcome is already decided
                pass
        self._engines.clear()

    def _ms_since(self, started: float) -> int:
        return int((self._clock() - started) * 1000)

    # ------------------------------------------------------------------ the run

    def prepare(self, manifest: PlanManifest) -> list[tuple[Iteration, list[PlanTask]]]:
        """Validate and reset state; return the selected, incomplete work per iteration.

        Raises (before any model call) ``PlanValidationError`` for structural
        problems, ``DependencyNotMetError`` when ``--task``/``--iteration``
        selects work whose outside dependencies have not completed, and any
        agent/prompt/engine configuration error of the tasks about to run.
        """
        from radium.planning.validation import validate_plan

        validate_plan(manifest).raise_if_errors()
        self._attach(manifest)
        self._changed = None
        config = self.config
        restart = config.restart or not config.skip_completed
        in_scope = self._scope(manifest)
        for _, task in manifest.tasks():
            if restart and task.id in in_scope:
                task.reset()  # --restart forgets only what this run will redo
            elif task.status in (TaskStatus.IN_PROGRESS, TaskStatus.BLOCKED, TaskStatus.FAILED):
                task.set_status(TaskStatus.PENDING)
        for iteration in manifest.iterations:
            iteration.refresh_status()

        selected = self._select(manifest)
        if self.agents is not None:
            # A task naming no agent is skipped, as the original Radium did ("No agent
            # assigned, skipping"): it stays pending and its dependents are blocked.
            selected = [
                (iteration, kept)
                for iteration, tasks in selected
                if (kept := [t for t in tasks if t.agent_id])
            ]
        for _, tasks in selected:
            for task in tasks:
                agent = self.agent_for(task)
                if self.agents is not None:
                    if agent is None:
                        known = ", ".join(sorted(self.agents.agents)) or "none"
                        raise AgentNotFoundError(
                            f"task {task.id} uses unknown agent {task.agent_id!r}",
                            hint=f"known agents: {known}; see `rad agents`",
                        )
                    if agent.id not in self._templates:
                        self._templates[agent.id] = agent.read_prompt()
                self.policy_for(task)
                self.engine_for(task)
        return selected

    def _scope(self, manifest: PlanManifest) -> set[str]:
        """Ids of the tasks ``--task``/``--iteration`` put in reach of this run (all by default)."""
        if self.config.only_task is not None:
            return {self.config.only_task}
        if self.config.only_iteration is not None:
            return {t.id for it in manifest.iterations if it.id == self.config.only_iteration for t in it.tasks}
        return set(self._index)

    def _select(self, manifest: PlanManifest) -> list[tuple[Iteration, list[PlanTask]]]:
        config = self.config
        if config.only_task is not None:
            entry = self._index.get(config.only_task)
            if entry is None:
                raise PlanValidationError(f"--task {config.only_task}: no such task in the plan")
            iteration, task = entry
            if config.only_iteration is not None and iteration.id != config.only_iteration:
                raise PlanValidationError(
                    f"--task {task.id} is in iteration {iteration.id}, not {config.only_iteration}"
                )
            self._require_outside_dependencies([task], {task.id})
            return [] if task.completed else [(iteration, [task])]
        if config.only_iteration is not None:
            for iteration in manifest.iterations:
                if iteration.id == config.only_iteration:
                    tasks = [t for t in iteration.tasks if not t.completed]
                    self._require_outside_dependencies(tasks, {t.id for t in iteration.tasks})
                    return [(iteration, tasks)] if tasks else []
            ids = ", ".join(it.id for it in manifest.iterations)
            raise PlanValidationError(f"--iteration {config.only_iteration}: no such iteration (have {ids})")
        return [
            (iteration, tasks)
            for iteration in manifest.iterations
            if (tasks := [t for t in iteration.tasks if not t.completed])
        ]

    def _require_outside_dependencies(self, tasks: list[PlanTask], inside: set[str]) -> None:
        for task in tasks:
            unmet = _unmet_dependency(task, self._index, skip=inside)
            if unmet is not None:
                raise DependencyNotMetError(
                    f"task {task.id} depends on {unmet[0]}, which has not completed",
                    hint=f"run it first (rad craft {self.config.plan_label} --task {unmet[0]}) or drop the filter",
                )

    def planned_order(
        self, selected: list[tuple[Iteration, list[PlanTask]]]
    ) -> list[tuple[Iteration, list[PlanTask]]]:
        """The order a run would take if every task succeeded (for ``--dry-run``).

        Applies the iteration bound, and within an iteration the same rule as
        the scheduler: dependency order, file order among independent tasks.
        """
        planned = []
        for iteration, tasks in selected[: self.config.run_mode.limit]:
            in_run = {t.id for t in tasks}
            waiting = {t.id: sum(dep in in_run for dep in t.dependencies) for t in tasks}
            dependents: dict[str, list[str]] = {}
            for task in tasks:
                for dep in task.dependencies:
                    if dep in in_run:
                        dependents.setdefault(dep, []).append(task.id)
            ready = [(self._position[t.id], t.id) for t in tasks if waiting[t.id] == 0]
            heapq.heapify(ready)
            order: list[PlanTask] = []
            while ready:
                _, task_id = heapq.heappop(ready)
                order.append(self._index[task_id][1])
                for dependent in dependents.get(task_id, ()):
                    waiting[dependent] -= 1
                    if waiting[dependent] == 0:
                        heapq.heappush(ready, (self._position[dependent], dependent))
            planned.append((iteration, order))
        return planned

    async def run(self, manifest: PlanManifest) -> RunResult:
        """Run the plan: the whole loop, from validation to the final checkpoint."""
        started = self._clock()
        selected = self.prepare(manifest)
        completed, total = manifest.counts()
        state = _RunState(manifest, started, counts=(completed, total))
        next_task = selected[0][1][0].id if selected else None
        mode = self.config.run_mode
        self.emit(
            Event(
                "run_started",
                {
                    "plan": self.config.plan_label,
                    "project": manifest.project_name,
                    "mode": "continuous" if mode.is_continuous else "bounded",
                    "max_iterations": mode.limit,
                    "total_tasks": total,
                    "completed_tasks": completed,
                    "parallel": self.config.parallel,
                    "resume_from": next_task,
                    "resume": self.config.resume,
                },
            )
        )
        outcome = "completed"
        executed = 0
        try:
            for iteration, tasks in selected:
                # Tasks already blocked by an earlier failure were reported then; an
                # iteration with nothing else left neither runs nor counts.
                pending = [t for t in tasks if not t.completed and t.status is not TaskStatus.BLOCKED]
                if not pending:
                    continue
                if executed >= mode.limit:
                    outcome = "sanity_limit" if mode.is_continuous else "bound_reached"
                    break
                executed += 1
                self.emit(
                    Event(
                        "iteration_started",
                        {
                            "iteration_id": iteration.id,
                            "number": iteration.number,
                            "name": iteration.name,
                            "goal": iteration.goal,
                            "tasks_remaining": len(pending),
                        },
                    )
                )
                await self._run_iteration(iteration, pending, state)
                if state.failures and not self.config.keep_going:
                    outcome = "failed"
                    break
            await self._checkpoint(manifest, final=True)
        except asyncio.CancelledError:
            runners = list(state.running)
            self._save_after_cancel(manifest, state)
            if runners:
                # Let cancelled calls clean up (kill subprocess groups, close sockets).
                await asyncio.wait(runners, timeout=5)
            result = self._finish(manifest, state, "interrupted")
            self.emit(Event("run_finished", self._result_fields(result)))
            raise
        except BaseException:
            # A checkpoint that cannot be written, or a bug: stop the other calls and
            # save what can be saved before the error reaches the user.
            runners = list(state.running)
            for runner in runners:
                runner.cancel()
            if runners:
                await asyncio.wait(runners, timeout=5)
            with contextlib.suppress(Exception):
                self._save_after_cancel(manifest, state)
            raise
        finally:
            await self.aclose()
        # A failure decides the exit code even when the bound was reached too (--keep-going).
        bound_hit = outcome in ("bound_reached", "sanity_limit")
        if state.failures:
            outcome = "failed"
        elif state.blocked and not bound_hit:
            outcome = "blocked"
        elif outcome == "completed" and (self.config.only_task or self.config.only_iteration):
            outcome = "filtered"
        result = self._finish(manifest, state, outcome)
        if bound_hit and outcome == "failed":
            result.message += f" (the iteration bound of {mode.limit} was reached too)"
        self.emit(Event("run_finished", self._result_fields(result)))
        return result

    async def _run_iteration(self, iteration: Iteration, tasks: list[PlanTask], state: "_RunState") -> None:
        """Run one iteration's tasks in dependency order, up to ``parallel`` at once."""
        in_run = {t.id for t in tasks}
        waiting_on: dict[str, int] = {}
        ready: list[tuple[int, str]] = []
        for task in tasks:
            reason = self._blocking_reason(task, in_run)
            if reason is not None:
                if task.status is not TaskStatus.BLOCKED:
                    self._block(task, reason, state)
                continue
            count = sum(1 for dep in task.dependencies if dep in in_run)
            waiting_on[task.id] = count
            if count == 0:
                heapq.heappush(ready, (self._position[task.id], task.id))
        dependents: dict[str, list[str]] = {}
        for task in tasks:
            for dep in task.dependencies:
                if dep in in_run:
                    dependents.setdefault(dep, []).append(task.id)

        running: dict[asyncio.Task[TaskResult], PlanTask] = {}
        state.running = running  # read by the cancellation handler in run()
        while True:
            stop_new = bool(state.failures) and not self.config.keep_going
            while ready and len(running) < max(1, self.config.parallel) and not stop_new:
                _, task_id = heapq.heappop(ready)
                task = self._index[task_id][1]
                if task.status is TaskStatus.BLOCKED:
                    continue
                await self._start_task(iteration, task, state)
                runner = asyncio.ensure_future(self._execute(task))
                running[runner] = task
            if not running:
                break
            done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for runner in sorted(done, key=lambda r: self._position[running[r].id]):
                task = running.pop(runner)
                result = runner.result()
                if result.success:
                    await self._complete(task, result, state)
                    for dependent in dependents.get(task.id, ()):
                        waiting_on[dependent] -= 1
                        if waiting_on[dependent] == 0:
                            heapq.heappush(ready, (self._position[dependent], dependent))
                else:
                    await self._fail(task, result, state)

    def _blocking_reason(self, task: PlanTask, in_run: set[str]) -> str | None:
        if not self.config.check_dependencies:
            return None
        unmet = _unmet_dependency(task, self._index, skip=in_run)
        return unmet[1] if unmet is not None else None

    async def _execute(self, task: PlanTask) -> TaskResult:
        try:
            engine = self.engine_for(task)
        except RadiumError as exc:
            task.attempts += 1
            return TaskResult(task.id, False, error=exc, attempts=1)
        try:
            return await self.execute_task_with_retry(task, engine)
        finally:
            self._prompts.pop(task.id, None)

    async def _start_task(self, iteration: Iteration, task: PlanTask, state: "_RunState") -> None:
        self._touch(task)
        task.set_status(TaskStatus.IN_PROGRESS)
        task.started_at = utc_now_iso()
        task.completed_at = None
        task.duration_ms = None
        try:
            self._prompts[task.id] = prompt = self.render_prompt(task)
            if self.store is not None and self.config.save_prompts:
                self.store.write_prompt(task.id, prompt)
        except RadiumError:
            pass  # the prompt copy is for debugging; the attempt itself reports the problem
        try:
            engine: Engine | None = self.engine_for(task)
        except RadiumError:
            engine = None  # reported when the task runs
        # Persisted before it is announced; not fsynced: if this mark is lost the
        # task is pending, which is exactly what a lost in_progress task becomes.
        await self._checkpoint(state.manifest, durable=False)
        completed, total = state.counts
        self.emit(
            Event(
                "task_started",
                {
                    "task_id": task.id,
                    "title": task.title,
                    "iteration_id": iteration.id,
                    "iteration_number": iteration.number,
                    "agent_id": task.agent_id,
                    "engine": engine.name if engine else None,
                    "model": engine.model if engine else None,
                    "completed_tasks": completed,
                    "total_tasks": total,
                    "elapsed_s": round(self._clock() - state.started, 3),
                },
            )
        )

    async def _complete(self, task: PlanTask, result: TaskResult, state: "_RunState") -> None:
        if self.store is not None:
            # A model may repeat a key it saw (in a prompt, an error): never store or forward it.
            task.output_path = self.store.write_output(task.id, redact(result.output or ""))
        self._touch(task)
        task.set_status(TaskStatus.COMPLETED)
        task.completed_at = utc_now_iso()
        task.duration_ms = result.duration_ms
        task.usage = result.usage
        task.last_error = None
        completed, total = state.counts
        completed += 1
        state.counts = (completed, total)
        if result.usage:
            state.prompt_tokens += result.usage.prompt_tokens
            state.completion_tokens += result.usage.completion_tokens
        await self._checkpoint(state.manifest)
        self.emit(
            Event(
                "task_completed",
                {
                    "task_id": task.id,
                    "title": task.title,
                    "attempts": result.attempts,
                    "duration_ms": result.duration_ms,
                    "prompt_tokens": result.usage.prompt_tokens if result.usage else None,
                    "completion_tokens": result.usage.completion_tokens if result.usage else None,
                    "output_path": task.output_path,
                    "completed_tasks": completed,
                    "total_tasks": total,
                    "percent": math.floor(completed * 100 / total) if total else 0,
                },
            )
        )

    async def _fail(self, task: PlanTask, result: TaskResult, state: "_RunState") -> None:
        error = result.error or ModelExecutionError("task failed without an error")
        self._touch(task)
        task.set_status(TaskStatus.FAILED)
        task.completed_at = utc_now_iso()
        task.duration_ms = result.duration_ms
        task.usage = result.usage
        task.last_error = TaskErrorRecord(category=error.category.value, message=str(error), kind=error.kind)
        if result.usage:
            state.prompt_tokens += result.usage.prompt_tokens
            state.completion_tokens += result.usage.completion_tokens
        state.failures.append((task.id, error))
        self.emit(
            Event(
                "task_failed",
                {
                    "task_id": task.id,
                    "title": task.title,
                    "attempts": result.attempts,
                    "category": error.category.value,
                    "kind": error.kind,
                    "message": str(error),
                },
            )
        )
        self._block_dependents(task.id, state)
        await self._checkpoint(state.manifest)

    def _block_dependents(self, failed_id: str, state: "_RunState") -> None:
        """Mark every task that (transitively) depends on ``failed_id`` as blocked."""
        if state.dependents is None:
            state.dependents = {}
            for _, other in state.manifest.tasks():
                for dep in other.dependencies:
                    state.dependents.setdefault(dep, []).append(other.id)
        queue = deque((failed_id, dependent) for dependent in state.dependents.get(failed_id, ()))
        while queue:
            cause, task_id = queue.popleft()
            task = self._index[task_id][1]
            if task.completed or task.status in (TaskStatus.BLOCKED, TaskStatus.IN_PROGRESS):
                continue
            self._block(task, f"Dependency task not completed: {cause}", state)
            queue.extend((task_id, dependent) for dependent in state.dependents.get(task_id, ()))

    def _touch(self, task: PlanTask) -> Iteration:
        """Note that ``task``'s iteration changed (for the next checkpoint); return it."""
        iteration = self._index[task.id][0]
        if self._changed is not None:
            self._changed[id(iteration)] = iteration
        self._changed_tasks[task.id] = task
        return iteration

    def _block(self, task: PlanTask, reason: str, state: "_RunState") -> None:
        self._touch(task)
        task.set_status(TaskStatus.BLOCKED)
        state.blocked[task.id] = reason
        self.emit(Event("task_blocked", {"task_id": task.id, "title": task.title, "reason": reason}))

    async def _checkpoint(self, manifest: PlanManifest, *, durable: bool = True, final: bool = False) -> None:
        """Persist every change since the last checkpoint.

        Normally that is one journal line per changed task; the whole manifest
        is rewritten (compacted) at a stop, after ``prepare`` and whenever the
        store says the journal has grown enough. Text is produced here, on the
        loop thread that owns the manifest; only the I/O runs in a worker
        thread, so the event loop keeps serving parallel tasks meanwhile.
        """
        store = self.store
        if store is None:
            return
        journal = "".join(store.journal_line(t) for t in self._changed_tasks.values())
        self._changed_tasks = {}
        if final or self._changed is None or store.wants_compaction(len(journal)):
            changed = None if self._changed is None else self._changed.values()
            # Iteration statuses are derived; they are brought up to date here, once
            # per compaction, rather than after every task (a full scan each time).
            for iteration in manifest.iterations if changed is None else changed:
                iteration.refresh_status()
            text = self._serializer.render(manifest, changed)
            self._changed = {}
            metadata = store.metadata_text(manifest, final=True)
            await asyncio.to_thread(store.write_checkpoint, text, metadata, durable=True)
            return
        metadata = store.metadata_text(manifest, final=False)
        if journal or metadata:
            await asyncio.to_thread(store.append_journal, journal, metadata, durable=durable)

    def _save_after_cancel(self, manifest: PlanManifest, state: "_RunState") -> None:
        """Return in-flight tasks to pending and save, synchronously (cannot be interrupted)."""
        for runner in state.running:
            runner.cancel()
        for _, task in manifest.tasks():
            if task.status is TaskStatus.IN_PROGRESS:
                task.set_status(TaskStatus.PENDING)
                task.started_at = None
                state.interrupted.append(task.id)
        for iteration in manifest.iterations:
            iteration.refresh_status()
        if self.store is not None:
            text = self._serializer.render(manifest, None)
            self.store.write_checkpoint(text, self.store.metadata_text(manifest, final=True))

    def _finish(self, manifest: PlanManifest, state: "_RunState", outcome: str) -> RunResult:
        completed, total = manifest.counts()
        failed = sum(1 for _, t in manifest.tasks() if t.status is TaskStatus.FAILED)
        blocked = sum(1 for _, t in manifest.tasks() if t.status is TaskStatus.BLOCKED)
        remaining = total - completed
        label = self.config.plan_label or "PLAN"
        limit = self.config.run_mode.limit
        if outcome == "completed" and remaining:
            outcome = "filtered"
        messages = {
            "completed": "All tasks completed. Execution finished.",
            "bound_reached": f"Reached maximum iterations ({limit}). Stopping execution.",
            "sanity_limit": f"Reached sanity limit ({CONTINUOUS_SANITY_LIMIT}). Stopping execution.",
            "failed": "Execution stopped: a task failed.",
            "blocked": "Execution finished with blocked tasks.",
            "interrupted": (
                "Execution aborted by user. Progress saved to plan_manifest.json"
                if self.interrupt_exit_code == ExitCode.SIGINT
                else "Execution stopped by SIGTERM. Progress saved to plan_manifest.json"
            ),
            "filtered": (
                "Selected tasks finished."
                if self.config.only_task or self.config.only_iteration
                else f"Execution finished; {remaining} task(s) naming no agent were skipped."
            ),
        }
        exit_codes = {
            "failed": ExitCode.TASK_FAILED,
            "blocked": ExitCode.TASK_FAILED,
            "interrupted": self.interrupt_exit_code,
        }
        if outcome == "completed":
            next_command = f"rad status {label}"
        elif outcome in ("failed", "blocked"):
            next_command = f"rad craft {label} --resume"
        else:
            next_command = f"rad craft {label} --resume" if remaining else f"rad status {label}"
        return RunResult(
            outcome=outcome,
            exit_code=int(exit_codes.get(outcome, ExitCode.OK)),
            message=messages[outcome],
            completed=completed,
            failed=failed,
            blocked=blocked,
            remaining=remaining - failed - blocked,
            total=total,
            retries=self.retries,
            prompt_tokens=state.prompt_tokens,
            completion_tokens=state.completion_tokens,
            wall_ms=self._ms_since(state.started),
            next_command=next_command,
            failures=list(state.failures),
            blocked_reasons=dict(state.blocked),
            interrupted_tasks=list(state.interrupted),
        )

    @staticmethod
    def _result_fields(result: RunResult) -> dict[str, object]:
        return {
            "outcome": result.outcome,
            "exit_code": result.exit_code,
            "message": result.message,
            "completed": result.completed,
            "failed": result.failed,
            "blocked": result.blocked,
            "remaining": result.remaining,
            "total": result.total,
            "retries": result.retries,
            "prompt_tokens": result.prompt_tokens,
            "completion_tokens": result.completion_tokens,
            "wall_ms": result.wall_ms,
            "next_command": result.next_command,
            "interrupted_tasks": result.interrupted_tasks,
            "failures": [
                {"task_id": task_id, "category": e.category.value, "kind": e.kind, "message": str(e)}
                for task_id, e in result.failures
            ],
            "blocked_tasks": result.blocked_reasons,
        }


@dataclass
class _RunState:
    """Mutable bookkeeping of one ``run()`` call."""

    manifest: PlanManifest
    started: float
    counts: tuple[int, int]
    """(completed, total) tasks of the plan, kept up to date as tasks complete."""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    failures: list[tuple[str, RadiumError]] = field(default_factory=list)
    blocked: dict[str, str] = field(default_factory=dict)
    interrupted: list[str] = field(default_factory=list)
    running: dict = field(default_factory=dict)
    dependents: dict[str, list[str]] | None = None


def _unmet_dependency(
    task: PlanTask, index: dict[str, tuple[Iteration, PlanTask]], skip: set[str] = frozenset()
) -> tuple[str, str] | None:
    """The first dependency of ``task`` (outside ``skip``) that is unknown or not completed,
    with the seed's message for it (``Dependency task not completed: I1.T1``)."""
    for dep in task.dependencies:
        if dep in skip:
            continue
        entry = index.get(dep)
        if entry is None:
            return dep, f"Dependency task not found: {dep}"
        if not entry[1].completed:
            return dep, f"Dependency task not completed: {dep}"
    return None


def format_elapsed(seconds: float) -> str:
    """``H:MM:SS`` as in the seed's progress line (``0:05:23``)."""
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
