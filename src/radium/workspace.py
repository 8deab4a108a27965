"""Workspaces and plan lookup.

A workspace is a directory holding ``.radium/``. It is found, in order, from
the ``-w/--workspace`` option, the ``RADIUM_WORKSPACE`` variable, or by
searching upward from the current directory.

Plans live in ``.radium/plan/<stage>/REQ-NNN-<slug>/``. A PLAN argument may be
a requirement id (``REQ-1`` = ``REQ-001``, matched by number, so ``REQ-1``
never matches ``REQ-10``), a plan folder name (``REQ-001-my-feature``), a plan
directory, or a path to a ``plan_manifest.json``.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from radium.errors import InvalidDataError, PlanNotFoundError, WorkspaceNotFoundError
from radium.models import PlanMetadata
from radium.files import atomic_write_text
from radium.store import MANIFEST_RELATIVE, PlanStore, load_metadata

STAGES: tuple[str, ...] = ("backlog", "development", "review", "testing", "docs")
WORKSPACE_ENV = "RADIUM_WORKSPACE"
_FOLDER_REQ = re.compile(r"^REQ-(\d+)(?:-|$)", re.IGNORECASE)
_BARE_REQ = re.compile(r"^REQ-(\d+)$", re.IGNORECASE)


@dataclass(frozen=True)
class PlanRef:
    """Where a plan lives. ``stage`` is None for a plan outside the stage folders."""

    plan_dir: Path
    manifest_path: Path
    stage: str | None = None

    @property
    def name(self) -> str:
        return self.plan_dir.name

    def store(self) -> PlanStore:
        return PlanStore(self.plan_dir, self.manifest_path)

    def metadata(self) -> PlanMetadata | None:
        path = self.plan_dir / "plan.json"
        return load_metadata(path) if path.is_file() else None


class Workspace:
    """A Radium workspace rooted at ``root`` (the directory that contains ``.radium/``)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.radium_dir = root / ".radium"
        self.plans_dir = self.radium_dir / "plan"
        self.config_path = self.radium_dir / "config.toml"
        self.counter_path = self.radium_dir / "requirement-counter.json"
        self._config: dict[str, Any] | None = None

    # ------------------------------------------------------------ creation and discovery

    @classmethod
    def init(cls, path: Path) -> tuple["Workspace", bool]:
        """Create (or complete) a workspace at ``path``; returns it and whether it was new."""
        path = path.resolve()
        created = not (path / ".radium").is_dir()
        workspace = cls(path)
        for stage in STAGES:
            (workspace.plans_dir / stage).mkdir(parents=True, exist_ok=True)
        return workspace, created

    @classmethod
    def discover(cls, explicit: Path | None = None, cwd: Path | None = None) -> "Workspace":
        """Find the workspace: explicit option, then ``RADIUM_WORKSPACE``, then upward search."""
        chosen = explicit or (Path(os.environ[WORKSPACE_ENV]) if os.environ.get(WORKSPACE_ENV) else None)
        if chosen is not None:
            chosen = chosen.expanduser().resolve()
            if not (chosen / ".radium").is_dir():
                raise WorkspaceNotFoundError(
                    f"{chosen} is not a Radium workspace (no .radium/ directory)",
                    hint=f"run `rad init {chosen}` or point --workspace/{WORKSPACE_ENV} elsewhere",
                )
            return cls(chosen).checked()
        start = (cwd or Path.cwd()).resolve()
        for directory in (start, *start.parents):
            if (directory / ".radium").is_dir():
                return cls(directory).checked()
        raise WorkspaceNotFoundError(
            f"no Radium workspace in {start} or any parent directory",
            hint="run `rad init` here, or pass --workspace DIR",
        )

    def checked(self) -> "Workspace":
        """This workspace, after checking that ``.radium/`` and its plan folders stay inside it.

        A symlink leading out would make Radium write (plans, checkpoints, locks)
        outside the workspace; it is refused with ``InvalidDataError``.
        """
        root = self.root.resolve()
        for path in (self.radium_dir, self.plans_dir, *(self.plans_dir / stage for stage in STAGES)):
            _require_inside(path, root, "the workspace")
        return self

    def check_plan_location(self, ref: PlanRef) -> None:
        """Refuse a plan whose folder, ``plan/`` or ``artifacts/tasks`` leads outside through a symlink."""
        plan_dir = ref.plan_dir
        if plan_dir.absolute().is_relative_to(self.radium_dir.absolute()):
            _require_inside(plan_dir, self.root.resolve(), "the workspace")
        inside = plan_dir.resolve()
        for sub in (ref.manifest_path.parent, plan_dir / "artifacts", plan_dir / "artifacts" / "tasks"):
            _require_inside(sub, inside, f"the plan folder {inside}")
        # Files opened in place (appended to, locked) must not be links: writing through one
        # would change whatever file it points at.
        state_dir = ref.manifest_path.parent
        for name in (ref.manifest_path.stem + ".journal", ".craft.lock", ".craft.lock.json"):
            if (state_dir / name).is_symlink():
                raise InvalidDataError(
                    f"{state_dir / name} is a symlink; Radium writes this file in place",
                    hint="delete the link (Radium recreates the file)",
                )

    # ------------------------------------------------------------ config

    def config(self) -> dict[str, Any]:
        """``.radium/config.toml`` as a dict ({} when absent)."""
        if self._config is None:
            self._config = load_toml(self.config_path) if self.config_path.is_file() else {}
        return self._config

    # ------------------------------------------------------------ plans

    def plans(self) -> list[PlanRef]:
        """Every plan folder with a manifest, sorted by requirement number then name."""
        found: list[PlanRef] = []
        for stage in STAGES:
            stage_dir = self.plans_dir / stage
            if not stage_dir.is_dir():
                continue
            for child in stage_dir.iterdir():
                manifest = child / MANIFEST_RELATIVE
                if child.is_dir() and manifest.is_file():
                    found.append(PlanRef(child, manifest, stage))

        def order(ref: PlanRef) -> tuple[int, str]:
            match = _FOLDER_REQ.match(ref.name)
            return (int(match.group(1)) if match else 1 << 30, ref.name)

        return sorted(found, key=order)

    def find_plan(self, identifier: str, cwd: Path | None = None) -> PlanRef:
        """Resolve a PLAN argument (see module docstring) to a plan."""
        candidate = Path(identifier).expanduser()
        if not candidate.is_absolute():
            candidate = (cwd or Path.cwd()) / candidate
        if candidate.absolute().is_relative_to(self.radium_dir.absolute()) and (candidate.exists() or candidate.is_symlink()):
            _require_inside(candidate, self.root.resolve(), "the workspace")
        if candidate.is_file():
            if candidate.suffix.lower() != ".json":
                raise PlanNotFoundError(
                    f"{identifier} is a file but not a plan manifest (plan_manifest.json)",
                    hint=f"to turn a plan file into a plan, run `rad plan {identifier}` first",
                )
            return _ref_for_manifest(candidate.resolve())
        if candidate.is_dir():
            for manifest in (candidate / MANIFEST_RELATIVE, candidate / "plan_manifest.json"):
                if manifest.is_file():
                    return _ref_for_manifest(manifest.resolve())
            raise PlanNotFoundError(
                f"{candidate} has no plan/plan_manifest.json", hint="create the plan with `rad plan`"
            )
        plans = self.plans()
        bare = _BARE_REQ.match(identifier.strip())
        if bare:
            number = int(bare.group(1))
            matches = [p for p in plans if (m := _FOLDER_REQ.match(p.name)) and int(m.group(1)) == number]
        else:
            matches = [p for p in plans if p.name == identifier]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            names = ", ".join(f"{m.stage}/{m.name}" for m in matches)
            raise PlanNotFoundError(
                f"{identifier} matches several plans: {names}", hint="name the plan folder instead"
            )
        available = ", ".join(p.name for p in plans[:10]) or "none"
        if len(plans) > 10:
            available += f" and {len(plans) - 10} more"
        raise PlanNotFoundError(
            f"no plan {identifier!r} in workspace {self.root}",
            hint=f"plans here: {available}; see `rad status`",
        )

    # ------------------------------------------------------------ requirement ids

    def next_requirement_number(self) -> int:
        """The number ``rad plan`` would use next (does not consume it).

        It is the counter file's ``next`` but never a number an existing plan
        folder already uses, so a hand-copied plan cannot cause a clash.
        """
        counter = 1
        if self.counter_path.is_file():
            try:
                counter = int(json.loads(self.counter_path.read_text(encoding="utf-8"))["next"])
            except (OSError, ValueError, KeyError, TypeError):
                raise InvalidDataError(
                    f"{self.counter_path}: expected {{\"next\": N}}", hint="fix or delete the file"
                ) from None
        used = [int(m.group(1)) for p in self.plans() if (m := _FOLDER_REQ.match(p.name))]
        return max([counter, *(n + 1 for n in used)])

    def consume_requirement_number(self, number: int) -> None:
        """Record that ``number`` is taken (call only after the plan was created)."""
        current = self.next_requirement_number()
        atomic_write_text(self.counter_path, json.dumps({"next": max(current, number + 1)}))


def _require_inside(path: Path, root: Path, where: str) -> None:
    if not (path.exists() or path.is_symlink()):
        return
    resolved = path.resolve()
    if not resolved.is_relative_to(root):
        raise InvalidDataError(
            f"{path} leads to {resolved}, outside {where} (through a symlink)",
            hint="replace the link with a real directory inside the workspace",
        )


def _ref_for_manifest(manifest: Path) -> PlanRef:
    # <plan_dir>/plan/plan_manifest.json is the standard layout; anything else
    # uses the manifest's own directory as the plan folder.
    parent = manifest.parent
    plan_dir = parent.parent if parent.name == "plan" else parent
    stage = plan_dir.parent.name if plan_dir.parent.name in STAGES else None
    return PlanRef(plan_dir, manifest, stage)


def load_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML file; a malformed one is an ``InvalidDataError`` naming file and line."""
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidDataError(f"{path}: invalid TOML: {exc}", hint="fix the syntax") from None
    except OSError as exc:
        raise InvalidDataError(f"cannot read {path}: {exc.strerror}") from None
