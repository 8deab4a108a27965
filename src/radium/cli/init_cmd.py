"""``rad init``: create a workspace."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path), default=".")
def init(directory: Path) -> None:
    """Create a workspace in DIRECTORY (default: here). Safe to run again.

    Creates .radium/ with the plan stage folders (backlog, development, review,
    testing, docs). Agents go in DIRECTORY/agents/*.toml, prompt templates
    wherever the agent's prompt_path says (e.g. DIRECTORY/prompts/).
    """
    from radium.workspace import Workspace

    workspace, created = Workspace.init(directory)
    if created:
        click.echo(f"Initialized Radium workspace in {workspace.root}")
        click.echo("Next: add agents in agents/*.toml, then `rad plan PLAN.md` and `rad craft`.")
    else:
        click.echo(f"Workspace already initialized: {workspace.root}")
