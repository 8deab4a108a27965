"""``rad status``: progress of one plan, or of every plan in the workspace.

For one plan the default is a summary whose size does not grow with the plan:
totals, one line per iteration, the running, failed and blocked tasks (the
first few of each, with a count), the last few completed. ``--all`` lists
every task, and ``--iteration ID`` / ``--failed`` list a selection; the list is
streamed line by line (a rich ``Table`` of 50,000 rows took a minute to lay
out). ``--json`` prints everything, always (it is the machine interface).
"""

from __future__ import annotations

import sys
import time

import click
import msgspec

from radium.codec import to_data

SUMMARY_ROWS = 10
"""Running, failed and blocked tasks shown per kind in the summary."""
LAST_COMPLETED = 5
ITERATION_LINES = 30
"""Beyond this many iterations the summary lists only the unfinished ones (up to this many)."""


def dumps(data: object) -> str:
    """2-space indented JSON, by msgspec (the pure-Python ``json.dumps`` took seconds on 100,000 task rows)."""
    return msgspec.json.format(msgspec.json.encode(data), indent=2).decode("utf-8")


@click.command()
@click.argument("plan", required=False)
@click.option("--json", "json_output", is_flag=True, help="Print the status as JSON (every task).")
@click.option("--all", "show_all", is_flag=True, help="List every task (default: a summary).")
@click.option("--iteration", "only_iteration", metavar="ID", help="List the tasks of this iteration.")
@click.option("--failed", "only_failed", is_flag=True, help="List the failed and blocked tasks.")
@click.pass_obj
def status(settings_obj, plan, json_output, show_all, only_iteration, only_failed):
    """Show PLAN's progress: a summary (totals, iterations, running, failed,
    blocked and last completed tasks) and the next command to run; --all or a
    filter lists tasks (status, attempts, duration, tokens, last error).
    Without PLAN, a table of all plans."""
    from radium.cli.output import make_console

    workspace = settings_obj.workspace()
    if plan:
        ref = workspace.find_plan(plan)
        manifest = ref.store().load()
        if json_output:
            click.echo(dumps(_plan_status(plan, ref, manifest)))
            return
        if only_iteration is not None and not any(it.id == only_iteration for it in manifest.iterations):
            from radium.errors import InvalidDataError

            ids = ", ".join(it.id for it in manifest.iterations[:20])
            raise InvalidDataError(f"--iteration {only_iteration}: no such iteration (have {ids})")
        listing = show_all or only_iteration is not None or only_failed
        _print_plan(make_console(), _plan_status(plan, ref, manifest, tasks=False), manifest, listing,
                    only_iteration, only_failed)
        return
    console = make_console()
    rows = []
    for ref in workspace.plans():
        try:
            manifest = ref.store().load()
        except Exception as exc:  # one broken plan must not hide the others
            rows.append({"plan": ref.name, "stage": ref.stage, "error": str(exc)})
            continue
        rows.append({**_plan_status(ref.name, ref, manifest, tasks=json_output), "stage": ref.stage})
    if json_output:
        click.echo(dumps(rows))
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


def _task_row(t) -> dict:
    return {
        "id": t.id,
        "title": t.title,
        "agent_id": t.agent_id,
        "status": t.status.value,
        "attempts": t.attempts,
        "duration_ms": t.duration_ms,
        "tokens": t.usage.total_tokens if t.usage else None,
        "rate_limit_wait_ms": t.rate_limit_wait_ms,
        "cost_usd": t.cost_usd,
        "last_error": to_data(t.last_error) if t.last_error else None,
    }


def _plan_status(label, ref, manifest, tasks: bool = True) -> dict:
    """The status data (``--json``'s fields), in one pass over the tasks; ``tasks=False`` omits the task rows."""
    from radium.models import TaskStatus

    from radium.lock import PlanLock

    completed = total = prompt_tokens = completion_tokens = wait_ms = unpriced = 0
    failed = False
    costs: list[float] = []
    iterations = []
    for it in manifest.iterations:
        done = 0
        for t in it.tasks:
            done += t.completed
            if t.status is TaskStatus.FAILED:
                failed = True
            usage = t.usage
            if usage is not None:
                prompt_tokens += usage.prompt_tokens
                completion_tokens += usage.completion_tokens
            wait_ms += t.rate_limit_wait_ms or 0
            if t.cost_usd is not None:
                costs.append(t.cost_usd)
            elif usage is not None:
                unpriced += 1
        completed += done
        total += len(it.tasks)
        entry = {"id": it.id, "name": it.name, "status": it.status.value, "completed": done, "total": len(it.tasks)}
        if tasks:
            entry["tasks"] = [_task_row(t) for t in it.tasks]
        iterations.append(entry)
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
        "percent": completed * 100 // total if total else 0,
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "rate_limit_wait_ms": wait_ms,
        # Sum of the tasks with a known cost; null when none has one. Tasks that used
        # tokens without a known price are counted in unpriced_tasks (cost unknown, not 0).
        "cost_usd": round(sum(costs), 10) if costs else None,
        "unpriced_tasks": unpriced,
        "next_command": next_command,
        "running": running,
        "iterations": iterations,
    }


