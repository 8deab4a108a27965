"""Prompts that carry the work forward, checked on the exact prompts a real run sent.

Each task's rendered prompt is stored beside its output
(``artifacts/tasks/<id>.prompt.md``); the mock engine echoes it, so these tests
read what the model really received.
"""

from __future__ import annotations

from pathlib import Path

from helpers import make_workspace, manifest, plan_dir, run_rad, task, write_agent


def sent_prompt(ws: Path, task_id: str) -> str:
    return (plan_dir(ws) / "artifacts" / "tasks" / f"{task_id}.prompt.md").read_text()


def output(ws: Path, task_id: str) -> str:
    return (plan_dir(ws) / "artifacts" / "tasks" / f"{task_id}.md").read_text()


def chain_workspace(tmp_path: Path, template: str) -> Path:
    plan = manifest(
        [
            task("I1.T1", description="Collect the facts."),
            task("I1.T2", deps=["I1.T1"], description="Outline from the facts."),
            task(
                "I1.T3",
                deps=["I1.T1", "I1.T2"],
                description="Write the post.",
                acceptance_criteria=["Under 900 words", "Ends with a summary"],
            ),
        ]
    )
    ws = make_workspace(tmp_path / "ws", plan)
    write_agent(ws, "writer", prompt=template)
    (ws / "AGENTS.md").write_text("House style: plain words.\n@docs/glossary.md\n")
    (ws / "docs").mkdir()
    (ws / "docs" / "glossary.md").write_text("Glossary: checkpoint = saved progress.\n")
    result = run_rad("craft", "REQ-001", cwd=ws)
    assert result.returncode == 0, result.stderr
    return ws


def test_third_task_of_a_chain_receives_everything(tmp_path: Path) -> None:
    ws = chain_workspace(tmp_path, "You are a writer.\n")  # names none of the variables
    prompt = sent_prompt(ws, "I1.T3")
    assert prompt.startswith("You are a writer.\n\n---\n\n## Task I1.T3: Task I1.T3\nWrite the post.")
    assert "## Acceptance criteria\n- Under 900 words\n- Ends with a summary" in prompt
    assert "## Iteration goal (I1: Iteration 1)\nGoal 1" in prompt
    assert f"### I1.T1: Task I1.T1\n{output(ws, 'I1.T1').rstrip()}" in prompt
    assert f"### I1.T2: Task I1.T2\n{output(ws, 'I1.T2').rstrip()}" in prompt
    assert "### AGENTS.md\nHouse style: plain words.\nGlossary: checkpoint = saved progress." in prompt
    # And the model got exactly that prompt.
    assert output(ws, "I1.T3") == f"Mock response (model mock-1) for:\n{prompt}"


def test_template_placing_everything_gets_nothing_appended(tmp_path: Path) -> None:
    template = (
        "# {{project_name}} / {{iteration_id}} {{ iteration_name }}: {{iteration_goal}}\n"
        "Task {{task_id}} {{task_title}}: {{task_description}}\n"
        "Criteria:\n{{acceptance_criteria}}\n"
        "Earlier work:\n{{dependency_outputs}}\n"
        "Context:\n{{ context_files }}\n"
    )
    ws = chain_workspace(tmp_path, template)
    prompt = sent_prompt(ws, "I1.T3")
    assert prompt.startswith("# Test Project / I1 Iteration 1: Goal 1\nTask I1.T3 Task I1.T3: Write the post.\n")
    assert "\n---\n" not in prompt  # nothing appended
    assert "Criteria:\n- Under 900 words\n- Ends with a summary\n" in prompt
    assert "Earlier work:\n### I1.T1: Task I1.T1\n" in prompt
    assert "Context:\n### AGENTS.md\nHouse style: plain words." in prompt


def test_values_are_never_substituted_twice(tmp_path: Path) -> None:
    plan = manifest([task("I1.T1", description="Explain the {{task_id}} and {{ project_name }} syntax.")])
    ws = make_workspace(tmp_path / "ws", plan)
    write_agent(ws, "writer", prompt="{{task_description}}\n{{task_id}} {{task_title}} {{unknown_var}}\n")
    assert run_rad("craft", "REQ-001", cwd=ws).returncode == 0
    prompt = sent_prompt(ws, "I1.T1")
    assert prompt.startswith("Explain the {{task_id}} and {{ project_name }} syntax.\nI1.T1 Task I1.T1 {{unknown_var}}\n")
    validate = run_rad("validate", "REQ-001", cwd=ws)
    assert validate.returncode == 0 and "unknown_var" in validate.stdout + validate.stderr


def test_long_dependency_outputs_are_cut_with_a_note(tmp_path: Path) -> None:
    plan = manifest([task("I1.T1", description="x " * 400), task("I1.T2", deps=["I1.T1"])])
    ws = make_workspace(tmp_path / "ws", plan)
    (ws / ".radium" / "config.toml").write_text("[execution]\ndependency_output_chars = 200\n")
    assert run_rad("craft", "REQ-001", cwd=ws).returncode == 0
    prompt = sent_prompt(ws, "I1.T2")
    full = len(output(ws, "I1.T1"))
    assert f"[output cut: first 200 of {full} characters; full text in artifacts/tasks/I1.T1.md]" in prompt
    section = prompt.split("### I1.T1: Task I1.T1\n", 1)[1]
    assert section.index("[output cut") == 201


def test_import_cycles_are_cut_and_show_prompts_calls_nothing(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws", manifest([task("I1.T1")]))
    (ws / "AGENTS.md").write_text("A\n@b.md\n")
    (ws / "b.md").write_text("B\n@AGENTS.md\n```\n@not-an-import.md\n```\n")
    result = run_rad("craft", "REQ-001", "--dry-run", "--show-prompts", cwd=ws)
    assert result.returncode == 0, result.stderr
    assert "A\nB\n(@AGENTS.md not imported again: import cycle)\n```\n@not-an-import.md\n```" in result.stdout
    assert "----- prompt of I1.T1 -----" in result.stdout
    assert not (plan_dir(ws) / "artifacts" / "tasks").exists()
