"""``rad plan``: create a plan from a plan file or a free-form spec; export one as markdown."""

from __future__ import annotations

import os
from pathlib import Path

import click

from radium.workspace import STAGES

FORMAT_HELP = """\b
Plan format (markdown; full description in docs/plan-format.md):
  # Project name
  Optional project description.
  ## Iteration 1: Setup            only "## Iteration N: Name" headings are
  Goal: The repository exists      iterations; ids come from positions: I1, I1.T1…
  1. **Create repo** - Initialize git and add a README
     - Agent: setup-agent
     - Dependencies: none          or I1.T1, I1.T2
     - Acceptance: README.md exists
     - [ ] CI passes               (a checkbox is a criterion too)
JSON works too: the original Radium's ParsedPlan, or a plan_manifest.json.
"""


@click.command(epilog=FORMAT_HELP)
@click.argument("input_path", metavar="[INPUT]", required=False)
@click.option("--id", "requirement", metavar="REQ-N", help="Requirement id to use (default: the next free one).")
@click.option("--name", metavar="SLUG", help="Folder name suffix (default: from the project title).")
@click.option(
    "--stage",
    type=click.Choice(STAGES),
    default="backlog",
    show_default=True,
    help="Stage folder to create the plan in.",
)
@click.option("--export", "export_plan", metavar="PLAN", help="Print an existing plan as markdown and exit.")
@click.pass_obj
def plan(
    settings,  # noqa: ANN001 - radium.cli.Settings
    input_path: str | None,
    requirement: str | None,
    name: str | None,
    stage: str,
    export_plan: str | None,
) -> None:
    """Create a plan from INPUT (a file, or - for stdin).

    A markdown plan (with "## Iteration N: Name" headings) or a JSON plan is
    parsed as it is, with no model. Anything else is a free-form spec: the
    planner model turns it into a plan, which is checked (and repaired up to
    twice) before it is saved. The planner is the agent named by
    [planner] agent = "<id>" in .radium/config.toml, else RADIUM_ENGINE and
    RADIUM_MODEL.

    The plan is created in .radium/plan/<stage>/REQ-NNN-<slug>/ all at once:
    on any error nothing is left behind and no requirement number is used.
    """
    from radium.errors import InvalidDataError

    if export_plan is not None:
        if input_path is not None or requirement or name:
            raise InvalidDataError("--export PLAN takes no INPUT, --id or --name")
        _export(settings, export_plan)
        return
    if input_path is None:
        raise InvalidDataError(
            "rad plan needs INPUT: a plan or spec file, or - for stdin", hint="see `rad plan --help`"
        )
    _create(settings, input_path, requirement, name, stage)


def _export(settings, identifier: str) -> None:  # noqa: ANN001
    from radium.planning.markdown import export_markdown, round_trip_differences

    workspace = settings.workspace()
    ref = workspace.find_plan(identifier)
    manifest = ref.store().load()
    text = export_markdown(manifest)
    click.echo(text, nl=False)
    differences = round_trip_differences(manifest, text)
    for difference in differences[:10]:
        click.echo(f"Warning: export is not exact: {difference}", err=True)
    if len(differences) > 10:
        click.echo(f"Warning: export is not exact: … and {len(differences) - 10} more", err=True)


def _create(settings, input_path: str, requirement_text: str | None, name: str | None, stage: str) -> None:  # noqa: ANN001
    import asyncio

    from radium.agents import discover_agents
    from radium.planning import authoring
    from radium.planning.markdown import looks_like_plan, parse_plan_text
    from radium.errors import PlanValidationError, redact
    from radium.planning.validation import validate_plan

    requirement = authoring.parse_requirement_id(requirement_text) if requirement_text else None
    workspace = settings.workspace()
    source = authoring.read_input(input_path)
    if requirement is not None:
        authoring.ensure_number_free(workspace, requirement)  # fail before any model call
    registry = discover_agents(workspace)
    notes: list[str] = [f"agent files: {message}" for message in registry.errors]

    kind = looks_like_plan(source.text)
    if kind is None and source.source_name.lower().endswith(".json"):
        _refuse_broken_json(source)  # a broken JSON plan is not a free-form spec for the planner
    if kind is not None:
        manifest = parse_plan_text(source.text, source.source_name)
        structure = validate_plan(manifest)
        if structure.errors:
            messages = [p.message for p in structure.errors]
            raise PlanValidationError(
                f"{source.source_name}: invalid plan: " + "; ".join(messages),
                problems=messages,
                hint="fix the plan file and run rad plan again",
            )
        # Agents may be defined after planning: agent problems are warnings here
        # (`rad validate` and `rad craft` treat them as errors).
        report = validate_plan(manifest, registry)
        notes += [p.message for p in (*report.errors, *report.warnings)]
        how = f"parsed from {source.source_name} ({kind} plan)"
    else:
        from radium.planning.generator import generate_plan, resolve_planner

        planner = resolve_planner(workspace, registry)
        click.echo(f"{source.source_name} is a free-form spec: generating a plan.", err=True)
        generated = asyncio.run(
            generate_plan(planner, source.text, registry, notify=lambda line: click.echo(redact(line), err=True))
        )
        manifest = generated.manifest
        notes += [p.message for p in generated.warnings]
        attempts = "1 attempt" if generated.attempts == 1 else f"{generated.attempts} attempts"
        how = f"generated from {source.source_name} by {planner.label}, {attempts}"

    created = authoring.create_plan(
        workspace, manifest, source.text, requirement=requirement, name=name, stage=stage
    )
    _report(workspace.root, created, how, notes)


def _refuse_broken_json(source) -> None:  # noqa: ANN001
    import json

    from radium.errors import InvalidDataError

    try:
        json.loads(source.text)
    except json.JSONDecodeError as exc:
        raise InvalidDataError(
            f"{source.source_name}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})",
            hint="fix the JSON plan file",
        ) from None
    except RecursionError:
        raise InvalidDataError(f"{source.source_name}: JSON nested too deeply", hint="fix the JSON plan file") from None


def _report(root: Path, created, how: str, notes: list[str]) -> None:  # noqa: ANN001
    from radium.errors import redact

    manifest = created.manifest
    completed, total = manifest.counts()
    iterations = len(manifest.iterations)
    try:
        where = created.plan_dir.relative_to(Path.cwd())
    except ValueError:
        where = created.plan_dir
    click.echo(
        f"Created plan {created.requirement}: {manifest.project_name} "
        f"({iterations} iteration{'s' if iterations != 1 else ''}, {total} task{'s' if total != 1 else ''})"
    )
    click.echo(f"  Folder: {where}{os.sep}")
    click.echo(f"  Source: {how}")
    for note in notes:
        click.echo(f"  Warning: {redact(note)}")
    click.echo(f"Next: rad craft {created.requirement}")
