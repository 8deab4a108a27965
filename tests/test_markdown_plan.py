"""The plan file formats: markdown and JSON parsing, and markdown export.

Parsing results are compared as whole manifests (``to_data``), so a field
that is lost, added or mangled anywhere fails the test.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from radium.errors import InvalidDataError
from radium.codec import to_data
from radium.models import Iteration, PlanManifest, PlanTask, RequirementId
from radium.planning.markdown import export_markdown, looks_like_plan, parse_plan_text

FIXTURES = Path(__file__).parent / "fixtures" / "plans"


def T(tid: str, title: str, description: str | None = None, agent: str | None = None,
      deps: list[str] | None = None, criteria: list[str] | None = None) -> dict:
    """A task as it appears in a freshly parsed manifest."""
    data = {"id": tid, "number": int(tid.split(".T")[1]), "title": title}
    if description is not None:
        data["description"] = description
    data["completed"] = False
    if agent is not None:
        data["agent_id"] = agent
    data.update({"dependencies": deps or [], "acceptance_criteria": criteria or [], "status": "pending", "attempts": 0})
    return data


def I(n: int, name: str, tasks: list[dict], goal: str | None = None, description: str | None = None) -> dict:
    data: dict = {"id": f"I{n}", "number": n, "name": name}
    if description is not None:
        data["description"] = description
    if goal is not None:
        data["goal"] = goal
    data.update({"tasks": tasks, "status": "not_started"})
    return data


def M(project: str, iterations: list[dict], description: str | None = None) -> dict:
    data = {"requirement_id": {"number": 0}, "project_name": project, "iterations": iterations}
    if description is not None:
        data["description"] = description
    return data


def dump(manifest: PlanManifest) -> dict:
    return to_data(manifest)


def parse(text: str) -> dict:
    return dump(parse_plan_text(text, "test.md"))


# ---------------------------------------------------------------- whole-manifest parsing


def test_readme_example() -> None:
    text = (FIXTURES / "readme_example.md").read_text(encoding="utf-8")
    assert dump(parse_plan_text(text, "readme_example.md")) == M(
        "Todo CLI",
        description="A small command-line todo list, stored in a JSON file.\n\n"
        "## Tech Stack\n- Python 3.11, click\n- pytest",
        iterations=[
            I(1, "Foundations", goal="A package that installs and runs `todo --help`",
              description="Set up the skeleton before any feature work.", tasks=[
                T("I1.T1", "Create the package",
                  "Lay out src/todo with a click entry point\nUse the src layout. Steps:\n"
                  "1. pyproject.toml with a `todo` script\n2. src/todo/__init__.py and cli.py",
                  "developer", [], ["`pip install -e .` succeeds", "`todo --help` prints usage"]),
                T("I1.T2", "Storage module", "Read and write the todo file atomically", "developer",
                  ["I1.T1"], ["Writes go through a temporary file and a rename"]),
            ]),
            I(2, "Commands", goal="add, list and done work end to end", tasks=[
                T("I2.T1", "add and list", "Implement `todo add TEXT` and `todo list`", "developer",
                  ["I1.T1", "I1.T2"], ["added items are listed in order"]),
                T("I2.T2", "done", "Implement `todo done N`", "developer", ["I2.T1"],
                  ["a done item is shown as done"]),
                T("I2.T3", "Tests", "End-to-end tests for every command", "tester", ["I2.T1", "I2.T2"],
                  ["every command has a test", "the suite runs in under a second"]),
            ]),
        ],
    )


def test_non_iteration_sections_dependencies_none_and_empty_checkboxes_renumbering() -> None:
    text = (FIXTURES / "sections_and_quirks.md").read_text(encoding="utf-8")
    assert parse(text) == M(
        "Weather Bot",
        description="## Overview\nA bot that answers weather questions. Users can:\n"
        "1. ask for today's forecast\n2. ask for the week\n\n## Tech Stack\n- Python\n- httpx",
        iterations=[
            I(1, "Data", goal="Fetch forecasts", tasks=[
                T("I1.T1", "Client", "HTTP client for the weather API\nHandle these cases:\n1. timeouts\n2. 5xx answers",
                  "coder", []),
                T("I1.T2", "Cache", "Keep answers for ten minutes", "coder", [],
                  ["cache hits skip the network", "entries expire"]),
            ]),
            I(2, "Answers", tasks=[
                T("I2.T1", "Reply formatter", "Turn a forecast into a sentence", "writer", ["I1.T1", "I1.T2"],
                  ["mentions the temperature"]),
            ]),
        ],
    )


def test_dependencies_none_and_empty() -> None:
    text = """# P
