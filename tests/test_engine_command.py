"""The ``command`` engine with real subprocesses (small Python agents in ``tests/agents/``)."""

from __future__ import annotations

import asyncio
import os
import signal
import stat
import sys
import time
from pathlib import Path

import pytest

from radium import errors
from radium.engines import EngineSettings, GenerationParams, create_engine
from radium.engines.command import CommandEngine, classify_exit

AGENTS = Path(__file__).parent / "agents"
ECHO = str(AGENTS / "echo_agent.py")
EXIT = str(AGENTS / "exit_agent.py")
HANG = str(AGENTS / "hang_agent.py")
PY = sys.executable

NASTY_PROMPT = (
    "Quotes \"double\" and 'single', $(rm -rf /) and `whoami` and $HOME and ${PATH}\n"
    "second line; | & > < * ? ~ \\ backslash \\n not-a-newline\n"
    "unicode: héllo wörld — 日本語 🚀 \u200b zero-width\n"
    "{not_a_placeholder} {{braces}} %s %d\n"
    "trailing spaces   \n\n"
)


def _engine(command, tmp_path=None, **kw) -> CommandEngine:
    settings = dict(engine="command", command=tuple(command), agent_id="cli-agent")
    if tmp_path is not None:
        settings["workdir"] = str(tmp_path)
    settings.update(kw)
    engine = create_engine(EngineSettings(**settings))
    assert isinstance(engine, CommandEngine)
    return engine


def _run(engine, prompt="hello", timeout_s=None):
    return asyncio.run(engine.generate(prompt, GenerationParams(timeout_s=timeout_s)))


def _fail(engine, prompt="hello", timeout_s=None) -> errors.RadiumError:
    with pytest.raises(errors.RadiumError) as info:
        _run(engine, prompt, timeout_s)
    return info.value


def _alive(pid: int) -> bool:
    """True if ``pid`` is a live process (a zombie waiting for its reaper counts as dead)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return state not in ("Z", "X")


def _wait_dead(pids, timeout=3.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = [pid for pid in pids if _alive(pid)]
        if not alive:
            return []
        time.sleep(0.02)
    return [pid for pid in pids if _alive(pid)]


def _read_pids(pidfile: Path) -> list[int]:
    return [int(x) for x in pidfile.read_text().split()]


@pytest.fixture
def reap_leftovers():
    """Kill anything a failing test left behind."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)


# ------------------------------------------------------------------ success and prompt passing


def test_prompt_reaches_the_program_byte_for_byte_via_stdin(tmp_path):
    out = tmp_path / "received.bin"
    response = _run(_engine([PY, ECHO, "--out", str(out)], tmp_path), NASTY_PROMPT)
    assert out.read_bytes() == NASTY_PROMPT.encode("utf-8")
    assert response.text == NASTY_PROMPT
    assert response.usage is None


def test_prompt_reaches_the_program_byte_for_byte_via_placeholder(tmp_path):
    out = tmp_path / "received.bin"
    response = _run(_engine([PY, ECHO, "--out", str(out), "--arg", "{prompt}"], tmp_path), NASTY_PROMPT)
    assert out.read_bytes() == NASTY_PROMPT.encode("utf-8")
    assert response.text == NASTY_PROMPT


def test_placeholder_inside_an_element_and_prompt_text_not_resubstituted(tmp_path):
    out = tmp_path / "received.bin"
    prompt = "literal {prompt} stays"
    _run(_engine([PY, ECHO, "--out", str(out), "--arg", "<<{prompt}>>"], tmp_path), prompt)
    assert out.read_bytes() == b"<<literal {prompt} stays>>"


def test_placeholder_means_stdin_is_not_used(tmp_path):
    # With the placeholder, stdin is /dev/null: a program reading stdin gets EOF, never hangs.
    code = "import sys; data = sys.stdin.read(); print(len(data))"
    response = _run(_engine([PY, "-c", code, "{prompt}"], tmp_path), "abc", timeout_s=10)
    assert response.text.strip() == "0"


