"""``rad report``: the page of a real run (retries, a rate-limit wait, a failure, a resume,
an interrupted attempt) contains every task and attempt, and real headless Chromium draws
its timeline and graph. Model output is untrusted: nothing in it can run as script."""

from __future__ import annotations

import json
import re
import signal
import time
from pathlib import Path

from chromium import Elements, dump_dom, screenshot
from helpers import make_workspace, manifest, plan_dir, popen_rad, read_manifest, run_rad, task, tasks_by_id, wait_for_line, write_plan

INJECTION = (
    "</script><script>document.body.setAttribute('data-pwned','1')</script>"
    "<img src=x onerror=\"document.body.setAttribute('data-pwned','2')\">"
)


def report_data(page: Path) -> dict:
    text = page.read_text(encoding="utf-8")
    match = re.search(r'<script type="application/json" id="radium-data">(.*?)</script>', text, re.S)
    assert match, "no embedded data"
    return json.loads(match.group(1))


def test_report_of_a_run_with_retries_rate_limit_failure_and_resume_renders_in_chromium(tmp_path: Path) -> None:
    plan = manifest(
        [
            task("I1.T1", description="mock-fail: server_error(503)"),
            task("I1.T2", description="mock-fail: rate_limit(0.05)"),
            {**task("I1.T3", description="Untrusted: " + INJECTION), "title": "Escape <b>bold</b> & co"},
        ],
        [task("I2.T1", deps=["I1.T1", "I1.T2"]), task("I2.T2", deps=["I1.T3"])],
    )
    ws = make_workspace(tmp_path / "ws", plan)
    first = run_rad("craft", "REQ-001", "--max-retries", "0", "--keep-going", cwd=ws)
    assert first.returncode == 1, first.stdout + first.stderr
    second = run_rad("craft", "REQ-001", "--resume", "--base-delay-ms", "10", cwd=ws)
    assert second.returncode == 0, second.stdout + second.stderr

    tasks = tasks_by_id(read_manifest(ws))
    logs = {tid: t.get("attempt_log", []) for tid, t in tasks.items()}
    assert [r["outcome"] for r in logs["I1.T1"]] == ["error", "error", "ok"], logs["I1.T1"]
    assert [r["attempt"] for r in logs["I1.T1"]] == [1, 2, 3]
    assert logs["I1.T1"][0].get("wait_ms") is None  # run 1 had no retries: the task failed
    assert logs["I1.T1"][1]["wait_source"] == "backoff" and logs["I1.T1"][1]["wait_ms"] == 10
    # A server-timed 429 is waited out even with --max-retries 0: it is not a retry.
    assert [r["outcome"] for r in logs["I1.T2"]] == ["error", "ok"], logs["I1.T2"]
    assert logs["I1.T2"][0]["wait_source"] == "retry-after" and logs["I1.T2"][0]["wait_ms"] == 50
    assert logs["I1.T2"][0]["kind"] == "rate limit"
    for tid, t in tasks.items():
        assert t["attempts"] == len(logs[tid]), tid
        for record in logs[tid]:
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", record["started_at"])
            assert record["ended_at"] >= record["started_at"]

    page = tmp_path / "out" / "report.html"
    page.parent.mkdir()
    made = run_rad("report", "REQ-001", "-o", str(page), cwd=ws)
    assert made.returncode == 0, made.stderr
    assert f"Wrote {page}" in made.stdout
    raw = page.read_text(encoding="utf-8")
    assert raw.count("<script") == 2, "the untrusted text opened a script element in the file"
    assert "http://" not in raw.replace('xmlns="http://www.w3.org/2000/svg"', "").replace(
        '"http://www.w3.org/2000/svg"', ""
    ), "the page must not reference the network"
    data = report_data(page)
    assert [t["id"] for t in data["tasks"]] == list(tasks)
    for t in data["tasks"]:
        assert t["attempt_log"] == logs[t["id"]]
        assert len(t["log"]) == len(logs[t["id"]])
        assert t["output"]["text"].startswith("Mock response") and f"Do {t['id']}." in t["prompt"]["text"]
    assert data["summary"]["attempts"] == 8 and data["summary"]["failed_attempts"] == 3
    assert data["summary"]["waits_ms"] == {"backoff": 10, "retry-after": 50}
    assert data["tasks"][2]["title"] == "Escape <b>bold</b> & co"

    profile = tmp_path / "chrome"
    dom = dump_dom(page, profile)
    found = Elements(dom)
    body = found.find("body")[0]
    assert body.get("data-rendered") == "true", "the page script did not finish"
    assert "data-pwned" not in body, "model output ran as script"
    assert found.find("img") == []
    assert "Escape &lt;b&gt;bold&lt;/b&gt; &amp; co" in dom
    # Timeline: one row per task, one bar per attempt, one bar per wait.
    rows = found.find("g", cls="row")
    assert [r["data-task"] for r in rows] == list(tasks)
    assert len(found.find("rect", cls="attempt")) == 8
    assert len(found.find("rect", cls="error")) == 3 and len(found.find("rect", cls="ok")) == 5
    assert len(found.find("rect", cls="backoff")) == 1 and len(found.find("rect", cls="retry-after")) == 1
    assert found.find("rect", cls="waiting"), "the activity strip shows the waits"
    # Graph: every task a node, every dependency an edge.
    assert sorted(n["data-task"] for n in found.find("g", cls="node")) == sorted(tasks)
    edges = {(e["data-from"], e["data-to"]) for e in found.find("path", cls="edge")}
    assert edges == {("I1.T1", "I2.T1"), ("I1.T2", "I2.T1"), ("I1.T3", "I2.T2")}
    assert [d["id"] for d in found.find("details", cls="task")] == [f"task-{tid}" for tid in tasks]
    shot = screenshot(page, profile, "report.png")
    assert shot.stat().st_size > 10_000

    default = run_rad("report", "REQ-1", cwd=ws)
    assert default.returncode == 0 and (plan_dir(ws) / "report.html").is_file(), default.stderr


