"""The checkpoint journal and the manifest's text: replaying task updates, rendering only what changed.

``radium.store`` owns the files and the order of writes; this module holds the
two pure pieces it builds on (they touch no file but the journal they read):

* ``apply_journal`` replays ``plan_manifest.journal`` over a loaded manifest
  (each line one task's whole state; a completed task's line also carries its
  output text, see ``radium.store``).
* ``ManifestSerializer`` renders the manifest file text, re-serializing only
  the iterations that changed; ``split_rendered_iterations`` recovers the
  iterations' text from a file it wrote, so a new run need not re-render them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

from pydantic import ValidationError

from radium.errors import InvalidDataError
from radium.models import Iteration, PlanManifest, PlanTask


class ManifestSerializer:
    """Renders a manifest's file text, re-serializing only the iterations that changed.

    Each iteration's JSON is cached (already indented for its place in the
    file) until it is reported changed, so compacting a 10,000-task manifest
    does not re-serialize 10,000 tasks. The text is identical to
    ``PlanManifest.to_json()``.
    """

    def __init__(self) -> None:
        self._cache: dict[int, str] = {}

    def prime(self, manifest: PlanManifest, rendered: list[str]) -> None:
        """Take the iterations' text from the file they were just loaded from (``PlanStore.rendered_iterations``)."""
        self._cache = {id(iteration): text for iteration, text in zip(manifest.iterations, rendered)}

    def render(self, manifest: PlanManifest, changed: "Iterable[Iteration] | None" = None) -> str:
        """The file text; ``changed=None`` means everything may have changed."""
        if changed is None:
            self._cache.clear()
        else:
            for iteration in changed:
                self._cache.pop(id(iteration), None)
        parts = []
        for iteration in manifest.iterations:
            text = self._cache.get(id(iteration))
            if text is None:
                text = "    " + iteration.model_dump_json(indent=2).replace("\n", "\n    ")
                self._cache[id(iteration)] = text
            parts.append(text)
        top = manifest.model_dump(mode="json", exclude={"iterations"})
        lines = []
        for key, value in top.items():
            rendered = json.dumps(value, indent=2, ensure_ascii=False).replace("\n", "\n  ")
            lines.append(f"  {json.dumps(key, ensure_ascii=False)}: {rendered}")
            if key == "project_name":
                body = "[\n" + ",\n".join(parts) + "\n  ]" if parts else "[]"
                lines.append(f'  "iterations": {body}')
        return "{\n" + ",\n".join(lines) + "\n}"


def split_rendered_iterations(text: str, count: int) -> list[str] | None:
    """The iterations' text in a manifest file ``ManifestSerializer`` wrote, or None if it is not laid out so.

    In that layout an iteration is ``    {`` … ``\n    }`` (deeper values are
    indented further, and JSON strings hold no raw newline), the iterations
    joined by ``,\n`` inside ``\n  "iterations": [\n`` … ``\n  ]``.
    """
    start = text.find('\n  "iterations": [\n')
    if start < 0:
        return [] if count == 0 else None
    position = start + len('\n  "iterations": [\n')
    parts = []
    for index in range(count):
        end = text.find("\n    }", position)
        if end < 0 or not text.startswith("    {\n", position):
            return None
        end += len("\n    }")
        parts.append(text[position:end])
        position = end + (2 if index < count - 1 else 0)
    return parts if text.startswith("\n  ]", position) else None


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
            task = PlanTask.model_validate(entry["task"])
        except (ValueError, KeyError, TypeError, ValidationError, RecursionError):
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
        if place is None or place[0].tasks[place[1]].model_dump(mode="json") != entry:
            return False
    return bool(last)