def _print_plan(console, data, manifest, listing: bool, only_iteration: str | None, only_failed: bool) -> None:
    from radium.cli.output import run_cost_text
    from radium.retry import format_compact

    console.print(f"[bold]{data['requirement_id']} · {data['project']}[/bold]  ({data['path']})")
    console.print(
        f"Status: {data['status']} · {data['completed']}/{data['total']} tasks ({data['percent']}%) · "
        f"tokens {data['prompt_tokens']:,} prompt / {data['completion_tokens']:,} completion · "
        f"cost {run_cost_text(data['cost_usd'], data['unpriced_tasks'], data['prompt_tokens'] + data['completion_tokens'])}"
        + (f" · {format_compact(data['rate_limit_wait_ms'] / 1000)} waiting on rate limits" if data["rate_limit_wait_ms"] else ""),
        markup=False,
    )
    console.file.flush()
    out = sys.stdout
    if listing:
        _stream_tasks(out, manifest, only_iteration, only_failed)
    else:
        _summary(out, data, manifest)
    if data["running"]:
        out.write(f"Running now: wait for it to finish, or stop it with `kill -INT {data['running']['pid']}`.\n")
    else:
        out.write(f"Next: {data['next_command']}\n" if data["next_command"] else "Plan complete.\n")
    out.flush()


def _summary(out, data, manifest) -> None:
    from radium.models import TaskStatus

    iterations = data["iterations"]
    shown = iterations
    if len(iterations) > ITERATION_LINES:
        shown = [it for it in iterations if it["completed"] < it["total"]][:ITERATION_LINES]
        out.write(f"Iterations: {len(iterations)} ({sum(it['completed'] == it['total'] for it in iterations)} complete)"
                  + ("; unfinished:\n" if shown else "\n"))
    else:
        out.write("Iterations:\n")
    for it in shown:
        out.write(f"  {it['id']:<8} {it['status']:<12} {it['completed']}/{it['total']} done  {it['name']}\n")
    kinds = {TaskStatus.IN_PROGRESS: [], TaskStatus.FAILED: [], TaskStatus.BLOCKED: []}
    counts = dict.fromkeys(kinds, 0)
    last: list = []
    for _, t in manifest.tasks():
        if t.status in kinds:
            counts[t.status] += 1
            if len(kinds[t.status]) < SUMMARY_ROWS:
                kinds[t.status].append(t)
        elif t.completed:
            last.append(t)
            if len(last) > 4 * LAST_COMPLETED:
                last.sort(key=lambda task: task.completed_at or "")
                del last[:-LAST_COMPLETED]
    for status, title in ((TaskStatus.IN_PROGRESS, "Running"), (TaskStatus.FAILED, "Failed"), (TaskStatus.BLOCKED, "Blocked")):
        if counts[status]:
            out.write(f"{title} ({counts[status]}):\n")
            for t in kinds[status]:
                out.write(_task_line(t))
            if counts[status] > SUMMARY_ROWS:
                out.write(f"  … and {counts[status] - SUMMARY_ROWS} more (rad status {data['plan']} --failed or --all)\n")
    last.sort(key=lambda task: task.completed_at or "")
    if last:
        out.write(f"Last completed ({min(len(last), LAST_COMPLETED)} of {data['completed']}):\n")
        for t in last[-LAST_COMPLETED:]:
            out.write(_task_line(t))
    if data["total"]:
        out.write(f"All tasks: rad status {data['plan']} --all\n")


_HEADER = f"{'Task':<12} {'Status':<11} {'Att':>3} {'Duration':>8} {'RL wait':>7} {'Tokens':>8} {'Cost':>9}  Agent · Title · Last error\n"


def _stream_tasks(out, manifest, only_iteration: str | None, only_failed: bool) -> None:
    from radium.models import TaskStatus

    wanted = (TaskStatus.FAILED, TaskStatus.BLOCKED)
    out.write(_HEADER)
    for it in manifest.iterations:
        if only_iteration is not None and it.id != only_iteration:
            continue
        done = sum(t.completed for t in it.tasks)
        out.write(f"{it.id} · {it.name} · {it.status.value} · {done}/{len(it.tasks)} done\n")
        lines = []
        for t in it.tasks:
            if only_failed and t.status not in wanted:
                continue
            lines.append(_task_line(t))
            if len(lines) >= 1000:
                out.write("".join(lines))
                lines.clear()
        out.write("".join(lines))


def _task_line(t) -> str:
    from radium.reporting.pricing import format_cost
    from radium.retry import format_compact

    tokens = t.usage.total_tokens if t.usage else None
    error = t.last_error
    parts = [t.agent_id or "-", t.title]
    if error:
        parts.append(f"{error.category}: {error.message}")
    return (
        f"  {t.id:<10} {t.status.value:<11} {t.attempts:>3} "
        f"{f'{t.duration_ms / 1000:.1f}s' if t.duration_ms is not None else '':>8} "
        f"{format_compact(t.rate_limit_wait_ms / 1000) if t.rate_limit_wait_ms else '':>7} "
        f"{f'{tokens:,}' if tokens is not None else '':>8} "
        f"{format_cost(t.cost_usd) if tokens is not None else '':>9}  {' · '.join(parts)}\n"
    )
