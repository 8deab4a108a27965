"""Turning run events into what a person or a program reads.

* ``JsonRenderer``: ``--json``; one event per line on stdout, nothing else.
* ``HumanRenderer``: the seed's lines (``[Iteration 1] Progress: …``,
  ``• Progress: 40%``, ``Attempt 1: Error (rate limit) → Wait 1 second …``)
  and an end-of-run summary. On a terminal a live rich progress bar sits below
  the lines; when piped, only plain lines are written (no cursor movement, no
  colour), and ``NO_COLOR`` is honoured by rich.

While the bar is live, lines are gathered and printed together at most ten
times a second (``FLUSH_INTERVAL_S``): each print under a live bar re-renders
it, which cost ~2 ms a task (four lines) and made a fast run four times slower
on a terminal than piped. A gathered line waits at most that long, so a task
that starts a long model call still shows at once to the eye.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING

import click

from radium.events import Event
from radium.planning.run_types import format_elapsed
from radium.retry import format_compact
from radium.reporting.pricing import format_cost

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

FLUSH_INTERVAL_S = 0.1


def make_console(stderr: bool = False) -> "Console":
    """A rich console; when output is piped (and COLUMNS unset), lines get 120 columns, not 80."""
    import os

    from rich.console import Console

    console = Console(highlight=False, soft_wrap=True, stderr=stderr)
    if not console.is_terminal and not os.environ.get("COLUMNS"):
        console = Console(highlight=False, soft_wrap=True, stderr=stderr, width=120)
    return console


class JsonRenderer:
    """``--json``: JSON Lines on stdout, flushed per event so a reader sees them live."""

    def __call__(self, event: Event) -> None:
        sys.stdout.write(event.to_json() + "\n")
        sys.stdout.flush()

    def close(self) -> None:
        pass


class HumanRenderer:
    """Seed-format progress lines, a live bar on terminals, and the run summary."""

    def __init__(self, console: "Console | None" = None, live: bool | None = None) -> None:
        self.console = console or make_console()
        self.live = self.console.is_terminal if live is None else live
        self._progress: "Progress | None" = None
        self._bar = None
        self._iteration_number = 0
        self.options: str | None = None
        """The run's settings, shown in the header (set by ``rad craft``)."""
        # Piped, rich would only strip styles and wrap nothing (soft wrap): write the
        # lines directly, 20x cheaper per line than laying them out with rich.
        self._plain = not self.live and not self.console.is_terminal and not self.console.record
        self._pending: list[tuple[str, str | None]] = []
        self._flush_at = 0.0
        self._flush_timer = None

    # ----------------------------------------------------------- plumbing

    def _print(self, text: str, style: str | None = None) -> None:
        if self._plain:
            if ":" in text:
                from rich._emoji_replace import _emoji_replace

                text = _emoji_replace(text)  # as rich does (``:smile:`` in a title)
            if not text.isprintable():
                from rich.control import strip_control_codes

                text = strip_control_codes(text)
                if "\t" in text:
                    text = text.expandtabs(8)
            file = self.console.file
            file.write(text + "\n")
            file.flush()
            return
        if self._progress is None:
            self.console.print(text, style=style, markup=False, highlight=False)
            return
        self._pending.append((text, style))
        if time.monotonic() >= self._flush_at:
            self._flush()
        elif self._flush_timer is None:
            try:
                import asyncio

                loop = asyncio.get_running_loop()
            except RuntimeError:  # no event loop (library use): nothing would flush later
                self._flush()
            else:
                self._flush_timer = loop.call_at(
                    loop.time() + (self._flush_at - time.monotonic()), self._flush
                )

    def _flush(self) -> None:
        """Print the gathered lines as one renderable: one re-render of the live bar."""
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        self._flush_at = time.monotonic() + FLUSH_INTERVAL_S
        if not self._pending:
            return
        from rich.text import Text

        from rich._emoji_replace import _emoji_replace

        block = Text()
        for number, (text, style) in enumerate(self._pending):
            if number:
                block.append("\n")
            block.append(_emoji_replace(text) if ":" in text else text, style=style)  # as print(str) does
        self._pending = []
        target = self._progress.console if self._progress is not None else self.console
        target.print(block, markup=False, highlight=False)

    def _start_bar(self, completed: int, total: int) -> None:
        if not self.live or self._progress is not None:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[current]}"),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
        )
        self._progress.start()
        self._bar = self._progress.add_task("tasks", total=total or None, completed=completed, current="")

    def close(self) -> None:
        self._flush()
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    # ----------------------------------------------------------- events

    def __call__(self, event: Event) -> None:
        handler = getattr(self, f"on_{event.type}", None)
        if handler is not None:
            handler(event)

    def on_run_started(self, e: Event) -> None:
        mode = "continuous" if e["mode"] == "continuous" else f"bounded ({e['max_iterations']} iterations)"
        self._print(f"rad craft {e['plan']}".rstrip(), "bold")
        self._print(
            f"  Project: {e['project']} · {e['total_tasks']} tasks · mode {mode}"
            + (f" · parallel {e['parallel']}" if e["parallel"] > 1 else "")
        )
        if self.options:
            self._print(f"  Options: {self.options}")
        if e.get("backend", "local") != "local":
            self._print(f"  Backend: {e['backend']} · {e.get('where')}")
        if e["completed_tasks"] and e["resume_from"]:
            verb = "Resuming from checkpoint" if e.get("resume") else "Continuing"
            self._print(
                f"  {verb}: {e['completed_tasks']}/{e['total_tasks']} tasks already completed; "
                f"next task {e['resume_from']}"
            )
        self._print("")
        self._start_bar(e["completed_tasks"], e["total_tasks"])

    def on_iteration_started(self, e: Event) -> None:
        self._iteration_number = e["number"]
        # The seed's header, then the detail on the next line.
        self._print(f"→ Executing iteration {e['number']}...", "bold cyan")
        goal = f" · Goal: {e['goal']}" if e.get("goal") else ""
        self._print(f"  {e['iteration_id']}: {e['name']}{goal}")

    def on_task_started(self, e: Event) -> None:
        self._print(
            f"[Iteration {e['iteration_number']}] Progress: {e['completed_tasks']}/{e['total_tasks']} tasks"
            f" | Current: {e['task_id']} | Elapsed: {format_elapsed(e['elapsed_s'])}"
        )
        engine = f" · {e['engine']}/{e['model']}" if e.get("engine") else ""
        self._print(f"  → {e['task_id']} {e['title']} · agent {e['agent_id']}{engine}")
        if self._progress is not None:
            self._progress.update(self._bar, current=e["task_id"])

    def on_attempt_failed(self, e: Event) -> None:
        self._print(f"    {e['line']}", "yellow")
        self._print(f"      {e['message']}", "dim")

    def on_rate_limit_wait(self, e: Event) -> None:
        self._print(f"    {e['line']}", "yellow")

    def on_task_completed(self, e: Event) -> None:
        details = [f"{e['duration_ms'] / 1000:.1f}s"]
        if e["attempts"] > 1:
            self._print(f"    {e['task_id']} Attempt {e['attempts']}: Success!", "green")
            details.append(f"{e['attempts']} attempts")
        if e.get("rate_limit_wait_ms"):
            details.append(f"{format_compact(e['rate_limit_wait_ms'] / 1000)} waiting on rate limits")
        if e.get("prompt_tokens") is not None:
            details.append(f"{e['prompt_tokens'] + (e.get('completion_tokens') or 0):,} tokens")
            cost = e.get("cost_usd")
            details.append(format_cost(cost) if cost is not None else "cost unknown")
        self._print(f"    ✓ {e['task_id']} completed ({', '.join(details)})", "green")
        self._print(f"• Progress: {e['percent']}%")
        if self._progress is not None:
            self._progress.update(self._bar, completed=e["completed_tasks"])

    def on_task_failed(self, e: Event) -> None:
        self._print(
            f"    ✗ {e['task_id']} failed after {e['attempts']} attempt(s): "
            f"{e['category']} ({e['kind']}): {e['message']}",
            "red",
        )

    def on_task_blocked(self, e: Event) -> None:
        self._print(f"    ⊘ {e['task_id']} blocked: {e['reason']}", "yellow")

    def on_run_finished(self, e: Event) -> None:
        self.close()
        outcome = e["outcome"]
        style = {"completed": "bold green", "failed": "bold red", "interrupted": "bold yellow"}.get(outcome)
        self._print("")
        if outcome == "interrupted":
            self._print(e["message"], style)
        else:
            self._print(f"→ {e['message']}", style)
            if outcome in ("bound_reached", "sanity_limit", "budget_reached"):
                self._print("Progress saved to plan_manifest.json")
        self._print("")
        self._print("Summary", "bold")
        self._print(
            f"  Tasks: {e['completed']} completed · {e['failed']} failed · {e['blocked']} blocked · "
            f"{e['remaining']} remaining (of {e['total']})"
        )
        tokens = f"{e['prompt_tokens']:,} prompt / {e['completion_tokens']:,} completion"
        self._print(
            f"  Retries: {e['retries']} · Tokens: {tokens} · Cost: {run_cost_text(e.get('cost_usd'), len(e.get('unpriced_tasks') or []), e['prompt_tokens'] + e['completion_tokens'])}"
            f" · Wall time: {format_elapsed(e['wall_ms'] / 1000)}"
        )
        if e.get("rate_limit_wait_ms") or e.get("rate_limited_requests"):
            self._print(
                f"  Rate limits: {e.get('rate_limited_requests', 0)} request(s) answered 429 · "
                f"{format_compact(e['rate_limit_wait_ms'] / 1000)} spent waiting (summed over tasks)"
            )
        for failure in e.get("failures", []):
            self._print(
                f"  Failed: {failure['task_id']}: {failure['category']} ({failure['kind']}): {failure['message']}",
                "red",
            )
        blocked = e.get("blocked_tasks") or {}
        for task_id, reason in list(blocked.items())[:10]:
            self._print(f"  Blocked: {task_id}: {reason}", "yellow")
        if len(blocked) > 10:
            self._print(f"  … and {len(blocked) - 10} more blocked task(s)", "yellow")
        if e.get("interrupted_tasks"):
            self._print(f"  Returned to pending: {', '.join(e['interrupted_tasks'])}")
        if e.get("next_command"):
            self._print(f"  Next: {e['next_command']}")


def run_cost_text(cost_usd: float | None, unpriced: int, tokens: int) -> str:
    """``$0.0123``, ``unknown`` or ``$0.0123 + unknown (2 unpriced tasks)``: never a false 0."""
    if cost_usd is None:
        return "unknown" if unpriced or tokens else format_cost(0)
    text = format_cost(cost_usd)
    return f"{text} + unknown ({unpriced} unpriced task{'s' if unpriced != 1 else ''})" if unpriced else text


def warn(message: str) -> None:
    """A non-fatal note on stderr (never on stdout, which ``--json`` keeps clean)."""
    from radium.errors import redact

    click.echo(f"Warning: {redact(message)}", err=True)
