#!/usr/bin/env python3
"""Rate limits under load: a window-limited server, many tasks, many parallel calls.

Starts the local fake provider (tests/fake_provider.py; real HTTP on 127.0.0.1)
with a sliding-window limit of LIMIT requests per WINDOW seconds, announced with
OpenAI's headers (x-ratelimit-limit/remaining/reset-requests on every answer;
429 past the limit). Then runs `rad craft --yolo --parallel P` on TASKS
independent tasks of an `openai` agent (the official SDK) pointed at it, twice
in the same invocation: with the shared per-provider limiter (the default) and
with it switched off (`--no-shared-rate-limits`: each task only honours the
waits it is told itself). For each run it reports wall time against the limit's
bound (TASKS / rate, rate = LIMIT / WINDOW), the share of requests the server
answered 429, and failed tasks.

    python benchmarks/rate_limits.py [TASKS [PARALLEL [LIMIT [WINDOW_S]]]]

Defaults: 200 tasks, --parallel 16, 20 requests per 1 s (bound: 10 s).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from fake_provider import FakeProvider  # noqa: E402


def build_workspace(ws: Path, tasks: int, base_url: str) -> None:
    subprocess.run([sys.executable, "-m", "radium", "init", str(ws)], check=True, capture_output=True)
    (ws / "agents").mkdir(exist_ok=True)
    (ws / "prompts").mkdir(exist_ok=True)
    (ws / "prompts" / "w.md").write_text("Do {{task_id}}.\n")
    (ws / "agents" / "w.toml").write_text(
        '[agent]\nid = "w"\nname = "W"\ndescription = ""\nprompt_path = "../prompts/w.md"\n'
        f'engine = "openai"\nmodel = "gpt-4o-mini"\nbase_url = "{base_url}"\n'
    )
    items = [{"id": f"I1.T{n}", "number": n, "title": f"Task {n}", "agent_id": "w"} for n in range(1, tasks + 1)]
    plan = ws / ".radium" / "plan" / "backlog" / "REQ-001-bench" / "plan"
    plan.mkdir(parents=True)
    manifest = {
        "requirement_id": {"number": 1},
        "project_name": "Rate-limit bench",
        "iterations": [{"id": "I1", "number": 1, "name": "All", "status": "not_started", "tasks": items}],
    }
    (plan / "plan_manifest.json").write_text(json.dumps(manifest))


def run(tasks: int, parallel: int, limit: int, window_s: float, shared: bool) -> dict:
    with FakeProvider() as server, tempfile.TemporaryDirectory() as tmp:
        ws = Path(tmp)
        build_workspace(ws, tasks, server.openai_base_url)
        server.window("openai", limit, window_s)
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("RADIUM_", "OPENAI_"))},
            "OPENAI_API_KEY": "sk-bench-000000000000",
            "NO_COLOR": "1",
        }
        args = ["craft", "REQ-001", "--yolo", "--json", "--parallel", str(parallel)]
        if not shared:
            args.append("--no-shared-rate-limits")
        started = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-m", "radium", "-w", str(ws), *args], capture_output=True, text=True, env=env
        )
        wall = time.perf_counter() - started
        events = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
        finished = next((e for e in events if e["event"] == "run_finished"), {})
        requests = server.requests_for("openai")
        refused = sum(1 for r in requests if r.step == "window-429")
        first = min(r.time for r in requests)
        last = max(r.time for r in requests)
        return {
            "shared": shared,
            "exit": result.returncode,
            "wall_s": wall,
            "served_s": last - first,
            "requests": len(requests),
            "refused": refused,
            "failed": finished.get("failed", tasks),
            "completed": finished.get("completed", 0),
            "rate_limit_wait_ms": finished.get("rate_limit_wait_ms", 0),
            "stderr": result.stderr.strip().splitlines()[-1:] if result.returncode else [],
        }


def main(tasks: int = 200, parallel: int = 16, limit: int = 20, window_s: float = 1.0) -> None:
    bound = tasks / (limit / window_s)
    print(f"{tasks} tasks, --parallel {parallel}, server limit {limit} requests per {window_s:g} s")
    print(f"bound (tasks / rate): {bound:.1f} s; the first window's {limit} requests need no wait, so")
    print(f"the best possible first-to-last request span is {(tasks / limit - 1) * window_s:.1f} s\n")
    print("| limiter | wall | wall / bound | first→last request | requests | answered 429 | failed tasks |")
    print("|---|---|---|---|---|---|---|")
    for shared in (True, False):
        r = run(tasks, parallel, limit, window_s, shared)
        print(
            f"| {'shared (default)' if shared else 'off (--no-shared-rate-limits)'} | {r['wall_s']:.1f} s | "
            f"{r['wall_s'] / bound:.2f} | {r['served_s']:.1f} s | {r['requests']} | {r['refused']} ({100 * r['refused'] / r['requests']:.1f} %) | "
            f"{r['failed']} |"
        )
        if r["stderr"]:
            print(f"  (exit {r['exit']}: {r['stderr'][0]})")


if __name__ == "__main__":
    main(*[float(a) if "." in a else int(a) for a in sys.argv[1:]])