def test_working_directory_is_the_workspace(tmp_path):
    _run(_engine([PY, ECHO, "--out", "relative.bin"], tmp_path), "x")
    assert (tmp_path / "relative.bin").read_bytes() == b"x"


def test_large_prompt_on_stdin_to_a_program_that_never_reads_it(tmp_path):
    # 2 MB is far above a pipe buffer: writing must neither block nor fail.
    response = _run(_engine([PY, EXIT, "0"], tmp_path), "x" * 2_000_000, timeout_s=20)
    assert response.text == "partial output\n"


def test_large_prompt_round_trip(tmp_path):
    prompt = ("línea " * 50_000) + "end"
    response = _run(_engine([PY, ECHO], tmp_path), prompt, timeout_s=20)
    assert response.text == prompt


def test_non_utf8_output_is_replaced_not_fatal(tmp_path):
    code = "import sys; sys.stdout.buffer.write(b'ok \\xff\\xfe end')"
    response = _run(_engine([PY, "-c", code], tmp_path))
    assert response.text == "ok \ufffd\ufffd end"


def test_never_through_a_shell(tmp_path):
    marker = tmp_path / "pwned"
    prompt = f"$(touch {marker}) `touch {marker}`; touch {marker}"
    _run(_engine([PY, ECHO, "--arg", "{prompt}"], tmp_path), prompt)
    _run(_engine([PY, ECHO], tmp_path), prompt)
    assert not marker.exists()


# ------------------------------------------------------------------ exit statuses


@pytest.mark.parametrize(
    "status,kind,category",
    [
        ("1", errors.ModelExecutionError, errors.ErrorCategory.RECOVERABLE),
        ("2", errors.ModelExecutionError, errors.ErrorCategory.RECOVERABLE),
        ("75", errors.ModelExecutionError, errors.ErrorCategory.RECOVERABLE),
        ("137", errors.ModelExecutionError, errors.ErrorCategory.RECOVERABLE),
        ("signal:SIGKILL", errors.ModelExecutionError, errors.ErrorCategory.RECOVERABLE),
        ("signal:SIGSEGV", errors.ModelExecutionError, errors.ErrorCategory.RECOVERABLE),
        ("126", errors.MissingConfigurationError, errors.ErrorCategory.FATAL),
        ("127", errors.MissingConfigurationError, errors.ErrorCategory.FATAL),
        ("64", errors.MissingConfigurationError, errors.ErrorCategory.FATAL),
        ("78", errors.MissingConfigurationError, errors.ErrorCategory.FATAL),
    ],
)
def test_exit_status_mapping(tmp_path, status, kind, category):
    err = _fail(_engine([PY, EXIT, status, "first stderr line", "the real reason"], tmp_path))
    assert type(err) is kind
    assert err.category is category
    assert "the real reason" in err.message  # the last stderr lines are in the message
    assert Path(PY).name in err.message or PY in err.message
    if status.startswith("signal:"):
        assert status.split(":")[1] in err.message


def test_classify_exit_rule():
    assert classify_exit(0) is None
    assert classify_exit(1) is errors.ModelExecutionError
    assert classify_exit(-9) is errors.ModelExecutionError
    assert classify_exit(127) is errors.MissingConfigurationError


