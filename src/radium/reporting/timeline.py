"""The report's time axis: every attempt of every task on one clock, idle gaps folded.

A plan run today, interrupted, and resumed tomorrow would draw as two specks
at both ends of a day-long axis. So the axis keeps busy time at its true
scale and folds every idle gap (no attempt running and no wait pending) longer
than ``fold_after_ms`` into a short break of fixed width, marked in the
drawing with how long it really was.

Positions are milliseconds on the *display* axis (``Axis.x``); the drawing
scales them to pixels.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field
from datetime import datetime

from radium.models import PlanTask

OUTCOMES = {"ok": 0, "error": 1, "interrupted": 2}
WAIT_SOURCES = {"backoff": 0, "retry-after": 1, "retry-after-ms": 1}
"""Wait sources with their own colour; any other (provider reset headers…) is 2, "server-timed"."""


def parse_time(text: str | None) -> float | None:
    """Epoch milliseconds of an ISO 8601 timestamp, or None."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000
    except ValueError:
        return None


@dataclass
class Span:
    """One attempt in epoch ms: [start, end], then an optional wait up to ``wait_end``."""

    start: float
    end: float
    outcome: int
    wait_end: float | None = None
    wait_source: int | None = None
    gate_ms: float = 0.0


def task_spans(task: PlanTask) -> list[Span]:
    """The attempts of ``task`` from its attempt_log (or one bar from started/completed_at)."""
    spans: list[Span] = []
    for record in task.attempt_log:
        start, end = parse_time(record.started_at), parse_time(record.ended_at)
        if start is None or end is None:
            continue
        end = max(end, start)
        wait_end = end + record.wait_ms if record.wait_ms else None
        source = None
        if record.wait_ms:
            source = WAIT_SOURCES.get(record.wait_source or "backoff", 2)
        gate = min(float(record.rate_limit_wait_ms or 0), end - start)
        spans.append(Span(start, end, OUTCOMES.get(record.outcome, 1), wait_end, source, gate))
    if not spans and task.started_at:
        # A manifest written before attempt logs existed: one bar for the whole task.
        start = parse_time(task.started_at)
        end = parse_time(task.completed_at) if task.completed_at else None
        if start is not None and end is None and task.duration_ms is not None:
            end = start + task.duration_ms
        if start is not None and end is not None:
            spans.append(Span(start, max(end, start), 0 if task.completed else 1))
    return spans


@dataclass
class Axis:
    """Epoch ms -> display ms, with idle gaps longer than ``fold_after_ms`` folded."""

    origin: float = 0.0
    starts: list[float] = field(default_factory=list)
    """Epoch start of each busy block."""
    offsets: list[float] = field(default_factory=list)
    """Display position of each busy block's start."""
    length: float = 0.0
    break_width: float = 0.0
    """Display width of one folded gap."""
    breaks: list[dict] = field(default_factory=list)
    """``{"x": display position, "idle_ms": real length}`` per folded gap."""

    @classmethod
    def build(cls, spans: list[Span], fold_after_ms: float | None = None) -> "Axis":
        intervals = sorted((s.start, max(s.end, s.wait_end or s.end)) for s in spans)
        if not intervals:
            return cls()
        blocks: list[list[float]] = []
        for start, end in intervals:
            if blocks and start <= blocks[-1][1]:
                blocks[-1][1] = max(blocks[-1][1], end)
            else:
                blocks.append([start, end])
        busy = sum(end - start for start, end in blocks)
        if fold_after_ms is None:
            fold_after_ms = max(5_000.0, busy * 0.25)
        break_width = max(busy * 0.03, 1.0)
        # Merge blocks separated by short gaps (they stay at true scale).
        merged: list[list[float]] = [blocks[0][:]]
        for start, end in blocks[1:]:
            if start - merged[-1][1] <= fold_after_ms:
                merged[-1][1] = end
            else:
                merged.append([start, end])
        axis = cls(origin=merged[0][0], break_width=break_width)
        position = 0.0
        for n, (start, end) in enumerate(merged):
            if n:
                idle = start - merged[n - 1][1]
                axis.breaks.append({"x": round(position + break_width / 2, 1), "idle_ms": round(idle)})
                position += break_width
            axis.starts.append(start)
            axis.offsets.append(position)
            position += end - start
        axis.length = position
        return axis

    def x(self, epoch_ms: float) -> float:
        """Display position of an instant (instants inside a folded gap snap to its block)."""
        if not self.starts:
            return 0.0
        n = max(bisect_right(self.starts, epoch_ms) - 1, 0)
        return round(self.offsets[n] + max(epoch_ms - self.starts[n], 0.0), 1)


def max_concurrency(spans: list[Span]) -> int:
    """The most attempts running at the same instant (waits not counted)."""
    points = sorted([(s.start, 1) for s in spans] + [(s.end, -1) for s in spans], key=lambda p: (p[0], p[1]))
    running = best = 0
    for _, delta in points:
        running += delta
        best = max(best, running)
    return max(best, 1) if spans else 0  # attempts shorter than the clock's resolution still ran
