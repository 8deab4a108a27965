#!/usr/bin/env python3
"""Per-task overhead of the Ray backend against the local backend.

Two plans on the mock engine, each run with `rad craft --yolo --json --parallel 16`,
once with the local backend and once with `--backend ray` (a local Ray instance
started by the run, as a user gets without `--ray-address`):

* 1,000 tasks (10 iterations of 100 independent tasks) whose calls take microseconds:
  the difference in execution time per task is what a Ray task costs over an
  in-process call (submission, scheduling, a worker, the result coming back).
* 100 independent tasks of 1 s each (`mock-delay-ms: 1000`): wall time against
  the ideal bound ceil(100 / 16) x 1 s = 7 s.

"startup" is the time until `run_started` (interpreter, plan checks and, for Ray,
starting the local instance); "execution" runs from `run_started` to the end of
`run_finished`; Ray's shutdown after it is in "wall".

    python benchmarks/ray_overhead.py [--ray-address ADDR]
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PARALLEL = 16


def make_workspace(ws: Path, iterations: int, per: int, description: str = "") -> None:
    subprocess.run([sys.executable, "-m", "radium", "init", str(ws)], check=True, capture_output=True)
    (ws / "agents").mkdir()
    (ws / "prompts").mkdir()
    (ws / "prompts" / "w.md").write_text("Do {{task_id}}: {{task_title}}.\n")
    (ws / "agents" / "w.toml").write_text(
        '[agent]\nid = "w"\nname = "W"\ndescription = ""\nprompt_path = "../prompts/w.md"\nengine = "mock"\n'
    )
    plan = {
        "requirement_id": {"number": 1},
        "project_name": "Bench",
        "iterations": [
            {
                "id": f"I{i}",
                "number": i,
                "name": f"It {i}",
                "status": "not_started",
                "tasks": [
                    {"id": f"I{i}.T{t}", "number": t, "title": f"Task {i}.{t}", "agent_id": "w",
                     "description": description, "dependencies": []}
                    for t in range(1, per + 1)
                ],
            }
            for i in range(1, iterations + 1)
        ],
    }
    folder = ws / ".radium" / "plan" / "backlog" / "REQ-001-bench" / "plan"
    folder.mkdir(parents=True)
    (folder / "plan_manifest.json").write_text(json.dumps(plan))


def run(ws: Path, extra: list[str]) -> dict[str, float]:
    """Run the plan; return wall, startup and execution seconds (stdout read as it comes)."""
    env = {**os.environ, "NO_COLOR": "1"}
    argv = [sys.executable, "-m", "radium", "-w", str(ws), "craft", "REQ-001", "--yolo", "--json",
            "--parallel", str(PARALLEL), *extra]
    started = time.perf_counter()
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    marks: dict[str, float] = {}
    last: dict = {}
    assert process.stdout is not None
    for line in process.stdout:
        event = json.loads(line)
        if event["event"] in ("run_started", "run_finished"):
            marks[event["event"]] = time.perf_counter()
        last = event
    stderr = process.stderr.read() if process.stderr else ""
    process.wait()
    wall = time.perf_counter() - started
    assert process.returncode == 0 and last.get("outcome") == "completed", stderr
    return {
        "wall": wall,
        "startup": marks["run_started"] - started,
        "execution": marks["run_finished"] - marks["run_started"],
    }


def main() -> None:
    ray = ["--backend", "ray"]
    if "--ray-address" in sys.argv:
        ray += ["--ray-address", sys.argv[sys.argv.index("--ray-address") + 1]]
    print(f"machine: {os.cpu_count()} CPUs · --parallel {PARALLEL}")
    print("| plan | backend | wall | startup | execution | per task |")
    print("|---|---|---|---|---|---|")
    rows = []
    for label, iterations, per, description in (
        ("1,000 mock tasks", 10, 100, ""),
        ("100 tasks × 1 s", 1, 100, "mock-delay-ms: 1000"),
    ):
        n = iterations * per
        for backend, extra in (("local", []), ("ray", ray)):
            with tempfile.TemporaryDirectory() as tmp:
                ws = Path(tmp)
                make_workspace(ws, iterations, per, description)
                t = run(ws, extra)
            rows.append((label, backend, t))
            print(
                f"| {label} | {backend} | {t['wall']:.1f} s | {t['startup']:.1f} s | {t['execution']:.1f} s "
                f"| {t['execution'] / n * 1000:.1f} ms |",
                flush=True,
            )
    local, on_ray = rows[0][2], rows[1][2]
    extra_ms = (on_ray["execution"] - local["execution"]) * 1000 / 1000
    print(f"\nRay overhead per task (1,000 mock tasks, execution ray - local): {extra_ms:.2f} ms")
    ideal = math.ceil(100 / PARALLEL) * 1.0
    for _, backend, t in rows[2:]:
        print(f"100 tasks × 1 s, {backend}: execution {t['execution']:.1f} s vs ideal {ideal:.0f} s "
              f"(+{(t['execution'] / ideal - 1) * 100:.0f}%)")


if __name__ == "__main__":
    main()
