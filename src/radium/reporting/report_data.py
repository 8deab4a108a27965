"""The data behind ``rad report``: one JSON-able dict built from the checkpoint and artifacts.

The HTML page (``report_html``) embeds this dict and draws everything from it
in the browser, lazily, so a 10,000-task plan stays usable:

* ``summary``: totals (tasks by status, attempts, retries, waits, tokens,
  cost, busy time, most attempts at once).
* ``axis``: the folded time axis (``timeline.Axis``): length and breaks.
* ``tasks``: one compact record per task, in plan order. ``log`` holds its
  attempts on the display axis: ``[start, end, outcome, wait_end, wait_source,
  gate_end]`` (``timeline.OUTCOMES``/``WAIT_SOURCES`` codes). Prompt and output
  are cut to a per-task share of ``TEXT_BUDGET`` (the full files are linked).
* ``graph``: the dependency graph by iteration, laid out here. Up to
  ``GRAPH_TASK_LIMIT`` tasks it has one node per task; above it one node per
  iteration with status counts and edges weighted by dependency count.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from radium.codec import to_data
from radium.models import PlanManifest, PlanTask, TaskStatus, utc_now_iso
from radium.reporting.timeline import Axis, Span, max_concurrency, task_spans

TEXT_BUDGET = 6_000_000
"""Characters of prompt and output text embedded in one report, shared by all tasks."""
TEXT_MIN, TEXT_MAX = 200, 20_000
"""Bounds of one text's share."""
MESSAGE_MAX = 500
GRAPH_TASK_LIMIT = 400


