"""Cost per task (tokens x price from genai-prices, or the agent's ``price``) and run budgets
(``--max-tokens``, ``--max-cost-usd``): real CLI, real files, and a real HTTP fake provider."""

from __future__ import annotations

import json
from pathlib import Path

from genai_prices import Usage, calc_price

from fake_provider import SECRET_KEY, ok
from helpers import events, make_workspace, manifest, rad_env, read_manifest, run_rad, task, tasks_by_id, write_agent


def database_price_per_mtok(model: str, provider: str) -> tuple[float, float]:
    """The price database's USD per million input / output tokens for ``model``."""
    price = calc_price(Usage(input_tokens=1, output_tokens=1), model, provider_id=provider).model_price
    return float(price.input_mtok), float(price.output_mtok)


def chain(n: int) -> dict:
    return manifest([task(f"I1.T{k}", deps=[f"I1.T{k - 1}"] if k > 1 else []) for k in range(1, n + 1)])


def test_cost_of_a_priced_model_is_tokens_times_the_database_price(tmp_path: Path, fake) -> None:
    fake.script("openai", ok(prompt_tokens=1200, completion_tokens=345), ok(prompt_tokens=800, completion_tokens=55))
    ws = make_workspace(tmp_path / "ws", chain(2), agents=())
    write_agent(ws, "writer", engine="openai", model="gpt-4o-mini", base_url=fake.openai_base_url)
    env = rad_env(ws, {"OPENAI_API_KEY": SECRET_KEY})
    result = run_rad("craft", "REQ-001", "--json", cwd=ws, env=env)
    assert result.returncode == 0, result.stderr
    per_in, per_out = database_price_per_mtok("gpt-4o-mini", "openai")
    assert per_in > 0 and per_out > 0
    usage = {"I1.T1": {"prompt_tokens": 1200, "completion_tokens": 345},
             "I1.T2": {"prompt_tokens": 800, "completion_tokens": 55}}
    expected = {"I1.T1": (1200 * per_in + 345 * per_out) / 1e6, "I1.T2": (800 * per_in + 55 * per_out) / 1e6}
    tasks = tasks_by_id(read_manifest(ws))
    for tid, cost in expected.items():
        assert tasks[tid]["usage"] == usage[tid]
        assert abs(tasks[tid]["cost_usd"] - cost) < 1e-12, (tid, tasks[tid]["cost_usd"], cost)
    stream = events(result.stdout)
    completed = {e["task_id"]: e["cost_usd"] for e in stream if e["event"] == "task_completed"}
    assert completed == {tid: tasks[tid]["cost_usd"] for tid in expected}
    finished = stream[-1]
    assert finished["event"] == "run_finished" and finished["unpriced_tasks"] == []
    assert abs(finished["cost_usd"] - sum(expected.values())) < 1e-12
    status = json.loads(run_rad("status", "REQ-001", "--json", cwd=ws, env=env).stdout)
    assert abs(status["cost_usd"] - sum(expected.values())) < 1e-12
    assert [t["cost_usd"] for t in status["iterations"][0]["tasks"]] == [tasks["I1.T1"]["cost_usd"], tasks["I1.T2"]["cost_usd"]]
    human = run_rad("status", "REQ-001", cwd=ws, env=env).stdout
    assert "cost $0.0" in human


