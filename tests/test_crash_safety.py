"""Crash safety with real processes and real signals.

* ``kill -9`` at many random instants never leaves an unparseable manifest or
  a completed task without its output, and the next run finishes the plan.
* SIGINT / SIGTERM mid-task: exit 130 / 143, the seed's message, the task back
  to pending, and the resume finishes it.
* A second ``rad craft`` on a running plan exits 2 naming the holder; a lock
  left by a killed process is taken over.
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
from pathlib import Path

from helpers import make_workspace, manifest, plan_dir, popen_rad, read_manifest, run_rad, task, tasks_by_id, write_agent


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


def check_invariants(ws: Path) -> dict:
    path = plan_dir(ws) / "plan" / "plan_manifest.json"
    data = json.loads(path.read_text())  # must always parse
    for t in tasks_by_id(data).values():
        assert t["completed"] == (t.get("status", "pending") == "completed")
        if t["completed"]:
            output = plan_dir(ws) / t["output_path"]
            assert output.is_file(), f"{t['id']} completed without output"
            assert f"Do {t['id']}." in output.read_text()
    leftovers = [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")]
    assert len(leftovers) <= 1  # at most the write in flight at the kill
    return data


def test_kill_9_at_random_instants_never_loses_completed_work(tmp_path: Path) -> None:
    rng = random.Random(1234)
    plan = manifest(*[[task(f"I{i}.T{n}") for n in range(1, 13)] for i in range(1, 6)])
    ws = make_workspace(tmp_path / "ws", plan)
    # 30 ms a task: the plan outlasts the first kills even on a quiet machine (10 ms was borderline)
    write_agent(ws, "writer", prompt="Do {{task_id}}.\nmock-delay-ms: 30\n")
    kills = 0
    for _ in range(12):
        process = popen_rad("craft", "REQ-001", "--yolo", cwd=ws)
        time.sleep(rng.uniform(0.3, 1.0))
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            kills += 1
        process.wait(timeout=30)
        process.stdout.close()
        process.stderr.close()
        data = check_invariants(ws)
        if not any(not t["completed"] for t in tasks_by_id(data).values()):
            break
    assert kills >= 3, "the plan finished too fast for the kills to land mid-run"
    final = run_rad("craft", "REQ-001", "--yolo", cwd=ws)
    assert final.returncode == 0, final.stderr
    data = check_invariants(ws)
    assert all(t["status"] == "completed" for t in tasks_by_id(data).values())


def _interrupt_mid_task(tmp_path: Path, signum: int, expected_code: int) -> None:
    plan = manifest([task("I1.T1"), task("I1.T2", deps=["I1.T1"])])
    ws = make_workspace(tmp_path / "ws", plan)
    write_agent(ws, "writer", prompt="Do {{task_id}}.\nmock-delay-ms: 30000\n")
    process = popen_rad("craft", "REQ-001", cwd=ws)
    wait_for_line(process, "→ I1.T1")
    assert tasks_by_id(read_manifest(ws))["I1.T1"]["status"] == "in_progress"
    sent = time.monotonic()
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=20)
    assert time.monotonic() - sent < 3, "cancellation was not immediate"
    assert process.returncode == expected_code, stderr
    assert "Execution aborted by user. Progress saved to plan_manifest.json" in stdout
    assert "Traceback" not in stderr
    state = tasks_by_id(read_manifest(ws))
    assert state["I1.T1"]["status"] == "pending" and state["I1.T1"]["completed"] is False
    # The user fixes the slow prompt and resumes: the plan finishes.
    write_agent(ws, "writer", prompt="Do {{task_id}}.\n")
    resumed = run_rad("craft", "REQ-001", "--resume", cwd=ws)
    assert resumed.returncode == 0, resumed.stderr
    assert all(t["completed"] for t in tasks_by_id(read_manifest(ws)).values())


def test_sigint_mid_task_returns_it_to_pending(tmp_path: Path) -> None:
    _interrupt_mid_task(tmp_path, signal.SIGINT, 130)


def test_sigterm_mid_task_exits_143(tmp_path: Path) -> None:
    _interrupt_mid_task(tmp_path, signal.SIGTERM, 143)


def test_sigint_during_a_long_backoff_exits_at_once(tmp_path: Path) -> None:
    plan = manifest([task("I1.T1", description="mock-fail: rate_limit(30)")])
    ws = make_workspace(tmp_path / "ws", plan)
    process = popen_rad("craft", "REQ-001", cwd=ws)
    wait_for_line(process, "Attempt 1: Error (rate limit) → Wait 30 seconds")
    sent = time.monotonic()
    process.send_signal(signal.SIGINT)
    stdout, _ = process.communicate(timeout=10)
    assert time.monotonic() - sent < 1.0  # measured about 0.1 s
    assert process.returncode == 130
    assert tasks_by_id(read_manifest(ws))["I1.T1"]["status"] == "pending"


def test_sigint_during_a_server_requested_30s_wait(tmp_path: Path) -> None:
    """The same with a real provider: a 429 with Retry-After: 30 from the local fake server."""
    from fake_provider import FakeProvider, status

    from helpers import rad_env

    with FakeProvider() as server:
        server.script("openai", status(429, headers={"Retry-After": "30"}))
        ws = make_workspace(tmp_path / "ws", manifest([task("I1.T1", agent="remote")]), agents=())
        write_agent(ws, "remote", engine="openai", model="gpt-fake", base_url=server.openai_base_url)
        env = rad_env(ws, {"OPENAI_API_KEY": "sk-test-0000000000000000"})
        process = popen_rad("craft", "REQ-001", cwd=ws, env=env)
        wait_for_line(process, "Attempt 1: Error (rate limit) → Wait 30 seconds (Retry-After from server)")
        sent = time.monotonic()
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=10)
        assert time.monotonic() - sent < 1.0, stderr
        assert process.returncode == 130
        assert "Execution aborted by user. Progress saved to plan_manifest.json" in stdout
        assert len(server.requests_for("openai")) == 1
    state = tasks_by_id(read_manifest(ws))["I1.T1"]
    assert state["status"] == "pending" and state["attempts"] == 1


def test_second_craft_on_a_running_plan_exits_2_naming_the_holder(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws", manifest([task("I1.T1")]))
    write_agent(ws, "writer", prompt="Do {{task_id}}.\nmock-delay-ms: 30000\n")
    first = popen_rad("craft", "REQ-001", cwd=ws)
    try:
        wait_for_line(first, "→ I1.T1")
        second = run_rad("craft", "REQ-001", cwd=ws)
        assert second.returncode == 2
        assert f"pid {first.pid}" in second.stderr
        assert len(second.stderr.strip().splitlines()) == 1
    finally:
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=20)
    assert first.returncode == 130


def test_lock_of_a_killed_run_is_taken_over(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws", manifest([task("I1.T1")]))
    write_agent(ws, "writer", prompt="Do {{task_id}}.\nmock-delay-ms: 30000\n")
    first = popen_rad("craft", "REQ-001", cwd=ws)
    wait_for_line(first, "→ I1.T1")
    os.kill(first.pid, signal.SIGKILL)
    first.communicate(timeout=10)
    lock_info = plan_dir(ws) / "plan" / ".craft.lock.json"
    assert lock_info.exists()  # the dead holder's note is still there
    write_agent(ws, "writer", prompt="Do {{task_id}}.\n")
    result = run_rad("craft", "REQ-001", cwd=ws)
    assert result.returncode == 0, result.stderr
    assert tasks_by_id(read_manifest(ws))["I1.T1"]["status"] == "completed"
    assert not lock_info.exists()


def test_unwritable_checkpoint_stops_the_run_and_keeps_the_old_one(tmp_path: Path) -> None:
    """A real write failure: the child's RLIMIT_FSIZE makes the grown manifest fail with EFBIG.

    (Directory permissions cannot be used: CI runs as root, which ignores them.)
    """
    import resource
    import subprocess

    from helpers import RAD, rad_env

    ws = make_workspace(tmp_path / "ws", manifest([task("I1.T1"), task("I1.T2")]))
    path = plan_dir(ws) / "plan" / "plan_manifest.json"
    before = path.read_bytes()
    limit = len(before) + 40  # the first checkpoint (task started) needs more than this

    def limit_file_size() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG instead of being killed
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    result = subprocess.run(
        [*RAD, "craft", "REQ-001"], cwd=ws, env=rad_env(ws), capture_output=True, text=True,
        timeout=60, preexec_fn=limit_file_size,
    )
    assert result.returncode == 1, result.stderr
    assert "cannot write checkpoint" in result.stderr and str(path) in result.stderr
    assert "Traceback" not in result.stderr
    assert path.read_bytes() == before
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def test_second_ctrl_c_while_stopping_changes_nothing(tmp_path: Path) -> None:
    plan = manifest([task(f"I1.T{n}") for n in range(1, 4)], [task("I2.T1")])
    ws = make_workspace(tmp_path / "ws", plan)
    write_agent(ws, "writer", prompt="Do {{task_id}}.\nmock-delay-ms: 30000\n")
    process = popen_rad("craft", "REQ-001", "--parallel", "3", cwd=ws)
    wait_for_line(process, "→ I1.T3")
    process.send_signal(signal.SIGINT)
    time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=20)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert stdout.count("Execution aborted by user.") == 1
    state = tasks_by_id(check_invariants(ws))
    assert [state[f"I1.T{n}"]["status"] for n in range(1, 4)] == ["pending"] * 3
    assert "Returned to pending: I1.T1, I1.T2, I1.T3" in stdout
