#!/usr/bin/env python3
"""Measure how each provider failure is handled: category, attempts the server saw, total wait.

For each fault, a local fake provider (tests/fake_provider.py, a real HTTP server on
127.0.0.1) answers the first request with the fault and then succeeds; `rad craft`
runs one task on the `openai` engine (official SDK) against it with
`--base-delay-ms 100`. The server's own request log gives the attempt count and
the time between attempts (for a timeout that includes the timed-out call; the server
logs a stalled request a little after it arrives). "backoff waited" is the executor's
own wait from its attempt_failed events.

    python benchmarks/error_table.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from fake_provider import FakeProvider, drop, ok, stall, status  # noqa: E402

FAULTS = [
    ("429 Retry-After: 1", status(429, headers={"Retry-After": "1"})),
    ("429 retry-after-ms: 400", status(429, headers={"retry-after-ms": "400"})),
    ("500", status(500)),
    ("502", status(502)),
    ("503", status(503)),
    ("529 overloaded", status(529)),
    ("read timeout (stall 1 s, timeout 0.3 s)", stall(1.0)),
    ("connection closed mid-response", drop()),
    ("401", status(401)),
    ("403", status(403)),
    ("400", status(400)),
    ("404 unknown model", status(404)),
    ("503 three times in a row", [status(503)] * 3),
]


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp, FakeProvider() as server:
        ws = Path(tmp)
        subprocess.run([sys.executable, "-m", "radium", "init", str(ws)], check=True, capture_output=True)
        (ws / "agents").mkdir()
        (ws / "prompts").mkdir()
        (ws / "prompts" / "a.md").write_text("Do {{task_id}}.\n")
        (ws / "agents" / "a.toml").write_text(
            '[agent]\nid = "a"\nname = "A"\ndescription = ""\nprompt_path = "../prompts/a.md"\n'
            f'engine = "openai"\nmodel = "gpt-fake"\nbase_url = "{server.openai_base_url}"\ntimeout_s = 0.3\n'
        )
        plan = ws / ".radium" / "plan" / "backlog" / "REQ-001-t" / "plan"
        plan.mkdir(parents=True)
        manifest = {"requirement_id": {"number": 1}, "project_name": "T", "iterations": [
            {"id": "I1", "number": 1, "name": "I", "status": "not_started",
             "tasks": [{"id": "I1.T1", "number": 1, "title": "T", "agent_id": "a"}]}]}
        env = {**os.environ, "OPENAI_API_KEY": "sk-test-benchmark-000000", "NO_COLOR": "1"}
        for label, fault in FAULTS:
            server.reset()
            steps = fault if isinstance(fault, list) else [fault]
            server.script("openai", *steps, ok())
            (plan / "plan_manifest.json").write_text(json.dumps(manifest))
            result = subprocess.run(
                [sys.executable, "-m", "radium", "-w", str(ws), "craft", "REQ-001", "--json", "--base-delay-ms", "100"],
                capture_output=True, text=True, env=env,
            )
            events = [json.loads(line) for line in result.stdout.splitlines()]
            failed = [e for e in events if e["event"] == "attempt_failed"] + [e for e in events if e["event"] == "task_failed"]
            category = failed[0]["category"] if failed else "-"
            kind = failed[0]["kind"] if failed else "-"
            times = [r.time for r in server.requests_for("openai")]
            wait = sum(b - a for a, b in zip(times, times[1:]))
            planned = sum(e["delay_ms"] for e in events if e["event"] == "attempt_failed")
            rows.append((label, kind, category, len(times), wait, planned, result.returncode))
    print("| fault | error kind | category | attempts seen by server | gap between attempts at the server (s) | backoff waited (ms) | exit |")
    print("|---|---|---|---|---|---|---|")
    for label, kind, category, attempts, wait, planned, code in rows:
        print(f"| {label} | {kind} | {category} | {attempts} | {wait:.2f} | {planned} | {code} |")


if __name__ == "__main__":
    main()
