"""``rad agents``, ``rad status`` and ``rad init`` through the real CLI."""

from __future__ import annotations

import json
from pathlib import Path

from helpers import make_workspace, manifest, plan_dir, run_rad, task


def test_agents_lists_sources_in_precedence_order_and_flags_duplicates(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws", agents=("writer", "reviewer"))
    home_agents = tmp_path / "ws" / ".radium" / "agents"  # the second search directory
    home_agents.mkdir(parents=True)
    (home_agents / "writer.toml").write_text(
        '[agent]\nid = "writer"\nname = "Other"\ndescription = ""\nprompt_path = "x.md"\nengine = "openai"\n'
    )
    result = run_rad("agents", "--json", cwd=ws)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert [a["id"] for a in data["agents"]] == ["reviewer", "writer"]
    writer = next(a for a in data["agents"] if a["id"] == "writer")
    assert writer["source"] == str(ws / "agents" / "writer.toml") and writer["engine"] == "mock"
    assert writer["prompt_exists"] is True
    assert len(data["warnings"]) == 1 and "duplicate agent id 'writer'" in data["warnings"][0]
    table = run_rad("agents", cwd=ws)
    assert table.returncode == 0 and "reviewer" in table.stdout
    assert "Warning: duplicate agent id 'writer'" in table.stderr


def test_agents_reports_broken_files_with_exit_2(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws")
    (ws / "agents" / "bad.toml").write_text("[agent\n")
    result = run_rad("agents", cwd=ws)
    assert result.returncode == 2 and "bad.toml" in result.stderr and "Traceback" not in result.stderr
    assert "writer" in result.stdout


def test_status_of_one_plan_and_of_all(tmp_path: Path) -> None:
    plan = manifest([task("I1.T1"), task("I1.T2", description="mock-fail: auth")])
    ws = make_workspace(tmp_path / "ws", plan)
    run_rad("craft", "REQ-001", cwd=ws)
    one = run_rad("status", "REQ-001", "--json", cwd=ws)
    assert one.returncode == 0, one.stderr
    data = json.loads(one.stdout)
    assert (data["status"], data["completed"], data["total"], data["percent"]) == ("failed", 1, 2, 50)
    tasks = {t["id"]: t for t in data["iterations"][0]["tasks"]}
    assert tasks["I1.T2"]["last_error"]["category"] == "fatal" and tasks["I1.T2"]["attempts"] == 1
    assert tasks["I1.T1"]["tokens"] > 0
    assert data["next_command"] == "rad craft REQ-001 --resume"
    text = run_rad("status", "REQ-001", cwd=ws).stdout
    assert "I1.T2" in text and "failed" in text and "Next: rad craft REQ-001 --resume" in text
    every = run_rad("status", cwd=ws)
    assert every.returncode == 0 and "REQ-001-test" in every.stdout and "1/2 (50%)" in every.stdout


def _journal(ws: Path, *tasks: dict, torn: bool = True) -> Path:
    """Write a journal as a killed run leaves it: header naming the manifest, task lines, a torn line."""
    import hashlib

    manifest_file = plan_dir(ws) / "plan" / "plan_manifest.json"
    header = {"journal": 1, "manifest_sha256": hashlib.sha256(manifest_file.read_bytes()).hexdigest()}
    lines = [json.dumps(header)] + [json.dumps({"task": t}) for t in tasks]
    journal = manifest_file.with_name("plan_manifest.journal")
    journal.write_text("\n".join(lines) + ("\n{\"torn" if torn else "\n"))
    return journal


def test_status_sees_journaled_progress_of_a_killed_run(tmp_path: Path) -> None:
    """After a crash the latest task states may live only in the journal; status replays it."""
    plan = manifest([task("I1.T1"), task("I1.T2")])
    ws = make_workspace(tmp_path / "ws", plan)
    done = dict(plan["iterations"][0]["tasks"][0], completed=True, status="completed", attempts=1)
    journal = _journal(ws, done)
    data = json.loads(run_rad("status", "REQ-001", "--json", cwd=ws).stdout)
    assert data["completed"] == 1 and data["iterations"][0]["status"] == "in_progress"
    result = run_rad("craft", "REQ-001", "--json", cwd=ws)
    started = [json.loads(l)["task_id"] for l in result.stdout.splitlines() if '"task_started"' in l]
    assert started == ["I1.T2"]
    assert not journal.exists()  # compacted into the manifest at the stop


def test_a_hand_edit_after_a_crash_wins_over_the_stale_journal(tmp_path: Path) -> None:
    plan = manifest([task("I1.T1"), task("I1.T2")])
    ws = make_workspace(tmp_path / "ws", plan)
    done = dict(plan["iterations"][0]["tasks"][0], completed=True, status="completed", attempts=1)
    _journal(ws, done)
    manifest_file = plan_dir(ws) / "plan" / "plan_manifest.json"
    edited = json.loads(manifest_file.read_text())
    edited["iterations"][0]["tasks"][0]["title"] = "Renamed by hand"
    manifest_file.write_text(json.dumps(edited, indent=2))
    result = run_rad("craft", "REQ-001", "--json", cwd=ws)
    assert result.returncode == 0
    assert "ignored plan_manifest.journal" in result.stderr
    started = [json.loads(l)["task_id"] for l in result.stdout.splitlines() if '"task_started"' in l]
    assert started == ["I1.T1", "I1.T2"]  # the journal's "completed" was not applied
    saved = json.loads(manifest_file.read_text())
    assert saved["iterations"][0]["tasks"][0]["title"] == "Renamed by hand"


def test_init_is_idempotent(tmp_path: Path) -> None:
    target = tmp_path / "new"
    first = run_rad("init", str(target), cwd=tmp_path)
    assert first.returncode == 0 and "Initialized Radium workspace" in first.stdout
    assert (target / ".radium" / "plan" / "backlog").is_dir()
    second = run_rad("init", str(target), cwd=tmp_path)
    assert second.returncode == 0 and "already initialized" in second.stdout


def test_help_is_fast_and_lists_exit_codes(tmp_path: Path) -> None:
    import subprocess
    import sys
    import time

    started = time.perf_counter()
    result = run_rad("--help", cwd=tmp_path)
    assert result.returncode == 0 and "143" in result.stdout and "craft" in result.stdout
    elapsed = time.perf_counter() - started
    # No SDK, rich or pydantic import at --help (measured, not guessed).
    probe = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "radium", "--help"], capture_output=True, text=True
    )
    imported = probe.stderr
    for heavy in ("openai", "anthropic", "google.genai", "rich", "pydantic"):
        assert f" {heavy}\n" not in imported and f"| {heavy}\n" not in imported, heavy
    assert elapsed < 5  # generous for loaded CI machines; the README quotes the measured figure
