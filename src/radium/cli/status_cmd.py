"""``rad status``: progress of one plan, or of every plan in the workspace."""

from __future__ import annotations

import json
import time

import click


@click.command()
@click.argument("plan", required=False)
@click.option("--json", "json_output", is_flag=True, help="Print the status as JSON.")
@click.pass_obj
def status(settings_obj, plan, json_output):
    """Show PLAN's iterations and tasks (status, attempts, duration, tokens,
    last error) and the next command to run; without PLAN, a table of all plans."""
    from radium.cli.output import make_console

    workspace = settings_obj.workspace()
    console = make_console()
    if plan:
        ref = workspace.find_plan(plan)
        manifest = ref.store().load()
        data = _plan_status(plan, ref, manifest)
        if json_output:
            click.echo(json.dumps(data, indent=2))
        else:
            _print_plan(console, data, manifest)
        return
    rows = []
    for ref in workspace.plans():
        try:
            manifest = ref.store().load()
        except Exception as exc:  # one broken plan must not hide the others
            rows.append({"plan": ref.name, "stage": ref.stage, "error": str(exc)})
            continue
        rows.append({**_plan_status(ref.name, ref, manifest), "stage": ref.stage})
    if json_output:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        console.print(f"No plans in {workspace.root}. Create one with `rad plan PLAN.md`.")
        return
    from rich.table import Table

    table = Table(title=f"Plans in {workspace.root}", title_justify="left")
    for column in ("Plan", "Stage", "Project", "Progress", "Status", "Next"):
        table.add_column(column, overflow="fold")
    for row in rows:
        if "error" in row:
            table.add_row(row["plan"], row["stage"] or "", "", "", "unreadable", row["error"])
            continue
        table.add_row(
            row["plan"],
            row["stage"] or "",
            row["project"],
            f"{row['completed']}/{row['total']} ({row['percent']}%)",
            row["status"],
            row["next_command"] or "",
        )
    console.print(table)


def _plan_status(label, ref, manifest) -> dict:
    from radium.models import TaskStatus

    from radium.lock import PlanLock

    completed, total = manifest.counts()
    tasks = [t for _, t in manifest.tasks()]
    failed = [t for t in tasks if t.status is TaskStatus.FAILED]
    holder = PlanLock.live_holder(ref.manifest_path.parent / ".craft.lock.json")
    running = None
    if holder is not None:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("started_at", 0)))
        current = ", ".join(holder.get("current_tasks") or []) or "none (between tasks)"
        running = {"pid": holder["pid"], "since": started, "current_tasks": holder.get("current_tasks") or []}
        # Another run holds the plan: its state is changing, and `rad craft` would hit the lock.
        plan_status = f"running (pid {holder['pid']}, since {started}, current task {current})"
        next_command = None
    elif total and completed == total:
        plan_status, next_command = "completed", None
    elif failed:
        plan_status, next_command = "failed", f"rad craft {label} --resume"
    elif completed:
        plan_status, next_command = "in_progress", f"rad craft {label} --resume"
    else:
        plan_status, next_command = "not_started", f"rad craft {label}"
    return {
        "plan": ref.name,
        "path": str(ref.plan_dir),
        "project": manifest.project_name,
        "requirement_id": str(manifest.requirement_id),
        "status": plan_status,
        "completed": completed,
        "total": total,
        "percent": manifest.calculate_progress(),
        "prompt_tokens": sum(t.usage.prompt_tokens for t in tasks if t.usage),
        "completion_tokens": sum(t.usage.completion_tokens for t in tasks if t.usage),
        "rate_limit_wait_ms": sum(t.rate_limit_wait_ms or 0 for t in tasks),
        # Sum of the tasks with a known cost; null when none has one. Tasks that used
        # tokens without a known price are counted in unpriced_tasks (cost unknown, not 0).
        "cost_usd": round(sum(costs), 10) if (costs := [t.cost_usd for t in tasks if t.cost_usd is not None]) else None,
        "unpriced_tasks": sum(1 for t in tasks if t.cost_usd is None and t.usage is not None),
        "next_command": next_command,
        "running": running,
        "iterations": [
            {
                "id": it.id,
                "name": it.name,
                "status": it.status.value,
                "completed": sum(t.completed for t in it.tasks),
                "total": len(it.tasks),
                "tasks": [
                    {
                        "id": t.id,
                        "title": t.title,
                        "agent_id": t.agent_id,
                        "status": t.status.value,
                        "attempts": t.attempts,
                        "duration_ms": t.duration_ms,
                        "tokens": t.usage.total_tokens if t.usage else None,
                        "rate_limit_wait_ms": t.rate_limit_wait_ms,
                        "cost_usd": t.cost_usd,
                        "last_error": t.last_error.model_dump() if t.last_error else None,
                    }
                    for t in it.tasks
                ],
            }
            for it in manifest.iterations
        ],
    }


_STATUS_STYLE = {"completed": "green", "failed": "red", "blocked": "yellow", "in_progress": "cyan"}


def _print_plan(console, data, manifest) -> None:
    from rich.table import Table

    from radium.retry import format_compact
    from radium.cli.output import run_cost_text
    from radium.reporting.pricing import format_cost

    console.print(f"[bold]{data['requirement_id']} · {data['project']}[/bold]  ({data['path']})")
    console.print(
        f"Status: {data['status']} · {data['completed']}/{data['total']} tasks ({data['percent']}%) · "
        f"tokens {data['prompt_tokens']:,} prompt / {data['completion_tokens']:,} completion · "
        f"cost {run_cost_text(data['cost_usd'], data['unpriced_tasks'], data['prompt_tokens'] + data['completion_tokens'])}"
        + (f" · {format_compact(data['rate_limit_wait_ms'] / 1000)} waiting on rate limits" if data["rate_limit_wait_ms"] else ""),
        markup=False,
    )
    table = Table(show_lines=False)
    for column in ("Task", "Title", "Agent", "Status", "Attempts", "Duration", "Rate-limit wait", "Tokens", "Cost", "Last error"):
        table.add_column(column, overflow="fold")
    for iteration in data["iterations"]:
        table.add_row(
            f"[bold]{iteration['id']}[/bold]",
            f"[bold]{iteration['name']}[/bold]",
            "",
            iteration["status"],
            "",
            "",
            "",
            "",
            f"{iteration['completed']}/{iteration['total']} done",
        )
        for task in iteration["tasks"]:
            style = _STATUS_STYLE.get(task["status"], "")
            error = task["last_error"]
            table.add_row(
                task["id"],
                task["title"],
                task["agent_id"] or "-",
                f"[{style}]{task['status']}[/{style}]" if style else task["status"],
                str(task["attempts"]),
                f"{task['duration_ms'] / 1000:.1f}s" if task["duration_ms"] is not None else "",
                format_compact(task["rate_limit_wait_ms"] / 1000) if task["rate_limit_wait_ms"] else "",
                f"{task['tokens']:,}" if task["tokens"] is not None else "",
                format_cost(task["cost_usd"]) if task["tokens"] is not None else "",
                f"{error['category']}: {error['message']}" if error else "",
            )
    console.print(table)
    if data["running"]:
        pid = data["running"]["pid"]
        console.print(f"Running now: wait for it to finish, or stop it with `kill -INT {pid}`.")
    elif data["next_command"]:
        console.print(f"Next: {data['next_command']}")
    else:
        console.print("Plan complete.")
