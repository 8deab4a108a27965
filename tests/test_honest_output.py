"""What Radium prints is the truth: status during a run, lock holders, one verdict for
validate and dry-run, signals, headers, usage errors, hints, starters, journals.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import (
    RAD,
    events,
    make_workspace,
    manifest,
    plan_dir,
    popen_rad,
    rad_env,
    read_manifest,
    run_rad,
    task,
    tasks_by_id,
    write_agent,
    write_plan,
)
from helpers import wait_for_event
from test_hostile_input import assert_refused

# ---------------------------------------------------------------- status and the lock


def test_status_during_a_run_says_running_with_pid_and_current_task(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws", manifest([task("I1.T1"), task("I1.T2")]))
    write_agent(ws, "writer", prompt="Do {{task_id}}.\nmock-delay-ms: 30000\n")
    process = popen_rad("craft", "REQ-001", "--json", cwd=ws)
    try:
        wait_for_event(process, "task_started")
        status = run_rad("status", "REQ-001", cwd=ws)
        assert status.returncode == 0, status.stderr
        assert f"running (pid {process.pid}, since " in status.stdout
        assert "current task I1.T1)" in status.stdout
        assert "not_started" not in status.stdout and "Next: rad craft" not in status.stdout
        data = json.loads(run_rad("status", "REQ-001", "--json", cwd=ws).stdout)
        assert data["running"]["pid"] == process.pid and data["running"]["current_tasks"] == ["I1.T1"]
        assert data["next_command"] is None
        table = run_rad("status", cwd=ws)
        assert f"running (pid {process.pid}" in table.stdout
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=30)
    after = run_rad("status", "REQ-001", cwd=ws)
    assert "running" not in after.stdout and "Next: rad craft REQ-001" in after.stdout


def _hold_lock_without_details(ws: Path) -> subprocess.Popen[str]:
    """Another process that has taken the plan's lock but not yet written who it is."""
    lock = plan_dir(ws) / "plan" / ".craft.lock"
    code = (
        "import sys, filelock\n"
        f"lock = filelock.FileLock({str(lock)!r}, timeout=0); lock.acquire()\n"
        "print('locked', flush=True); sys.stdin.read()\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_a_lock_holder_that_has_not_written_its_details_is_described_honestly(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws", manifest([task("I1.T1")]))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = {"pid": int(dead.stdout), "started_at": 1, "host": os.uname().nodename}
    (plan_dir(ws) / "plan" / ".craft.lock.json").write_text(json.dumps(stale))  # left by a killed run
    holder = _hold_lock_without_details(ws)
    try:
        line = assert_refused(run_rad("craft", "REQ-001", cwd=ws), "has just started and not yet written its details")
        assert "holder unknown" not in line and f"pid {dead.stdout.strip()}" not in line
    finally:
        holder.communicate("", timeout=10)


# ---------------------------------------------------------------- one verdict


