"""The trust boundary: a plan, a manifest, an imported file or a model answer cannot
make Radium read or write outside the workspace, hang, eat memory, or leak a key.

Every refusal is one ``Error:`` line, exit 2, before any model call (the mock
agent's ``mock-fail: auth*always`` would make any call fail with exit 1, and a
task's ``status`` would change), and nothing is written outside the workspace.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from fake_provider import FakeProvider, ok
from helpers import (
    make_workspace,
    manifest,
    plan_dir,
    rad_env,
    read_manifest,
    run_rad,
    task,
    tasks_by_id,
    write_agent,
    write_plan,
)


def assert_refused(result: subprocess.CompletedProcess[str], *fragments: str) -> str:
    """Exit 2 with exactly one ``Error:`` line on stderr containing every fragment."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def assert_nothing_ran(ws: Path) -> None:
    state = tasks_by_id(read_manifest(ws))
    assert all(t.get("status", "pending") == "pending" and t.get("attempts", 0) == 0 for t in state.values()), state
    assert not (plan_dir(ws) / "artifacts").exists()


# ---------------------------------------------------------------- output_path


@pytest.mark.parametrize("output_path", ["/etc/passwd", "../../../../etc/passwd", "artifacts/tasks/../../plan.json", "artifacts/x.md"])
def test_output_path_outside_the_artifacts_is_refused(tmp_path: Path, output_path: str) -> None:
    done = task("I1.T1", completed=True, status="completed", output_path=output_path)
    ws = make_workspace(tmp_path / "ws", manifest([done, task("I1.T2", deps=["I1.T1"])]))
    result = run_rad("craft", "REQ-001", cwd=ws)
    assert_refused(result, "I1.T1", "output_path", "artifacts/tasks/")
    state = tasks_by_id(read_manifest(ws))
    assert state["I1.T2"].get("status", "pending") == "pending"
    assert not (plan_dir(ws) / "artifacts").exists()  # no prompt holding /etc/passwd was written
    validate = run_rad("validate", "REQ-001", cwd=ws)
    assert validate.returncode == 2 and "error [bad-output-path]" in validate.stdout


def test_an_output_path_inside_the_artifacts_is_read(tmp_path: Path) -> None:
    done = task("I1.T1", completed=True, status="completed", output_path="artifacts/tasks/I1.T1.md")
    ws = make_workspace(tmp_path / "ws", manifest([done, task("I1.T2", deps=["I1.T1"])]))
    (plan_dir(ws) / "artifacts" / "tasks").mkdir(parents=True)
    (plan_dir(ws) / "artifacts" / "tasks" / "I1.T1.md").write_text("the first answer\n")
    result = run_rad("craft", "REQ-001", cwd=ws)
    assert result.returncode == 0, result.stderr
    assert "the first answer" in (plan_dir(ws) / "artifacts" / "tasks" / "I1.T2.prompt.md").read_text()


def test_an_output_file_linked_outside_the_artifacts_is_not_read(tmp_path: Path) -> None:
    """The output_path is plain, but the file itself is a symlink to a secret: it is not followed."""
    secret = tmp_path / "secret.txt"
    secret.write_text("PRIVATE-KEY-MATERIAL\n")
    done = task("I1.T1", completed=True, status="completed", output_path="artifacts/tasks/I1.T1.md")
    ws = make_workspace(tmp_path / "ws", manifest([done, task("I1.T2", deps=["I1.T1"])]))
    (plan_dir(ws) / "artifacts" / "tasks").mkdir(parents=True)
    (plan_dir(ws) / "artifacts" / "tasks" / "I1.T1.md").symlink_to(secret)
    result = run_rad("craft", "REQ-001", cwd=ws)
    assert result.returncode == 0, result.stderr
    assert "PRIVATE-KEY-MATERIAL" not in (plan_dir(ws) / "artifacts" / "tasks" / "I1.T2.prompt.md").read_text()


