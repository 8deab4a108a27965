"""Plans outlast real provider rate limits: real CLI, official SDKs, a real HTTP server.

The fake provider (``tests/fake_provider.py``) runs in this process on 127.0.0.1; ``rad
craft`` runs as a subprocess whose agents point at it. The server's request log (arrival
times) is the ground truth for when each request really went out, and the ``--json``
events for what Radium decided to wait and why.

Waits are asserted two ways: the wait Radium computed (``delay_ms`` of the event) must be
the header's value within 10 %, and the next request must not reach the server before
the time the header named (a lower bound, which load cannot break). The upper bound on
the measured gap is loose on purpose (it only shows that the wait was not doubled or
stacked with a backoff): a loaded 2-core CI machine may delay a process by a few hundred
milliseconds, and a test must not fail for that.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path

import pytest

from fake_provider import FakeProvider, ok, status, stall
from helpers import events, make_workspace, manifest, rad_env, read_manifest, run_rad, task, tasks_by_id, write_agent

KEY_VARS = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY", "gemini": "GEMINI_API_KEY"}
MODELS = {"openai": "gpt-fake", "anthropic": "claude-fake", "gemini": "gemini-fake"}
WAIT_S = 1.0


def base_url(server: FakeProvider, engine: str) -> str:
    return {"openai": server.openai_base_url, "anthropic": server.anthropic_base_url, "gemini": server.gemini_base_url}[engine]


def workspace(tmp_path: Path, server: FakeProvider, engine: str, tasks: list[dict]) -> tuple[Path, dict[str, str]]:
    ws = make_workspace(tmp_path / "ws", manifest(tasks), agents=())
    write_agent(ws, "remote", engine=engine, model=MODELS[engine], base_url=base_url(server, engine))
    return ws, rad_env(ws, {KEY_VARS[engine]: "sk-test-ratelimit-000000000000"})


def craft(ws: Path, env: dict[str, str], *args: str, timeout: float = 120):
    return run_rad("craft", "REQ-001", "--yolo", "--json", *args, cwd=ws, env=env, timeout=timeout)


def gap_after_first(server: FakeProvider, endpoint: str) -> float:
    times = [r.time for r in server.requests_for(endpoint)]
    return times[1] - times[0]


# (engine, headers of the 429, expected source, expected wait in seconds)
HEADER_CASES = [
    ("openai", {"Retry-After": "1"}, "retry-after", WAIT_S),
    ("anthropic", {"Retry-After": "1"}, "retry-after", WAIT_S),
    ("openai", {"retry-after-ms": "1000"}, "retry-after-ms", WAIT_S),
    ("anthropic", {"retry-after-ms": "1000"}, "retry-after-ms", WAIT_S),
    ("openai", {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1s"}, "x-ratelimit-reset-requests", WAIT_S),
    ("openai", {"x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "1000ms"}, "x-ratelimit-reset-tokens", WAIT_S),
    ("openai", {"llm_provider-retry-after": "1"}, "llm_provider-retry-after", WAIT_S),
    *[
        ("anthropic", {f"anthropic-ratelimit-{d}-remaining": "0", f"anthropic-ratelimit-{d}-reset": "RFC3339"}, f"anthropic-ratelimit-{d}-reset", WAIT_S)
        for d in ("requests", "tokens", "input-tokens", "output-tokens")
    ],
]


@pytest.mark.parametrize(
    "engine,headers,source,seconds", HEADER_CASES, ids=[f"{c[0]}-{c[2]}" for c in HEADER_CASES]
)
def test_each_reset_header_is_waited_out(tmp_path, fake, engine, headers, source, seconds) -> None:
    # RFC 3339 resets are absolute times: the server makes them as it answers ("@+1"),
    # so the remaining wait the client sees is a hair under WAIT_S.
    headers = {k: (f"@+{seconds}" if v == "RFC3339" else v) for k, v in headers.items()}
    fake.script(engine, status(429, headers=headers), ok("done"))
    ws, env = workspace(tmp_path, fake, engine, [task("I1.T1", agent="remote")])
    result = craft(ws, env)
    assert result.returncode == 0, result.stderr
    (failed,) = [e for e in events(result.stdout) if e["event"] == "attempt_failed"]
    assert failed["wait_source"] == source
    assert failed["counted"] is False  # a server-timed wait is not a retry
    absolute = source.startswith("anthropic-ratelimit-")  # a time, not a duration: what is left of it
    low = 0 if absolute else seconds * 0.9 * 1000
    assert low < failed["delay_ms"] <= seconds * 1.1 * 1000
    assert failed["line"].startswith(f"I1.T1 rate limited by {engine}")
    assert f"({source})" in failed["line"]
    gap = gap_after_first(fake, engine)
    # Never before the time the server named (for an absolute time: its answer went out
    # right after the first request arrived), and not a doubled or stacked wait either.
    assert (seconds - 0.05 if absolute else failed["delay_ms"] / 1000 - 0.05) <= gap < seconds + 1.5
    finished = events(result.stdout)[-1]
    assert finished["retries"] == 1 and finished["rate_limit_wait_ms"] >= failed["delay_ms"] - 1


def test_http_date_retry_after(tmp_path, fake) -> None:
    when = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(seconds=2)
    fake.script("openai", status(429, headers={"Retry-After": format_datetime(when, usegmt=True)}), ok())
    ws, env = workspace(tmp_path, fake, "openai", [task("I1.T1", agent="remote")])
    result = craft(ws, env)
    assert result.returncode == 0, result.stderr
    second = fake.requests_for("openai")[1].time
    assert second >= when.timestamp() - 0.05  # never before the date the server named
    assert second < when.timestamp() + 1.5


def test_gemini_retry_info_in_the_body(tmp_path, fake) -> None:
    body = {
        "error": {
            "code": 429,
            "message": "Resource has been exhausted",
            "status": "RESOURCE_EXHAUSTED",
            "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1s"}],
        }
    }
    fake.script("gemini", status(429, body=body), ok())
    ws, env = workspace(tmp_path, fake, "gemini", [task("I1.T1", agent="remote")])
    result = craft(ws, env)
    assert result.returncode == 0, result.stderr
    (failed,) = [e for e in events(result.stdout) if e["event"] == "attempt_failed"]
    assert (failed["wait_source"], failed["delay_ms"], failed["counted"]) == ("RetryInfo.retryDelay", 1000, False)
    assert 0.95 <= gap_after_first(fake, "gemini") < WAIT_S + 1.5


def test_five_server_timed_429s_in_a_row_succeed_with_default_settings(tmp_path, fake) -> None:
    fake.script("openai", *[status(429, headers={"retry-after-ms": "50"})] * 5, ok("finally"))
    ws, env = workspace(tmp_path, fake, "openai", [task("I1.T1", agent="remote")])
    result = craft(ws, env)  # default --max-retries 3: none of the five waits uses one
    assert result.returncode == 0, result.stderr
    failures = [e for e in events(result.stdout) if e["event"] == "attempt_failed"]
    assert [(e["attempt"], e["counted"]) for e in failures] == [(n, False) for n in range(1, 6)]
    assert len(fake.requests_for("openai")) == 6
    saved = tasks_by_id(read_manifest(ws))["I1.T1"]
    assert saved["status"] == "completed" and saved["attempts"] == 6 and saved["rate_limit_wait_ms"] >= 250


def test_a_429_without_a_hint_still_uses_the_seed_retries(tmp_path, fake) -> None:
    fake.script("openai", *[status(429)] * 4)
    ws, env = workspace(tmp_path, fake, "openai", [task("I1.T1", agent="remote")])
    result = craft(ws, env, "--base-delay-ms", "10")
    assert result.returncode == 1
    failures = [e for e in events(result.stdout) if e["event"] == "attempt_failed"]
    assert [(e["counted"], e["delay_ms"], e["wait_source"]) for e in failures] == [
        (True, 10, "backoff"), (True, 20, "backoff"), (True, 40, "backoff")
    ]
    assert len(fake.requests_for("openai")) == 4


def test_total_rate_limit_wait_is_bounded_per_task(tmp_path, fake) -> None:
    fake.script("openai", *[status(429, headers={"retry-after-ms": "300"})] * 10)
    ws, env = workspace(tmp_path, fake, "openai", [task("I1.T1", agent="remote")])
    result = craft(ws, env, "--max-rate-limit-wait-s", "1")
    assert result.returncode == 1
    (failed,) = [e for e in events(result.stdout) if e["event"] == "task_failed"]
    assert failed["kind"] == "rate limit wait exceeded"
    assert "more than max_rate_limit_wait_s (1 s)" in failed["message"]
    assert len(fake.requests_for("openai")) == 4  # three 300 ms waits fit in 1 s, a fourth does not


def test_a_reset_learned_by_one_task_holds_the_others(tmp_path, fake) -> None:
    # T1 is refused with Retry-After 1; T2's slow answer frees a slot only after that, so
    # T3 starts while the provider is blocked: it must wait for the reset T1 learned.
    fake.script(
        "openai",
        status(429, headers={"Retry-After": "1"}, when="I1.T1"),
        stall(0.3, when="I1.T2"),
    )
    ws, env = workspace(tmp_path, fake, "openai", [task(f"I1.T{n}", agent="remote") for n in (1, 2, 3)])
    result = craft(ws, env, "--parallel", "2")
    assert result.returncode == 0, result.stderr
    refused = next(r for r in fake.requests_for("openai") if r.step == "status")
    third = next(r for r in fake.requests_for("openai") if "I1.T3" in str(r.body))
    assert third.time >= refused.time + 0.95  # nobody sends before the reset
    waits = [e for e in events(result.stdout) if e["event"] == "rate_limit_wait"]
    assert waits and waits[0]["task_id"] == "I1.T3" and waits[0]["learned_by"] == "I1.T1"
    assert waits[0]["line"].startswith("I1.T3 rate limited by openai")
    assert "learned by I1.T1" in waits[0]["line"]


def test_a_success_with_nothing_remaining_delays_the_next_request(tmp_path, fake) -> None:
    exhausted = {"x-ratelimit-limit-requests": "5", "x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1s"}
    fake.script("openai", ok("first", headers=exhausted))
    ws, env = workspace(tmp_path, fake, "openai", [task("I1.T1", agent="remote"), task("I1.T2", agent="remote")])
    result = craft(ws, env)
    assert result.returncode == 0, result.stderr
    assert gap_after_first(fake, "openai") >= 0.95
    (wait,) = [e for e in events(result.stdout) if e["event"] == "rate_limit_wait"]
    assert (wait["task_id"], wait["source"], wait["learned_by"]) == ("I1.T2", "x-ratelimit-reset-requests", "I1.T1")
    assert 0 < wait["delay_ms"] <= 1000  # what was left of the reset when I1.T2 reached the gate
    assert not [e for e in events(result.stdout) if e["event"] == "attempt_failed"]  # no 429 was needed


@pytest.mark.parametrize("dialect", ["openai", "anthropic"])
def test_sixteen_tasks_at_parallel_8_through_a_sliding_window_all_complete(tmp_path, fake, dialect) -> None:
    fake.window(dialect, limit=4, window_s=0.5, dialect=dialect)
    ws, env = workspace(tmp_path, fake, dialect, [task(f"I1.T{n}", agent="remote") for n in range(1, 17)])
    result = craft(ws, env, "--parallel", "8")
    assert result.returncode == 0, result.stderr
    finished = events(result.stdout)[-1]
    assert (finished["completed"], finished["failed"]) == (16, 0)
    requests = fake.requests_for(dialect)
    refused = [r for r in requests if r.step == "window-429"]
    # The shared limiter stops at "remaining: 0" instead of stampeding: at most the
    # first burst (before any answer told us the limit) meets a 429.
    assert len(refused) <= 4, [r.step for r in requests]
    assert finished["rate_limited_requests"] == len(refused)


def test_client_side_rpm_paces_requests(tmp_path, fake) -> None:
    ws, env = workspace(tmp_path, fake, "openai", [task(f"I1.T{n}", agent="remote") for n in range(1, 6)])
    (ws / ".radium" / "config.toml").write_text("[rate_limits.openai]\nrpm = 600\n")  # one per 100 ms
    result = craft(ws, env, "--parallel", "5")
    assert result.returncode == 0, result.stderr
    # The limiter spaced the five parallel calls at least 100 ms apart: each attempt's
    # recorded start is its send time, after the gate. (Server arrival times are no
    # measure here: under load, opening a connection per parallel call can delay the
    # first arrivals and compress the span.)
    sent = sorted(
        datetime.fromisoformat(t["attempt_log"][0]["started_at"]) for t in tasks_by_id(read_manifest(ws)).values()
    )
    gaps = [(b - a).total_seconds() for a, b in zip(sent, sent[1:])]
    assert all(gap >= 0.095 for gap in gaps), gaps


def test_bad_pacing_config_is_one_line(tmp_path, fake) -> None:
    ws, env = workspace(tmp_path, fake, "openai", [task("I1.T1", agent="remote")])
    (ws / ".radium" / "config.toml").write_text("[rate_limits.openai]\nrpm = -1\n")
    result = craft(ws, env)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "rate_limits.openai.rpm" in result.stderr and fake.requests == []


def test_human_output_names_task_provider_and_source_and_totals_the_waits(tmp_path, fake) -> None:
    fake.script("openai", status(429, headers={"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "200ms"}))
    ws, env = workspace(tmp_path, fake, "openai", [task("I1.T1", agent="remote")])
    result = run_rad("craft", "REQ-001", cwd=ws, env=env)
    assert result.returncode == 0, result.stderr
    assert "I1.T1 rate limited by openai (http://127.0.0.1:" in result.stdout
    assert "waiting 200ms (x-ratelimit-reset-requests)" in result.stdout
    assert "I1.T1 Attempt 2: Success!" in result.stdout
    assert "Rate limits: 1 request(s) answered 429 · 200ms spent waiting" in result.stdout
    status_out = run_rad("status", "REQ-001", cwd=ws, env=env)
    assert "200ms" in status_out.stdout  # rad status shows it per task
