"""``rad plan``: plans from plan files and from free-form specs, through the real CLI.

Generation runs against ``tests/fake_provider.py``, a real OpenAI-compatible
HTTP server on 127.0.0.1 with a scripted answer queue and a request log.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fake_provider import FakeProvider, ok, status
from helpers import RAD, rad_env, run_rad, write_agent
from radium.codec import to_data
from radium.planning.markdown import parse_plan_text

FIXTURES = Path(__file__).parent / "fixtures" / "plans"

GOOD_PLAN = """# Todo App
A todo list.

## Iteration 1: Core
Goal: Items can be added

1. **Model** - Define the item model
   - Agent: developer
   - Dependencies: none
   - Acceptance: items have a title
2. **Storage** - Save items to disk
   - Agent: developer
   - Dependencies: I1.T1
   - Acceptance: items survive a restart
"""

CYCLIC_PLAN = GOOD_PLAN.replace("   - Dependencies: none\n", "   - Dependencies: I1.T2\n", 1)

SPEC = "Build a small todo app: add items, list them, keep them between runs.\n"


# ---------------------------------------------------------------- fixtures and helpers


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    root.mkdir()
    result = run_rad("init", str(root), cwd=root, env=rad_env(tmp_path / "home"))
    assert result.returncode == 0, result.stderr
    write_agent(root, "developer")
    return root


def rad(ws: Path, *args: str, input: str | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run_rad(*args, cwd=ws, env=rad_env(ws.parent / "home", env), input=input)


def plan_dirs(ws: Path) -> list[str]:
    """Every entry under .radium/plan/<stage>/, as stage/name."""
    root = ws / ".radium" / "plan"
    return sorted(f"{stage.name}/{child.name}" for stage in root.iterdir() if stage.is_dir() for child in stage.iterdir())


def stray_entries(ws: Path) -> list[str]:
    """Leftovers of an interrupted creation (staging directories)."""
    return sorted(p.name for p in (ws / ".radium" / "plan").iterdir() if p.name.startswith(".new-"))


def counter(ws: Path) -> str | None:
    path = ws / ".radium" / "requirement-counter.json"
    return path.read_text() if path.exists() else None


def snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def assert_one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def use_planner(ws: Path, server: FakeProvider, prompt: str = "General-purpose prompt for {{task_id}}.") -> None:
    write_agent(
        ws, "planner", prompt=prompt, engine="openai-compatible", base_url=server.openai_base_url, model="m",
        timeout_s=20, base_delay_ms=10,
    )
    (ws / ".radium" / "config.toml").write_text('[planner]\nagent = "planner"\n', encoding="utf-8")


def sent_prompt(request) -> str:  # noqa: ANN001
    return request.body["messages"][-1]["content"]


@pytest.fixture
def server():
    with FakeProvider() as fake:
        yield fake


# ---------------------------------------------------------------- plans from plan files


def test_markdown_plan_file_creates_the_plan_folder(ws: Path) -> None:
    source = FIXTURES / "readme_example.md"
    write_agent(ws, "tester")
    result = rad(ws, "plan", str(source))
    assert result.returncode == 0, result.stderr
    assert "Created plan REQ-001: Todo CLI (2 iterations, 5 tasks)" in result.stdout
    assert "Next: rad craft REQ-001" in result.stdout
    assert "Warning" not in result.stdout

    folder = ws / ".radium" / "plan" / "backlog" / "REQ-001-todo-cli"
    assert plan_dirs(ws) == ["backlog/REQ-001-todo-cli"]
    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) == [
        "artifacts", "artifacts/tasks", "plan", "plan.json", "plan/plan_manifest.json", "specification.md",
    ]
    assert (folder / "specification.md").read_bytes() == source.read_bytes()
    manifest = json.loads((folder / "plan" / "plan_manifest.json").read_text())
    expected = to_data(parse_plan_text(source.read_text(), "x"))
    expected["requirement_id"] = {"number": 1}
    assert manifest == expected
    metadata = json.loads((folder / "plan.json").read_text())
    assert {k: v for k, v in metadata.items() if k not in ("created_at", "updated_at")} == {
        "requirement_id": {"number": 1},
        "project_name": "Todo CLI",
        "folder_name": "REQ-001-todo-cli",
        "stage": "backlog",
        "status": "not_started",
        "specification_path": "specification.md",
        "total_iterations": 2,
        "completed_iterations": 0,
        "total_tasks": 5,
        "completed_tasks": 0,
    }
    assert json.loads(counter(ws) or "{}") == {"next": 2}

    # The plan is immediately usable by the rest of the CLI.
    check = rad(ws, "validate", "REQ-001")
    assert check.returncode == 0, check.stdout + check.stderr


def test_unknown_agents_in_a_plan_file_are_warnings_at_plan_time(ws: Path) -> None:
    result = rad(ws, "plan", str(FIXTURES / "readme_example.md"))
    assert result.returncode == 0, result.stderr
    assert "Warning: task I2.T3 uses unknown agent tester" in result.stdout


def test_structural_errors_in_a_plan_file_are_refused(ws: Path) -> None:
    (ws / "cyclic.md").write_text(CYCLIC_PLAN)
    result = rad(ws, "plan", "cyclic.md")
    assert_one_line_error(result, "cyclic.md: invalid plan", "dependency cycle: I1.T1 → I1.T2 → I1.T1")
    assert plan_dirs(ws) == [] and counter(ws) is None


def test_json_plan_from_stdin_with_id_name_and_stage(ws: Path) -> None:
    parsed_plan = {
        "project_name": "Stdin Plan",
        "tech_stack": [],
        "iterations": [{"number": 1, "name": "One", "tasks": [
            {"number": 1, "title": "Only", "agent_id": "developer", "dependencies": [], "acceptance_criteria": []},
        ]}],
    }
    result = rad(ws, "plan", "-", "--id", "REQ-42", "--name", "Custom Name!", "--stage", "development",
                 input=json.dumps(parsed_plan))
    assert result.returncode == 0, result.stderr
    assert "REQ-042" in result.stdout and "custom-name" in result.stdout
    assert plan_dirs(ws) == ["development/REQ-042-custom-name"]
    # --id does not lower the counter; a higher one moves it past itself.
    assert json.loads(counter(ws) or "{}") == {"next": 43}
    nxt = rad(ws, "plan", "-", input=GOOD_PLAN)
    assert nxt.returncode == 0, nxt.stderr
    assert "backlog/REQ-043-todo-app" in plan_dirs(ws)


def test_same_id_twice_fails_and_leaves_the_first_plan_untouched(ws: Path) -> None:
    (ws / "plan.md").write_text(GOOD_PLAN)
    first = rad(ws, "plan", "plan.md", "--id", "REQ-001", "--name", "test")
    assert first.returncode == 0, first.stderr
    folder = ws / ".radium" / "plan" / "backlog" / "REQ-001-test"
    before = snapshot(folder)
    counter_before = counter(ws)

    again = rad(ws, "plan", "plan.md", "--id", "REQ-001", "--name", "test")
    assert_one_line_error(again, "already exists")
    other_name = rad(ws, "plan", "plan.md", "--id", "REQ-1", "--name", "another")
    assert_one_line_error(other_name, "REQ-001 already exists")

    assert snapshot(folder) == before
    assert plan_dirs(ws) == ["backlog/REQ-001-test"]
    assert counter(ws) == counter_before
    assert stray_entries(ws) == []


def test_export_prints_the_plan_as_markdown_that_parses_back(ws: Path) -> None:
    source = FIXTURES / "readme_example.md"
    assert rad(ws, "plan", str(source)).returncode == 0
    exported = rad(ws, "plan", "--export", "REQ-001")
    assert exported.returncode == 0, exported.stderr
    assert exported.stdout.startswith("# Todo CLI\n")
    original = to_data(parse_plan_text(source.read_text(), "x"))
    assert to_data(parse_plan_text(exported.stdout, "x")) == original


def test_export_of_an_unknown_plan_fails_cleanly(ws: Path) -> None:
    assert_one_line_error(rad(ws, "plan", "--export", "REQ-9"), "no plan 'REQ-9'")


# ---------------------------------------------------------------- malformed input


@pytest.mark.parametrize(
    ("content", "fragments"),
    [
        ("## Iteration 1: A\n1. **x** - y\n   - Agent: developer\n", ["bad.md", "line 1", "'# Project title'"]),
        ("# Title\n\n1. **x** - y\n   - Agent: developer\n", ["bad.md", "no iterations"]),
        ("", ["bad.md is empty"]),
        ("\n  \n", ["bad.md is empty"]),
        ("# T\n## Iteration 1: A\n   - Agent: developer\n1. **x**\n", ["line 3", "before any task"]),
        ('{"project_name": "x", "iterations": [', ["bad.md", "invalid JSON"]),
    ],
)
def test_malformed_plan_files_fail_with_one_line(ws: Path, content: str, fragments: list[str]) -> None:
    (ws / "bad.md").write_text(content)
    result = rad(ws, "plan", "bad.md")
    assert_one_line_error(result, *fragments)
    assert plan_dirs(ws) == [] and counter(ws) is None and stray_entries(ws) == []


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["plan", "missing.md"], ["input file missing.md not found"]),
        (["plan", "plan.md", "--id", "BAD"], ["--id", "invalid requirement id 'BAD'"]),
        (["plan", "plan.md", "--id", "REQ-0"], ["--id", "1 or more"]),
        (["plan"], ["rad plan needs INPUT"]),
        (["plan", "plan.md", "--export", "REQ-1"], ["--export PLAN takes no INPUT"]),
    ],
)
def test_bad_arguments_fail_with_one_line(ws: Path, args: list[str], fragments: list[str]) -> None:
    (ws / "plan.md").write_text(GOOD_PLAN)
    assert_one_line_error(rad(ws, *args), *fragments)
    assert plan_dirs(ws) == []


def test_plan_outside_a_workspace_fails(tmp_path: Path) -> None:
    (tmp_path / "plan.md").write_text(GOOD_PLAN)
    result = run_rad("plan", "plan.md", cwd=tmp_path, env=rad_env(tmp_path / "home"))
    assert_one_line_error(result, "no Radium workspace")


# ---------------------------------------------------------------- atomicity and concurrency


def test_a_failed_creation_leaves_nothing_behind(ws: Path) -> None:
    """A real write failure in the child: RLIMIT_FSIZE makes the plan files fail with EFBIG.

    (Directory permissions cannot be used: CI runs as root, which ignores them.)
    """
    import resource
    import signal

    def limit_file_size() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG instead of being killed
        resource.setrlimit(resource.RLIMIT_FSIZE, (64, 64))

    result = subprocess.run(
        [*RAD, "plan", "-"], cwd=ws, env=rad_env(ws.parent / "home"), input=GOOD_PLAN,
        capture_output=True, text=True, timeout=60, preexec_fn=limit_file_size,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr and "cannot create plan folder" in result.stderr
    assert plan_dirs(ws) == [] and stray_entries(ws) == [] and counter(ws) is None


@pytest.mark.parametrize("failure", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_an_interrupted_creation_leaves_nothing_behind(ws: Path, monkeypatch: pytest.MonkeyPatch, failure: BaseException) -> None:
    # In-process: fail at the last step (the rename into place), after every file was written.
    from radium.errors import CheckpointWriteError
    from radium.planning import authoring
    from radium.workspace import Workspace

    def failing_rename(src, dst):  # noqa: ANN001
        assert (Path(src) / "plan" / "plan_manifest.json").is_file()
        raise failure

    monkeypatch.setattr(authoring.os, "rename", failing_rename)
    manifest = parse_plan_text(GOOD_PLAN, "x")
    expected = CheckpointWriteError if isinstance(failure, OSError) else KeyboardInterrupt
    with pytest.raises(expected):
        authoring.create_plan(Workspace(ws), manifest, GOOD_PLAN)
    assert plan_dirs(ws) == [] and stray_entries(ws) == [] and counter(ws) is None


def test_concurrent_plans_take_distinct_numbers(ws: Path) -> None:
    (ws / "plan.md").write_text(GOOD_PLAN)
    env = rad_env(ws.parent / "home")
    procs = [
        subprocess.Popen([*RAD, "plan", "plan.md"], cwd=ws, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    results = [(p.wait(timeout=60), p.stderr.read()) for p in procs]  # type: ignore[union-attr]
    for p in procs:
        p.stdout.close()  # type: ignore[union-attr]
        p.stderr.close()  # type: ignore[union-attr]
    assert [code for code, _ in results] == [0, 0, 0, 0], results
    assert plan_dirs(ws) == [f"backlog/REQ-00{n}-todo-app" for n in (1, 2, 3, 4)]
    assert json.loads(counter(ws) or "{}") == {"next": 5}


# ---------------------------------------------------------------- plans from free-form specs


def test_spec_without_a_planner_says_how_to_configure_one(ws: Path) -> None:
    (ws / "spec.txt").write_text(SPEC)
    result = rad(ws, "plan", "spec.txt")
    assert_one_line_error(result, "no planner model is configured", "[planner] agent", "RADIUM_ENGINE")
    assert plan_dirs(ws) == []


def test_mock_planner_refuses_free_form_specs(ws: Path) -> None:
    (ws / "spec.txt").write_text(SPEC)
    result = rad(ws, "plan", "spec.txt", env={"RADIUM_ENGINE": "mock"})
    assert_one_line_error(result, "mock engine", "cannot write a plan")
    (ws / ".radium" / "config.toml").write_text('[planner]\nagent = "developer"\n')  # a mock agent
    assert_one_line_error(rad(ws, "plan", "spec.txt"), "agent developer (mock", "cannot write a plan")
    assert plan_dirs(ws) == []


def test_unknown_planner_agent_is_reported(ws: Path) -> None:
    (ws / "spec.txt").write_text(SPEC)
    (ws / ".radium" / "config.toml").write_text('[planner]\nagent = "nobody"\n')
    assert_one_line_error(rad(ws, "plan", "spec.txt"), "planner agent 'nobody'", "developer")


def test_spec_generates_a_plan(ws: Path, server: FakeProvider) -> None:
    use_planner(ws, server)
    (ws / "spec.txt").write_text(SPEC)
    server.script("openai", ok("Here is your plan:\n\n```markdown\n" + GOOD_PLAN + "```\nGood luck!"))
    result = rad(ws, "plan", "spec.txt")
    assert result.returncode == 0, result.stderr
    assert "Created plan REQ-001: Todo App (1 iteration, 2 tasks)" in result.stdout
    assert "generated from spec.txt by agent planner (openai-compatible, model m), 1 attempt" in result.stdout

    requests = server.requests_for("openai")
    assert len(requests) == 1
    assert requests[0].body["model"] == "m"
    prompt = sent_prompt(requests[0])
    assert SPEC.strip() in prompt
    assert "## Iteration 1: <Short name>" in prompt  # the shipped planner prompt
    assert "- developer: Developer — developer agent" in prompt and "- planner" in prompt
    assert "{{" not in prompt

    folder = ws / ".radium" / "plan" / "backlog" / "REQ-001-todo-app"
    assert (folder / "specification.md").read_text() == SPEC
    manifest = json.loads((folder / "plan" / "plan_manifest.json").read_text())
    expected = to_data(parse_plan_text(GOOD_PLAN, "x"))
    expected["requirement_id"] = {"number": 1}
    assert manifest == expected


def test_a_cyclic_answer_is_repaired_on_the_second_request(ws: Path, server: FakeProvider) -> None:
    use_planner(ws, server)
    (ws / "spec.txt").write_text(SPEC)
    server.script("openai", ok(CYCLIC_PLAN), ok(GOOD_PLAN))
    result = rad(ws, "plan", "spec.txt")
    assert result.returncode == 0, result.stderr
    assert "2 attempts" in result.stdout
    assert "dependency cycle: I1.T1 → I1.T2 → I1.T1" in result.stderr  # progress lines

    requests = server.requests_for("openai")
    assert len(requests) == 2
    second = sent_prompt(requests[1])
    assert sent_prompt(requests[0]) in second  # the original request is repeated
    assert "- dependency cycle: I1.T1 → I1.T2 → I1.T1" in second
    assert CYCLIC_PLAN.strip() in second  # the rejected answer is quoted
    assert plan_dirs(ws) == ["backlog/REQ-001-todo-app"]


def test_unknown_agent_in_an_answer_triggers_a_repair(ws: Path, server: FakeProvider) -> None:
    use_planner(ws, server)
    (ws / "spec.txt").write_text(SPEC)
    server.script("openai", ok(GOOD_PLAN.replace("developer", "develper")), ok(GOOD_PLAN))
    result = rad(ws, "plan", "spec.txt")
    assert result.returncode == 0, result.stderr
    second = sent_prompt(server.requests_for("openai")[1])
    assert "task I1.T1 uses unknown agent develper (did you mean developer?)" in second


def test_an_answer_that_stays_broken_fails_and_leaves_nothing(ws: Path, server: FakeProvider) -> None:
    use_planner(ws, server)
    (ws / "spec.txt").write_text(SPEC)
    server.script("openai", ok("I cannot help with that."), ok(CYCLIC_PLAN), ok(CYCLIC_PLAN), ok(GOOD_PLAN))
    result = rad(ws, "plan", "spec.txt")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: the planner did not produce a valid plan in 3 attempts")
    assert "dependency cycle" in last
    requests = server.requests_for("openai")
    assert len(requests) == 3
    assert "expected the '# Project title' line first" in sent_prompt(requests[1])
    assert plan_dirs(ws) == [] and counter(ws) is None and stray_entries(ws) == []


def test_a_transient_provider_error_is_retried(ws: Path, server: FakeProvider) -> None:
    use_planner(ws, server)
    (ws / "spec.txt").write_text(SPEC)
    server.script("openai", status(429, headers={"retry-after-ms": "10"}), ok(GOOD_PLAN))
    result = rad(ws, "plan", "spec.txt")
    assert result.returncode == 0, result.stderr
    assert "Attempt 1: Error (rate limit) → Wait 10ms (retry-after-ms from server; not counted as a retry)" in result.stderr
    assert len(server.requests_for("openai")) == 2


def test_a_planner_agent_prompt_with_spec_placeholder_is_used(ws: Path, server: FakeProvider) -> None:
    use_planner(ws, server, prompt="CUSTOM PLANNER\nSpec: {{spec}}\nAgents:\n{{agents}}\n")
    (ws / "spec.txt").write_text(SPEC)
    server.script("openai", ok(GOOD_PLAN))
    assert rad(ws, "plan", "spec.txt").returncode == 0
    prompt = sent_prompt(server.requests_for("openai")[0])
    assert prompt.startswith("CUSTOM PLANNER\nSpec: " + SPEC.strip())
    assert "## Iteration 1: <Short name>" not in prompt


def test_id_clash_is_reported_before_calling_the_planner(ws: Path, server: FakeProvider) -> None:
    use_planner(ws, server)
    (ws / "plan.md").write_text(GOOD_PLAN)
    (ws / "spec.txt").write_text(SPEC)
    assert rad(ws, "plan", "plan.md", "--id", "REQ-3").returncode == 0
    assert_one_line_error(rad(ws, "plan", "spec.txt", "--id", "REQ-3"), "already exists")
    assert server.requests_for("openai") == []


# ---------------------------------------------------------------- answer extraction and prompts (in-process)


@pytest.mark.parametrize(
    "answer",
    [
        GOOD_PLAN,
        "Sure! Here is the plan.\n\n" + GOOD_PLAN,
        "```markdown\n" + GOOD_PLAN + "```",
        "Here you go:\n```md\n" + GOOD_PLAN.replace("Define the item model", "Define it:\n   ```python\n   x = 1\n   ```") + "```\nDone.",
    ],
)
def test_plan_text_is_extracted_from_chatty_answers(answer: str) -> None:
    from radium.planning.generator import extract_plan_text

    text = extract_plan_text(answer)
    assert text.startswith("# Todo App\n")
    manifest = parse_plan_text(text, "answer")
    assert [t.id for _, t in manifest.tasks()] == ["I1.T1", "I1.T2"]


def test_prompt_names_spec_and_agents_even_when_the_template_does_not() -> None:
    from radium.agents import AgentRegistry
    from radium.planning.generator import build_prompt, default_prompt

    empty = AgentRegistry()
    prompt = build_prompt("Write a plan.", "the spec {{agents}}", empty)
    assert prompt.startswith("Write a plan.\n\nAvailable agents")
    assert "no agents are defined" in prompt
    assert prompt.rstrip().endswith("Specification:\n\nthe spec {{agents}}")  # a value is never re-substituted
    shipped = build_prompt(default_prompt(), "S", empty)
    assert "{{" not in shipped and shipped.rstrip().endswith("S")


def test_staging_left_by_a_killed_rad_plan_is_cleaned_up(ws: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    abandoned = ws / ".radium" / "plan" / f".new-REQ-009-x-{int(dead.stdout)}-abcd1234"
    (abandoned / "plan").mkdir(parents=True)
    (ws / "plan.md").write_text(GOOD_PLAN)
    assert rad(ws, "plan", "plan.md").returncode == 0
    assert not abandoned.exists()


def test_an_export_that_would_not_parse_back_says_so(ws: Path) -> None:
    plan = {
        "project_name": "P",
        "iterations": [
            {"name": "A", "description": "Steps:\n1. first\n2. second", "tasks": [
                {"title": "Use **bold** here", "agent_id": "w", "dependencies": [], "acceptance_criteria": []}]},
        ],
    }
    (ws / "plan.json").write_text(json.dumps(plan))
    assert rad(ws, "plan", "plan.json").returncode == 0
    result = rad(ws, "plan", "--export", "REQ-001")
    assert result.returncode == 0 and result.stdout.startswith("# P")
    assert "Warning: export is not exact: iteration I1: 1 tasks would come back as 3" in result.stderr
