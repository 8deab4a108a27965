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
import math
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Awaitable, Callable

from radium.dispatch import AttemptCall, Dispatcher, LocalDispatcher
from radium.engines.base import Engine, EngineResponse
from radium.errors import (
    AgentNotFoundError,
    DependencyNotMetError,
    ErrorCategory,
    ExitCode,
    InvalidDataError,
    ModelExecutionError,
    ModelTimeoutError,
    RadiumError,
    redact,
)
from radium.errors import RadiumError as ExecutionError
from radium.events import Event, EventSink, discard
from radium.models import Iteration, PlanManifest, PlanTask, TaskErrorRecord, TaskStatus, TokenUsage, utc_now_iso
from radium.planning.attempts import AttemptRunner
from radium.planning.checkpoints import Checkpointer
from radium.planning.outcome import completed_event, finish, result_fields
from radium.planning.run_types import (
    CONTINUOUS_SANITY_LIMIT,
    ExecutionConfig,
    RunMode,
    RunResult,
    RunState,
    TaskResult,
    format_elapsed,
)
from radium.planning.schedule import DependencyOrder, unmet_dependency
from radium.planning.selection import reset_for_run, select
from radium.prompts import DependencyOutput, TaskPromptInput, build_task_prompt
from radium.ratelimit import RateLimiters
from radium.reporting.budget import Spend
from radium.retry import RetryPolicy
from radium.store import PlanStore, load_manifest

if TYPE_CHECKING:
    from radium.agents import AgentConfig, AgentRegistry
    from radium.reporting.pricing import Price