## Iteration 1: A
1. **One** - first
   - Agent: a
   - Dependencies: none
2. **Two**
   - Agent: a
   - Dependencies:
3. **Three**
   - Agent: a
   - Dependencies: N/A
4. **Four**
   - Agent: a
   - Depends on: I1.T1; I1.T2 and `I1.T3`
"""
    assert parse(text) == M("P", [I(1, "A", [
        T("I1.T1", "One", "first", "a", []),
        T("I1.T2", "Two", None, "a", []),
        T("I1.T3", "Three", None, "a", []),
        T("I1.T4", "Four", None, "a", ["I1.T1", "I1.T2", "I1.T3"]),
    ])])


def test_numbered_lines_inside_descriptions_are_not_tasks() -> None:
    text = """# P

## Iteration 1: Only

1. **Migrate** - Move the data
   Order matters:
   1. export the old tables
   2. import them

   3) check the counts
      10. even deeper numbered lines stay text
   - Agent: db
2. Second task - plain title form
   - Agent: db
"""
    assert parse(text) == M("P", [I(1, "Only", [
        T("I1.T1", "Migrate",
          "Move the data\nOrder matters:\n1. export the old tables\n2. import them\n\n3) check the counts\n"
          "   10. even deeper numbered lines stay text", "db"),
        T("I1.T2", "Second task", "plain title form", "db"),
    ])])


def test_checkbox_criteria_and_repeatable_acceptance() -> None:
    text = """# P
## Iteration 1: A
1. **Build** - it
   - Agent: dev
   - [ ] compiles
   - Acceptance: tests pass
   - [x] docs updated
   * **Acceptance:** lint is clean
"""
    assert parse(text) == M("P", [I(1, "A", [
        T("I1.T1", "Build", "it", "dev", [], ["compiles", "tests pass", "docs updated", "lint is clean"]),
    ])])


def test_non_sequential_list_numbers_are_renumbered_by_position() -> None:
    text = """# P
## Iteration 3: Late start
9. **Nine** - a
   - Agent: x
2. **Two** - b
   - Agent: x
   - Dependencies: I1.T1
2. **Two again** - c
   - Agent: x
## Iteration 1: Second heading is I2
1. **One** - d
   - Agent: x
   - Dependencies: I1.T3
"""
    assert parse(text) == M("P", [
        I(1, "Late start", [
            T("I1.T1", "Nine", "a", "x"),
            T("I1.T2", "Two", "b", "x", ["I1.T1"]),
            T("I1.T3", "Two again", "c", "x"),
        ]),
        I(2, "Second heading is I2", [T("I2.T1", "One", "d", "x", ["I1.T3"])]),
    ])


def test_iteration_heading_variants_and_explicit_task_ids() -> None:
    text = """# P
## ITERATION 1
1. **I1.T1: Setup** - go
   - **Agent:** x
## Iteration 2. Build it
### Tasks
1. [I2.T1] Compile - now
   - Agent: `x`
"""
    assert parse(text) == M("P", [
        I(1, "Iteration 1", [T("I1.T1", "Setup", "go", "x")]),
        I(2, "Build it", [T("I2.T1", "Compile", "now", "x")]),
    ])


def test_fenced_code_in_a_description_is_kept_verbatim() -> None:
    text = """# P
## Iteration 1: A
1. **Config** - write this file:
   ```toml
   # not a title
   ## Iteration 9: not an iteration
   1. not a task
   - Agent: not-a-field
   ```
   - Agent: real