def test_report_bad_input_is_one_line_exit_2(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws", manifest([task("I1.T1")]))
    for args in (("report", "REQ-9"), ("report", "REQ-001", "-o", str(tmp_path / "missing" / "r.html")), ("report",)):
        result = run_rad(*args, cwd=ws)
        assert result.returncode == 2, (args, result.stderr)
        assert "Traceback" not in result.stderr and result.stderr.strip().count("\n") <= 3


def test_interrupted_attempt_is_recorded_and_drawn(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws", manifest([task("I1.T1", description="mock-delay-ms: 30000")]))
    process = popen_rad("craft", "REQ-001", cwd=ws)
    wait_for_line(process, "→ I1.T1")
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=30) == 130
    process.stdout.close()
    process.stderr.close()
    record = tasks_by_id(read_manifest(ws))["I1.T1"]
    assert record["status"] == "pending"
    assert [(r["attempt"], r["outcome"]) for r in record["attempt_log"]] == [(1, "interrupted")]
    made = run_rad("report", "REQ-001", cwd=ws)
    assert made.returncode == 0, made.stderr
    found = Elements(dump_dom(plan_dir(ws) / "report.html", tmp_path / "chrome"))
    assert len(found.find("rect", cls="interrupted")) == 1


def test_report_of_10000_tasks_stays_small_and_renders_lazily(tmp_path: Path) -> None:
    iterations = []
    for i in range(1, 11):
        tasks = []
        for n in range(1, 1001):
            deps = [f"I{i}.T{n - 1}"] if n > 1 and n % 10 else []
            second = f"{n % 60:02d}"
            record = {"attempt": 1, "started_at": f"2026-01-01T10:{i:02d}:{second}.000+00:00",
                      "ended_at": f"2026-01-01T10:{i:02d}:{second}.400+00:00", "outcome": "ok"}
            tasks.append({**task(f"I{i}.T{n}", deps=deps), "completed": True, "status": "completed", "attempts": 1,
                          "usage": {"prompt_tokens": 100, "completion_tokens": 50}, "attempt_log": [record],
                          "output_path": f"artifacts/tasks/I{i}.T{n}.md"})
        iterations.append(tasks)
    ws = make_workspace(tmp_path / "ws")
    folder = write_plan(ws, manifest(*iterations))
    (folder / "artifacts" / "tasks").mkdir(parents=True)
    for i in range(1, 11):
        for n in range(1, 1001):
            (folder / "artifacts" / "tasks" / f"I{i}.T{n}.md").write_text("answer " * 400, encoding="utf-8")
    started = time.monotonic()
    made = run_rad("report", "REQ-001", cwd=ws, timeout=120)
    took = time.monotonic() - started
    assert made.returncode == 0, made.stderr
    page = folder / "report.html"
    size = page.stat().st_size
    assert size < 15_000_000, size
    assert took < 30, took
    data = report_data(page)
    assert len(data["tasks"]) == 10_000 and data["graph"]["mode"] == "iterations"
    assert len(data["tasks"][0]["output"]["text"]) == data["text_cap"] < 2800
    found = Elements(dump_dom(page, tmp_path / "chrome"))
    assert found.find("body")[0].get("data-rendered") == "true"
    assert 10 < len(found.find("g", cls="row")) < 200, "the timeline must draw only the rows in view"
    assert len(found.find("g", cls="agg")) == 10
    assert len(found.find("details", cls="task")) == 200


def test_idle_time_between_runs_is_folded_and_gate_and_header_waits_are_drawn(tmp_path: Path) -> None:
    day1, day2 = "2026-03-01T10:00:", "2026-03-02T10:00:"
    t1 = {**task("I1.T1"), "completed": True, "status": "completed", "attempts": 2, "attempt_log": [
        {"attempt": 1, "started_at": day1 + "00.000+00:00", "ended_at": day1 + "01.000+00:00", "outcome": "error",
         "category": "recoverable", "kind": "rate limit", "message": "429", "wait_ms": 2000,
         "wait_source": "x-ratelimit-reset-requests"},
        {"attempt": 2, "started_at": day1 + "03.000+00:00", "ended_at": day1 + "04.000+00:00", "outcome": "ok",
         "rate_limit_wait_ms": 500},
    ], "rate_limit_wait_ms": 2500}
    t2 = {**task("I1.T2"), "completed": True, "status": "completed", "attempts": 1, "attempt_log": [
        {"attempt": 1, "started_at": day2 + "00.000+00:00", "ended_at": day2 + "02.000+00:00", "outcome": "ok"}]}
    ws = make_workspace(tmp_path / "ws")
    folder = write_plan(ws, manifest([t1, t2, task("I1.T3")]))
    made = run_rad("report", "REQ-001", cwd=ws)
    assert made.returncode == 0, made.stderr
    data = report_data(folder / "report.html")
    assert [b["idle_ms"] for b in data["axis"]["breaks"]] == [86_396_000]
    assert data["summary"]["busy_ms"] == 6000 and data["summary"]["idle_folded_ms"] == 86_396_000
    assert data["summary"]["waits_ms"] == {"x-ratelimit-reset-requests": 2000}
    assert data["summary"]["rate_limit_wait_ms"] == 500
    first, second = data["tasks"][0]["log"], data["tasks"][1]["log"]
    assert first[0][:2] == [0.0, 1000.0] and first[0][3] == 3000.0 and first[1][5] == 3500.0
    assert 4000 < second[0][0] < 4000 + 1000, "a day of idle time must fold into a short break"
    assert data["axis"]["length"] < 7000
    found = Elements(dump_dom(folder / "report.html", tmp_path / "chrome"))
    assert len(found.find("line", cls="break-line")) == 1
    assert len(found.find("rect", cls="gate")) == 1 and len(found.find("rect", cls="server")) == 1
    assert [r["data-task"] for r in found.find("g", cls="row")] == ["I1.T1", "I1.T2", "I1.T3"]


def test_a_wait_cut_by_ctrl_c_is_recorded_as_waited(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws", manifest([task("I1.T1", description="mock-fail: rate_limit(30)")]))
    process = popen_rad("craft", "REQ-001", cwd=ws)
    wait_for_line(process, "I1.T1 rate limited by mock: waiting 30s (retry-after)")
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=30) == 130
    process.stdout.close()
    process.stderr.close()
    [record] = tasks_by_id(read_manifest(ws))["I1.T1"]["attempt_log"]
    assert record["outcome"] == "error" and record["wait_source"] == "retry-after"
    assert 0 <= record["wait_ms"] < 25_000, "the 30 s wait was cut by Ctrl+C and must not be drawn whole"