__all__ = [
    "CONTINUOUS_SANITY_LIMIT",
    "ErrorCategory",
    "ExecutionConfig",
    "ExecutionError",
    "PlanExecutor",
    "RunMode",
    "RunResult",
    "TaskResult",
    "format_elapsed",
]

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
        dispatcher: Dispatcher | None = None,
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
        self.dispatcher = dispatcher or LocalDispatcher()
        """Where attempts run (this process, or a Ray cluster); see ``radium.dispatch``."""
        self.limiters = RateLimiters(
            max(1, self.config.parallel),
            shared=self.config.shared_rate_limits,
            pacing=self.config.rate_limit_pacing,
            max_block_s=self.config.retry.max_retry_after_s,
            clock=clock,
            sleep=sleep,
        )
        """The run's per-provider rate limiters (see ``radium.ratelimit``)."""
        self.attempts = AttemptRunner(self.limiters, on_event, sleep=sleep, clock=clock)
        """Runs each task's attempts through its provider's limiter and the retry loop."""
        self.checkpoints = Checkpointer(store)
        self._engines: dict[object, Engine] = {}
        self._agent_engines: dict[str | None, Engine] = {}
        self._policies: dict[str, RetryPolicy] = {}  # per agent: agents and flags do not change during a run
        self._manifest: PlanManifest | None = None
        self._index: dict[str, tuple[Iteration, PlanTask]] = {}
        self._position: dict[str, int] = {}
        self._templates: dict[str, str] = {}
        self._prompts: dict[str, str] = {}
        """Prompts of the running tasks, rendered once at start and reused by every attempt."""
        self.interrupt_exit_code = int(ExitCode.SIGINT)
        """Exit code reported when the run is cancelled (the CLI sets 143 for SIGTERM)."""

    @property
    def retries(self) -> int:
        """Retries announced in this run (all tasks)."""
        return self.attempts.retries

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
        unmet = unmet_dependency(task, index)
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
            response = await self._call_engine(model, self._attempt_call(task, model, prompt, timeout_s))
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
            task.id,
            True,
            output=response.text,
            attempts=1,
            duration_ms=self._ms_since(started),
            usage=usage,
            rate_limits=response.rate_limits,
        )

    async def execute_task_with_retry(
        self,
        task: PlanTask,
        model: Engine,
        max_retries: int | None = None,
        base_delay_ms: int | None = None,
    ) -> TaskResult:
        """Execute ``task`` with retries for recoverable errors, through its provider's shared gate.

        ``max_retries``/``base_delay_ms`` default to the effective policy (3 and
        1000 ms unless configured). Before retry ``k`` the executor waits
        ``base_delay_ms * 2^k`` (capped, optionally jittered, never less than the
        server asked); a 429 whose server said when to come back is waited out
        without using a retry. See ``radium.planning.attempts``.
        """
        policy = self.policy_for(task).with_overrides(max_retries=max_retries, base_delay_ms=base_delay_ms)
        prompt_chars = len(self._prompts.get(task.id) or "")
        return await self.attempts.run(
            task,
            model,
            policy,
            lambda: self.execute_task(task, model, timeout_s=policy.timeout_s),
            prompt_chars=prompt_chars,
        )

    # ------------------------------------------------------------------ prices and budget

    def price_for(self, task: PlanTask) -> "Price | None":
        """The price of ``task``'s calls: its agent's ``price``, else the price database, else None."""
        from radium.reporting.pricing import price_for

        try:
            engine = self.engine_for(task)
        except RadiumError:
            return None
        agent = self.agent_for(task)
        return price_for(engine.name, engine.model, agent.price if agent is not None else None)

    def _require_prices(self, tasks: list[PlanTask]) -> None:
        """A USD budget needs a price for every agent about to run (else exit 2, naming it)."""
        from radium.errors import MissingConfigurationError

        for task in tasks:
            if self.price_for(task) is None:
                engine = self.engine_for(task)
                agent = self.agent_for(task)
                where = f" in {agent.source}" if agent is not None else ""
                raise MissingConfigurationError(
                    f"--max-cost-usd: agent {task.agent_id or '(none)'} ({engine.name}/{engine.model}) has no known price",
                    hint=f"add price = {{ input_per_mtok = ..., output_per_mtok = ... }} under [agent]{where}, "
                    "or use --max-tokens",
                )

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
        if agent is None or agent.id in self._policies:
            return self._policies.get(agent.id, policy) if agent is not None else policy
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
            return self._policies.setdefault(agent.id, policy.with_overrides(**overrides))
        except ValueError as exc:
            raise InvalidDataError(
                f"agent {agent.id} ({agent.source}): retry settings conflict with the run's: {exc}",
                hint="make max_delay_ms at least base_delay_ms, in the agent file or on the command line",
            ) from None

    def engine_for(self, task: PlanTask) -> Engine:
        """The (shared) engine for a task's agent, created on first use."""
        engine = self._agent_engines.get(task.agent_id)
        if engine is not None:
            return engine
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
        self._agent_engines[task.agent_id] = engine  # agents and overrides do not change during a run
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

    def _attempt_call(self, task: PlanTask, engine: Engine, prompt: str, timeout_s: float | None) -> AttemptCall:
        agent = self.agent_for(task)
        return AttemptCall(
            task_id=task.id,
            settings=engine.settings,
            prompt=prompt,
            timeout_s=timeout_s,
            resources=getattr(agent, "resources", None) or {},
        )

    async def _call_engine(self, engine: Engine, call: AttemptCall) -> EngineResponse:
        # The engine enforces the timeout itself (and maps it); the outer limit
        # is a safety net for engines (and backends) that cannot, with a grace period.
        timeout_s = call.timeout_s
        try:
            if timeout_s is None:
                return await self.dispatcher.call(engine, call)
            async with asyncio.timeout(timeout_s + engine.timeout_grace_s):
                return await self.dispatcher.call(engine, call)
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
        with contextlib.suppress(Exception):  # closing is best effort; the outcome is decided
            await self.dispatcher.aclose()
        for engine in self._engines.values():
            try:
                await engine.aclose()
            except Exception:  # closing is best effort; the run's outcome is already decided
                pass
        self._engines.clear()
        self._agent_engines.clear()

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
        self.checkpoints.start()
        config = self.config
        for task in reset_for_run(manifest, config, self._index):
            self.checkpoints.touch(task)
        for iteration in manifest.iterations:
            iteration.refresh_status()
        selected = select(manifest, config, self._index)
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
        budget = config.budget
        if budget is not None and budget.max_cost_usd is not None:
            self._require_prices([task for _, tasks in selected for task in tasks])
        return selected

    def planned_order(
        self, selected: list[tuple[Iteration, list[PlanTask]]]
    ) -> list[tuple[Iteration, list[PlanTask]]]:
        """The order a run would take if every task succeeded (for ``--dry-run``).

        Applies the iteration bound, and within an iteration the same rule as
        the scheduler: dependency order, file order among independent tasks.
        """
        planned = []
        for iteration, tasks in selected[: self.config.run_mode.limit]:
            order = DependencyOrder(tasks, self._position)
            planned.append((iteration, [self._index[task_id][1] for task_id in order.drain()]))
        return planned

    async def run(self, manifest: PlanManifest) -> RunResult:
        """Run the plan: the whole loop, from validation to the final checkpoint."""
        started = self._clock()
        selected = self.prepare(manifest)
        if selected:
            await self.dispatcher.start()  # an unreachable cluster is reported before any task
        completed, total = manifest.counts()
        state = RunState(manifest, started, counts=(completed, total), spend=Spend(self.config.budget, self.price_for))
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
                    "backend": self.dispatcher.name,
                    "where": self.dispatcher.describe(),
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
                if state.spend.reached():
                    outcome = "budget_reached"
                    break
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
                if state.spend.budget_hit is not None:
                    outcome = "budget_reached"
                    break
            await self.checkpoints.save(manifest, final=True, inline=not state.running)
        except asyncio.CancelledError:
            runners = list(state.running)
            self._save_after_cancel(manifest, state)
            if runners:
                # Let cancelled calls clean up (kill subprocess groups, close sockets).
                await asyncio.wait(runners, timeout=5)
            result = self._finish(manifest, state, "interrupted")
            self.emit(Event("run_finished", result_fields(result)))
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
        bound_hit = outcome in ("bound_reached", "sanity_limit", "budget_reached")
        if state.failures:
            outcome = "failed"
        elif state.blocked and not bound_hit:
            outcome = "blocked"
        elif outcome == "completed" and (self.config.only_task or self.config.only_iteration):
            outcome = "filtered"
        result = self._finish(manifest, state, outcome)
        if bound_hit and outcome == "failed":
            result.message += f" (the iteration bound of {mode.limit} was reached too)"
        self.emit(Event("run_finished", result_fields(result)))
        return result

    async def _run_iteration(self, iteration: Iteration, tasks: list[PlanTask], state: RunState) -> None:
        """Run one iteration's tasks in dependency order, up to ``parallel`` at once."""
        in_run = {t.id for t in tasks}
        excluded = []
        for task in tasks:
            reason = self._blocking_reason(task, in_run)
            if reason is not None:
                excluded.append(task.id)
                if task.status is not TaskStatus.BLOCKED:
                    self._block(task, reason, state)
        order = DependencyOrder(tasks, self._position, excluded)
        running = state.running = {}  # also read by the cancellation handler in run()
        while True:
            stop_new = (bool(state.failures) and not self.config.keep_going) or state.spend.reached()
            while order and len(running) < max(1, self.config.parallel) and not stop_new:
                task = self._index[order.pop()][1]
                if task.status is TaskStatus.BLOCKED:
                    continue
                await self._start_task(iteration, task, state)
                running[asyncio.ensure_future(self._execute(task))] = task
            if not running:
                break
            done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            completions: list[Event] = []  # saved together (one journal fsync), then announced
            for runner in sorted(done, key=lambda r: self._position[running[r].id]):
                task = running.pop(runner)
                result = runner.result()
                if result.success:
                    completions.append(self._complete(task, result, state))
                    order.done(task.id)
                else:
                    await self._announce(completions, state)
                    await self._fail(task, result, state)
            await self._announce(completions, state)

    def _blocking_reason(self, task: PlanTask, in_run: set[str]) -> str | None:
        if not self.config.check_dependencies:
            return None
        unmet = unmet_dependency(task, self._index, skip=in_run)
        return unmet[1] if unmet is not None else None

    async def _execute(self, task: PlanTask) -> TaskResult:
        try:
            engine = self.engine_for(task)
        except RadiumError as exc:
            self.attempts.begin(task)
            task.attempts += 1
            self.attempts.record(task, exc)
            return TaskResult(task.id, False, error=exc, attempts=1)
        try:
            return await self.execute_task_with_retry(task, engine)
        finally:
            self._prompts.pop(task.id, None)

    async def _start_task(self, iteration: Iteration, task: PlanTask, state: RunState) -> None:
        self.checkpoints.touch(task)
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
        await self.checkpoints.save(state.manifest, durable=False, inline=not state.running)
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

    def _complete(self, task: PlanTask, result: TaskResult, state: RunState) -> Event:
        """Mark ``task`` completed (its output staged for the next save); returns its event."""
        self.checkpoints.touch(task)
        # A model may repeat a key it saw (in a prompt, an error): never store or forward it.
        self.checkpoints.stage_output(task, redact(result.output or ""))
        task.set_status(TaskStatus.COMPLETED)
        task.completed_at = utc_now_iso()
        task.duration_ms = result.duration_ms
        task.usage = result.usage
        task.last_error = None
        completed, total = state.counts
        completed += 1
        state.counts = (completed, total)
        state.spend.settle(task, result.usage)
        self._account_waits(task, result, state)
        return completed_event(task, result, completed, total)

    async def _announce(self, completions: list[Event], state: RunState) -> None:
        """Save completed tasks (outputs first, one journal fsync), then emit their events."""
        if completions:
            await self.checkpoints.save(state.manifest, inline=not state.running)
            for event in completions:
                self.emit(event)
            completions.clear()

    async def _fail(self, task: PlanTask, result: TaskResult, state: RunState) -> None:
        error = result.error or ModelExecutionError("task failed without an error")
        self.checkpoints.touch(task)
        task.set_status(TaskStatus.FAILED)
        task.completed_at = utc_now_iso()
        task.duration_ms = result.duration_ms
        task.usage = result.usage
        task.last_error = TaskErrorRecord(category=error.category.value, message=str(error), kind=error.kind)
        state.spend.settle(task, result.usage)
        self._account_waits(task, result, state)
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
        await self.checkpoints.save(state.manifest)

    @staticmethod
    def _account_waits(task: PlanTask, result: TaskResult, state: RunState) -> None:
        """Add a finished task's rate-limit waits to the run (and to the task's total)."""
        if result.rate_limit_wait_ms:
            state.rate_limit_wait_ms += result.rate_limit_wait_ms
            task.rate_limit_wait_ms = (task.rate_limit_wait_ms or 0) + result.rate_limit_wait_ms

    def _block_dependents(self, failed_id: str, state: RunState) -> None:
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

    def _block(self, task: PlanTask, reason: str, state: RunState) -> None:
        self.checkpoints.touch(task)
        task.set_status(TaskStatus.BLOCKED)
        state.blocked[task.id] = reason
        self.emit(Event("task_blocked", {"task_id": task.id, "title": task.title, "reason": reason}))

    def _save_after_cancel(self, manifest: PlanManifest, state: RunState) -> None:
        """Return in-flight tasks to pending and save, synchronously (cannot be interrupted)."""
        for runner in state.running:
            runner.cancel()
        for _, task in manifest.tasks():
            if task.status is TaskStatus.IN_PROGRESS:
                self.attempts.record_interruption(task)
                task.set_status(TaskStatus.PENDING)
                task.started_at = None
                state.interrupted.append(task.id)
        self.checkpoints.save_now(manifest)

    def _finish(self, manifest: PlanManifest, state: RunState, outcome: str) -> RunResult:
        return finish(
            manifest,
            state,
            outcome,
            self.config,
            wall_ms=self._ms_since(state.started),
            retries=self.retries,
            rate_limited_requests=self.limiters.rate_limited,
            interrupt_exit_code=self.interrupt_exit_code,
        )