def test_validate_and_dry_run_agree_on_a_broken_unused_agent_file(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws", manifest([task("I1.T1")]))
    (ws / "agents" / "unused.toml").write_text("[agent\nid = 'unused'\n")
    validate = run_rad("validate", "REQ-001", cwd=ws)
    dry = run_rad("craft", "REQ-001", "--dry-run", cwd=ws)
    assert validate.returncode == dry.returncode == 2, (validate.stdout, dry.stderr)
    assert "error [invalid-agent-file]: invalid agent file" in validate.stdout and "unused.toml" in validate.stdout
    assert "unused.toml" in dry.stderr


def test_validate_and_dry_run_agree_on_a_missing_key_and_a_refused_context_file(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws", manifest([task("I1.T1", agent="remote")]), agents=())
    write_agent(ws, "remote", engine="openai", model="gpt-x")
    validate = run_rad("validate", "REQ-001", cwd=ws)
    dry = run_rad("craft", "REQ-001", "--dry-run", cwd=ws)
    assert validate.returncode == dry.returncode == 2
    assert "error [engine]: agent remote (used by I1.T1)" in validate.stdout and "OPENAI_API_KEY" in validate.stdout
    assert "OPENAI_API_KEY" in dry.stderr

    env = rad_env(ws, {"OPENAI_API_KEY": "sk-test-0000000000000000"})
    (tmp_path / "outside.md").write_text("private\n")
    (ws / "AGENTS.md").write_text(f"@{tmp_path / 'outside.md'}\n")
    validate = run_rad("validate", "REQ-001", cwd=ws, env=env)
    dry = run_rad("craft", "REQ-001", "--dry-run", cwd=ws, env=env)
    assert validate.returncode == dry.returncode == 2
    assert "outside the workspace" in validate.stdout and "outside the workspace" in dry.stderr
    (ws / "AGENTS.md").unlink()
    assert run_rad("validate", "REQ-001", cwd=ws, env=env).returncode == 0
    assert run_rad("craft", "REQ-001", "--dry-run", cwd=ws, env=env).returncode == 0


# ---------------------------------------------------------------- signals


def test_ctrl_c_while_the_command_line_is_still_importing_prints_no_traceback(tmp_path: Path) -> None:
    """SIGINT delivered in the middle of ``import radium.cli`` (when click is imported)."""
    code = (
        "import os, signal, sys\n"
        "class InterruptOnClick:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'click':\n"
        "            os.kill(os.getpid(), signal.SIGINT)\n"
        "        return None\n"
        "sys.meta_path.insert(0, InterruptOnClick())\n"
        "sys.argv = ['rad', '--version']\n"
        "import runpy; runpy.run_module('radium', run_name='__main__')\n"
    )
    # A shell starts background jobs with SIGINT ignored, and children inherit that: give the
    # child the disposition a terminal's foreground process has.
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=rad_env(tmp_path),
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert "Traceback" not in result.stderr and "KeyboardInterrupt" not in result.stderr, result.stderr
    assert result.returncode == 130 and result.stderr.strip() == "Interrupted."


# ---------------------------------------------------------------- headers and usage errors


def test_run_header_uses_the_seed_line_and_echoes_the_options_in_force(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws", manifest([task("I1.T1")]))
    env = rad_env(ws, {"RADIUM_BASE_DELAY_MS": "50"})
    result = run_rad("craft", "REQ-001", "--max-retries", "5", "--keep-going", "--model", "m2", cwd=ws, env=env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "  Options: retries 5 · backoff 50–60000 ms · max Retry-After 300 s · timeout engine default · " \
        "keep-going on · context files 0 · model m2" in lines
    header = lines.index("→ Executing iteration 1...")
    assert lines[header + 1] == "  I1: Iteration 1 · Goal: Goal 1"


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--resume", "--restart"], "--resume and --restart contradict each other"),
        (["--yolo", "--iterations", "3"], "contradicts --iterations 3"),
        (["--show-prompts"], "--show-prompts only works with --dry-run"),
    ],
)
def test_contradictory_flags_are_a_usage_error(tmp_path: Path, args: list[str], fragment: str) -> None:
    ws = make_workspace(tmp_path / "ws", manifest([task("I1.T1")]))
    before = (plan_dir(ws) / "plan" / "plan_manifest.json").read_bytes()
    assert_refused(run_rad("craft", "REQ-001", *args, cwd=ws), fragment)
    assert (plan_dir(ws) / "plan" / "plan_manifest.json").read_bytes() == before


# ---------------------------------------------------------------- hints


def test_a_broken_agent_file_gets_one_hint(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws", manifest([task("I1.T1")]))
    (ws / "agents" / "broken.toml").write_text("[agent\n")
    line = assert_refused(run_rad("craft", "REQ-001", cwd=ws), "broken.toml", "invalid TOML")
    assert line.endswith("(fix or remove it)") and line.count("(fix") == 1, line


def _drop_file_permission_override() -> None:
    """Run as root without CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH, so file modes apply (CI runs as root).

    They are dropped from the bounding set (PR_CAPBSET_DROP), which survives the exec.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        assert libc.prctl(24, capability, 0, 0, 0) == 0, ctypes.get_errno()


def test_an_unreadable_prompt_file_says_to_fix_permissions_not_prompt_path(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws", manifest([task("I1.T1")]))
    (ws / "prompts" / "writer.md").chmod(0)
    preexec = _drop_file_permission_override if os.geteuid() == 0 else None
    result = subprocess.run(
        [*RAD, "craft", "REQ-001"], cwd=ws, env=rad_env(ws), capture_output=True, text=True, timeout=60, preexec_fn=preexec
    )
    line = assert_refused(result, "Permission denied", "readable")
    assert "fix prompt_path" not in line


def test_a_missing_context_file_names_the_flag_not_an_import(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws", manifest([task("I1.T1")]))
    line = assert_refused(run_rad("craft", "REQ-001", "--context-file", "nope.md", cwd=ws), "nope.md", "--context-file")
    assert "import" not in line


def test_did_you_mean_never_suggests_the_task_itself(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws", manifest([task("I1.T2", deps=["I1.T22"])]))
    result = run_rad("validate", "REQ-001", cwd=ws)
    assert result.returncode == 2
    assert "task I1.T2 depends on unknown task I1.T22" in result.stdout
    assert "did you mean I1.T2?" not in result.stdout


def test_a_list_cut_at_ten_says_how_many_more(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws")
    for number in range(1, 13):
        write_plan(ws, manifest([task("I1.T1")], number=number), slug=f"p{number}")
    line = assert_refused(run_rad("craft", "REQ-099", cwd=ws), "REQ-001-p1", "and 2 more")
    assert "REQ-011-p11" not in line


def test_agent_name_is_optional_and_defaults_to_the_id(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws", manifest([task("I1.T1", agent="plain")]), agents=())
    (ws / "prompts").mkdir(exist_ok=True)
    (ws / "prompts" / "plain.md").write_text("Do {{task_id}}.")
    (ws / "agents").mkdir(exist_ok=True)
    (ws / "agents" / "plain.toml").write_text('[agent]\nid = "plain"\nprompt_path = "../prompts/plain.md"\nengine = "mock"\n')
    listed = json.loads(run_rad("agents", "--json", cwd=ws).stdout)
    assert [(a["id"], a["name"]) for a in listed["agents"]] == [("plain", "plain")]
    assert run_rad("craft", "REQ-001", cwd=ws).returncode == 0


def test_a_broken_json_plan_is_reported_as_json_not_as_a_missing_planner(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws")
    (ws / "plan.json").write_text('{"project_name": "x",\n')  # cut before "iterations"
    line = assert_refused(run_rad("plan", "plan.json", cwd=ws), "plan.json: not valid JSON (line 2")
    assert "planner" not in line


# ---------------------------------------------------------------- rad init


def test_init_leaves_a_starter_agent_prompt_and_plan_that_run(tmp_path: Path) -> None:
    ws = tmp_path / "fresh"
    ws.mkdir()
    (ws / "plan.md").write_text("# Mine\n")  # never overwritten
    result = run_rad("init", str(ws), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "agents/example.toml, prompts/example.md" in result.stdout
    assert (ws / "plan.md").read_text() == "# Mine\n"
    (ws / "plan.md").unlink()
    again = run_rad("init", str(ws), cwd=tmp_path)
    assert again.returncode == 0 and "already initialized" in again.stdout
    assert not (ws / "plan.md").exists()  # a second init changes nothing

    other = tmp_path / "other"
    assert run_rad("init", str(other), cwd=tmp_path).returncode == 0
    created = run_rad("plan", "plan.md", cwd=other)
    assert created.returncode == 0, created.stderr
    crafted = run_rad("craft", "REQ-001", cwd=other)
    assert crafted.returncode == 0, crafted.stderr
    assert "All tasks completed" in crafted.stdout


# ---------------------------------------------------------------- journal and original manifests


def test_a_journal_left_between_compaction_rename_and_removal_is_not_called_stale(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws", manifest([task("I1.T1"), task("I1.T2")]))
    path = plan_dir(ws) / "plan" / "plan_manifest.json"
    old_text = path.read_bytes()
    assert run_rad("craft", "REQ-001", "--task", "I1.T1", cwd=ws).returncode == 0
    # The state a kill leaves after the new manifest was renamed in, before the journal was
    # removed: a journal naming the old manifest, whose lines the new one already holds.
    done = tasks_by_id(read_manifest(ws))["I1.T1"]
    started = {**done, "status": "in_progress", "completed": False}
    header = {"journal": 1, "manifest_sha256": hashlib.sha256(old_text).hexdigest()}
    journal = path.with_name("plan_manifest.journal")
    journal.write_text("".join(json.dumps(x) + "\n" for x in (header, {"task": started}, {"task": done})))
    result = run_rad("craft", "REQ-001", cwd=ws)
    assert result.returncode == 0, result.stderr
    assert "edited or restored" not in result.stderr
    assert all(t["status"] == "completed" for t in tasks_by_id(read_manifest(ws)).values())

    # A journal whose lines the manifest does not hold is still reported (a hand edit wins).
    journal.write_text(json.dumps(header) + "\n" + json.dumps({"task": {**done, "title": "other"}}) + "\n")
    assert "edited or restored" in run_rad("craft", "REQ-001", cwd=ws).stderr


def test_an_original_manifest_task_without_agent_is_skipped_with_a_warning(tmp_path: Path) -> None:
    plan = manifest([task("I1.T1"), task("I1.T2"), task("I1.T3", deps=["I1.T2"])])
    del plan["iterations"][0]["tasks"][1]["agent_id"]  # the original Radium omits it when None
    ws = make_workspace(tmp_path / "ws", plan)
    result = run_rad("craft", "REQ-001", "--json", cwd=ws)
    assert "Warning: task(s) naming no agent are skipped: I1.T2" in result.stderr
    finished = events(result.stdout)[-1]
    assert finished["blocked_tasks"] == {"I1.T3": "Dependency task not completed: I1.T2"}
    state = tasks_by_id(read_manifest(ws))
    assert state["I1.T1"]["status"] == "completed" and state["I1.T2"].get("status", "pending") == "pending"
    assert result.returncode == 1  # blocked work remains, as for any blocked task
    validate = run_rad("validate", "REQ-001", cwd=ws)
    assert validate.returncode == 0 and "warning [no-agent]: task I1.T2 names no agent" in validate.stdout


def test_a_skipped_agentless_task_alone_does_not_fail_the_run(tmp_path: Path) -> None:
    plan = manifest([task("I1.T1"), task("I1.T2")])
    del plan["iterations"][0]["tasks"][1]["agent_id"]
    ws = make_workspace(tmp_path / "ws", plan)
    result = run_rad("craft", "REQ-001", cwd=ws)
    assert result.returncode == 0, result.stderr
    assert "Execution finished; 1 task(s) naming no agent were skipped." in result.stdout


# ---------------------------------------------------------------- the live bar on a terminal


def test_on_a_terminal_lines_are_printed_in_batches_under_the_live_bar() -> None:
    """Under a live bar every print re-renders the bar: the renderer gathers lines and prints them
    at most ten times a second. 1,600 lines from 400 tasks emitted back to back (a real rich
    console on a terminal, a real event loop) take a handful of prints, and none is lost."""
    import asyncio
    import io

    from rich.console import Console

    from radium.cli.output import HumanRenderer
    from radium.events import Event

    console = Console(file=io.StringIO(), force_terminal=True, width=120, record=True)
    renderer = HumanRenderer(console, live=True)
    prints = 0
    original = console.print

    def counting_print(*args, **kwargs):  # noqa: ANN002, ANN003
        nonlocal prints
        prints += 1
        return original(*args, **kwargs)

    console.print = counting_print  # type: ignore[method-assign]

    async def emit_all() -> None:
        renderer(Event("run_started", {"plan": "REQ-001", "project": "P", "mode": "continuous", "max_iterations": None,
                                       "total_tasks": 400, "completed_tasks": 0, "parallel": 1, "resume_from": "I1.T1"}))
        for n in range(1, 401):
            renderer(Event("task_started", {"iteration_number": 1, "completed_tasks": n - 1, "total_tasks": 400,
                                            "task_id": f"I1.T{n}", "elapsed_s": 0.0, "title": f"Task {n}", "agent_id": "w"}))
            renderer(Event("task_completed", {"task_id": f"I1.T{n}", "duration_ms": 1, "attempts": 1,
                                              "completed_tasks": n, "percent": n * 100 // 400}))
        await asyncio.sleep(0)

    asyncio.run(emit_all())
    renderer.close()
    text = console.export_text()
    assert [line for line in text.splitlines() if "✓" in line] == [f"    ✓ I1.T{n} completed (0.0s)" for n in range(1, 401)]
    assert prints < 40, prints  # one per flush (0.1 s apart); 1,600 without batching


def test_a_line_gathered_under_the_live_bar_is_printed_without_a_further_event(tmp_path: Path) -> None:
    """A task's start line must not wait for the next event (its model call may take minutes): the
    gathered lines are flushed by a timer. Real CLI on a pseudo-terminal; the task takes 30 s."""
    import pty
    import select

    ws = make_workspace(tmp_path / "ws", manifest([task("I1.T1"), task("I1.T2")]))
    write_agent(ws, "writer", prompt="Do {{task_id}}.\nmock-delay-ms: 30000\n")
    controller, terminal = pty.openpty()
    env = {**rad_env(ws), "COLUMNS": "120", "TERM": "xterm"}
    process = subprocess.Popen([*RAD, "craft", "REQ-001", "--yolo"], cwd=ws, env=env, stdin=terminal, stdout=terminal,
                               stderr=terminal, close_fds=True)
    os.close(terminal)
    seen = b""
    try:
        while b"I1.T1 Task I1.T1" not in seen:
            ready, _, _ = select.select([controller], [], [], 20)
            assert ready, seen.decode(errors="replace")
            seen += os.read(controller, 65536)
    finally:
        process.kill()
        process.wait(timeout=30)
        os.close(controller)