def test_a_fifo_planted_as_an_output_does_not_hang_the_run(tmp_path: Path) -> None:
    """An output file that is a FIFO is not read (opening it for reading would block forever)."""
    done = task("I1.T1", completed=True, status="completed", output_path="artifacts/tasks/I1.T1.md")
    ws = make_workspace(tmp_path / "ws", manifest([done, task("I1.T2", deps=["I1.T1"])]))
    (plan_dir(ws) / "artifacts" / "tasks").mkdir(parents=True)
    os.mkfifo(plan_dir(ws) / "artifacts" / "tasks" / "I1.T1.md")
    result = run_rad("craft", "REQ-001", cwd=ws, timeout=60)
    assert result.returncode == 0, result.stderr
    assert (plan_dir(ws) / "artifacts" / "tasks" / "I1.T2.md").is_file()


# ---------------------------------------------------------------- imports and AGENTS.md


def test_an_import_outside_the_workspace_is_refused_unless_allowed(tmp_path: Path) -> None:
    outside = tmp_path / "private"
    outside.mkdir()
    (outside / "secret.txt").write_text("PRIVATE-DATA\n")
    ws = make_workspace(tmp_path / "ws", manifest([task("I1.T1")]))
    (ws / "AGENTS.md").write_text("Be brief.\n@../private/secret.txt\n")
    result = run_rad("craft", "REQ-001", cwd=ws)
    line = assert_refused(result, "@../private/secret.txt", "AGENTS.md:2", "outside the workspace", "allow_dirs")
    assert "remove the import" in line
    assert_nothing_ran(ws)

    (ws / ".radium" / "config.toml").write_text(f'[context]\nallow_dirs = ["{outside}"]\n')
    allowed = run_rad("craft", "REQ-001", cwd=ws)
    assert allowed.returncode == 0, allowed.stderr
    assert "PRIVATE-DATA" in (plan_dir(ws) / "artifacts" / "tasks" / "I1.T1.prompt.md").read_text()


def test_agents_md_linked_outside_the_workspace_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.md"
    outside.write_text("PRIVATE-DATA\n")
    ws = make_workspace(tmp_path / "ws", manifest([task("I1.T1")]))
    (ws / "AGENTS.md").symlink_to(outside)
    assert_refused(run_rad("craft", "REQ-001", cwd=ws), "AGENTS.md", str(outside), "outside the workspace")
    assert_nothing_ran(ws)


def test_a_context_file_named_by_the_owner_may_be_anywhere(tmp_path: Path) -> None:
    notes = tmp_path / "notes.md"
    notes.write_text("OWNER-NOTES\n")
    ws = make_workspace(tmp_path / "ws", manifest([task("I1.T1")]))
    result = run_rad("craft", "REQ-001", "--context-file", str(notes), cwd=ws)
    assert result.returncode == 0, result.stderr
    assert "OWNER-NOTES" in (plan_dir(ws) / "artifacts" / "tasks" / "I1.T1.prompt.md").read_text()


# ---------------------------------------------------------------- special and oversized files


