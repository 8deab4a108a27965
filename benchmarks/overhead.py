#!/usr/bin/env python3
"""Executor overhead per task: wall time of `rad craft` minus model time, per task.

Builds an N-task plan (default 1000: 10 iterations of N/10 tasks, or iterations
of TASKS_PER_ITERATION; every second task depends on the one before it)
on the mock engine, whose calls take microseconds, then times
`rad craft --yolo --json`. Model time is the sum of the tasks' recorded
durations (the engine calls); overhead = (wall - model) / N. Everything a real
run does is included: validation, prompt rendering, the journal lines (start
mark, and the completion carrying the output, fsynced), artifact writes,
compactions, events. `benchmarks/run.py` runs this against the disk's floor.

    python benchmarks/overhead.py [N [TASKS_PER_ITERATION]]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main(n: int, per: int | None = None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        ws = Path(tmp)
        subprocess.run([sys.executable, "-m", "radium", "init", str(ws)], check=True, capture_output=True)
        (ws / "agents").mkdir(exist_ok=True)  # rad init leaves starters there
        (ws / "prompts").mkdir(exist_ok=True)
        (ws / "prompts" / "w.md").write_text("Do {{task_id}}: {{task_title}}.\n")
        (ws / "agents" / "w.toml").write_text(
            '[agent]\nid = "w"\nname = "W"\ndescription = ""\nprompt_path = "../prompts/w.md"\nengine = "mock"\n'
        )
        per = per or max(1, n // 10)
        iterations = []
        for i in range(1, (n + per - 1) // per + 1):
            count = min(per, n - (i - 1) * per)
            tasks = [
                {"id": f"I{i}.T{t}", "number": t, "title": f"Task {i}.{t}", "agent_id": "w",
                 "dependencies": [f"I{i}.T{t - 1}"] if t > 1 and t % 2 == 0 else []}
                for t in range(1, count + 1)
            ]
            iterations.append({"id": f"I{i}", "number": i, "name": f"It {i}", "status": "not_started", "tasks": tasks})
        plan = ws / ".radium" / "plan" / "backlog" / "REQ-001-bench" / "plan"
        plan.mkdir(parents=True)
        (plan / "plan_manifest.json").write_text(
            json.dumps({"requirement_id": {"number": 1}, "project_name": "Bench", "iterations": iterations})
        )
        env = {**os.environ, "NO_COLOR": "1"}
        started = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-m", "radium", "-w", str(ws), "craft", "REQ-001", "--yolo", "--json"],
            capture_output=True, text=True, env=env,
        )
        wall = time.perf_counter() - started
        assert result.returncode == 0, result.stderr
        events = [json.loads(line) for line in result.stdout.splitlines()]
        model_ms = sum(e["duration_ms"] for e in events if e["event"] == "task_completed")
        finished = events[-1]
        assert finished["completed"] == n, finished
        print(f"tasks: {n}")
        print(f"wall time (incl. ~0.3 s interpreter start): {wall:.2f} s")
        print(f"model time (sum of task durations): {model_ms / 1000:.3f} s")
        print(f"overhead per task: {(wall * 1000 - model_ms) / n:.2f} ms")
        size = (plan / "plan_manifest.json").stat().st_size
        print(f"final manifest size: {size / 1024:.0f} KiB")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000, int(sys.argv[2]) if len(sys.argv) > 2 else None)