"""
    assert parse(text) == M("P", [I(1, "A", [
        T("I1.T1", "Config",
          "write this file:\n```toml\n# not a title\n## Iteration 9: not an iteration\n1. not a task\n"
          "- Agent: not-a-field\n```", "real"),
    ])])


def test_wrapped_criterion_and_nested_dependency_list() -> None:
    text = """# P
## Iteration 1: A
1. **A** - a
   - Agent: x
2. **B** - b
   - Agent: x
   - Dependencies:
     - I1.T1
   - Acceptance: a long criterion
     that wraps onto a second line
"""
    assert parse(text) == M("P", [I(1, "A", [
        T("I1.T1", "A", "a", "x"),
        T("I1.T2", "B", "b", "x", ["I1.T1"], ["a long criterion\nthat wraps onto a second line"]),
    ])])


# ---------------------------------------------------------------- JSON


def test_json_parsed_plan_shape_matches_the_markdown_equivalent() -> None:
    parsed_plan = {
        "project_name": "P",
        "description": "About P.",
        "tech_stack": ["Python"],
        "iterations": [
            {"number": 1, "name": "Iteration 1: Setup", "goal": "g", "description": None, "tasks": [
                {"number": 1, "title": "One", "description": "first", "agent_id": "a",
                 "dependencies": ["none"], "acceptance_criteria": ["c1"]},
                {"number": 5, "title": "Two", "description": None, "agent_id": "a",
                 "dependencies": ["I1.T1"], "acceptance_criteria": []},
            ]},
        ],
    }
    markdown = """# P
About P.

## Tech Stack
- Python

## Iteration 1: Setup
Goal: g
1. **One** - first
   - Agent: a
   - Acceptance: c1
2. **Two**
   - Agent: a
   - Dependencies: I1.T1
"""
    expected = M("P", description="About P.\n\n## Tech Stack\n- Python", iterations=[I(1, "Setup", goal="g", tasks=[
        T("I1.T1", "One", "first", "a", [], ["c1"]),
        T("I1.T2", "Two", None, "a", ["I1.T1"]),
    ])])
    assert parse(json.dumps(parsed_plan)) == expected
    assert parse(markdown) == expected
    fenced = "Here is the plan:\n\n```json\n" + json.dumps(parsed_plan, indent=2) + "\n```\n"
    assert parse(fenced) == expected


def test_json_manifest_shape_keeps_ids_and_resets_execution_state() -> None:
    manifest = {
        "requirement_id": {"number": 12},
        "project_name": "Old",
        "custom_key": {"kept": True},
        "iterations": [{
            "id": "setup", "number": 1, "name": "Setup", "status": "completed",
            "tasks": [{"id": "setup.a", "number": 1, "title": "A", "completed": True, "status": "completed",
                       "agent_id": "x", "dependencies": [], "acceptance_criteria": [], "attempts": 2,
                       "output_path": "artifacts/tasks/setup.a.md", "usage": {"prompt_tokens": 1, "completion_tokens": 2}}],
        }],
    }
    assert parse(json.dumps(manifest)) == {
        "requirement_id": {"number": 0},
        "project_name": "Old",
        "iterations": [{"id": "setup", "number": 1, "name": "Setup", "tasks": [
            {"id": "setup.a", "number": 1, "title": "A", "completed": False, "agent_id": "x",
             "dependencies": [], "acceptance_criteria": [], "status": "pending", "attempts": 0},
        ], "status": "not_started"}],
        "custom_key": {"kept": True},
    }


def test_a_json_block_inside_a_markdown_plan_is_just_description() -> None:
    text = """# P
## Iteration 1: A
1. **Emit** - print this:
   ```json
   {"not": "a plan"}
   ```
   - Agent: x
