"""Creating plan folders: ``rad plan``'s part that touches the disk.

A plan folder ``.radium/plan/<stage>/REQ-NNN-<slug>/`` holds::

    plan.json                   PlanMetadata
    specification.md            the input the plan was made from
    plan/plan_manifest.json     the manifest (the checkpoint ``rad craft`` updates)
    artifacts/tasks/            task outputs, filled by ``rad craft``

Creation is all-or-nothing: everything is written into a hidden temporary
directory inside ``.radium/plan/`` and renamed into place at the end, so after
any failure (or Ctrl+C) no half-made plan exists, and the requirement counter
is advanced only after the rename. A lock file (``.radium/plan/.plan.lock``)
is held from the choice of the number to the rename, so two ``rad plan`` runs
at the same time never take the same number or folder.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import sys
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from radium.artifacts import TASK_ARTIFACTS_RELATIVE
from radium.codec import encode, from_json, to_json
from radium.errors import CheckpointWriteError, FileLockBusyError, InvalidDataError, PlanExistsError
from radium.files import atomic_write_text, fsync_directory
from radium.models import PlanManifest, PlanMetadata, RequirementId
from radium.store import MANIFEST_RELATIVE
from radium.workspace import STAGES, Workspace

SPECIFICATION_NAME = "specification.md"
LOCK_NAME = ".plan.lock"
LOCK_TIMEOUT_S = 30.0
_SLUG_LIMIT = 60
_FOLDER_REQ = re.compile(r"^REQ-(\d+)(?:-|$)", re.IGNORECASE)


@dataclass(frozen=True)
class PlanInput:
    """The text ``rad plan`` was given and where it came from."""

    text: str
    source_name: str
    """``spec.md`` or ``<stdin>``, for messages."""


MAX_INPUT_BYTES = 10 * 1024 * 1024
"""The largest plan or spec ``rad plan`` reads (a device such as /dev/zero never ends)."""


def _too_large(source: str) -> InvalidDataError:
    return InvalidDataError(
        f"{source} is larger than {MAX_INPUT_BYTES:,} bytes", hint="give a plan or spec file, not a device or a huge file"
    )


def read_input(argument: str, stdin: IO[str] | None = None) -> PlanInput:
    """Read INPUT: a file path (pipes such as ``<(…)`` too), or ``-`` for standard input."""
    if argument == "-":
        stream = stdin if stdin is not None else sys.stdin
        try:
            text = stream.read(MAX_INPUT_BYTES + 1)
        except UnicodeDecodeError:
            raise InvalidDataError("standard input is not UTF-8 text") from None
        if len(text) > MAX_INPUT_BYTES:
            raise _too_large("standard input")
        source = "<stdin>"
    else:
        path = Path(argument).expanduser()
        if path.is_dir():
            raise InvalidDataError(f"{argument} is a directory", hint="give a plan or spec file, or - for stdin")
        try:
            with open(path, "rb") as handle:
                data = handle.read(MAX_INPUT_BYTES + 1)
            if len(data) > MAX_INPUT_BYTES:
                raise _too_large(argument)
            text = data.decode("utf-8")
        except FileNotFoundError:
            raise InvalidDataError(
                f"input file {argument} not found",
                hint="give the path of a plan (.md/.json) or spec file, or - to read standard input",
            ) from None
        except UnicodeDecodeError:
            raise InvalidDataError(f"{argument} is not UTF-8 text") from None
        except OSError as exc:
            raise InvalidDataError(f"cannot read {argument}: {exc.strerror}") from None
        source = argument
    if not text.strip():
        raise InvalidDataError(f"{source} is empty", hint="write a plan or a spec into it first")
    return PlanInput(text, source)


def parse_requirement_id(value: str) -> RequirementId:
    """``--id``: ``REQ-7`` or ``REQ-007``; anything else is an ``InvalidDataError``."""
    try:
        requirement = RequirementId.parse(value)
    except ValueError as exc:
        raise InvalidDataError(f"--id: {exc}") from None
    if requirement.number < 1:
        raise InvalidDataError(f"--id: invalid requirement id {value!r}: the number must be 1 or more")
    return requirement


def slugify(text: str, default: str = "project") -> str:
    """Folder-name slug: ASCII lowercase, runs of other characters → one ``-``."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    if len(slug) > _SLUG_LIMIT:
        slug = slug[:_SLUG_LIMIT].rsplit("-", 1)[0] or slug[:_SLUG_LIMIT]
    return slug or default


def folder_name(number: int, slug: str) -> str:
    return f"{RequirementId(number=number)}-{slug}"


def plans_using_number(workspace: Workspace, number: int) -> list[Path]:
    """Every folder of any stage whose name is ``REQ-<number>…`` (with a manifest or not)."""
    found = []
    for stage in STAGES:
        stage_dir = workspace.plans_dir / stage
        if not stage_dir.is_dir():
            continue
        for child in sorted(stage_dir.iterdir()):
            match = _FOLDER_REQ.match(child.name)
            if match and int(match.group(1)) == number and child.is_dir():
                found.append(child)
    return found


