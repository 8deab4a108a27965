"""The checkpoint journal: replaying task updates over a loaded manifest.

``radium.store`` owns the files and the order of writes; this module holds the
pure piece it builds on (it reads the journal and touches no other file):
``apply_journal`` replays ``plan_manifest.journal`` over a loaded manifest
(each line one task's whole state; a completed task's line also carries its
output text, see ``radium.store``).
"""

from __future__ import annotations

import json
from pathlib import Path

from radium.errors import InvalidDataError
from radium.codec import ModelError, from_data, to_data
from radium.models import Iteration, PlanManifest, PlanTask


def journal_path_for(manifest_path: Path) -> Path:
    return manifest_path.with_name(manifest_path.stem + ".journal")


def apply_journal(
    manifest: PlanManifest, path: Path, manifest_sha256: str, outputs: dict[str, str] | None = None
) -> int | None:
    """Replay task updates journaled after the manifest was last written; return how many.

    The journal's first line names (by SHA-256) the manifest text it extends.
    If the manifest on disk is not that text (it was edited by hand, or a
    crash left an old journal beside a newer manifest) the journal is stale:
    nothing is replayed and ``None`` is returned. Each later line holds one
    task's whole state, so replaying is idempotent. A line that does not parse
    can only be the last, torn by a crash mid-append: it and anything after it
    are ignored (that update was never acknowledged).
    """
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return 0
    except OSError as exc:
        raise InvalidDataError(f"cannot read checkpoint journal {path}: {exc.strerror}") from None
    lines = text.splitlines()
    try:
        header = json.loads(lines[0]) if lines else {}
    except (ValueError, RecursionError):
        header = {}
    positions = {
        task.id: (iteration, position)
        for iteration in manifest.iterations
        for position, task in enumerate(iteration.tasks)
    }
    if not isinstance(header, dict) or header.get("manifest_sha256") != manifest_sha256:
        # A kill between compaction's rename and the journal's removal leaves the old
        # journal beside the new manifest that already holds every line of it: not stale.
        return 0 if _journal_contained(lines[1:], positions) else None
    touched: dict[int, Iteration] = {}
    applied = 0
    for line in lines[1:]:
        try:
            entry = json.loads(line)
            task = from_data(PlanTask, entry["task"])
        except (ValueError, KeyError, TypeError, ModelError, RecursionError):
            break
        found = positions.get(task.id)
        if found is None:
            continue
        if outputs is not None:
            output = entry.get("output")
            if isinstance(output, str) and task.completed:
                outputs[task.id] = output
            else:
                outputs.pop(task.id, None)
        iteration, position = found
        iteration.tasks[position] = task
        touched[id(iteration)] = iteration
        applied += 1
    for iteration in touched.values():
        iteration.refresh_status()
    return applied


def _journal_contained(lines: list[str], positions: dict[str, tuple[Iteration, int]]) -> bool:
    """Whether each task's last complete journal line equals its state in the manifest."""
    last: dict[str, dict] = {}
    for line in lines:
        try:
            entry = json.loads(line)["task"]
            last[entry["id"]] = entry
        except (ValueError, KeyError, TypeError, RecursionError):
            continue  # a line torn by a crash was never acknowledged
    for task_id, entry in last.items():
        place = positions.get(task_id)
        if place is None or to_data(place[0].tasks[place[1]]) != entry:
            return False
    return bool(last)
