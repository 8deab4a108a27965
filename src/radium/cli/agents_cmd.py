"""``rad agents``: list discovered agents and where each came from."""

from __future__ import annotations

import json

import click


@click.command()
@click.option("--json", "json_output", is_flag=True, help="Print the agents as JSON.")
@click.pass_obj
def agents(settings_obj, json_output):
    """List agents (id, engine, model, source file), duplicates and broken files.

    Searched in order: WORKSPACE/agents, WORKSPACE/.radium/agents,
    ~/.radium/agents; the first definition of an id wins.
    """
    from rich.table import Table

    from radium.agents import agent_directories, discover_agents
    from radium.cli.output import make_console

    workspace = settings_obj.workspace()
    registry = discover_agents(workspace)
    if json_output:
        click.echo(
            json.dumps(
                {
                    "agents": [
                        {
                            "id": a.id,
                            "name": a.name,
                            "engine": a.engine,
                            "model": a.model,
                            "source": str(a.source),
                            "prompt_file": str(a.prompt_file),
                            "prompt_exists": a.prompt_file.is_file(),
                            "resources": a.resources,
                        }
                        for a in registry.agents.values()
                    ],
                    "warnings": registry.warnings,
                    "errors": registry.errors,
                },
                indent=2,
            )
        )
    else:
        console = make_console()
        if registry.agents:
            table = Table()
            for column in ("Id", "Engine", "Model", "Source", "Prompt"):
                table.add_column(column, overflow="fold")
            for agent in registry.agents.values():
                prompt = str(agent.prompt_file) if agent.prompt_file.is_file() else f"[red]missing: {agent.prompt_file}[/red]"
                table.add_row(agent.id, agent.engine, agent.model or "(default)", str(agent.source), prompt)
            console.print(table)
        else:
            searched = ", ".join(str(d) for d in agent_directories(workspace))
            console.print(f"No agents found (searched {searched}).")
        for note in registry.warnings:
            click.echo(f"Warning: {note}", err=True)
        for problem in registry.errors:
            click.echo(f"Error: invalid agent file {problem} (fix or remove it)", err=True)
    if registry.errors:
        raise SystemExit(2)