def ensure_number_free(workspace: Workspace, requirement: RequirementId) -> None:
    """``PlanExistsError`` if a plan folder already uses this requirement number."""
    taken = plans_using_number(workspace, requirement.number)
    if taken:
        where = taken[0].relative_to(workspace.root)
        raise PlanExistsError(
            f"plan {requirement} already exists: {where}",
            hint="choose another --id, or leave --id out to take the next free number",
        )


@dataclass(frozen=True)
class CreatedPlan:
    requirement: RequirementId
    plan_dir: Path
    manifest: PlanManifest
    metadata: PlanMetadata


def create_plan(
    workspace: Workspace,
    manifest: PlanManifest,
    specification: str,
    *,
    requirement: RequirementId | None = None,
    name: str | None = None,
    stage: str = "backlog",
) -> CreatedPlan:
    """Create the plan folder atomically and take its requirement number.

    ``requirement`` None takes the next free number. ``name`` (sanitized) or
    else the project name gives the slug. Raises ``PlanExistsError`` when the
    number or the folder is taken; leaves nothing behind on any failure.
    """
    if stage not in STAGES:
        raise InvalidDataError(f"unknown stage {stage!r}", hint=f"use one of {', '.join(STAGES)}")
    slug = slugify(name) if name else slugify(manifest.project_name)
    workspace.plans_dir.mkdir(parents=True, exist_ok=True)
    with _creation_lock(workspace):
        _remove_abandoned_staging(workspace)
        next_number = workspace.next_requirement_number()  # also checks the counter file
        if requirement is None:
            number = next_number
            while plans_using_number(workspace, number):
                number += 1
            requirement = RequirementId(number=number)
        else:
            ensure_number_free(workspace, requirement)
        stage_dir = workspace.plans_dir / stage
        stage_dir.mkdir(parents=True, exist_ok=True)
        target = stage_dir / folder_name(requirement.number, slug)
        if target.exists():
            raise PlanExistsError(
                f"plan folder {target.relative_to(workspace.root)} already exists",
                hint="choose another --id or --name",
            )

        final = from_json(encode(manifest), PlanManifest)
        final.requirement_id = RequirementId(number=requirement.number)
        now = int(time.time())
        metadata = PlanMetadata(
            requirement_id=RequirementId(number=requirement.number),
            project_name=final.project_name,
            folder_name=target.name,
            stage=stage,
            created_at=now,
            updated_at=now,
            specification_path=SPECIFICATION_NAME,
        )
        metadata.sync_with(final, now)

        staging = workspace.plans_dir / f".new-{target.name}-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            os.mkdir(staging)  # honours the umask, unlike mkdtemp's 0700
            try:
                atomic_write_text(staging / SPECIFICATION_NAME, specification)
                (staging / MANIFEST_RELATIVE).parent.mkdir(parents=True)
                atomic_write_text(staging / MANIFEST_RELATIVE, to_json(final))
                atomic_write_text(staging / "plan.json", to_json(metadata))
                (staging / TASK_ARTIFACTS_RELATIVE).mkdir(parents=True)
                fsync_directory(staging)
                os.rename(staging, target)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
        except OSError as exc:
            raise CheckpointWriteError(
                f"cannot create plan folder {target}: {exc.strerror or exc}",
                hint="free disk space or fix the permissions of .radium/plan/",
            ) from None
        fsync_directory(stage_dir)
        with contextlib.suppress(OSError):
            # The plan exists now. Should the counter not be writable, nothing
            # is lost: the next number is never one a plan folder already uses.
            workspace.consume_requirement_number(requirement.number)
    return CreatedPlan(requirement, target, final, metadata)


def _remove_abandoned_staging(workspace: Workspace) -> None:
    """Delete staging folders of ``rad plan`` runs that died mid-creation (their pid is gone).

    Runs under the creation lock, so no live ``rad plan`` is using one it removes.
    """
    for staging in workspace.plans_dir.glob(".new-*"):
        parts = staging.name.rsplit("-", 2)
        if len(parts) != 3 or not parts[1].isdigit() or int(parts[1]) == os.getpid():
            continue
        try:
            os.kill(int(parts[1]), 0)
        except ProcessLookupError:
            shutil.rmtree(staging, ignore_errors=True)
        except OSError:
            pass  # alive (or not ours to signal): leave it


@contextlib.contextmanager
def _creation_lock(workspace: Workspace):  # noqa: ANN202
    from filelock import FileLock, Timeout

    lock = FileLock(str(workspace.plans_dir / LOCK_NAME), timeout=LOCK_TIMEOUT_S)
    try:
        lock.acquire()
    except Timeout:
        raise FileLockBusyError(
            f"another rad plan has held {workspace.plans_dir / LOCK_NAME} for {LOCK_TIMEOUT_S:.0f}s",
            hint="wait for it to finish and try again",
        ) from None
    try:
        yield
    finally:
        lock.release()