def test_a_fifo_import_is_refused_without_blocking(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws", manifest([task("I1.T1")]))
    os.mkfifo(ws / "pipe.md")
    (ws / "AGENTS.md").write_text("@pipe.md\n")
    # A FIFO opened for reading blocks forever: the run timeout would fire, not the check.
    assert_refused(run_rad("craft", "REQ-001", cwd=ws, timeout=30), "pipe.md", "a FIFO, not a regular file")
    assert_nothing_ran(ws)


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_a_device_as_context_file_is_refused(tmp_path: Path, device: str) -> None:
    ws = make_workspace(tmp_path / "ws", manifest([task("I1.T1")]))
    line = assert_refused(run_rad("craft", "REQ-001", "--context-file", device, cwd=ws, timeout=30), device)
    assert "not a regular file" in line and "--context-file" in line  # the hint fits where it came from
    assert "remove the import" not in line


def test_an_oversized_context_file_is_refused_and_the_limit_is_configurable(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws", manifest([task("I1.T1")]))
    (ws / "AGENTS.md").write_text("x" * (1024 * 1024 + 1))
    assert_refused(run_rad("craft", "REQ-001", cwd=ws), "AGENTS.md", "larger than the limit of 1,048,576 bytes", "max_file_bytes")
    assert_nothing_ran(ws)
    (ws / ".radium" / "config.toml").write_text("[context]\nmax_file_bytes = 2000000\n")
    assert run_rad("craft", "REQ-001", cwd=ws).returncode == 0


def test_an_unknown_context_setting_is_an_error(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws", manifest([task("I1.T1")]))
    (ws / ".radium" / "config.toml").write_text("[context]\nallow = []\n")
    assert_refused(run_rad("craft", "REQ-001", cwd=ws), "context.allow", "allow_dirs")


def test_rad_plan_of_a_device_is_refused_without_eating_memory(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws")
    assert_refused(run_rad("plan", "/dev/zero", cwd=ws, timeout=30), "/dev/zero is larger than 10,485,760 bytes")


# ---------------------------------------------------------------- symlinks out of the workspace


def test_a_plan_folder_linked_outside_the_workspace_is_refused(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws")
    outside = write_plan(tmp_path / "other", manifest([task("I1.T1")]))
    (ws / ".radium" / "plan" / "backlog" / outside.name).symlink_to(outside)
    before = sorted(p.name for p in (outside / "plan").iterdir())
    assert_refused(run_rad("craft", "REQ-001", cwd=ws), "outside the workspace", "symlink")
    assert sorted(p.name for p in (outside / "plan").iterdir()) == before  # no lock file, no journal


def test_artifacts_linked_outside_the_plan_are_refused(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws", manifest([task("I1.T1")]))
    target = tmp_path / "loot"
    target.mkdir()
    (plan_dir(ws) / "artifacts").mkdir()
    (plan_dir(ws) / "artifacts" / "tasks").symlink_to(target)
    assert_refused(run_rad("craft", "REQ-001", cwd=ws), "artifacts/tasks", "outside the plan folder")
    assert list(target.iterdir()) == []


@pytest.mark.parametrize("name", ["plan_manifest.journal", ".craft.lock"])
def test_state_files_written_in_place_may_not_be_symlinks(tmp_path: Path, name: str) -> None:
    ws = make_workspace(tmp_path / "ws", manifest([task("I1.T1")]))
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (plan_dir(ws) / "plan" / name).symlink_to(victim)
    assert_refused(run_rad("craft", "REQ-001", cwd=ws), name, "symlink")
    assert victim.read_text() == "precious\n"
    assert_nothing_ran(ws)


def test_a_radium_tree_linked_outside_is_refused(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws")
    target = tmp_path / "shared-plans"
    (ws / ".radium" / "plan").rename(target)
    (ws / ".radium" / "plan").symlink_to(target)
    (ws / "plan.md").write_text("# P\n\n## Iteration 1: A\n\n1. **T** - do\n   - Agent: writer\n")
    assert_refused(run_rad("plan", "plan.md", cwd=ws), ".radium/plan", "outside the workspace")
    assert not any(target.rglob("plan_manifest.json"))


# ---------------------------------------------------------------- ids, manifests, paths


@pytest.mark.parametrize(
    ("task_id", "fragment"),
    [("I1.T1\n", "is not a plain name"), ("I1.T" + "1" * 250, "bytes long (at most 200")],
)
def test_ids_that_cannot_be_file_names_are_validation_errors(tmp_path: Path, task_id: str, fragment: str) -> None:
    plan = manifest([task("I1.T1")])
    plan["iterations"][0]["tasks"][0]["id"] = task_id
    ws = make_workspace(tmp_path / "ws", plan)
    assert_refused(run_rad("craft", "REQ-001", cwd=ws), "invalid plan", fragment)
    assert_nothing_ran(ws)
    validate = run_rad("validate", "REQ-001", cwd=ws)
    assert validate.returncode == 2 and "error [bad-id]" in validate.stdout


@pytest.mark.parametrize("depth", [500, 100_000])  # parses but could not be written back; does not parse
def test_a_deeply_nested_manifest_is_one_line(tmp_path: Path, depth: int) -> None:
    ws = make_workspace(tmp_path / "ws", manifest([task("I1.T1")]))
    path = plan_dir(ws) / "plan" / "plan_manifest.json"
    data = json.loads(path.read_text())
    path.write_text(json.dumps(data)[:-1] + ', "x": ' + "[" * depth + "]" * depth + "}")
    assert_refused(run_rad("craft", "REQ-001", cwd=ws), str(path), "nested too deeply")
    assert_refused(run_rad("status", "REQ-001", cwd=ws), "nested too deeply")
    assert not (plan_dir(ws) / "artifacts").exists()


def test_a_non_utf8_manifest_is_one_line(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws", manifest([task("I1.T1")]))
    path = plan_dir(ws) / "plan" / "plan_manifest.json"
    path.write_bytes(path.read_bytes().replace(b"Test Project", b"Test \xff Project"))
    assert_refused(run_rad("craft", "REQ-001", cwd=ws), str(path), "not UTF-8")
    assert_refused(run_rad("validate", "REQ-001", cwd=ws), "not UTF-8")


@pytest.mark.parametrize("command", [["craft"], ["status"], ["validate"], ["plan"]])
def test_an_over_long_path_is_one_line(tmp_path: Path, command: list[str]) -> None:
    ws = make_workspace(tmp_path / "ws")
    assert_refused(run_rad(*command, "a" * 5000, cwd=ws), "File name too long", "characters")


# ---------------------------------------------------------------- secrets

KEY = "zq8Xv2Lm9Pw4Rt6Yu1Io3Kj5"  # 24 characters, not shaped like any provider's key


def fragments(text: str, secret: str = KEY, size: int = 8) -> list[str]:
    return [secret[i : i + size] for i in range(len(secret) - size + 1) if secret[i : i + size] in text]


def test_keys_in_model_outputs_are_redacted_before_storing_and_forwarding(tmp_path: Path) -> None:
    # The mock engine answers with its prompt, like a model repeating a key it saw.
    provider_key = "opaque-provider-key-55aa77"
    echo = f"key {KEY} part {KEY[2:23]} provider {provider_key}"
    plan = manifest([task("I1.T1", agent="keyed", description=echo), task("I1.T2", agent="keyed", deps=["I1.T1"])])
    ws = make_workspace(tmp_path / "ws", plan, agents=())
    write_agent(ws, "keyed", api_key_env="MY_SERVICE_TOKEN")
    env = rad_env(ws, {"MY_SERVICE_TOKEN": KEY, "OPENAI_API_KEY": provider_key})
    result = run_rad("craft", "REQ-001", cwd=ws, env=env)
    assert result.returncode == 0, result.stderr
    tasks_dir = plan_dir(ws) / "artifacts" / "tasks"
    first = (tasks_dir / "I1.T1.md").read_text()
    assert "[REDACTED]" in first
    for stored in (first, (tasks_dir / "I1.T2.prompt.md").read_text(), (tasks_dir / "I1.T2.md").read_text()):
        assert fragments(stored) == [] and fragments(stored, provider_key) == []


def test_a_planner_echoing_its_key_never_shows_it(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    home = tmp_path / "home"
    assert run_rad("init", str(ws), cwd=ws, env=rad_env(home)).returncode == 0
    write_agent(ws, "developer")
    plan = "# Todo\n\n## Iteration 1: Core\n\n1. **Model** - {body}\n   - Agent: developer\n   - Dependencies: {deps}\n"
    with FakeProvider() as server:
        write_agent(
            ws, "planner", engine="openai-compatible", base_url=server.openai_base_url, model="m",
            api_key_env="PLANNER_KEY", timeout_s=20,
        )
        (ws / ".radium" / "config.toml").write_text('[planner]\nagent = "planner"\n')
        (ws / "spec.txt").write_text("Build a todo app.\n")
        broken = plan.format(body="define it", deps=KEY[1:22])  # 21 of the 24 characters
        good = plan.format(body=f"define it, key {KEY}", deps="none")
        server.script("openai", ok(broken), ok(good))
        result = run_rad("plan", "spec.txt", cwd=ws, env=rad_env(home, {"PLANNER_KEY": KEY}))
    assert result.returncode == 0, result.stderr
    assert "unknown task" in result.stderr  # the repair was reported, without the key
    assert fragments(result.stdout + result.stderr) == []
    folder = next((ws / ".radium" / "plan" / "backlog").iterdir())
    assert fragments((folder / "plan" / "plan_manifest.json").read_text()) == []
