"""How a run ended: its outcome, exit code, message, totals and next command.

``finish`` turns a run's final state into the ``RunResult`` the CLI exits with;
``result_fields`` is that result as the ``run_finished`` event. Outcomes:
``completed``, ``bound_reached``, ``sanity_limit``, ``budget_reached``,
``failed``, ``blocked``, ``interrupted``, ``filtered`` (a ``--task``/
``--iteration`` run that finished its selection).
"""

from __future__ import annotations

from radium.errors import ExitCode
from radium.events import Event
from radium.models import PlanManifest, PlanTask, TaskStatus
from radium.planning.run_types import CONTINUOUS_SANITY_LIMIT, ExecutionConfig, RunResult, RunState, TaskResult


def completed_event(task: PlanTask, result: TaskResult, completed: int, total: int) -> Event:
    """The ``task_completed`` event of a task just saved as completed."""
    usage = result.usage
    return Event(
        "task_completed",
        {
            "task_id": task.id,
            "title": task.title,
            "attempts": result.attempts,
            "duration_ms": result.duration_ms,
            "prompt_tokens": usage.prompt_tokens if usage else None,
            "completion_tokens": usage.completion_tokens if usage else None,
            "rate_limit_wait_ms": result.rate_limit_wait_ms,
            "output_path": task.output_path,
            "cost_usd": task.cost_usd,
            "completed_tasks": completed,
            "total_tasks": total,
            "percent": completed * 100 // total if total else 0,
        },
    )


def finish(
    manifest: PlanManifest,
    state: RunState,
    outcome: str,
    config: ExecutionConfig,
    *,
    wall_ms: int,
    retries: int,
    rate_limited_requests: int,
    interrupt_exit_code: int,
) -> RunResult:
    """The result of a run that ended with ``outcome`` (refined here: see the module docstring)."""
    completed, total = manifest.counts()
    failed = sum(1 for _, t in manifest.tasks() if t.status is TaskStatus.FAILED)
    blocked = sum(1 for _, t in manifest.tasks() if t.status is TaskStatus.BLOCKED)
    remaining = total - completed
    label = config.plan_label or "PLAN"
    limit = config.run_mode.limit
    if outcome == "completed" and remaining:
        outcome = "filtered"
    if outcome == "budget_reached" and not remaining:
        outcome = "completed"  # the budget ran out with the last task: nothing was held back
    messages = {
        "completed": "All tasks completed. Execution finished.",
        "bound_reached": f"Reached maximum iterations ({limit}). Stopping execution.",
        "sanity_limit": f"Reached sanity limit ({CONTINUOUS_SANITY_LIMIT}). Stopping execution.",
        "failed": "Execution stopped: a task failed.",
        "blocked": "Execution finished with blocked tasks.",
        "interrupted": (
            "Execution aborted by user. Progress saved to plan_manifest.json"
            if interrupt_exit_code == ExitCode.SIGINT
            else "Execution stopped by SIGTERM. Progress saved to plan_manifest.json"
        ),
        "filtered": (
            "Selected tasks finished."
            if config.only_task or config.only_iteration
            else f"Execution finished; {remaining} task(s) naming no agent were skipped."
        ),
        "budget_reached": f"Budget reached ({state.spend.budget_hit}). Stopping execution.",
    }
    exit_codes = {"failed": ExitCode.TASK_FAILED, "blocked": ExitCode.TASK_FAILED, "interrupted": interrupt_exit_code}
    if outcome == "completed":
        next_command = f"rad status {label}"
    elif outcome in ("failed", "blocked"):
        next_command = f"rad craft {label} --resume"
    else:
        next_command = f"rad craft {label} --resume" if remaining else f"rad status {label}"
    spend = state.spend
    return RunResult(
        outcome=outcome,
        exit_code=int(exit_codes.get(outcome, ExitCode.OK)),
        message=messages[outcome],
        completed=completed,
        failed=failed,
        blocked=blocked,
        remaining=remaining - failed - blocked,
        total=total,
        retries=retries,
        prompt_tokens=spend.prompt_tokens,
        completion_tokens=spend.completion_tokens,
        wall_ms=wall_ms,
        rate_limit_wait_ms=state.rate_limit_wait_ms,
        rate_limited_requests=rate_limited_requests,
        next_command=next_command,
        failures=list(state.failures),
        blocked_reasons=dict(state.blocked),
        interrupted_tasks=list(state.interrupted),
        cost_usd=spend.total_cost_usd,
        unpriced_tasks=list(spend.unpriced),
        budget=spend.budget_hit,
    )


def result_fields(result: RunResult) -> dict[str, object]:
    """``result`` as the fields of the ``run_finished`` event."""
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
        "rate_limit_wait_ms": result.rate_limit_wait_ms,
        "rate_limited_requests": result.rate_limited_requests,
        "next_command": result.next_command,
        "interrupted_tasks": result.interrupted_tasks,
        "cost_usd": result.cost_usd,
        "unpriced_tasks": result.unpriced_tasks,
        "budget": result.budget,
        "failures": [
            {"task_id": task_id, "category": e.category.value, "kind": e.kind, "message": str(e)}
            for task_id, e in result.failures
        ],
        "blocked_tasks": result.blocked_reasons,
    }
