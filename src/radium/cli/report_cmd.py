"""``rad report``: one self-contained HTML page of a plan's run(s)."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("plan")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the page. [default: <plan folder>/report.html]",
)
@click.pass_obj
def report(settings_obj, plan, output):
    """Write an HTML report of PLAN: summary, timeline of every attempt and wait,
    dependency graph by iteration, and each task's attempts, errors, tokens,
    cost, prompt and output.

    The page is one file with its script and style inline: it opens from disk,
    offline. It can be written while a run is in progress (it shows the last
    checkpoint).
    """
    import time

    from radium.errors import InvalidDataError
    from radium.reporting.report_data import build_report_data
    from radium.reporting.report_html import write_report

    started = time.monotonic()
    workspace = settings_obj.workspace()
    ref = workspace.find_plan(plan)
    store = ref.store()
    manifest = store.load()
    target = (output if output is not None else ref.plan_dir / "report.html").resolve()
    if not target.parent.is_dir():
        raise InvalidDataError(f"-o {output}: directory {target.parent} does not exist", hint="create it first")
    data = build_report_data(manifest, ref.plan_dir, store.tasks_dir, target.parent, plan)
    try:
        size = write_report(target, data)
    except OSError as exc:
        raise InvalidDataError(f"cannot write {target}: {exc.strerror or exc}") from None
    click.echo(
        f"Wrote {target} ({size / 1_000_000:.1f} MB, {data['summary']['total']} tasks, "
        f"{time.monotonic() - started:.1f}s)"
    )