def test_unknown_price_is_unknown_never_zero(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws", chain(1))  # the mock engine has no price
    result = run_rad("craft", "REQ-001", cwd=ws)
    assert result.returncode == 0, result.stderr
    assert "Cost: unknown" in result.stdout and "cost unknown" in result.stdout
    assert "cost_usd" not in tasks_by_id(read_manifest(ws))["I1.T1"]
    status = json.loads(run_rad("status", "REQ-001", "--json", cwd=ws).stdout)
    assert status["cost_usd"] is None and status["unpriced_tasks"] == 1
    assert "cost unknown" in run_rad("status", "REQ-001", cwd=ws).stdout


def test_agent_price_override_prices_a_self_hosted_model(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws", chain(1), agents=())
    (ws / "prompts").mkdir(exist_ok=True)
    (ws / "prompts" / "writer.md").write_text("Do {{task_id}}.", encoding="utf-8")
    (ws / "agents").mkdir(exist_ok=True)
    (ws / "agents" / "writer.toml").write_text(
        '[agent]\nid = "writer"\nname = "W"\nprompt_path = "../prompts/writer.md"\nengine = "mock"\n'
        "price = { input_per_mtok = 0.5, output_per_mtok = 1.5 }\n",
        encoding="utf-8",
    )
    result = run_rad("craft", "REQ-001", cwd=ws)
    assert result.returncode == 0, result.stderr
    t = tasks_by_id(read_manifest(ws))["I1.T1"]
    usage = t["usage"]
    assert t["cost_usd"] == (usage["prompt_tokens"] * 0.5 + usage["completion_tokens"] * 1.5) / 1e6
    (ws / "agents" / "writer.toml").write_text(
        '[agent]\nid = "writer"\nname = "W"\nprompt_path = "../prompts/writer.md"\nengine = "mock"\n'
        "price = { input_per_mtok = -1, output_per_mtok = 1 }\n",
        encoding="utf-8",
    )
    bad = run_rad("craft", "REQ-001", "--restart", cwd=ws)
    assert bad.returncode == 2 and bad.stderr.startswith("Error: ") and "price" in bad.stderr
    assert "Traceback" not in bad.stderr and bad.stderr.count("\n") == 1


def test_token_budget_stops_cleanly_and_resume_with_a_larger_budget_completes(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws", chain(4))
    human = run_rad("craft", "REQ-001", "--max-tokens", "1", cwd=ws)
    assert human.returncode == 0, human.stderr
    assert "→ Budget reached (tokens " in human.stdout and "Stopping execution." in human.stdout
    assert "Next: rad craft REQ-001 --resume" in human.stdout
    tasks = tasks_by_id(read_manifest(ws))
    assert [t["status"] for t in tasks.values()] == ["completed", "pending", "pending", "pending"]

    env = rad_env(ws, {"RADIUM_MAX_TOKENS": "1"})  # the environment sets budgets too
    stream = events(run_rad("craft", "REQ-001", "--json", cwd=ws, env=env).stdout)
    finished = stream[-1]
    assert finished["outcome"] == "budget_reached" and finished["exit_code"] == 0
    assert finished["budget"].startswith("tokens ") and finished["completed"] == 2
    assert finished["next_command"] == "rad craft REQ-001 --resume"
    assert sum(e["event"] == "task_started" for e in stream) == 1

    done = run_rad("craft", "REQ-001", "--resume", "--max-tokens", "1000000", "--json", cwd=ws)
    assert done.returncode == 0, done.stderr
    assert events(done.stdout)[-1]["outcome"] == "completed"
    assert all(t["status"] == "completed" for t in tasks_by_id(read_manifest(ws)).values())


def test_cost_budget_stops_cleanly_and_an_unpriced_agent_is_refused_before_the_run(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws", chain(3), agents=())
    write_agent(ws, "writer")  # mock: no price
    before = read_manifest(ws)
    refused = run_rad("craft", "REQ-001", "--max-cost-usd", "0.5", cwd=ws)
    assert refused.returncode == 2
    assert refused.stderr.startswith("Error: --max-cost-usd: agent writer (mock/mock-1) has no known price")
    assert refused.stderr.count("\n") == 1 and read_manifest(ws) == before

    with open(ws / "agents" / "writer.toml", "a", encoding="utf-8") as handle:
        handle.write("price = { input_per_mtok = 1000, output_per_mtok = 1000 }\n")
    (ws / ".radium" / "config.toml").write_text("[execution]\nmax_cost_usd = 0.001\n", encoding="utf-8")
    stopped = run_rad("craft", "REQ-001", "--json", cwd=ws)
    assert stopped.returncode == 0, stopped.stderr
    finished = events(stopped.stdout)[-1]
    assert finished["outcome"] == "budget_reached" and finished["budget"].startswith("cost $")
    assert finished["completed"] == 1 and finished["cost_usd"] >= 0.001
    assert finished["message"].startswith("Budget reached (cost $") and finished["message"].endswith("Stopping execution.")

    done = run_rad("craft", "REQ-001", "--resume", "--max-cost-usd", "100", cwd=ws)
    assert done.returncode == 0, done.stderr
    assert "All tasks completed" in done.stdout
    costs = [t["cost_usd"] for t in tasks_by_id(read_manifest(ws)).values()]
    assert all(c > 0 for c in costs)


def test_running_tasks_finish_when_the_budget_is_reached(tmp_path: Path) -> None:
    plan = manifest([task(f"I1.T{k}", description="mock-delay-ms: 50") for k in range(1, 5)], [task("I2.T1")])
    ws = make_workspace(tmp_path / "ws", plan)
    result = run_rad("craft", "REQ-001", "--parallel", "2", "--max-tokens", "1", "--json", cwd=ws)
    assert result.returncode == 0, result.stderr
    stream = events(result.stdout)
    assert [e["task_id"] for e in stream if e["event"] == "task_started"] == ["I1.T1", "I1.T2"]
    assert sorted(e["task_id"] for e in stream if e["event"] == "task_completed") == ["I1.T1", "I1.T2"]
    finished = stream[-1]
    assert finished["outcome"] == "budget_reached" and finished["completed"] == 2 and finished["remaining"] == 3
    assert not any(e["event"] == "iteration_started" and e["iteration_id"] == "I2" for e in stream)
