"""``rad craft --dry-run``: validate everything and show what would run; call nothing."""

from __future__ import annotations

import click

from radium.events import Event, EventSink
from radium.models import PlanManifest
from radium.planning.executor import PlanExecutor


def dry_run(
    executor: PlanExecutor, manifest: PlanManifest, *, show_prompts: bool, emit: EventSink | None
) -> None:
    """Run every pre-flight check of a real run, then list the tasks in run order.

    With ``emit`` (``--json``) each task is a ``task_planned`` event; otherwise
    lines are printed. Dependency outputs that do not exist yet appear as
    "(no stored output)" in the prompts shown.
    """
    selected = executor.prepare(manifest)
    planned = executor.planned_order(selected)
    if emit is None:
        click.echo(f"rad craft {executor.config.plan_label} --dry-run")
        click.echo("Dry run mode - no execution. Tasks in the order they would run:")
    order = 0
    for iteration, tasks in planned:
        if emit is None:
            click.echo(f"Iteration {iteration.number}: {iteration.name} ({iteration.id})")
        for task in tasks:
            order += 1
            engine = executor.engine_for(task)
            if emit is not None:
                emit(
                    Event(
                        "task_planned",
                        {
                            "task_id": task.id,
                            "title": task.title,
                            "iteration_id": iteration.id,
                            "agent_id": task.agent_id,
                            "engine": engine.name,
                            "model": engine.model,
                            "dependencies": task.dependencies,
                            "order": order,
                        },
                    )
                )
            else:
                after = f" · after {', '.join(task.dependencies)}" if task.dependencies else ""
                click.echo(
                    f"  {order:>3}. {task.id} {task.title} · agent {task.agent_id} · "
                    f"{engine.name}/{engine.model}{after}"
                )
            if show_prompts:
                prompt = executor.render_prompt(task)
                click.echo(f"----- prompt of {task.id} -----\n{prompt.rstrip()}\n----- end of {task.id} -----")
    later = len(selected) - len(planned)
    note = f"; {later} more iteration(s) after the bound of {executor.config.run_mode.limit}" if later > 0 else ""
    click.echo(f"Dry run: {order} task(s) would run{note}. Nothing was called.", err=emit is not None)