@pytest.mark.parametrize(
    "status,fatal,retry,kind",
    [
        ("1", (1,), (), errors.AgentExitError),  # `llm` exits 1 for everything: the agent says it is final
        ("2", (1,), (), errors.ModelExecutionError),  # not declared: the default rule
        ("75", (), (75,), errors.ModelExecutionError),  # declared recoverable
        ("1", (), (75,), errors.AgentExitError),  # retry list given: anything else is final
        ("126", (), (75,), errors.MissingConfigurationError),  # cannot execute stays a config error
        ("signal:SIGKILL", (), (75,), errors.ModelExecutionError),  # deaths by a signal stay recoverable
    ],
)
def test_declared_exit_codes(tmp_path, status, fatal, retry, kind):
    engine = _engine([PY, EXIT, status, "why it stopped"], tmp_path, fatal_exit_codes=fatal, retry_exit_codes=retry)
    err = _fail(engine)
    assert type(err) is kind
    if kind is errors.AgentExitError:
        assert err.category is errors.ErrorCategory.FATAL
        assert "fatal_exit_codes" in err.message or "retry_exit_codes" in err.message
        assert "why it stopped" in err.message


def test_declared_exit_codes_decide_retries_in_a_run(tmp_path):
    from helpers import events, make_workspace, manifest, run_rad, task, write_agent

    ws = make_workspace(tmp_path / "ws", manifest([task("I1.T1", agent="cli")]), agents=())
    write_agent(ws, "cli", engine="command", command=[PY, EXIT, "1", "bad input"], fatal_exit_codes=[1])
    result = run_rad("craft", "REQ-001", "--json", "--base-delay-ms", "1", cwd=ws)
    assert result.returncode == 1
    seen = events(result.stdout)
    assert not [e for e in seen if e["event"] == "attempt_failed"]  # declared fatal: no retry
    (failed,) = [e for e in seen if e["event"] == "task_failed"]
    assert failed["kind"] == "agent exit" and failed["attempts"] == 1
    write_agent(ws, "cli", engine="command", command=[PY, EXIT, "1"], fatal_exit_codes=[1], retry_exit_codes=[1])
    bad = run_rad("craft", "REQ-001", cwd=ws)
    assert bad.returncode == 2 and "both fatal_exit_codes and retry_exit_codes" in bad.stderr


def test_stderr_tail_is_bounded_and_keeps_the_end(tmp_path):
    lines = [f"noise {i}" for i in range(200)] + ["FINAL LINE"]
    err = _fail(_engine([PY, EXIT, "1", *lines], tmp_path))
    assert "FINAL LINE" in err.message
    assert "noise 0 " not in err.message
    assert len(err.message) < 2500


def test_secrets_in_stderr_are_redacted(tmp_path, monkeypatch):
    monkeypatch.setenv("MY_AGENT_TOKEN", "tok-very-secret-value-42")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "anthropic-secret-xyz-123")
    err = _fail(
        _engine(
            [PY, EXIT, "1", "auth failed for tok-very-secret-value-42", "key anthropic-secret-xyz-123", "sk-test-SECRET-1234567890"],
            tmp_path,
            api_key_env="MY_AGENT_TOKEN",
        )
    )
    text = str(err)
    assert "tok-very-secret-value-42" not in text
    assert "anthropic-secret-xyz-123" not in text
    assert "SECRET-1234567890" not in text
    assert "[REDACTED]" in text


def test_argv_holding_the_prompt_is_not_echoed_in_failure_messages(tmp_path):
    code = "import sys; sys.stderr.write('boom\\n'); sys.exit(3)"
    err = _fail(_engine([PY, "-c", code, "{prompt}"], tmp_path), "very private prompt")
    assert "very private prompt" not in str(err)
    assert "status 3" in err.message and "boom" in err.message


# ------------------------------------------------------------------ programs that cannot run


def test_program_not_found(tmp_path):
    err = _fail(_engine(["radium-no-such-agent-xyz", "-p"], tmp_path))
    assert type(err) is errors.MissingConfigurationError
    assert "radium-no-such-agent-xyz" in str(err)
    with pytest.raises(errors.MissingConfigurationError):
        _engine(["radium-no-such-agent-xyz"], tmp_path).preflight()


def test_program_path_not_found(tmp_path):
    err = _fail(_engine([str(tmp_path / "missing.sh")], tmp_path))
    assert type(err) is errors.MissingConfigurationError
    with pytest.raises(errors.MissingConfigurationError):
        _engine(["./missing.sh"], tmp_path).preflight()