def build_report_data(
    manifest: PlanManifest, plan_dir: Path, tasks_dir: Path, report_dir: Path, label: str
) -> dict[str, Any]:
    entries = list(manifest.tasks())
    position = {task.id: n for n, (_, task) in enumerate(entries)}
    iteration_index = {id(it): n for n, it in enumerate(manifest.iterations)}
    spans_by_task = [task_spans(task) for _, task in entries]
    all_spans = [span for spans in spans_by_task for span in spans]
    axis = Axis.build(all_spans)
    text_cap = max(TEXT_MIN, min(TEXT_MAX, TEXT_BUDGET // max(2 * len(entries), 1)))
    link_base = Path(os.path.relpath(tasks_dir, report_dir)).as_posix()

    tasks = []
    for (iteration, task), spans in zip(entries, spans_by_task):
        tasks.append(
            {
                "id": task.id,
                "title": task.title,
                "it": iteration_index[id(iteration)],
                "agent": task.agent_id,
                "status": task.status.value,
                "attempts": task.attempts,
                "duration_ms": task.duration_ms,
                "prompt_tokens": task.usage.prompt_tokens if task.usage else None,
                "completion_tokens": task.usage.completion_tokens if task.usage else None,
                "cost_usd": task.cost_usd,
                "rate_limit_wait_ms": task.rate_limit_wait_ms,
                "error": _error_text(task),
                "deps": [position[d] for d in task.dependencies if d in position],
                "log": [_span_row(axis, span) for span in spans],
                "attempt_log": [_attempt_row(record) for record in task.attempt_log],
                "prompt": _text(tasks_dir / f"{task.id}.prompt.md", f"{link_base}/{task.id}.prompt.md", text_cap),
                "output": _text(tasks_dir / f"{task.id}.md", f"{link_base}/{task.id}.md", text_cap),
            }
        )
    return {
        "summary": _summary(manifest, entries, all_spans, axis, label, plan_dir),
        "iterations": [
            {"id": it.id, "name": it.name, "goal": it.goal, "status": it.status.value, "tasks": len(it.tasks)}
            for it in manifest.iterations
        ],
        "axis": {"length": round(axis.length, 1), "origin_ms": axis.origin, "breaks": axis.breaks},
        "tasks": tasks,
        "graph": _graph(manifest, position) if len(entries) <= GRAPH_TASK_LIMIT else _iteration_graph(manifest),
        "text_cap": text_cap,
    }


def _error_text(task: PlanTask) -> str | None:
    error = task.last_error
    if error is None:
        return None
    kind = f" ({error.kind})" if error.kind else ""
    return f"{error.category}{kind}: {error.message}"[:MESSAGE_MAX]


def _span_row(axis: Axis, span: Span) -> list[Any]:
    start = axis.x(span.start)
    return [
        start,
        axis.x(span.end),
        span.outcome,
        axis.x(span.wait_end) if span.wait_end is not None else None,
        span.wait_source,
        round(start + span.gate_ms, 1) if span.gate_ms else None,
    ]


def _attempt_row(record: Any) -> dict[str, Any]:
    row = to_data(record)
    if "message" in row:
        row["message"] = row["message"][:MESSAGE_MAX]
    return row


def _text(path: Path, link: str, cap: int) -> dict[str, Any] | None:
    """The start of an artifact (``cap`` characters), its full size and a link to it."""
    try:
        size = path.stat().st_size
        with open(path, encoding="utf-8", errors="replace") as handle:
            text = handle.read(cap + 1)
    except OSError:
        return None
    return {"text": text[:cap], "cut": len(text) > cap, "bytes": size, "href": link}


def _summary(manifest, entries, spans: list[Span], axis: Axis, label: str, plan_dir: Path) -> dict[str, Any]:
    tasks = [task for _, task in entries]
    by_status = {status.value: 0 for status in TaskStatus}
    for task in tasks:
        by_status[task.status.value] += 1
    records = [record for task in tasks for record in task.attempt_log]
    waits: dict[str, int] = {}
    for record in records:
        if record.wait_ms:
            source = record.wait_source or "backoff"
            waits[source] = waits.get(source, 0) + record.wait_ms
    costs = [t.cost_usd for t in tasks if t.cost_usd is not None]
    first = min((s.start for s in spans), default=None)
    last = max((max(s.end, s.wait_end or s.end) for s in spans), default=None)
    return {
        "plan": label,
        "path": str(plan_dir),
        "project": manifest.project_name,
        "requirement_id": str(manifest.requirement_id),
        "generated_at": utc_now_iso(),
        "total": len(tasks),
        "by_status": by_status,
        "iterations": len(manifest.iterations),
        "attempts": sum(t.attempts for t in tasks),
        "retries": sum(max(t.attempts - 1, 0) for t in tasks),
        "failed_attempts": sum(1 for r in records if r.outcome == "error"),
        "interrupted_attempts": sum(1 for r in records if r.outcome == "interrupted"),
        "waits_ms": waits,
        "rate_limit_wait_ms": sum(r.rate_limit_wait_ms or 0 for r in records),
        "prompt_tokens": sum(t.usage.prompt_tokens for t in tasks if t.usage),
        "completion_tokens": sum(t.usage.completion_tokens for t in tasks if t.usage),
        "cost_usd": round(sum(costs), 10) if costs else None,
        "unpriced_tasks": sum(1 for t in tasks if t.cost_usd is None and t.usage is not None),
        "first_start_ms": first,
        "last_end_ms": last,
        "busy_ms": round(axis.length - len(axis.breaks) * axis.break_width),
        "idle_folded_ms": sum(b["idle_ms"] for b in axis.breaks),
        "max_concurrency": max_concurrency(spans),
    }


def _graph(manifest: PlanManifest, position: dict[str, int]) -> dict[str, Any]:
    """One node per task: columns by iteration, then by dependency depth inside it."""
    nodes: list[list[int]] = []
    columns: list[dict[str, Any]] = []
    col = 0
    rows = 0
    for iteration in manifest.iterations:
        local = {task.id: task for task in iteration.tasks}
        depth: dict[str, int] = {}
        for task in iteration.tasks:
            _depth(task.id, local, depth, set())
        width = max(depth.values(), default=-1) + 1 or 1
        used = [0] * width
        for task in iteration.tasks:
            d = depth[task.id]
            nodes.append([col + d, used[d]])
            used[d] += 1
        rows = max(rows, max(used, default=0))
        columns.append({"col": col, "cols": width})
        col += width
    return {"mode": "tasks", "cols": col, "rows": rows, "nodes": nodes, "columns": columns}


def _depth(task_id: str, local: dict[str, PlanTask], depth: dict[str, int], visiting: set[str]) -> int:
    """Longest chain of in-iteration dependencies below ``task_id`` (0: depends on none)."""
    if task_id in depth:
        return depth[task_id]
    if task_id in visiting:  # a cycle (rejected by validation; never loop on a hand-edited file)
        return 0
    visiting.add(task_id)
    deps = [d for d in local[task_id].dependencies if d in local]
    value = 1 + max((_depth(d, local, depth, visiting) for d in deps), default=-1)
    depth[task_id] = value
    return value


def _iteration_graph(manifest: PlanManifest) -> dict[str, Any]:
    """One node per iteration (status counts), edges weighted by cross-iteration dependencies."""
    owner = {task.id: n for n, it in enumerate(manifest.iterations) for task in it.tasks}
    edges: dict[tuple[int, int], int] = {}
    nodes = []
    for n, iteration in enumerate(manifest.iterations):
        counts = {status.value: 0 for status in TaskStatus}
        for task in iteration.tasks:
            counts[task.status.value] += 1
            for dep in task.dependencies:
                source = owner.get(dep)
                if source is not None and source != n:
                    edges[(source, n)] = edges.get((source, n), 0) + 1
        nodes.append(counts)
    return {"mode": "iterations", "nodes": nodes, "edges": [[a, b, c] for (a, b), c in sorted(edges.items())]}
