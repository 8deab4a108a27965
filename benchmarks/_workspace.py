"""Shared by the benchmarks: an N-task mock-engine workspace, built the way ``overhead.py`` always did.

N tasks in iterations of ``per`` tasks (default N/10); every second task
depends on the one before it; one agent ``w`` on the ``mock`` engine.
``completed`` marks the first tasks completed (with an output file), for
status and resume measurements.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

PLAN_RELATIVE = Path(".radium") / "plan" / "backlog" / "REQ-001-bench"


def make_workspace(ws: Path, n: int, per: int | None = None, completed: int = 0) -> Path:
    """Create the workspace; returns the manifest path."""
    subprocess.run([sys.executable, "-m", "radium", "init", str(ws)], check=True, capture_output=True)
    (ws / "agents").mkdir(exist_ok=True)
    (ws / "prompts").mkdir(exist_ok=True)
    (ws / "prompts" / "w.md").write_text("Do {{task_id}}: {{task_title}}.\n")
    (ws / "agents" / "w.toml").write_text(
        '[agent]\nid = "w"\nname = "W"\ndescription = ""\nprompt_path = "../prompts/w.md"\nengine = "mock"\n'
    )
    per = per or max(1, n // 10)
    plan_dir = ws / PLAN_RELATIVE
    tasks_dir = plan_dir / "artifacts" / "tasks"
    if completed:
        tasks_dir.mkdir(parents=True, exist_ok=True)
    iterations = []
    done = 0
    for i in range(1, (n + per - 1) // per + 1):
        count = min(per, n - (i - 1) * per)
        tasks = []
        for t in range(1, count + 1):
            task: dict = {
                "id": f"I{i}.T{t}", "number": t, "title": f"Task {i}.{t}", "agent_id": "w",
                "dependencies": [f"I{i}.T{t - 1}"] if t > 1 and t % 2 == 0 else [],
            }
            if done < completed:
                done += 1
                output = f"artifacts/tasks/I{i}.T{t}.md"
                (plan_dir / output).write_text(f"[mock] I{i}.T{t}\n")
                task.update(
                    completed=True, status="completed", attempts=1, started_at="2026-01-01T00:00:00+00:00",
                    completed_at="2026-01-01T00:00:01+00:00", duration_ms=1,
                    usage={"prompt_tokens": 12, "completion_tokens": 7}, output_path=output,
                    attempt_log=[{"attempt": 1, "started_at": "2026-01-01T00:00:00.000+00:00",
                                  "ended_at": "2026-01-01T00:00:00.001+00:00", "outcome": "ok"}],
                )
            tasks.append(task)
        status = "completed" if all(t.get("completed") for t in tasks) else "not_started"
        iterations.append({"id": f"I{i}", "number": i, "name": f"It {i}", "status": status, "tasks": tasks})
    manifest = plan_dir / "plan" / "plan_manifest.json"
    manifest.parent.mkdir(parents=True, exist_ok=True)
    (plan_dir / "plan.json").write_text(json.dumps({
        "requirement_id": {"number": 1}, "project_name": "Bench", "folder_name": plan_dir.name, "stage": "backlog",
        "status": "not_started", "created_at": 0, "updated_at": 0, "total_iterations": len(iterations),
        "completed_iterations": 0, "total_tasks": n, "completed_tasks": completed}, indent=2))
    manifest.write_text(
        json.dumps({"requirement_id": {"number": 1}, "project_name": "Bench", "iterations": iterations}, indent=2)
    )
    return manifest


def write_big_manifest(path: Path, n: int, completed: int = 0, per: int = 10_000) -> None:
    """A manifest of ``n`` tasks written as a stream (compact JSON), without output files.

    For ``rad status`` of plans too large to build in memory comfortably here.
    """
    with open(path, "w", encoding="utf-8") as out:
        out.write('{"requirement_id": {"number": 1}, "project_name": "Bench", "iterations": [')
        done = 0
        for i in range(1, (n + per - 1) // per + 1):
            count = min(per, n - (i - 1) * per)
            out.write("," if i > 1 else "")
            out.write(f'{{"id": "I{i}", "number": {i}, "name": "It {i}", "status": "not_started", "tasks": [')
            for t in range(1, count + 1):
                task = {"id": f"I{i}.T{t}", "number": t, "title": f"Task {i}.{t}", "agent_id": "w",
                        "dependencies": [f"I{i}.T{t - 1}"] if t > 1 and t % 2 == 0 else []}
                if done < completed:
                    done += 1
                    task.update(completed=True, status="completed", attempts=1, duration_ms=1,
                                completed_at="2026-01-01T00:00:01+00:00",
                                usage={"prompt_tokens": 12, "completion_tokens": 7},
                                output_path=f"artifacts/tasks/I{i}.T{t}.md")
                out.write(("," if t > 1 else "") + json.dumps(task))
            out.write("]}")
        out.write("]}")