def test_program_not_executable(tmp_path):
    script = tmp_path / "agent.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(stat.S_IRUSR | stat.S_IWUSR)
    err = _fail(_engine([str(script)], tmp_path))
    assert type(err) is errors.MissingConfigurationError
    with pytest.raises(errors.MissingConfigurationError) as info:
        _engine(["./agent.sh"], tmp_path).preflight()
    assert "chmod" in str(info.value)


def test_preflight_accepts_a_good_command(tmp_path):
    _engine([PY, ECHO], tmp_path).preflight()
    script = tmp_path / "agent.sh"
    script.write_text("#!/bin/sh\ncat\n")
    script.chmod(0o755)
    _engine(["./agent.sh"], tmp_path).preflight()
    assert _run(_engine(["./agent.sh"], tmp_path), "via relative path") == _run(
        _engine([str(script)], tmp_path), "via relative path"
    )


def test_preflight_rejects_missing_or_string_command(tmp_path):
    with pytest.raises(errors.MissingConfigurationError):
        create_engine(EngineSettings(engine="command", agent_id="x")).preflight()
    engine = create_engine(EngineSettings(engine="command", command="claude -p", agent_id="x"))  # type: ignore[arg-type]
    with pytest.raises(errors.InvalidDataError):
        engine.preflight()


def test_missing_workdir(tmp_path):
    engine = _engine([PY, ECHO], tmp_path / "gone")
    with pytest.raises(errors.MissingConfigurationError):
        engine.preflight()
    assert type(_fail(engine)) is errors.MissingConfigurationError


def test_prompt_with_nul_via_placeholder_is_a_bad_request(tmp_path):
    err = _fail(_engine([PY, ECHO, "--arg", "{prompt}"], tmp_path), "a\x00b")
    assert type(err) is errors.BadRequestError and "stdin" in err.hint
    # ... while stdin carries it fine
    assert _run(_engine([PY, ECHO], tmp_path), "a\x00b").text == "a\x00b"


def test_prompt_too_long_for_argv_is_a_bad_request(tmp_path):
    err = _fail(_engine([PY, ECHO, "--arg", "{prompt}"], tmp_path), "x" * 300_000)
    assert type(err) is errors.BadRequestError and err.category is errors.ErrorCategory.FATAL


# ------------------------------------------------------------------ timeouts and cancellation


def test_timeout_kills_the_whole_process_group(tmp_path, reap_leftovers):
    pidfile = tmp_path / "pids"
    started = time.monotonic()
    err = _fail(_engine([PY, "-S", HANG, str(pidfile)], tmp_path), timeout_s=0.3)
    elapsed = time.monotonic() - started
    assert type(err) is errors.ModelTimeoutError
    assert err.category is errors.ErrorCategory.RECOVERABLE
    assert "0.3s" in err.message
    pids = _read_pids(pidfile)
    reap_leftovers.extend(pids)
    assert len(pids) == 2
    assert _wait_dead(pids) == [], "agent or its child survived the timeout"
    assert elapsed < 2.0  # SIGTERM was enough: no grace period spent


def test_timeout_escalates_to_sigkill_when_sigterm_is_ignored(tmp_path, reap_leftovers, monkeypatch):
    monkeypatch.setattr(CommandEngine, "term_grace_s", 0.2)
    pidfile = tmp_path / "pids"
    started = time.monotonic()
    err = _fail(_engine([PY, "-S", HANG, str(pidfile), "--ignore-term"], tmp_path), timeout_s=0.5)
    assert type(err) is errors.ModelTimeoutError
    pids = _read_pids(pidfile)
    reap_leftovers.extend(pids)
    assert _wait_dead(pids) == [], "SIGKILL did not follow the ignored SIGTERM"
    assert time.monotonic() - started < 3.0


