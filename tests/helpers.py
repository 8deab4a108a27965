"""Shared helpers: build real workspaces on disk and run the real ``rad`` CLI.

Every CLI test runs ``python -m radium`` as a subprocess (the same entry point
as the ``rad`` script), with HOME pointed at a temporary directory so that no
agent of the developer's ``~/.radium`` leaks in, and with provider variables
removed so that nothing can reach a real provider.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import sys
from pathlib import Path
from typing import Any

RAD = [sys.executable, "-m", "radium"]
SCRUBBED_PREFIXES = ("RADIUM_", "OPENAI_", "ANTHROPIC_", "GEMINI_", "GOOGLE_")


def rad_env(home: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(SCRUBBED_PREFIXES)}
    env.update({"HOME": str(home), "NO_COLOR": "1", "COLUMNS": "200", "PYTHONUNBUFFERED": "1"})
    env.update(extra or {})
    return env


def run_rad(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 60, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``rad ARGS`` in ``cwd`` and capture its output."""
    return subprocess.run(
        [*RAD, *args],
        cwd=cwd,
        env=env if env is not None else rad_env(cwd),
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input,
    )


def popen_rad(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*RAD, *args],
        cwd=cwd,
        env=env if env is not None else rad_env(cwd),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def write_agent(ws: Path, agent_id: str, prompt: str = "Do {{task_id}}.", **fields: Any) -> None:
    """Write ``agents/<id>.toml`` and its prompt ``prompts/<id>.md``."""
    (ws / "agents").mkdir(exist_ok=True)
    (ws / "prompts").mkdir(exist_ok=True)
    (ws / "prompts" / f"{agent_id}.md").write_text(prompt, encoding="utf-8")
    table = {
        "id": agent_id,
        "name": agent_id.title(),
        "description": f"{agent_id} agent",
        "prompt_path": f"../prompts/{agent_id}.md",
        "engine": "mock",
        **fields,
    }
    lines = ["[agent]"] + [f"{key} = {json.dumps(value)}" for key, value in table.items()]
    (ws / "agents" / f"{agent_id}.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")


def task(tid: str, agent: str = "writer", deps: list[str] | None = None, description: str | None = None, **extra: Any) -> dict:
    iteration, number = tid.split(".T")
    data = {
        "id": tid,
        "number": int(number),
        "title": f"Task {tid}",
        "completed": False,
        "agent_id": agent,
        "dependencies": deps or [],
        "acceptance_criteria": [],
        **extra,
    }
    if description is not None:
        data["description"] = description
    return data


def manifest(*iterations: list[dict], project: str = "Test Project", number: int = 1) -> dict:
    """A manifest dict; each argument is the task list of one iteration (I1, I2, …)."""
    return {
        "requirement_id": {"number": number},
        "project_name": project,
        "iterations": [
            {"id": f"I{n}", "number": n, "name": f"Iteration {n}", "goal": f"Goal {n}", "status": "not_started", "tasks": tasks}
            for n, tasks in enumerate(iterations, start=1)
        ],
    }


def make_workspace(root: Path, plan: dict | None = None, *, slug: str = "test", agents: tuple[str, ...] = ("writer",)) -> Path:
    """``rad init`` a workspace at ``root`` with mock agents and (optionally) a plan REQ-00N-slug."""
    root.mkdir(parents=True, exist_ok=True)
    result = run_rad("init", str(root), cwd=root)
    assert result.returncode == 0, result.stderr
    for starter in ("agents/example.toml", "prompts/example.md", "plan.md"):
        (root / starter).unlink(missing_ok=True)  # tests define exactly the agents they use
    for agent_id in agents:
        write_agent(root, agent_id)
    if plan is not None:
        write_plan(root, plan, slug=slug)
    return root


def write_plan(ws: Path, plan: dict, *, slug: str = "test", stage: str = "backlog") -> Path:
    number = plan["requirement_id"]["number"]
    plan_dir = ws / ".radium" / "plan" / stage / f"REQ-{number:03d}-{slug}"
    (plan_dir / "plan").mkdir(parents=True, exist_ok=True)
    (plan_dir / "plan" / "plan_manifest.json").write_text(json.dumps(plan, indent=2), encoding="utf-8")
    tasks = [t for it in plan["iterations"] for t in it["tasks"]]
    metadata = {
        "requirement_id": {"number": number},
        "project_name": plan["project_name"],
        "folder_name": plan_dir.name,
        "stage": stage,
        "status": "not_started",
        "created_at": 1733500000,
        "updated_at": 1733500000,
        "total_iterations": len(plan["iterations"]),
        "completed_iterations": 0,
        "total_tasks": len(tasks),
        "completed_tasks": 0,
    }
    (plan_dir / "plan.json").write_text(json.dumps(metadata, indent=2), encoding="utf-8")
    return plan_dir


def plan_dir(ws: Path, number: int = 1, slug: str = "test") -> Path:
    return ws / ".radium" / "plan" / "backlog" / f"REQ-{number:03d}-{slug}"


def read_manifest(ws: Path, number: int = 1, slug: str = "test") -> dict:
    return json.loads((plan_dir(ws, number, slug) / "plan" / "plan_manifest.json").read_text(encoding="utf-8"))


def tasks_by_id(data: dict) -> dict[str, dict]:
    return {t["id"]: t for it in data["iterations"] for t in it["tasks"]}


def events(stdout: str) -> list[dict]:
    """Parse ``--json`` output; every non-empty line must be a JSON object."""
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def wait_for_line(process, needle: str, timeout: float = 20.0) -> list[str]:
    """Read stdout lines until one contains ``needle`` (the process keeps running)."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        seen.append(line)
        if needle in line:
            return seen
    raise AssertionError(f"{needle!r} not seen; got: {''.join(seen)}")


def wait_for_event(process, kind: str, count: int = 1) -> list[dict]:
    """Read ``--json`` lines until the ``count``-th ``kind`` event (the process keeps running).

    Synchronises on what the process reports, never on time: a slow machine
    only makes the test slower, not different.
    """
    seen: list[dict] = []
    found = 0
    for line in process.stdout:
        seen.append(json.loads(line))
        if seen[-1]["event"] == kind:
            found += 1
            if found == count:
                return seen
    raise AssertionError(f"{kind!r} #{count} not seen; got: {[e['event'] for e in seen]}")
