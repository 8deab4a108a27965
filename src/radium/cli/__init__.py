"""The ``rad`` command line: a thin layer over the library.

Commands parse options, build configuration and call the library; the library
never prints to the terminal or exits. This module is the one place where
exceptions become exit codes: a ``RadiumError`` prints one line on stderr
(``Error: what, where (what to do)``) and exits with its ``exit_code``; with
``--debug`` (or ``RADIUM_DEBUG=1``) the traceback is shown instead.

Subcommands live in their own modules and are imported only when invoked, so
``rad --help`` stays fast.
"""

from __future__ import annotations

import os
import signal
import sys


def _interrupted_during_startup(signum, frame) -> None:  # noqa: ANN001
    """Ctrl+C while the command line is still being imported: exit quietly, no traceback."""
    os.write(2, b"Interrupted.\n")
    os._exit(130)


def _started_as_cli() -> bool:
    """Whether this process is the ``rad`` command (not a program importing radium.cli)."""
    program = sys.argv[0] if sys.argv else ""
    return os.path.basename(program) in ("rad", "rad.exe", "rad-script.py") or program.endswith(
        os.path.join("radium", "__main__.py")
    )


# Installed before the (comparatively slow) imports below; ``main`` puts Python's
# own handler back once it can turn KeyboardInterrupt into a clean exit.
if _started_as_cli() and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
    signal.signal(signal.SIGINT, _interrupted_during_startup)

import importlib  # noqa: E402
from pathlib import Path  # noqa: E402

import click  # noqa: E402

from radium.errors import ExitCode, RadiumError, redact  # noqa: E402

_COMMANDS: dict[str, tuple[str, str]] = {
    "init": ("radium.cli.init_cmd", "init"),
    "plan": ("radium.cli.plan_cmd", "plan"),
    "craft": ("radium.cli.craft_cmd", "craft"),
    "status": ("radium.cli.status_cmd", "status"),
    "validate": ("radium.cli.validate_cmd", "validate"),
    "agents": ("radium.cli.agents_cmd", "agents"),
    "report": ("radium.cli.report_cmd", "report"),
}
_SHORT_HELP = {
    "init": "Create a workspace (.radium/); idempotent.",
    "plan": "Create a plan from a markdown/JSON plan file or a free-form spec.",
    "craft": "Execute a plan: retries, checkpoints, resume.",
    "status": "Show the progress of one plan, or of all plans.",
    "validate": "Check a plan without running it.",
    "agents": "List discovered agents and where each came from.",
    "report": "Write a self-contained HTML report: timeline, graph, cost.",
}

EXIT_CODES_HELP = """\b
Exit codes:
  0    the run ended normally (plan complete, iteration bound or budget reached)
  1    a task failed (fatal error or retries exhausted) or tasks were blocked
  2    bad usage or bad input (unknown plan, invalid manifest, cycle, missing key…)
  130  interrupted by SIGINT (Ctrl+C)
  143  stopped by SIGTERM
"""


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(_COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in _COMMANDS:
            return None
        module_name, attribute = _COMMANDS[name]
        return getattr(importlib.import_module(module_name), attribute)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Listing commands must not import them all: use the static summaries.
        with formatter.section("Commands"):
            formatter.write_dl([(name, _SHORT_HELP[name]) for name in _COMMANDS])


class Settings:
    """Global options shared by every command (``ctx.obj``)."""

    def __init__(self, workspace: Path | None, debug: bool) -> None:
        self.workspace_option = workspace
        self.debug = debug

    def workspace(self):
        from radium.workspace import Workspace

        return Workspace.discover(self.workspace_option)


@click.group(cls=LazyGroup, epilog=EXIT_CODES_HELP, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-w",
    "--workspace",
    type=click.Path(file_okay=False, path_type=Path),
    help="Workspace directory (default: $RADIUM_WORKSPACE, else search upward for .radium/).",
)
@click.option("--debug", is_flag=True, envvar="RADIUM_DEBUG", help="Show tracebacks for errors.")
@click.version_option(package_name="radium", prog_name="rad")
@click.pass_context
def cli(ctx: click.Context, workspace: Path | None, debug: bool) -> None:
    """Radium: run multi-step AI plans to the end — retried, checkpointed, resumable."""
    ctx.obj = Settings(workspace, debug)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the CLI and turn errors into exit codes."""
    debug = "--debug" in (argv if argv is not None else sys.argv[1:]) or os.environ.get(
        "RADIUM_DEBUG", ""
    ) not in ("", "0")
    try:
        if signal.getsignal(signal.SIGINT) is _interrupted_during_startup:
            signal.signal(signal.SIGINT, signal.default_int_handler)
        code = cli.main(args=argv, prog_name="rad", standalone_mode=False)
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except click.ClickException as exc:
        exc.show()
        code = ExitCode.USAGE if exc.exit_code == 2 else exc.exit_code
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        code = ExitCode.SIGINT
    except RadiumError as exc:
        if debug:
            raise
        click.echo(f"Error: {redact(str(exc))}", err=True)
        code = exc.exit_code
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        code = ExitCode.SIGINT
    except BrokenPipeError:
        code = ExitCode.OK
    except OSError as exc:  # a path the user gave that the OS refuses (ENAMETOOLONG, ELOOP, EACCES…)
        if debug:
            raise
        click.echo(f"Error: {_describe_os_error(exc)} (check the path)", err=True)
        code = ExitCode.USAGE
    except RecursionError:
        if debug:
            raise
        click.echo("Error: input nested too deeply to process (fix or restore the file)", err=True)
        code = ExitCode.USAGE
    except Exception as exc:  # a bug of ours: one line, and the way to see more
        if debug:
            raise
        click.echo(
            f"Error: internal error: {type(exc).__name__}: {redact(str(exc))} "
            "(re-run with --debug for the traceback, and please report it)",
            err=True,
        )
        code = ExitCode.TASK_FAILED
    sys.exit(int(code or 0))


def _describe_os_error(exc: OSError) -> str:
    """``File name too long: /tmp/aaaa…aaa`` (paths over 120 characters are shortened)."""
    name = str(exc.filename) if exc.filename is not None else ""
    if len(name) > 120:
        name = f"{name[:60]}…{name[-40:]} ({len(name)} characters)"
    what = exc.strerror or type(exc).__name__
    return f"{what}: {name}" if name else what
