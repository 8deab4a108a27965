"""``rad validate``: check a plan without running it."""

from __future__ import annotations

import json

import click


@click.command()
@click.argument("plan_id", metavar="PLAN")
@click.option("--json", "as_json", is_flag=True, help='Print {"ok", "errors", "warnings"} as JSON.')
@click.option("--no-prompts", is_flag=True, help="Do not check that agents' prompt files are readable.")
@click.pass_obj
def validate(settings, plan_id: str, as_json: bool, no_prompts: bool) -> None:  # noqa: ANN001
    """Check PLAN without running it.

    Errors: ids that cannot be file names, output paths outside the plan's
    artifacts, duplicate ids, unknown dependencies, dependency cycles,
    dependencies on a later iteration, tasks with an unknown agent,
    unreadable prompt files, agent files that do not load, engines that
    cannot be used (API key, model, SDK) and context files that are refused:
    the same verdict as rad craft --dry-run.
    Warnings: empty iterations, tasks with no agent (skipped by rad craft),
    unknown template variables, duplicate agent files. Exit 0 when there are no errors
    (warnings allowed), 2 when there are.

    PLAN is a requirement id (REQ-001), a plan folder name, a plan directory,
    or a path to a plan_manifest.json.
    """
    from radium.agents import discover_agents
    from radium.errors import ExitCode
    from radium.planning.validation import Problem, validate_plan

    workspace = settings.workspace()
    ref = workspace.find_plan(plan_id)
    manifest = ref.store().load()
    registry = discover_agents(workspace)
    report = validate_plan(manifest, registry, check_prompts=not no_prompts)
    # A broken agent file is an error here as in `rad craft` and `--dry-run` (one rule
    # for all three), whether or not a task uses it: it may be the agent a task meant.
    agent_file_errors = [Problem("invalid-agent-file", f"invalid agent file {e} (fix or remove it)") for e in registry.errors]
    errors = [*report.errors, *agent_file_errors, *_run_preflight(workspace, ref, manifest, registry)]
    warnings = report.warnings

    if as_json:
        click.echo(
            json.dumps(
                {
                    "ok": not errors,
                    "plan": str(ref.manifest_path),
                    "errors": [p.to_dict() for p in errors],
                    "warnings": [p.to_dict() for p in warnings],
                },
                indent=2,
                ensure_ascii=False,
            )
        )
    else:
        for problem in errors:
            click.echo(f"error [{problem.code}]: {problem.message}")
        for problem in warnings:
            click.echo(f"warning [{problem.code}]: {problem.message}")
        _, total = manifest.counts()
        where = ref.name if ref.stage else str(ref.manifest_path)
        label = (
            f"{where} ({manifest.project_name}, {_count(len(manifest.iterations), 'iteration')}, "
            f"{_count(total, 'task')})"
        )
        if errors:
            click.echo(f"✗ {label}: {_count(len(errors), 'error')}, {_count(len(warnings), 'warning')}")
        else:
            extra = f" ({_count(len(warnings), 'warning')})" if warnings else ""
            click.echo(f"✓ {label} is valid{extra}")
    if errors:
        raise click.exceptions.Exit(int(ExitCode.USAGE))


def _run_preflight(workspace, ref, manifest, registry) -> list:  # noqa: ANN001
    """The rest of what `rad craft` checks before calling a model, so both give one verdict:
    each used agent's engine (model, base URL, API key, SDK; no network) and the context files."""
    from radium.cli.craft_cmd import context_policy
    from radium.engines import create_engine
    from radium.errors import RadiumError
    from radium.planning.validation import Problem
    from radium.prompts import gather_context_files
    from radium.settings import resolve_settings

    problems = []
    try:
        settings, _ = resolve_settings({}, workspace.config(), config_path=str(workspace.config_path))
        configured = [(workspace.root / p, f"fix context_files in {workspace.config_path}") for p in settings.context_files]
        gather_context_files(workspace.root, ref.plan_dir, configured, context_policy(workspace, ref))
    except RadiumError as exc:
        return [Problem("config", str(exc))]
    checked = set()
    for _, task in manifest.tasks():
        agent = registry.get(task.agent_id) if task.agent_id else None
        if agent is None or agent.id in checked or task.completed:
            continue
        checked.add(agent.id)
        try:
            create_engine(agent.engine_settings(workspace.root, engine=settings.engine, model=settings.model)).preflight()
        except RadiumError as exc:
            problems.append(Problem("engine", f"agent {agent.id} (used by {task.id}): {exc}", task.id))
    return problems


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"
