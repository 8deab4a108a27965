"""``rad craft``: execute a plan."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import click

from radium.errors import ExitCode, PlanNotFoundError

_SIGNAL_EXIT = {signal.SIGINT: ExitCode.SIGINT, signal.SIGTERM: ExitCode.SIGTERM}


@click.command()
@click.argument("plan", required=False)
@click.option("--iterations", type=int, metavar="N", help="Bounded mode: run at most N plan iterations. [default: 5]")
@click.option("--yolo", is_flag=True, default=None, help="Continuous mode: run until complete (sanity limit 1000).")
@click.option("--resume", is_flag=True, help="Continue from the checkpoint, saying where it resumes.")
@click.option("--restart", is_flag=True, help="Forget recorded progress and run every task again.")
@click.option("--iteration", "only_iteration", metavar="ID", help="Run only this iteration (e.g. I2).")
@click.option("--task", "only_task", metavar="ID", help="Run only this task (e.g. I2.T3).")
@click.option("--dry-run", is_flag=True, help="Validate and list what would run, in order; call nothing.")
@click.option("--show-prompts", is_flag=True, help="With --dry-run: print each task's rendered prompt.")
@click.option("--json", "json_output", is_flag=True, help="Machine output: one JSON event per line on stdout.")
@click.option(
    "--context-file",
    "context_files",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Inject this file into every prompt (repeatable).",
)
@click.option("--max-retries", type=int, metavar="N", help="Retries after the first attempt. [default: 3]")
@click.option("--base-delay-ms", type=int, metavar="MS", help="Backoff base: base * 2^retry. [default: 1000]")
@click.option("--max-delay-ms", type=int, metavar="MS", help="Cap on one backoff wait. [default: 60000]")
@click.option("--jitter", is_flag=True, default=None, help="Multiply each wait by a random factor in [0.5, 1).")
@click.option(
    "--max-retry-after-s",
    type=float,
    metavar="S",
    help="Fail instead of waiting when a server asks for a longer Retry-After. [default: 300]",
)
@click.option(
    "--max-rate-limit-wait-s",
    type=float,
    metavar="S",
    help="Total a task may wait on rate limits (server-timed waits) before it fails. [default: 900]",
)
@click.option(
    "--shared-rate-limits/--no-shared-rate-limits",
    default=None,
    help="One limiter per provider shared by all tasks (default), or each task on its own.",
)
@click.option("--timeout-s", type=float, metavar="S", help="Per-attempt time limit for every agent.")
@click.option("--parallel", type=int, metavar="N", help="Run up to N ready tasks at once. [default: 1]")
@click.option("--keep-going", is_flag=True, default=None, help="After a failure, run the tasks not depending on it.")
@click.option("--engine", metavar="E", help="Override every agent's engine for this run.")
@click.option("--model", metavar="M", help="Override every agent's model for this run.")
@click.option("--max-tokens", type=int, metavar="N", help="Budget: start no new task once this run used N tokens.")
@click.option(
    "--max-cost-usd",
    type=float,
    metavar="X",
    help="Budget: start no new task once this run cost X USD (every agent needs a known price).",
)
@click.option("--backend", metavar="B", help="Where attempts run: local (this process) or ray. [default: local]")
@click.option(
    "--ray-address",
    metavar="ADDR",
    help="With --backend ray: join this Ray cluster (auto: $RAY_ADDRESS) instead of starting a local one.",
)
@click.pass_obj
def craft(settings_obj, plan, resume, restart, only_iteration, only_task, dry_run, show_prompts, json_output, **flags):
    """Execute PLAN: dependency order, retries, a checkpoint after every task.

    PLAN is a requirement id (REQ-001), a plan folder name, a plan directory or
    a plan_manifest.json path. Without PLAN, the workspace's one unfinished plan
    is used. Completed tasks are never re-run (unless --restart). Settings can
    also come from RADIUM_* variables and [execution] in .radium/config.toml;
    flags win over the environment, which wins over the file.
    """
    from radium.agents import discover_agents
    from radium.dispatch import create_dispatcher
    from radium.cli.output import HumanRenderer, JsonRenderer, warn
    from radium.planning.executor import ExecutionConfig, PlanExecutor, RunMode
    from radium.prompts import format_context_files, gather_context_files
    from radium.settings import rate_limit_pacing, resolve_settings

    _refuse_contradictions(resume, restart, dry_run, show_prompts, flags)
    workspace = settings_obj.workspace()
    ref = workspace.find_plan(plan) if plan else _only_unfinished_plan(workspace)
    workspace.check_plan_location(ref)  # nothing is written through a symlink leading out
    # --context-file adds to the configured context files (it does not replace them);
    # flag paths are relative to where the user typed them, configured ones to the workspace.
    flag_context = [Path(p).resolve() for p in flags.pop("context_files")]
    settings, explicit = resolve_settings(flags, workspace.config(), config_path=str(workspace.config_path))
    pacing = rate_limit_pacing(workspace.config(), config_path=str(workspace.config_path))
    agents = discover_agents(workspace)
    agents.raise_if_errors()
    for note in agents.warnings:
        warn(note)
    context_files_used = gather_context_files(
        workspace.root,
        ref.plan_dir,
        [(workspace.root / p, f"fix context_files in {workspace.config_path}") for p in settings.context_files]
        + [(p, "fix the --context-file path") for p in flag_context],
        context_policy(workspace, ref),
    )
    context = format_context_files(context_files_used)

    label = plan or ref.name
    config = ExecutionConfig(
        resume=resume,
        restart=restart,
        context_files=context or None,
        run_mode=RunMode.continuous() if settings.yolo else RunMode.bounded(settings.iterations),
        retry=settings.retry_policy(),
        retry_explicit=explicit,
        parallel=settings.parallel,
        keep_going=settings.keep_going,
        only_iteration=only_iteration,
        only_task=only_task,
        dependency_output_chars=settings.dependency_output_chars,
        engine_override=settings.engine,
        model_override=settings.model,
        plan_label=label,
        state_path=ref.manifest_path,
        shared_rate_limits=settings.shared_rate_limits,
        rate_limit_pacing=pacing,
        budget=settings.budget(),
    )
    renderer = JsonRenderer() if json_output else HumanRenderer()
    renderer.options = _options_in_force(settings, config, len(context_files_used))
    store = ref.store()
    notes = _LockNotes(renderer)
    dispatcher = create_dispatcher(settings.backend, **settings.dispatcher_options())
    executor = PlanExecutor(
        config, store=store, agents=agents, workdir=workspace.root, on_event=notes, dispatcher=dispatcher
    )

    if dry_run:
        from radium.cli.dry_run import dry_run as run_dry

        manifest = store.load()
        _warn_agentless(manifest, warn)
        run_dry(executor, manifest, show_prompts=show_prompts, emit=renderer if json_output else None)
        return

    signature = store.files_signature()
    manifest = store.load()  # a broken manifest is reported before any lock file is created
    with store.lock() as plan_lock:
        notes.lock = plan_lock
        store.remove_stale_temp_files()  # left by a run killed mid-write
        if store.files_signature() != signature:
            manifest = store.load()  # changed meanwhile: again, now that no other run can change it
        if store.stale_journal:
            warn(
                f"ignored {store.journal_path.name}: it does not extend the current manifest "
                "(the manifest was edited or restored); the manifest's state is used"
            )
        _warn_agentless(manifest, warn)
        code = asyncio.run(_run_with_signals(executor, manifest, renderer))
    raise SystemExit(int(code))


def _warn_agentless(manifest, warn) -> None:
    """Tasks naming no agent are skipped (the original Radium's rule); say which."""
    skipped = [task.id for _, task in manifest.tasks() if not task.agent_id and not task.completed]
    if skipped:
        shown = ", ".join(skipped[:10]) + (f" and {len(skipped) - 10} more" if len(skipped) > 10 else "")
        warn(
            f"task(s) naming no agent are skipped: {shown} "
            '(add "agent_id" to run them; tasks depending on them are blocked)'
        )


class _LockNotes:
    """Passes events to the renderer and keeps the lock's side file naming the running tasks
    (``rad status`` shows them).

    The note is rewritten (atomically, unsynced: about half a millisecond) at most
    every ``INTERVAL`` seconds; a change inside that window is written when it
    ends, so the note is never more than ``INTERVAL`` behind and fast plans do
    not pay a write per task.
    """

    INTERVAL = 0.25

    def __init__(self, renderer) -> None:
        self.renderer = renderer
        self.lock = None
        self.running: dict[str, None] = {}
        self._written_at = float("-inf")
        self._pending = None

    def __call__(self, event) -> None:
        if self.lock is not None and event.type in ("task_started", "task_completed", "task_failed"):
            if event.type == "task_started":
                self.running[event["task_id"]] = None
            else:
                self.running.pop(event["task_id"], None)
            wait = self._written_at + self.INTERVAL - time.monotonic()
            if wait <= 0:
                self._write()
            elif self._pending is None:
                self._pending = asyncio.get_running_loop().call_later(wait, self._write)
        self.renderer(event)

    def _write(self) -> None:
        self._pending = None
        self._written_at = time.monotonic()
        self.lock.note_running(self.running)

    def close(self) -> None:
        self.renderer.close()


async def _run_with_signals(executor, manifest, renderer) -> int:
    """Run the executor; SIGINT/SIGTERM cancel it (the executor saves), then exit 130/143."""
    loop = asyncio.get_running_loop()
    run = asyncio.current_task()
    received: list[int] = []

    def on_signal(signum: int) -> None:
        if received:
            return  # already stopping: the final save runs to completion regardless
        received.append(signum)
        executor.interrupt_exit_code = int(_SIGNAL_EXIT[signum])
        run.cancel()

    for signum in _SIGNAL_EXIT:
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        result = await executor.run(manifest)
        return result.exit_code
    except asyncio.CancelledError:
        if not received:
            raise
        return _SIGNAL_EXIT[received[0]]
    finally:
        renderer.close()
        for signum in _SIGNAL_EXIT:
            loop.remove_signal_handler(signum)
            if received:
                # Stopping already: a repeated Ctrl+C must not kill the process mid-exit.
                signal.signal(signum, signal.SIG_IGN)


def _refuse_contradictions(resume, restart, dry_run, show_prompts, flags) -> None:
    """Options that cannot all hold are a usage error (exit 2), not a silent choice."""
    from radium.errors import UsageError

    if resume and restart:
        raise UsageError(
            "--resume and --restart contradict each other: one keeps progress, the other forgets it",
            hint="use --resume to continue, or --restart to run again from scratch",
        )
    if flags.get("yolo") and flags.get("iterations") is not None:
        raise UsageError(
            f"--yolo runs until the plan is complete, which contradicts --iterations {flags['iterations']}",
            hint="use one of them",
        )
    if show_prompts and not dry_run:
        raise UsageError("--show-prompts only works with --dry-run", hint="add --dry-run, or drop --show-prompts")


def _options_in_force(settings, config, context_count: int) -> str:
    """The header line naming every setting this run uses (after flags, environment and config)."""
    parts = [
        f"retries {settings.max_retries}",
        f"backoff {settings.base_delay_ms}–{settings.max_delay_ms} ms" + (" with jitter" if settings.jitter else ""),
        f"max Retry-After {settings.max_retry_after_s:g} s",
        f"timeout {settings.timeout_s:g} s" if settings.timeout_s else "timeout engine default",
        f"keep-going {'on' if settings.keep_going else 'off'}",
        f"context files {context_count}",
    ]
    if config.restart:
        parts.append("restart")
    if config.only_iteration:
        parts.append(f"only iteration {config.only_iteration}")
    if config.only_task:
        parts.append(f"only task {config.only_task}")
    if settings.engine:
        parts.append(f"engine {settings.engine}")
    if settings.model:
        parts.append(f"model {settings.model}")
    return " · ".join(parts)


def context_policy(workspace, ref):
    """The workspace owner's limits on context files: the workspace, the plan folder and ``allow_dirs``."""
    from radium.prompts import ContextPolicy
    from radium.settings import resolve_context_settings

    context = resolve_context_settings(workspace.config(), str(workspace.config_path))
    roots = [workspace.root.resolve(), ref.plan_dir.resolve()]
    roots += [(workspace.root / Path(d).expanduser()).resolve() for d in context.allow_dirs]
    return ContextPolicy(roots=tuple(roots), max_file_bytes=context.max_file_bytes)


def _only_unfinished_plan(workspace):

    unfinished = []
    for ref in workspace.plans():
        try:
            if ref.store().load().has_incomplete_tasks():
                unfinished.append(ref)
        except Exception:
            unfinished.append(ref)  # a broken plan is a candidate the user must name
    if len(unfinished) == 1:
        return unfinished[0]
    if not unfinished:
        raise PlanNotFoundError(
            f"no unfinished plan in workspace {workspace.root}", hint="name one: rad craft REQ-001"
        )
    names = ", ".join(r.name for r in unfinished)
    raise PlanNotFoundError(f"several unfinished plans: {names}", hint="name one: rad craft REQ-001")
