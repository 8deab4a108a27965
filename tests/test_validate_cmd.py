"""``rad validate``: every kind of defect is reported with the ids involved."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from helpers import rad_env, run_rad, write_agent

INVALID = Path(__file__).parent / "fixtures" / "plans" / "invalid"


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("validate")
    root = base / "ws"
    root.mkdir()
    assert run_rad("init", str(root), cwd=root, env=rad_env(base / "home")).returncode == 0
    write_agent(root, "writer")
    write_agent(root, "broken")
    (root / "prompts" / "broken.md").unlink()
    return root


def validate(ws: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_rad("validate", *args, cwd=ws, env=rad_env(ws.parent / "home"))


@pytest.mark.parametrize(
    ("fixture", "code", "message"),
    [
        ("duplicate_ids", "duplicate-id", "duplicate task id I1.T1"),
        ("unknown_dependency", "unknown-dependency", "task I1.T2 depends on unknown task I1-T1 (did you mean I1.T1?)"),
        ("cycle", "cycle", "dependency cycle: I1.T1 → I1.T3 → I1.T2 → I1.T1"),
        ("forward_dependency", "forward-dependency", "task I1.T1 (iteration I1) depends on I2.T1 of later iteration I2"),
        ("unknown_agent", "unknown-agent", "task I1.T1 uses unknown agent writter (did you mean writer?)"),
        ("missing_prompt", "missing-prompt", "agent broken (used by I1.T1): cannot read prompt file"),
    ],
)
def test_each_defect_is_an_error_naming_the_ids(ws: Path, fixture: str, code: str, message: str) -> None:
    path = str(INVALID / f"{fixture}.json")
    result = validate(ws, path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert f"error [{code}]: {message}" in result.stdout
    assert result.stdout.strip().splitlines()[-1].startswith("✗ ")
    assert "1 error" in result.stdout.strip().splitlines()[-1]

    as_json = validate(ws, path, "--json")
    assert as_json.returncode == 2
    report = json.loads(as_json.stdout)
    assert report["ok"] is False
    assert [(p["code"], message in p["message"]) for p in report["errors"]] == [(code, True)]
    assert report["warnings"] == []


def test_an_empty_iteration_is_only_a_warning(ws: Path) -> None:
    path = str(INVALID / "empty_iteration.json")
    result = validate(ws, path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "warning [empty-iteration]: iteration I2 (Step 2) has no tasks" in result.stdout
    assert "is valid (1 warning)" in result.stdout
    report = json.loads(validate(ws, path, "--json").stdout)
    assert report["ok"] is True and report["errors"] == []
    assert [p["code"] for p in report["warnings"]] == ["empty-iteration"]


def test_a_valid_plan(ws: Path) -> None:
    result = validate(ws, str(INVALID / "valid.json"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().splitlines() == [
        f"✓ {INVALID / 'valid.json'} (Valid, 2 iterations, 3 tasks) is valid"
    ]
    assert json.loads(validate(ws, str(INVALID / "valid.json"), "--json").stdout)["ok"] is True


def test_plans_are_found_by_requirement_id(ws: Path) -> None:
    (ws / "plan.md").write_text(
        "# P\n## Iteration 1: A\n1. **a** - x\n   - Agent: writer\n2. **b** - y\n   - Agent: nobody\n"
        "   - Dependencies: I1.T1\n"
    )
    env = rad_env(ws.parent / "home")
    created = run_rad("plan", "plan.md", "--id", "REQ-77", cwd=ws, env=env)
    assert created.returncode == 0, created.stderr
    result = validate(ws, "REQ-77")
    assert result.returncode == 2
    assert "error [unknown-agent]: task I1.T2 uses unknown agent nobody" in result.stdout
    assert "REQ-077-p (P, 1 iteration, 2 tasks): 1 error, 0 warnings" in result.stdout


def test_unknown_plan_and_broken_manifest_fail_with_one_line(ws: Path, tmp_path: Path) -> None:
    missing = validate(ws, "REQ-404")
    assert missing.returncode == 2 and missing.stderr.startswith("Error: no plan 'REQ-404'")
    broken = tmp_path / "plan_manifest.json"
    broken.write_text('{"project_name": "x"')
    result = validate(ws, str(broken))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