def test_agent_timeout_setting_applies(tmp_path, reap_leftovers):
    pidfile = tmp_path / "pids"
    err = _fail(_engine([PY, "-S", HANG, str(pidfile)], tmp_path, timeout_s=0.3))
    assert type(err) is errors.ModelTimeoutError
    reap_leftovers.extend(_read_pids(pidfile))
    assert _wait_dead(_read_pids(pidfile)) == []


def test_cancellation_kills_the_group_and_propagates(tmp_path, reap_leftovers):
    pidfile = tmp_path / "pids"
    engine = _engine([PY, "-S", HANG, str(pidfile)], tmp_path)

    async def go():
        task = asyncio.create_task(engine.generate("x", GenerationParams()))
        deadline = time.monotonic() + 10
        while not pidfile.exists():
            assert time.monotonic() < deadline, "agent never started"
            await asyncio.sleep(0.02)
        task.cancel()
        await task

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(go())
    pids = _read_pids(pidfile)
    reap_leftovers.extend(pids)
    assert _wait_dead(pids) == [], "cancellation left the agent or its child running"


def test_leftover_child_holding_the_pipes_does_not_hang_the_call(tmp_path, reap_leftovers):
    pidfile = tmp_path / "pids"
    started = time.monotonic()
    response = _run(_engine([PY, "-S", HANG, str(pidfile), "--exit"], tmp_path))  # no timeout at all
    assert response.text == "done\n"
    assert time.monotonic() - started < 5.0
    pids = _read_pids(pidfile)
    reap_leftovers.extend(pids)
    assert _wait_dead(pids) == []


def test_zombie_free_after_success(tmp_path):
    engine = _engine([PY, ECHO], tmp_path)

    async def go():
        await engine.generate("x", GenerationParams())
        return [p for p in Path("/proc").iterdir() if p.name.isdigit()]

    asyncio.run(go())
    me = os.getpid()
    zombies = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] == "Z" and int(fields[1]) == me:
            zombies.append(entry.name)
    assert zombies == []


def test_helpers_left_running_after_a_successful_exit_are_stopped(tmp_path) -> None:
    """A CLI agent that starts a background helper (stdio detached) and exits 0: the task is
    over, so the helper must not outlive it."""
    import os
    import sys
    import time

    from radium.engines import EngineSettings, GenerationParams, create_engine

    pid_file = tmp_path / "helper.pid"
    script = tmp_path / "bg.py"
    script.write_text(
        "import subprocess, sys\n"
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'],\n"
        "                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
        f"open({str(pid_file)!r}, 'w').write(str(p.pid))\n"
        "print('done')\n"
    )
    engine = create_engine(EngineSettings(engine="command", command=(sys.executable, str(script)), agent_id="bg"))
    response = asyncio.run(engine.generate("go", GenerationParams(timeout_s=10)))
    assert response.text.strip() == "done"
    helper = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(helper, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        raise AssertionError("the helper is still running")


def test_timeout_of_a_program_ignoring_sigterm_keeps_the_engine_message(tmp_path) -> None:
    """The executor's safety net waits for the engine's SIGTERM→SIGKILL grace, so the user
    sees the engine's message (with stderr), not a generic one."""
    import sys

    from helpers import make_workspace, manifest, run_rad, task, write_agent

    script = tmp_path / "stubborn.py"
    script.write_text(
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('working hard', file=sys.stderr, flush=True)\n"
        "time.sleep(60)\n"
    )
    ws = make_workspace(tmp_path / "ws", manifest([task("I1.T1")]), agents=())
    write_agent(ws, "writer", engine="command", command=[sys.executable, str(script)], timeout_s=0.5, max_retries=0)
    result = run_rad("craft", "REQ-001", cwd=ws, timeout=60)
    assert result.returncode == 1
    assert "did not finish within 0.5s (its process group was killed)" in result.stdout
    assert "working hard" in result.stdout
