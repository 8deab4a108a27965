"""``rad init``: create a workspace, with a starter agent, prompt and plan to edit."""

from __future__ import annotations

from pathlib import Path

import click

STARTERS: dict[str, str] = {
    "agents/example.toml": """\
# A starter agent: edit it, or copy it for each role your plan needs.
# The mock engine runs offline (it answers with its prompt); switch to a real one
# when ready, e.g. engine = "openai" and model = "gpt-4o-mini" with OPENAI_API_KEY set.
[agent]
id = "example"
name = "Example"
description = "A starter agent"
prompt_path = "../prompts/example.md"
engine = "mock"
""",
    "prompts/example.md": """\
You are a careful assistant working on {{project_name}}.

Task {{task_id}}: {{task_title}}
{{task_description}}

Whatever this template does not name (acceptance criteria, the outputs of the
tasks this one depends on, context files) is appended after it.
""",
    "plan.md": """\
# My project
What this plan is for. Edit it, then: rad plan plan.md && rad craft REQ-001

## Iteration 1: First steps
Goal: Something small works end to end

1. **Outline** - Write a short outline of the work
   - Agent: example
   - Acceptance: At most five points
2. **Draft** - Turn the outline into a first draft
   - Agent: example
   - Dependencies: I1.T1
""",
}


@click.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path), default=".")
def init(directory: Path) -> None:
    """Create a workspace in DIRECTORY (default: here). Safe to run again.

    Creates .radium/ with the plan stage folders (backlog, development, review,
    testing, docs) and, in a new workspace, starters to edit: agents/example.toml
    (mock engine, offline), prompts/example.md and plan.md. Existing files are
    never overwritten; running it again changes nothing.
    """
    from radium.files import atomic_write_text
    from radium.workspace import Workspace

    workspace, created = Workspace.init(directory)
    if not created:
        click.echo(f"Workspace already initialized: {workspace.root}")
        return
    written = []
    for relative, text in STARTERS.items():
        path = workspace.root / relative
        if path.exists() or path.is_symlink():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, text, durable=False)
        written.append(relative)
    click.echo(f"Initialized Radium workspace in {workspace.root}")
    if written:
        click.echo(f"Starters to edit: {', '.join(written)} (the example agent uses the offline mock engine)")
    click.echo("Next: rad plan plan.md, then rad craft REQ-001")
