#!/usr/bin/env python3
"""Radium at scale, side by side with the physical floor, in one run (issue 9).

    python benchmarks/run.py [--sizes 100,10000,100000] [--million] [--dir DIR]

Measures, on the disk holding DIR (default: the system temp directory):

* the floor: a durable atomic write (temp file, write, fsync, rename, directory
  fsync) and an append + fsync, each in a loop of 300, measured right before
  and right after every timed run (the disk is shared; its latency drifts);
* ``rad craft --yolo --json`` per-task overhead at each size on the mock
  engine: (wall - start-up - model time) / tasks, where start-up is the wall
  time of the same command on a finished 1-task plan (median of 3), and model
  time the sum of the tasks' recorded durations;
* at the largest size, on the plan the run just finished: ``rad status``,
  ``rad status --json``, ``rad validate`` and a resume with one task left,
  each minus its start-up (the same command on a 1-task plan), against
  ``json.load`` of the same manifest;
* peak RSS of every command (``ru_maxrss`` of the child), and per task;
* ``--million``: ``rad status`` (and ``--json``) of a 1,000,000-task plan.

Prints a markdown table of ratios (the README's performance section).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _workspace import PLAN_RELATIVE  # noqa: E402

FLOOR_LOOPS = 300
ENV = {**os.environ, "NO_COLOR": "1"}


def floor(directory: Path) -> tuple[float, float]:
    """(durable atomic write, append + fsync), ms per operation, on ``directory``'s disk."""
    work = Path(tempfile.mkdtemp(dir=directory, prefix="floor-"))
    payload = b"x" * 200
    started = time.perf_counter()
    for i in range(FLOOR_LOOPS):
        target = work / f"f{i % 50}.md"
        tmp = work / f".f{i % 50}.md.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(fd, payload)
        os.fsync(fd)
        os.close(fd)
        os.replace(tmp, target)
        dfd = os.open(work, os.O_RDONLY)
        os.fsync(dfd)
        os.close(dfd)
    atomic = (time.perf_counter() - started) * 1000 / FLOOR_LOOPS
    fd = os.open(work / "journal", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    started = time.perf_counter()
    for _ in range(FLOOR_LOOPS):
        os.write(fd, payload * 3 + b"\n")
        os.fsync(fd)
    append = (time.perf_counter() - started) * 1000 / FLOOR_LOOPS
    os.close(fd)
    for path in work.iterdir():
        path.unlink()
    work.rmdir()
    return atomic, append


def rad(ws: Path, *args: str, on_line: Callable[[bytes], None] | None = None) -> tuple[float, float]:
    """Run ``rad -w WS ARGS``; (wall seconds, peak RSS MiB). ``on_line`` sees each stdout line.

    Nothing big is kept in this process: Linux counts the parent's pages at
    fork in a child's ``ru_maxrss``, so a benchmark holding 100,000 events (or
    building a plan in memory) would inflate every later child's peak RSS.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        process = subprocess.Popen([sys.executable, "-m", "radium", "-w", str(ws), *args], stdout=out, stderr=err, env=ENV)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        if process.returncode not in (0, 1):
            raise SystemExit(f"rad {' '.join(args)} exited {process.returncode}: {err.read().decode()[-2000:]}")
        if on_line is not None:
            out.seek(0)
            for line in out:
                on_line(line)
    return wall, usage.ru_maxrss / 1024


def json_load_time(path: Path) -> tuple[float, float]:
    """(seconds, peak RSS MiB) of ``json.load`` of ``path`` in a fresh interpreter (import excluded)."""
    code = (
        "import json, resource, sys, time\n"
        "t = time.perf_counter(); json.load(open(sys.argv[1], encoding='utf-8')); t = time.perf_counter() - t\n"
        "print(t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True).stdout
    seconds, rss = out.split()
    return float(seconds), float(rss)


def manifest_of(ws: Path) -> Path:
    return ws / PLAN_RELATIVE / "plan" / "plan_manifest.json"


def craft(ws: Path) -> tuple[float, float, float]:
    """(wall s, model s, peak RSS MiB) of ``rad craft --yolo --json``."""
    model_ms = 0

    def count(line: bytes) -> None:
        nonlocal model_ms
        if b'"task_completed"' in line:
            model_ms += json.loads(line)["duration_ms"]

    wall, rss = rad(ws, "craft", "REQ-001", "--yolo", "--json", on_line=count)
    return wall, model_ms / 1000, rss


def build(builder: str, *args: object) -> None:
    """Run a ``_workspace`` builder in a child process (see ``rad``: this process stays small)."""
    call = f"{builder}(Path({str(args[0])!r}), *{args[1:]!r})"
    code = f"import sys\nfrom pathlib import Path\nsys.path.insert(0, {str(HERE)!r})\nfrom _workspace import {builder}\n{call}\n"
    subprocess.run([sys.executable, "-c", code], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100,10000,100000")
    parser.add_argument("--million", action="store_true", help="also rad status of a 1,000,000-task plan (slow)")
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    root = Path(tempfile.mkdtemp(dir=args.dir, prefix="radium-bench-"))
    rows: list[tuple[str, str, str, str]] = []
    notes: list[str] = []
    try:
        one = root / "one"
        build("make_workspace", one, 1)
        first, rss_one = rad(one, "craft", "REQ-001", "--yolo", "--json")
        rows.append(("`rad craft` of a 1-task plan (start-up)", f"{first:.2f} s", "", f"{rss_one:.0f} MiB"))

        def startup(*cmd: str) -> float:
            """Median of 3 runs of ``cmd`` on the finished 1-task plan: interpreter, imports, load."""
            return sorted(rad(one, *cmd)[0] for _ in range(3))[1]

        largest = None
        for n in sizes:
            ws = root / f"ws{n}"
            build("make_workspace", ws, n)
            startup_craft = startup("craft", "REQ-001", "--yolo", "--json")
            before = floor(root)
            wall, model, rss = craft(ws)
            after = floor(root)
            atomic = (before[0] + after[0]) / 2
            append = (before[1] + after[1]) / 2
            per_task = (wall - startup_craft - model) * 1000 / n
            rows.append((
                f"`rad craft --yolo --json`, {n:,} tasks: overhead per task",
                f"{per_task:.3f} ms",
                f"{per_task / atomic:.2f} × durable write ({atomic:.3f} ms); {per_task / append:.1f} × append+fsync ({append:.3f} ms)",
                f"{rss:.0f} MiB ({(rss - rss_one) * 1024 * 1024 / n:,.0f} B/task over 1 task)",
            ))
            print(f"... {n} tasks: {wall:.1f} s wall, {per_task:.3f} ms/task, floor {atomic:.3f}/{append:.3f} ms", file=sys.stderr)
            largest = (n, ws)
        if largest is not None:
            n, ws = largest
            path = manifest_of(ws)
            load_s, load_rss = json_load_time(path)
            size = path.stat().st_size / 1024 / 1024
            rows.append((f"`json.load` of the {n:,}-task manifest ({size:.0f} MiB)", f"{load_s:.2f} s", "1", f"{load_rss:.0f} MiB"))
            for label, cmd in (
                ("`rad status`", ("status", "REQ-001")),
                ("`rad status --json`", ("status", "REQ-001", "--json")),
                ("`rad validate`", ("validate", "REQ-001")),
            ):
                start = startup(*cmd)
                wall, rss = rad(ws, *cmd)
                rows.append((f"{label}, {n:,} tasks", f"{wall:.2f} s", f"{(wall - start) / load_s:.2f} × json.load + start-up ({start:.2f} s)", f"{rss:.0f} MiB"))
            # One task left, as a run that stopped before it leaves the plan (written by rad's own store).
            code = (
                "import sys\nfrom pathlib import Path\nfrom radium.store import PlanStore\n"
                "store = PlanStore(Path(sys.argv[1]))\nmanifest = store.load()\n"
                "manifest.iterations[-1].tasks[-1].reset()\nmanifest.iterations[-1].refresh_status()\n"
                "store.save(manifest)\n"
            )
            subprocess.run([sys.executable, "-c", code, str(ws / PLAN_RELATIVE)], check=True)
            start = startup("craft", "REQ-001", "--yolo", "--json")  # already complete: start-up + load
            wall, rss = rad(ws, "craft", "REQ-001", "--yolo", "--json")
            rows.append((f"resume with one task left, {n:,} tasks", f"{wall:.2f} s", f"{(wall - start) / load_s:.2f} × json.load + start-up ({start:.2f} s)", f"{rss:.0f} MiB"))
        if args.million:
            ws = root / "million"
            build("make_workspace", ws, 1)
            build("write_big_manifest", manifest_of(ws), 1_000_000, 999_990)
            load_s, load_rss = json_load_time(manifest_of(ws))
            size = manifest_of(ws).stat().st_size / 1024 / 1024
            rows.append((f"`json.load` of a 1,000,000-task manifest ({size:.0f} MiB)", f"{load_s:.2f} s", "1", f"{load_rss:.0f} MiB"))
            for label, cmd in (("`rad status`", ("status", "REQ-001")), ("`rad status --json`", ("status", "REQ-001", "--json"))):
                wall, rss = rad(ws, *cmd)
                rows.append((f"{label}, 1,000,000 tasks", f"{wall:.2f} s", f"{wall / load_s:.2f} × json.load", f"{rss:.0f} MiB"))
    finally:
        subprocess.run(["rm", "-rf", str(root)], check=False)
    print(f"\n{os.cpu_count()} CPUs; disk of {args.dir}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n")
    print("| measurement | time | ratio | peak RSS |")
    print("|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    for note in notes:
        print(note)


if __name__ == "__main__":
    main()
