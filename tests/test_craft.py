"""``rad craft`` end to end: modes, dependencies, retries, failures, JSON events.

Every test runs the real CLI in a subprocess against a real workspace on disk,
with the offline ``mock`` engine scripted through ``mock-fail:`` lines.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from helpers import events, make_workspace, manifest, plan_dir, rad_env, read_manifest, run_rad, task, tasks_by_id, write_agent

DOCUMENTED_EVENTS = {
    "run_started",
    "iteration_started",
    "task_started",
    "attempt_failed",
    "task_completed",
    "task_failed",
    "task_blocked",
    "run_finished",
}


def ten_iterations() -> dict:
    return manifest(*[[task(f"I{n}.T1"), task(f"I{n}.T2", deps=[f"I{n}.T1"])] for n in range(1, 11)])


def completed_iterations(ws: Path) -> list[str]:
    return [it["id"] for it in read_manifest(ws)["iterations"] if all(t["completed"] for t in it["tasks"])]


def test_bounded_resume_and_yolo_modes(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws", ten_iterations())

    first = run_rad("craft", "REQ-001", cwd=ws)
    assert first.returncode == 0, first.stderr
    assert "Reached maximum iterations (5). Stopping execution." in first.stdout
    assert "Progress saved to plan_manifest.json" in first.stdout
    assert completed_iterations(ws) == ["I1", "I2", "I3", "I4", "I5"]
    assert "[Iteration 1] Progress: 0/20 tasks | Current: I1.T1 | Elapsed: 0:00:00" in first.stdout
    assert "• Progress: 5%" in first.stdout

    resumed = run_rad("craft", "REQ-001", "--resume", cwd=ws)
    assert resumed.returncode == 0, resumed.stderr
    assert "Resuming from checkpoint: 10/20 tasks already completed; next task I6.T1" in resumed.stdout
    assert "All tasks completed. Execution finished." in resumed.stdout
    assert "Reached maximum iterations" not in resumed.stdout
    assert "→ Executing iteration 6" in resumed.stdout and "→ Executing iteration 5" not in resumed.stdout
    assert len(completed_iterations(ws)) == 10

    # --iterations 3 runs exactly three; --yolo runs the rest.
    restarted = run_rad("craft", "REQ-001", "--restart", "--iterations", "3", cwd=ws)
    assert restarted.returncode == 0
    assert completed_iterations(ws) == ["I1", "I2", "I3"]
    assert "Reached maximum iterations (3)" in restarted.stdout
    yolo = run_rad("craft", "REQ-001", "--yolo", cwd=ws)
    assert yolo.returncode == 0
    assert len(completed_iterations(ws)) == 10
    assert "All tasks completed. Execution finished." in yolo.stdout


def test_plan_completing_inside_the_bound_never_prints_bound_message(tmp_path: Path) -> None:
    # Exactly 5 iterations: the run ends with the completion message, not the bound.
    plan = manifest(*[[task(f"I{n}.T1")] for n in range(1, 6)])
    ws = make_workspace(tmp_path / "ws", plan)
    result = run_rad("craft", "REQ-001", cwd=ws)
    assert result.returncode == 0
    assert "All tasks completed. Execution finished." in result.stdout
    assert "Reached maximum iterations" not in result.stdout
    again = run_rad("craft", "REQ-001", cwd=ws)
    assert "All tasks completed" in again.stdout and "→ I1.T1" not in again.stdout


def test_dependencies_run_in_dependency_order_keeping_file_order(tmp_path: Path) -> None:
    plan = manifest(
        [
            task("I1.T1", deps=["I1.T3"]),
            task("I1.T2"),
            task("I1.T3", deps=["I1.T4"]),
            task("I1.T4"),
        ]
    )
    ws = make_workspace(tmp_path / "ws", plan)
    result = run_rad("craft", "REQ-001", "--json", cwd=ws)
    assert result.returncode == 0, result.stderr
    started = [e["task_id"] for e in events(result.stdout) if e["event"] == "task_started"]
    assert started == ["I1.T2", "I1.T4", "I1.T3", "I1.T1"]


def test_failed_task_blocks_its_dependents_and_keep_going_runs_the_rest(tmp_path: Path) -> None:
    plan = manifest(
        [
            task("I1.T1", description="mock-fail: bad_request"),
            task("I1.T2", deps=["I1.T1"]),
            task("I1.T3"),
        ],
        [task("I2.T1", deps=["I1.T2"]), task("I2.T2")],
    )
    ws = make_workspace(tmp_path / "ws", plan)
    before = (plan_dir(ws) / "plan" / "plan_manifest.json").read_text()

    stop = run_rad("craft", "REQ-001", cwd=ws)
    assert stop.returncode == 1
    state = tasks_by_id(read_manifest(ws))
    assert state["I1.T1"]["status"] == "failed"
    assert state["I1.T2"]["status"] == "blocked" and state["I2.T1"]["status"] == "blocked"
    assert state["I1.T3"]["status"] == "pending"  # fail-fast: nothing new starts
    assert "Blocked: I1.T2: Dependency task not completed: I1.T1" in stop.stdout
    assert "Next: rad craft REQ-001 --resume" in stop.stdout

    (plan_dir(ws) / "plan" / "plan_manifest.json").write_text(before)
    going = run_rad("craft", "REQ-001", "--keep-going", "--yolo", cwd=ws)
    assert going.returncode == 1
    state = tasks_by_id(read_manifest(ws))
    assert state["I1.T3"]["status"] == "completed" and state["I2.T2"]["status"] == "completed"
    assert state["I2.T1"]["status"] == "blocked"
    assert "⊘ I2.T1 blocked: Dependency task not completed: I1.T2" in going.stdout


@pytest.mark.parametrize(
    ("deps", "expected"),
    [
        ({"I1.T2": ["I1.T9"]}, ["unknown task I1.T9"]),
        ({"I1.T1": ["I1.T2"], "I1.T2": ["I1.T1"]}, ["dependency cycle", "I1.T1", "I1.T2"]),
        ({"I1.T1": ["I2.T1"]}, ["I1.T1", "depends on I2.T1 of later iteration I2"]),
    ],
    ids=["unknown", "cycle", "forward"],
)
def test_invalid_dependencies_exit_2_naming_ids_and_leave_manifest_untouched(
    tmp_path: Path, deps: dict[str, list[str]], expected: list[str]
) -> None:
    plan = manifest([task("I1.T1"), task("I1.T2")], [task("I2.T1")])
    for it in plan["iterations"]:
        for t in it["tasks"]:
            t["dependencies"] = deps.get(t["id"], [])
    ws = make_workspace(tmp_path / "ws", plan)
    path = plan_dir(ws) / "plan" / "plan_manifest.json"
    before = path.read_bytes()
    result = run_rad("craft", "REQ-001", cwd=ws)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    for fragment in expected:
        assert fragment in result.stderr
    assert path.read_bytes() == before
    assert not (plan_dir(ws) / "artifacts").exists()


def test_rate_limited_twice_then_succeeds_with_exponential_waits(tmp_path: Path) -> None:
    plan = manifest([task("I1.T1", description="mock-fail: rate_limit*2")])
    ws = make_workspace(tmp_path / "ws", plan)
    started = time.monotonic()
    result = run_rad("craft", "REQ-001", "--json", "--base-delay-ms", "150", cwd=ws)
    assert result.returncode == 0, result.stderr
    failures = [e for e in events(result.stdout) if e["event"] == "attempt_failed"]
    assert [(e["attempt"], e["delay_ms"], e["kind"]) for e in failures] == [(1, 150, "rate limit"), (2, 300, "rate limit")]
    assert failures[0]["line"] == "I1.T1 Attempt 1: Error (rate limit) → Wait 150ms (150ms * 2^0)"
    assert failures[0]["category"] == "recoverable"
    # The waits really happened: 150 + 300 ms at least (generous upper bound for slow CI).
    finished = [e for e in events(result.stdout) if e["event"] == "task_completed"][0]
    assert finished["attempts"] == 3 and finished["duration_ms"] >= 450
    assert time.monotonic() - started < 30
    stored = tasks_by_id(read_manifest(ws))["I1.T1"]
    assert stored["attempts"] == 3 and stored["status"] == "completed" and "last_error" not in stored


def test_human_retry_line_matches_the_seed(tmp_path: Path) -> None:
    plan = manifest([task("I1.T1", description="mock-fail: rate_limit")])
    ws = make_workspace(tmp_path / "ws", plan)
    result = run_rad("craft", "REQ-001", "--base-delay-ms", "1000", "--jitter", cwd=ws)
    assert result.returncode == 0
    line = next(l for l in result.stdout.splitlines() if "Attempt 1:" in l)
    assert line.strip().startswith("I1.T1 Attempt 1: Error (rate limit) → Wait ")
    assert line.strip().endswith("(1000ms * 2^0, jittered)")
    plain = run_rad("craft", "REQ-001", "--restart", "--base-delay-ms", "10", cwd=ws)
    assert "I1.T1 Attempt 1: Error (rate limit) → Wait 10ms (10ms * 2^0)" in plain.stdout


def test_auth_error_fails_after_one_attempt_and_says_to_fix_the_key(tmp_path: Path) -> None:
    plan = manifest([task("I1.T1", description="mock-fail: auth"), task("I1.T2", deps=["I1.T1"])])
    ws = make_workspace(tmp_path / "ws", plan)
    result = run_rad("craft", "REQ-001", "--base-delay-ms", "1", cwd=ws)
    assert result.returncode == 1
    assert "Attempt" not in result.stdout
    assert "fix the API key" in result.stdout
    stored = tasks_by_id(read_manifest(ws))
    assert stored["I1.T1"]["attempts"] == 1 and stored["I1.T1"]["status"] == "failed"
    assert stored["I1.T1"]["last_error"]["category"] == "fatal"
    assert stored["I1.T2"]["status"] == "blocked"


def test_retries_exhausted_after_four_attempts(tmp_path: Path) -> None:
    plan = manifest([task("I1.T1", description="mock-fail: server_error(503)*always"), task("I1.T2", deps=["I1.T1"])])
    ws = make_workspace(tmp_path / "ws", plan)
    result = run_rad("craft", "REQ-001", "--base-delay-ms", "1", "--json", cwd=ws)
    assert result.returncode == 1
    evs = events(result.stdout)
    assert [e["attempt"] for e in evs if e["event"] == "attempt_failed"] == [1, 2, 3]
    failed = next(e for e in evs if e["event"] == "task_failed")
    assert failed["attempts"] == 4 and failed["kind"] == "server error"
    assert next(e for e in evs if e["event"] == "task_blocked")["reason"] == "Dependency task not completed: I1.T1"
    finish = evs[-1]
    assert finish["event"] == "run_finished" and finish["outcome"] == "failed" and finish["exit_code"] == 1
    stored = tasks_by_id(read_manifest(ws))["I1.T1"]
    assert stored["attempts"] == 4
    assert stored["last_error"] == {"category": "recoverable", "kind": "server error", "message": "mock: HTTP 503 server error"}
    # A later run attempts the failed task again (and --max-retries 0 means one attempt).
    again = run_rad("craft", "REQ-001", "--max-retries", "0", "--json", cwd=ws)
    assert [e["task_id"] for e in events(again.stdout) if e["event"] == "task_started"] == ["I1.T1"]
    assert tasks_by_id(read_manifest(ws))["I1.T1"]["attempts"] == 5


def test_json_output_is_json_lines_only_with_documented_events(tmp_path: Path) -> None:
    plan = manifest(
        [task("I1.T1", description="mock-fail: timeout"), task("I1.T2", description="mock-fail: not_found")],
        [task("I2.T1", deps=["I1.T2"])],
    )
    ws = make_workspace(tmp_path / "ws", plan)
    result = run_rad("craft", "REQ-001", "--json", "--base-delay-ms", "1", "--keep-going", cwd=ws)
    assert result.returncode == 1
    lines = [l for l in result.stdout.splitlines()]
    assert lines and all(l.startswith("{") for l in lines)
    evs = events(result.stdout)
    kinds = {e["event"] for e in evs}
    assert kinds == DOCUMENTED_EVENTS
    assert evs[0]["event"] == "run_started" and evs[-1]["event"] == "run_finished"
    assert all("time" in e for e in evs)


def test_parallel_runs_ready_tasks_concurrently(tmp_path: Path) -> None:
    plan = manifest([task(f"I1.T{n}", description="mock-delay-ms: 300") for n in range(1, 5)])
    ws = make_workspace(tmp_path / "ws", plan)
    result = run_rad("craft", "REQ-001", "--parallel", "4", "--json", cwd=ws)
    assert result.returncode == 0, result.stderr
    finish = events(result.stdout)[-1]
    assert finish["completed"] == 4
    assert finish["wall_ms"] < 4 * 300  # serial would take at least 1200 ms


def test_task_and_iteration_filters(tmp_path: Path) -> None:
    plan = manifest([task("I1.T1"), task("I1.T2", deps=["I1.T1"])], [task("I2.T1"), task("I2.T2")])
    ws = make_workspace(tmp_path / "ws", plan)
    blocked = run_rad("craft", "REQ-001", "--task", "I1.T2", cwd=ws)
    assert blocked.returncode == 2 and "depends on I1.T1" in blocked.stderr
    only = run_rad("craft", "REQ-001", "--task", "I2.T2", "--json", cwd=ws)
    assert only.returncode == 0
    assert [e["task_id"] for e in events(only.stdout) if e["event"] == "task_started"] == ["I2.T2"]
    iteration = run_rad("craft", "REQ-001", "--iteration", "I1", "--json", cwd=ws)
    assert [e["task_id"] for e in events(iteration.stdout) if e["event"] == "task_started"] == ["I1.T1", "I1.T2"]
    assert events(iteration.stdout)[-1]["outcome"] == "filtered"
    unknown = run_rad("craft", "REQ-001", "--iteration", "I9", cwd=ws)
    assert unknown.returncode == 2 and "I9" in unknown.stderr


def test_dry_run_lists_order_and_calls_nothing(tmp_path: Path) -> None:
    plan = manifest([task("I1.T1", deps=["I1.T2"]), task("I1.T2")], [task("I2.T1")])
    ws = make_workspace(tmp_path / "ws", plan)
    path = plan_dir(ws) / "plan" / "plan_manifest.json"
    before = path.read_bytes()
    result = run_rad("craft", "REQ-001", "--dry-run", "--iterations", "1", cwd=ws)
    assert result.returncode == 0, result.stderr
    assert "Dry run mode" in result.stdout
    lines = [l.strip() for l in result.stdout.splitlines() if l.strip()[:1].isdigit()]
    assert lines[0].startswith("1. I1.T2") and lines[1].startswith("2. I1.T1 ") and len(lines) == 2
    assert "mock/mock-1" in lines[0]
    assert path.read_bytes() == before and not (plan_dir(ws) / "artifacts").exists()


def test_plan_lookup_forms(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws", manifest([task("I1.T1")]), slug="my-feature")
    ten = manifest([task("I1.T1")], number=10)
    from helpers import write_plan

    write_plan(ws, ten, slug="other")
    for identifier in ("REQ-1", "REQ-001", "REQ-001-my-feature", str(plan_dir(ws, 1, "my-feature"))):
        result = run_rad("craft", identifier, "--dry-run", cwd=ws)
        assert result.returncode == 0, (identifier, result.stderr)
        assert "1 task(s) would run" in result.stderr or "1 task(s) would run" in result.stdout
    manifest_path = plan_dir(ws, 1, "my-feature") / "plan" / "plan_manifest.json"
    assert run_rad("craft", str(manifest_path), "--dry-run", cwd=tmp_path).returncode == 2  # no workspace above tmp
    assert run_rad("-w", str(ws), "craft", str(manifest_path), "--dry-run", cwd=tmp_path).returncode == 0
    missing = run_rad("craft", "REQ-100", cwd=ws)
    assert missing.returncode == 2 and "no plan 'REQ-100'" in missing.stderr
    # No PLAN: two unfinished plans are listed and the run refuses.
    none = run_rad("craft", cwd=ws)
    assert none.returncode == 2 and "REQ-001-my-feature" in none.stderr and "REQ-010-other" in none.stderr


def test_context_files_and_agents_md_reach_the_model(tmp_path: Path) -> None:
    plan = manifest([task("I1.T1"), task("I1.T2", deps=["I1.T1"])])
    ws = make_workspace(tmp_path / "ws", plan)
    (ws / "AGENTS.md").write_text("Project rule: be brief.\n@docs/style.md\n")
    (ws / "docs").mkdir()
    (ws / "docs" / "style.md").write_text("Style: active voice.\n")
    (ws / "extra.md").write_text("Extra context here.\n")
    result = run_rad("craft", "REQ-001", "--context-file", "extra.md", cwd=ws)
    assert result.returncode == 0, result.stderr
    output = (plan_dir(ws) / "artifacts" / "tasks" / "I1.T2.md").read_text()
    for text in ("Project rule: be brief.", "Style: active voice.", "Extra context here.", "### I1.T1: Task I1.T1"):
        assert text in output
    prompt = (plan_dir(ws) / "artifacts" / "tasks" / "I1.T2.prompt.md").read_text()
    assert prompt.startswith("Do I1.T2.")


def test_settings_precedence_flag_over_env_over_config(tmp_path: Path) -> None:
    plan = manifest([task("I1.T1", description="mock-fail: rate_limit")])
    ws = make_workspace(tmp_path / "ws", plan)
    (ws / ".radium" / "config.toml").write_text("[execution]\nbase_delay_ms = 7\n")
    from_config = run_rad("craft", "REQ-001", "--json", cwd=ws)
    assert next(e for e in events(from_config.stdout) if e["event"] == "attempt_failed")["delay_ms"] == 7
    env = rad_env(ws, {"RADIUM_BASE_DELAY_MS": "9"})
    from_env = run_rad("craft", "REQ-001", "--restart", "--json", cwd=ws, env=env)
    assert next(e for e in events(from_env.stdout) if e["event"] == "attempt_failed")["delay_ms"] == 9
    from_flag = run_rad("craft", "REQ-001", "--restart", "--json", "--base-delay-ms", "11", cwd=ws, env=env)
    assert next(e for e in events(from_flag.stdout) if e["event"] == "attempt_failed")["delay_ms"] == 11
    bad = run_rad("craft", "REQ-001", cwd=ws, env=rad_env(ws, {"RADIUM_MAX_RETRIES": "lots"}))
    assert bad.returncode == 2 and "RADIUM_MAX_RETRIES=lots" in bad.stderr


def test_agent_overrides_retry_settings_unless_flag_given(tmp_path: Path) -> None:
    plan = manifest([task("I1.T1", description="mock-fail: connection*always")])
    ws = make_workspace(tmp_path / "ws", plan)
    write_agent(ws, "writer", max_retries=1, base_delay_ms=2)
    by_agent = run_rad("craft", "REQ-001", "--json", cwd=ws)
    assert [e["delay_ms"] for e in events(by_agent.stdout) if e["event"] == "attempt_failed"] == [2]
    by_flag = run_rad("craft", "REQ-001", "--json", "--max-retries", "2", cwd=ws)
    assert [e["delay_ms"] for e in events(by_flag.stdout) if e["event"] == "attempt_failed"] == [2, 4]


def test_plan_json_is_kept_in_step(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws", manifest([task("I1.T1")], [task("I2.T1")]))
    run_rad("craft", "REQ-001", "--iterations", "1", cwd=ws)
    meta = json.loads((plan_dir(ws) / "plan.json").read_text())
    assert (meta["completed_tasks"], meta["completed_iterations"], meta["status"]) == (1, 1, "in_progress")
    run_rad("craft", "REQ-001", cwd=ws)
    meta = json.loads((plan_dir(ws) / "plan.json").read_text())
    assert (meta["completed_tasks"], meta["status"]) == (2, "completed")
    assert meta["updated_at"] > 1733500000


def test_keep_going_failure_exits_1_even_when_the_bound_is_reached(tmp_path: Path) -> None:
    plan = manifest(
        [task("I1.T1"), task("I1.T2", description="mock-fail: auth")],
        [task("I2.T1", deps=["I1.T2"])],
        [task("I3.T1")],
    )
    ws = make_workspace(tmp_path / "ws", plan)
    result = run_rad("craft", "REQ-001", "--keep-going", "--iterations", "1", "--json", cwd=ws)
    assert result.returncode == 1
    evs = events(result.stdout)
    finish = evs[-1]
    assert finish["outcome"] == "failed" and finish["exit_code"] == 1
    assert "iteration bound of 1 was reached too" in finish["message"]
    # I2's only task is blocked: reported once, and I2 is neither run nor counted.
    assert [e["task_id"] for e in evs if e["event"] == "task_blocked"] == ["I2.T1"]
    assert [e["iteration_id"] for e in evs if e["event"] == "iteration_started"] == ["I1"]
    going = run_rad("craft", "REQ-001", "--keep-going", "--iterations", "1", "--json", cwd=ws)
    started = [e["iteration_id"] for e in events(going.stdout) if e["event"] == "iteration_started"]
    assert started == ["I1"]  # I1.T2 is attempted again; I2 stays blocked, I3 waits for the bound


def test_restart_with_a_filter_forgets_only_the_selected_work(tmp_path: Path) -> None:
    plan = manifest([task("I1.T1"), task("I1.T2", deps=["I1.T1"])], [task("I2.T1", deps=["I1.T2"])])
    ws = make_workspace(tmp_path / "ws", plan)
    assert run_rad("craft", "REQ-001", cwd=ws).returncode == 0
    result = run_rad("craft", "REQ-001", "--restart", "--task", "I2.T1", "--json", cwd=ws)
    assert result.returncode == 0, result.stderr
    assert [e["task_id"] for e in events(result.stdout) if e["event"] == "task_started"] == ["I2.T1"]
    state = tasks_by_id(read_manifest(ws))
    assert all(t["status"] == "completed" for t in state.values())
    assert state["I1.T1"]["attempts"] == 1 and state["I2.T1"]["attempts"] == 1
    whole = run_rad("craft", "REQ-001", "--restart", "--iteration", "I1", "--json", cwd=ws)
    assert [e["task_id"] for e in events(whole.stdout) if e["event"] == "task_started"] == ["I1.T1", "I1.T2"]


def test_restart_clears_results_of_the_previous_run(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws", manifest([task("I1.T1")], [task("I2.T1")]))
    assert run_rad("craft", "REQ-001", cwd=ws).returncode == 0
    # Stop right after I1 so I2.T1 shows what a restarted, not yet re-run task looks like.
    assert run_rad("craft", "REQ-001", "--restart", "--iterations", "1", cwd=ws).returncode == 0
    pending = tasks_by_id(read_manifest(ws))["I2.T1"]
    assert pending["status"] == "pending" and pending["attempts"] == 0
    for stale in ("usage", "duration_ms", "completed_at", "output_path", "last_error"):
        assert stale not in pending