"""
    assert parse(text)["iterations"][0]["tasks"][0]["description"] == 'print this:\n```json\n{"not": "a plan"}\n```'


# ---------------------------------------------------------------- detection


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("# P\n## Iteration 1: A\n1. **x**\n", "markdown"),
        ("# P\n## iteration 2 - B\n", "markdown"),
        ("# P\n1. **x** - y\n   - Agent: a\n", "markdown"),  # a plan missing its iteration heading
        ('{"project_name": "P", "iterations": []}', "json"),
        ('Some words\n```json\n{"a": 1}\n```\n', None),  # a spec quoting an example payload
        ('Some words\n```json\n{"project_name": "P", "iterations": []}\n```\n', "json"),
        ('{"city": "Paris"}\nmore text', None),
        ("# Spec\nBuild a thing.\n## Overview\n1. It must be fast\n", None),
        ("Make me a todo app", None),
        ("# Spec\n```\n## Iteration 1: inside a fence\n```\n", None),
        ("# Spec\n- Backend\n  - Dependencies: FastAPI\n  - Agent: someone\n", None),  # no numbered task
        ("# P\n## **Iteration 1: Bold**\n", "markdown"),
    ],
)
def test_looks_like_plan(text: str, kind: str | None) -> None:
    assert looks_like_plan(text) == kind


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the plan is empty"),
        ("   \n\n", "the plan is empty"),
        ("## Iteration 1: A\n1. **x**\n", "line 1: expected the '# Project title' line first"),
        ("Intro text\n# P\n## Iteration 1: A\n1. **x**\n", "line 1: expected the '# Project title' line first"),
        ("# P\nSome text\n## Overview\n1. **x** - y\n   - Agent: a\n", "line 1: no iterations"),
        ("# P\n## Iteration 1: A\n- Agent: a\n1. **x**\n", "line 3: task field 'Agent:' before any task of iteration I1"),
        ("# P\n## Iteration 1: A\nGoal: g\n", "line 2: no tasks"),
        ("# P\n## Iteration 1: A\n1. **x**\n   - Agent: a\n   - Agent: b\n", "line 5: a second 'Agent:' line"),
        ("# P\n## Iteration 1: A\n1. **I1.T2: x**\n", "line 3: this task is written as I1.T2 but is task I1.T1"),
        ("# P\n# Q\n## Iteration 1: A\n1. x\n", "line 2: a second '# ' title"),
        ("# P\n## Iteration 1: A\n1. ** ** - y\n", "line 3: task I1.T1 has no title"),
        ('{"project_name": "P", "iterations": [}', "line 1: invalid JSON"),
        ('{"project_name": "P", "iterations": []}', "no iterations"),
        ('{"project_name": "P", "iterations": [{"name": "A", "tasks": [{"description": "no title"}]}]}',
         "iterations[0].tasks[0].title: Field required"),
    ],
)
def test_malformed_plans_name_the_line(text: str, message: str) -> None:
    with pytest.raises(InvalidDataError) as caught:
        parse_plan_text(text, "bad.md")
    assert str(caught.value).startswith("bad.md")
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_all_problems_are_listed() -> None:
    text = "# P\n## Iteration 1: A\n- Agent: a\n1. **x**\n   - Agent: a\n   - Agent: b\n"
    with pytest.raises(InvalidDataError) as caught:
        parse_plan_text(text, "bad.md")
    assert "line 3:" in str(caught.value) and "line 6:" in str(caught.value)


# ---------------------------------------------------------------- export


def test_export_of_the_readme_example_parses_back_unchanged() -> None:
    manifest = parse_plan_text((FIXTURES / "readme_example.md").read_text(encoding="utf-8"), "x")
    exported = export_markdown(manifest)
    assert dump(parse_plan_text(exported, "x")) == dump(manifest)
    assert export_markdown(parse_plan_text(exported, "x")) == exported


def test_export_writes_the_documented_format() -> None:
    text = """# P

About.

## Iteration 1: A

Goal: g

1. **One** - first
   second line
   - Agent: a
   - Dependencies: none
   - Acceptance: c

## Iteration 2

1. **Two** - d
   - Agent: a
   - Dependencies: I1.T1
