"""``rad craft`` end to end against a fake provider: real CLI, real SDKs, real HTTP.

The fake provider (``tests/fake_provider.py``) runs as its own process; the CLI runs as
``python -m radium`` with agents whose ``base_url`` points at it. The server's request log
(arrival times) is the ground truth for how many attempts were made and how long the
executor waited between them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import events, make_workspace, manifest, rad_env, read_manifest, run_rad, task, write_agent

try:
    from fake_provider import SECRET_KEY, fetch_log
except ImportError:  # tests/ imported as a package
    from tests.fake_provider import SECRET_KEY, fetch_log

FAKE = str(Path(__file__).parent / "fake_provider.py")
KEY_VARS = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY", "gemini": "GEMINI_API_KEY"}
MODELS = {"openai": "gpt-fake", "anthropic": "claude-fake", "gemini": "gemini-fake"}


class FakeServer:
    """The fake provider as a separate process."""

    def __init__(self, directory: Path, script: dict[str, list[dict]]) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        port_file = directory / "port"
        self.proc = subprocess.Popen(
            [sys.executable, FAKE, "--port-file", str(port_file), "--script", json.dumps(script)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 15
        while not port_file.exists():
            assert self.proc.poll() is None, "fake provider died"
            assert time.monotonic() < deadline, "fake provider did not start"
            time.sleep(0.02)
        self.url = f"http://127.0.0.1:{int(port_file.read_text())}"

    def base_url(self, engine: str) -> str:
        return f"{self.url}/v1" if engine == "openai" else self.url

    def log(self, endpoint: str | None = None) -> list[dict]:
        entries = fetch_log(self.url)
        return [e for e in entries if endpoint is None or e["endpoint"] == endpoint]

    def gaps(self, endpoint: str) -> list[float]:
        times = [e["time"] for e in self.log(endpoint)]
        return [b - a for a, b in zip(times, times[1:])]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def servers(tmp_path):
    started: list[FakeServer] = []

    def start(script: dict[str, list[dict]]) -> FakeServer:
        server = FakeServer(tmp_path / f"server{len(started)}", script)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def _workspace(tmp_path: Path, server: FakeServer, engine: str, **agent) -> Path:
    ws = make_workspace(tmp_path / "ws", manifest([task("I1.T1")]))
    fields = {"model": MODELS[engine], "base_url": server.base_url(engine), "timeout_s": 5}
    fields.update(agent)
    write_agent(ws, "writer", engine=engine, **fields)
    return ws


def _env(ws: Path, *engines: str) -> dict[str, str]:
    return rad_env(ws, {KEY_VARS[e]: SECRET_KEY for e in engines})


def _craft(ws: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run_rad("craft", "REQ-001", "--json", *args, cwd=ws, env=env, timeout=90)


def _failures(result) -> list[dict]:
    return [e for e in events(result.stdout) if e["event"] == "attempt_failed"]


def _task_failed(result) -> dict:
    [failed] = [e for e in events(result.stdout) if e["event"] == "task_failed"]
    return failed


def _status(code: int, **headers: str) -> dict:
    return {"kind": "status", "status": code, "headers": headers}


# ------------------------------------------------------------------ server-requested waits


@pytest.mark.parametrize(
    "engine,step,floor_s",
    [
        pytest.param("openai", _status(429, **{"Retry-After": "1"}), 1.0, id="openai-Retry-After"),
        pytest.param("anthropic", _status(429, **{"retry-after-ms": "1200"}), 1.2, id="anthropic-retry-after-ms"),
        pytest.param(
            "gemini",
            {
                "kind": "status",
                "status": 429,
                "body": {
                    "error": {
                        "code": 429,
                        "message": "quota",
                        "status": "RESOURCE_EXHAUSTED",
                        "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1s"}],
                    }
                },
            },
            1.0,
            id="gemini-RetryInfo",
        ),
    ],
)
def test_server_requested_wait_beats_a_small_base_delay(tmp_path, servers, engine, step, floor_s):
    server = servers({engine: [step, {"kind": "ok", "text": "after the wait"}]})
    ws = _workspace(tmp_path, server, engine)
    result = _craft(ws, "--base-delay-ms", "10", env=_env(ws, engine))
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(server.log(engine)) == 2
    [gap] = server.gaps(engine)
    assert gap >= floor_s - 0.01, f"retried after {gap:.3f}s, before the server's {floor_s}s"
    assert gap < floor_s + 1.5
    [failure] = _failures(result)
    assert failure["kind"] == "rate limit" and failure["category"] == "recoverable"
    assert failure["delay_ms"] == pytest.approx(floor_s * 1000)
    assert read_manifest(ws)["iterations"][0]["tasks"][0]["status"] == "completed"


@pytest.mark.parametrize(
    "engine,retry_after,extra_args",
    [
        pytest.param("openai", "600", (), id="above-default-300s"),
        pytest.param("anthropic", "5", ("--max-retry-after-s", "2"), id="above-flag"),
    ],
)
def test_retry_after_above_the_ceiling_fails_fast(tmp_path, servers, engine, retry_after, extra_args):
    server = servers({engine: [_status(429, **{"Retry-After": retry_after}), {"kind": "ok"}]})
    ws = _workspace(tmp_path, server, engine)
    result = _craft(ws, "--base-delay-ms", "10", *extra_args, env=_env(ws, engine))
    finished = time.time()
    assert result.returncode == 1
    [request] = server.log(engine)  # no retry after a Retry-After above the ceiling
    failed = _task_failed(result)
    assert failed["category"] == "fatal"
    assert retry_after in failed["message"]
    assert "max_retry_after" in failed["message"] or "max-retry-after" in failed["message"]
    assert finished - request["time"] < float(retry_after)  # it did not wait


def test_retry_after_ceiling_from_config_file(tmp_path, servers):
    server = servers({"openai": [_status(429, **{"Retry-After": "4"}), {"kind": "ok"}]})
    ws = _workspace(tmp_path, server, "openai")
    (ws / ".radium" / "config.toml").write_text("[execution]\nmax_retry_after_s = 1\n", encoding="utf-8")
    result = _craft(ws, env=_env(ws, "openai"))
    assert result.returncode == 1
    assert len(server.log("openai")) == 1


# ------------------------------------------------------------------ recoverable faults


def _fault(kind: str) -> dict:
    if kind == "stall":
        return {"kind": "stall", "seconds": 2.0}
    if kind == "drop":
        return {"kind": "drop"}
    return _status(int(kind))


@pytest.mark.parametrize(
    "engine,fault,expected_kind",
    [
        ("openai", "500", "server error"),
        ("anthropic", "502", "server error"),
        ("gemini", "503", "server error"),
        ("anthropic", "529", "server error"),
        ("openai", "stall", "timeout"),
        ("gemini", "drop", "connection"),
    ],
)
def test_recoverable_faults_retry_with_exponential_backoff(tmp_path, servers, engine, fault, expected_kind):
    server = servers({engine: [_fault(fault), _fault(fault), {"kind": "ok", "text": "recovered"}]})
    timeout = 0.5 if fault == "stall" else 10
    ws = _workspace(tmp_path, server, engine, timeout_s=timeout)
    result = _craft(ws, "--base-delay-ms", "200", "--max-retries", "3", env=_env(ws, engine))
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(server.log(engine)) == 3, "exactly two retries, then success"
    failures = _failures(result)
    assert [f["kind"] for f in failures] == [expected_kind, expected_kind]
    assert [f["delay_ms"] for f in failures] == [200, 400]  # base * 2^k
    gaps = server.gaps(engine)
    for k, gap in enumerate(gaps):
        wait = 0.2 * 2**k
        slack = timeout if fault == "stall" else 0.0  # the stalled attempt's own time
        assert gap >= wait - 0.01, f"gap {k} = {gap:.3f}s < {wait}s"
        assert gap < wait + slack + 1.0, f"gap {k} = {gap:.3f}s, far above {wait}s"
    artifact = ws / ".radium" / "plan" / "backlog" / "REQ-001-test" / "artifacts" / "tasks" / "I1.T1.md"
    assert "recovered" in artifact.read_text(encoding="utf-8")


def test_retries_exhausted_fails_with_the_last_error(tmp_path, servers):
    server = servers({"openai": [_status(503)] * 3})
    ws = _workspace(tmp_path, server, "openai")
    result = _craft(ws, "--base-delay-ms", "10", "--max-retries", "2", env=_env(ws, "openai"))
    assert result.returncode == 1
    assert len(server.log("openai")) == 3
    failed = _task_failed(result)
    assert "HTTP 503" in failed["message"] and failed["category"] == "recoverable"


# ------------------------------------------------------------------ fatal faults


@pytest.mark.parametrize(
    "engine,code,fix",
    [
        ("openai", 401, "check OPENAI_API_KEY"),
        ("anthropic", 403, "ANTHROPIC_API_KEY"),
        ("gemini", 400, "check the model and its parameters"),
        ("openai", 404, "check the model name 'gpt-fake'"),
    ],
)
def test_fatal_statuses_stop_after_one_request(tmp_path, servers, engine, code, fix):
    server = servers({engine: [_status(code), {"kind": "ok"}]})
    ws = _workspace(tmp_path, server, engine)
    result = run_rad("craft", "REQ-001", "--base-delay-ms", "10", cwd=ws, env=_env(ws, engine), timeout=90)
    assert result.returncode == 1
    assert len(server.log(engine)) == 1
    output = result.stdout + result.stderr
    assert f"{engine}: HTTP {code}" in output  # engine and status
    assert fix in output  # what to do
    assert "fatal" in output
    assert "Attempt 1:" not in output  # no retry line
    assert "Traceback" not in output


@pytest.mark.parametrize("engine", ["openai", "anthropic", "gemini"])
def test_missing_key_exits_2_before_any_request(tmp_path, servers, engine):
    server = servers({})
    ws = _workspace(tmp_path, server, engine)
    result = run_rad("craft", "REQ-001", cwd=ws, env=rad_env(ws), timeout=90)
    assert result.returncode == 2
    output = result.stdout + result.stderr
    assert KEY_VARS[engine] in output
    assert "writer" in output  # names the agent
    assert "Traceback" not in output
    assert server.log() == []


# ------------------------------------------------------------------ secrets


def test_the_api_key_never_reaches_a_file_or_the_output(tmp_path, servers):
    echo = {"echo_key": True}
    transient = [
        {**_status(429, **{"Retry-After": "0"}), **echo},
        {**_status(500), **echo},
        {"kind": "drop"},
        {"kind": "stall", "seconds": 1.5},
        {"kind": "ok"},
    ]
    fatal_codes = {"openai": (401, 400), "anthropic": (403, 401), "gemini": (404, 403)}
    script = {
        engine: [*transient, *({**_status(code), **echo} for code in codes)]
        for engine, codes in fatal_codes.items()
    }
    server = servers(script)
    ws = make_workspace(
        tmp_path / "ws",
        manifest([task("I1.T1", agent="a-openai"), task("I1.T2", agent="a-anthropic"), task("I1.T3", agent="a-gemini")]),
        agents=(),
    )
    for engine in ("openai", "anthropic", "gemini"):
        write_agent(ws, f"a-{engine}", engine=engine, model=MODELS[engine], base_url=server.base_url(engine), timeout_s=0.5)
    env = _env(ws, "openai", "anthropic", "gemini")
    outputs: list[str] = []
    runs = [
        ("craft", "REQ-001", "--keep-going", "--max-retries", "5", "--base-delay-ms", "10"),  # transient, then ok
        ("craft", "REQ-001", "--keep-going", "--restart", "--json"),  # 401 / 403 / 404
        ("--debug", "craft", "REQ-001", "--keep-going", "--restart"),  # 400 / 401 / 403, tracebacks allowed
    ]
    for args in runs:
        result = run_rad(*args, cwd=ws, env=env, timeout=90)
        outputs += [result.stdout, result.stderr]
    outputs.append(run_rad("status", "REQ-001", cwd=ws, env=env).stdout)
    for engine in ("openai", "anthropic", "gemini"):
        assert len(server.log(engine)) == 7, f"{engine}: every scripted step was used"
    # the key was really sent, and really echoed back
    assert any(SECRET_KEY in json.dumps(entry["headers"]) for entry in server.log())
    text = "\n".join(outputs)
    assert "[REDACTED]" in text
    assert SECRET_KEY not in text
    assert "SECRET-1234567890" not in text
    leaked = [
        str(path)
        for path in ws.rglob("*")
        if path.is_file() and b"SECRET-1234567890" in path.read_bytes()
    ]
    assert leaked == []