"""
    assert export_markdown(parse_plan_text(text, "x")) == text


def test_export_rewrites_custom_ids_as_positional_ids() -> None:
    manifest = PlanManifest(
        requirement_id=RequirementId(number=3),
        project_name="P",
        iterations=[
            Iteration(id="setup", number=1, name="Iteration 1: Setup", tasks=[
                PlanTask(id="a", number=1, title="A", agent_id="x"),
                PlanTask(id="b", number=2, title="B", agent_id="x", dependencies=["a"]),
            ]),
        ],
    )
    exported = export_markdown(manifest)
    assert "## Iteration 1: Setup\n" in exported
    again = dump(parse_plan_text(exported, "x"))
    assert [t["id"] for t in again["iterations"][0]["tasks"]] == ["I1.T1", "I1.T2"]
    assert again["iterations"][0]["tasks"][1]["dependencies"] == ["I1.T1"]


def _random_plan(seed: int, iterations: int = 5, per_iteration: int = 10) -> PlanManifest:
    rng = random.Random(seed)
    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu".split()

    def sentence(n: int) -> str:
        return " ".join(rng.choice(words) for _ in range(n)).capitalize()

    built = []
    all_ids: list[str] = []
    for i in range(1, iterations + 1):
        tasks = []
        for m in range(1, per_iteration + 1):
            tid = f"I{i}.T{m}"
            description_lines = [sentence(6)]
            if rng.random() < 0.5:
                description_lines += ["Steps:", f"1. {sentence(3)}", f"2) {sentence(3)}", "", f"- {sentence(2)}"]
            if rng.random() < 0.2:
                description_lines += ["```python", "print('# not a title')", "```"]
            tasks.append(
                PlanTask(
                    id=tid,
                    number=m,
                    title=f"{sentence(3)} ({tid.lower()})",
                    description="\n".join(description_lines) if rng.random() < 0.9 else None,
                    agent_id=rng.choice(["developer", "tester", "writer-2"]) if rng.random() < 0.95 else None,
                    dependencies=rng.sample(all_ids, k=min(len(all_ids), rng.randint(0, 3))),
                    acceptance_criteria=[sentence(4) for _ in range(rng.randint(0, 3))],
                )
            )
            all_ids.append(tid)
        built.append(
            Iteration(
                id=f"I{i}",
                number=i,
                name=sentence(2),
                goal=sentence(5) if rng.random() < 0.8 else None,
                description=f"{sentence(4)}\n{sentence(3)}" if rng.random() < 0.5 else None,
                tasks=tasks,
            )
        )
    manifest = PlanManifest(requirement_id=RequirementId(number=0), project_name="Generated plan", iterations=built)
    manifest.extras = {"description": "A generated plan.\n\n## Tech Stack\n- Python"}
    return manifest


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_export_parse_round_trip_of_a_generated_50_task_plan(seed: int) -> None:
    manifest = _random_plan(seed)
    assert manifest.counts() == (0, 50)
    exported = export_markdown(manifest)
    assert dump(parse_plan_text(exported, "generated.md")) == dump(manifest)


def test_long_runs_of_spaces_parse_in_linear_time() -> None:
    import time

    spaces = " " * 40_000
    text = (
        f"# P{spaces}x\n## Iteration 1: A{spaces}b ##\nGoal: g{spaces}h\n"
        f"1. **T** - d{spaces}e\n   - Agent: w{spaces}\n   - Acceptance: a{spaces}b\n"
    )
    started = time.perf_counter()
    manifest = parse_plan_text(text, "big.md")
    assert time.perf_counter() - started < 2  # the old patterns took 10-20 s here
    task = manifest.iterations[0].tasks[0]
    assert task.agent_id == "w" and manifest.iterations[0].name.endswith("b")


def test_only_real_line_breaks_split_lines() -> None:
    text = "# P\r\n## Iteration 1: A\r\n1. **A\u2028B** - x\x0cy\r\n   - Agent: w\r\n   - Dependencies: none\n"
    task = parse_plan_text(text, "x.md").iterations[0].tasks[0]
    assert task.title == "A\u2028B" and task.description == "x\x0cy"


def test_dependency_separators_are_case_insensitive() -> None:
    text = "# P\n## Iteration 1: A\n1. **A** - x\n   - Agent: w\n2. **B** - y\n   - Agent: w\n3. **C** - z\n   - Agent: w\n   - Dependencies: I1.T1 AND I1.T2\n"
    assert parse_plan_text(text, "x.md").iterations[0].tasks[2].dependencies == ["I1.T1", "I1.T2"]
