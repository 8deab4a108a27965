"""Prompt rendering and context files.

**Templates** use ``{{name}}`` or ``{{ name }}``. Substitution is a single pass
over the template, so a value that itself contains ``{{…}}`` (a task
description quoting a template, a model output) is never substituted again.
Unknown names are left as written (``rad validate`` warns about them).

Variables: ``task_id``, ``task_title``, ``task_description``,
``acceptance_criteria``, ``iteration_id``, ``iteration_name``,
``iteration_goal``, ``project_name``, ``dependency_outputs``,
``context_files``.

**The model always receives everything.** Whatever part of the task the
template does not name is appended after the rendered template, in this
layout (empty sections are omitted)::

    <rendered template>

    ---

    ## Task I1.T2: <title>          unless the template names task_id, task_title
    <description>                   and task_description
    ## Acceptance criteria          unless it names acceptance_criteria
    - ...
    ## Iteration goal               unless it names iteration_goal
    ## Dependency outputs           unless it names dependency_outputs
    ### I1.T1: <title>
    <output, cut to N characters with a note>
    ## Context files                unless it names context_files
    ### AGENTS.md
    <text>

**Context files** are ``AGENTS.md`` at the workspace root and in the plan
folder, then every ``--context-file`` and every file in the config's
``context_files``. A line ``@path`` (outside code fences) is replaced by that
file's content, ``path`` being relative to the importing file; imports nest,
an import cycle is cut with a note, and a missing file is an error naming the
importing file and line. ``AGENTS.md`` and imports must stay inside the
workspace (or a directory of ``[context] allow_dirs``), and every context file
must be a regular file within the size limit (``ContextPolicy``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from radium.errors import InvalidDataError, MissingConfigurationError

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_IMPORT_LINE = re.compile(r"^@(\S+)\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")

TASK_VARIABLES = ("task_id", "task_title", "task_description")
KNOWN_VARIABLES = frozenset(
    {
        *TASK_VARIABLES,
        "acceptance_criteria",
        "iteration_id",
        "iteration_name",
        "iteration_goal",
        "project_name",
        "dependency_outputs",
        "context_files",
    }
)


def placeholders(template: str) -> set[str]:
    """The variable names a template uses."""
    return set(PLACEHOLDER.findall(template))


def render_template(template: str, variables: dict[str, str]) -> str:
    """Substitute ``{{name}}`` in one pass; unknown names stay as written."""

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        return variables[name] if name in variables else match.group(0)

    return PLACEHOLDER.sub(substitute, template)


# ---------------------------------------------------------------- context files


@dataclass(frozen=True)
class ContextFile:
    """A context file with its ``@`` imports already expanded."""

    path: Path
    label: str
    text: str


DEFAULT_MAX_FILE_BYTES = 1024 * 1024


@dataclass(frozen=True)
class ContextPolicy:
    """What context files may be read (the workspace owner's ``[context]`` config).

    Files named by the owner (``--context-file``, ``context_files``) may be
    anywhere. Everything else (``AGENTS.md``, and every ``@path`` import, whoever
    wrote it) must resolve, symlinks followed, inside one of ``roots``: the
    workspace and the directories of ``[context] allow_dirs``. Every file must be
    a regular file of at most ``max_file_bytes``.
    """

    roots: tuple[Path, ...] = ()
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES

    def allows(self, path: Path) -> bool:
        return any(path == root or path.is_relative_to(root) for root in self.roots)


def read_bounded_text(path: Path, max_bytes: int, label: str, hint: str) -> str:
    """A regular file's UTF-8 text, refusing FIFOs, devices, directories and files over ``max_bytes``.

    ``label`` names the file in messages (``context file /x (imported at /y:3)``).

    The type and size are checked with ``stat`` before the file is opened, so a
    FIFO cannot block and ``/dev/zero`` cannot fill memory; at most
    ``max_bytes + 1`` bytes are read in case the file grows meanwhile.
    """
    import os
    import stat

    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            kind = "a FIFO" if stat.S_ISFIFO(info.st_mode) else "a directory" if stat.S_ISDIR(info.st_mode) else "a device or special file"
            raise InvalidDataError(f"{label} is {kind}, not a regular file", hint=hint)
        too_big = InvalidDataError(
            f"{label} is larger than the limit of {max_bytes:,} bytes",
            hint="shorten it, or raise [context] max_file_bytes in .radium/config.toml",
        )
        if info.st_size > max_bytes:
            raise too_big
        with open(path, "rb") as handle:
            data = handle.read(max_bytes + 1)
    except OSError as exc:
        raise MissingConfigurationError(f"cannot read {label}: {exc.strerror}", hint=hint) from None
    if len(data) > max_bytes:
        raise too_big
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidDataError(f"{label} is not UTF-8 text", hint="save it as UTF-8") from None


def load_context_file(
    path: Path, label: str | None = None, policy: ContextPolicy | None = None, *, confined: bool = False, hint: str = ""
) -> ContextFile:
    """Read ``path`` and expand its ``@path`` import lines (cycle-safe, confined by ``policy``)."""
    policy = policy or ContextPolicy(roots=(Path("/"),))
    resolved = path.resolve()
    if confined and not policy.allows(resolved):
        raise InvalidDataError(
            f"context file {path} resolves to {resolved}, outside the workspace",
            hint="remove it, or allow its directory with [context] allow_dirs in .radium/config.toml",
        )
    return ContextFile(path, label or path.name, _expand(resolved, (), None, policy, hint or "fix the path"))


def _expand(path: Path, stack: tuple[Path, ...], origin: tuple[Path, int] | None, policy: ContextPolicy, hint: str) -> str:
    where = f" (imported at {origin[0]}:{origin[1]})" if origin else ""
    text = read_bounded_text(path, policy.max_file_bytes, f"context file {path}{where}", hint)
    out: list[str] = []
    in_fence = False
    for number, line in enumerate(text.splitlines(keepends=True), start=1):
        if _FENCE.match(line):
            in_fence = not in_fence
        match = None if in_fence else _IMPORT_LINE.match(line.strip())
        if match is None:
            out.append(line)
            continue
        target = (path.parent / match.group(1)).resolve()
        if target in (*stack, path):
            out.append(f"(@{match.group(1)} not imported again: import cycle)\n")
            continue
        if not policy.allows(target):
            raise InvalidDataError(
                f"import @{match.group(1)} at {path}:{number} resolves to {target}, outside the workspace",
                hint="remove the import, or allow its directory with [context] allow_dirs in .radium/config.toml",
            )
        imported = _expand(target, (*stack, path), (path, number), policy, "fix the path or remove the import")
        out.append(imported if imported.endswith("\n") else imported + "\n")
    return "".join(out)


def gather_context_files(
    workspace_root: Path,
    plan_dir: Path | None,
    extra: Iterable[Path | tuple[Path, str]],
    policy: ContextPolicy | None = None,
) -> list[ContextFile]:
    """The run's context files, in order, each once.

    ``extra`` holds the owner's files (a path, or a path with the hint shown if
    it cannot be read). ``AGENTS.md`` files are confined to ``policy``'s roots.
    """
    policy = policy or ContextPolicy(roots=(workspace_root.resolve(),))
    candidates: list[tuple[Path, str, bool, str]] = []
    root_agents = workspace_root / "AGENTS.md"
    if root_agents.exists() or root_agents.is_symlink():
        candidates.append((root_agents, "AGENTS.md", True, "fix or remove AGENTS.md"))
    if plan_dir is not None:
        plan_agents = plan_dir / "AGENTS.md"
        if plan_agents.exists() or plan_agents.is_symlink():
            candidates.append((plan_agents, f"{plan_dir.name}/AGENTS.md", True, f"fix or remove {plan_agents}"))
    for item in extra:
        path, hint = item if isinstance(item, tuple) else (item, "fix the path")
        candidates.append((path, str(path), False, hint))
    seen: set[Path] = set()
    files: list[ContextFile] = []
    for path, label, confined, hint in candidates:
        resolved = path.resolve()
        if resolved in seen:
            continue
        seen.add(resolved)
        files.append(load_context_file(path, label, policy, confined=confined, hint=hint))
    return files


def format_context_files(files: list[ContextFile]) -> str:
    return "\n\n".join(f"### {f.label}\n{f.text.rstrip()}" for f in files)


# ---------------------------------------------------------------- task prompts


@dataclass
class DependencyOutput:
    task_id: str
    title: str
    text: str | None
    """The stored output, or None if it could not be read."""


@dataclass
class TaskPromptInput:
    """Everything a task's prompt is made of."""

    task_id: str
    task_title: str
    task_description: str | None
    acceptance_criteria: list[str]
    iteration_id: str
    iteration_name: str
    iteration_goal: str | None
    project_name: str
    dependencies: list[DependencyOutput] = field(default_factory=list)
    context: str = ""
    """Formatted context files (``format_context_files``), shared by every task."""
    output_limit: int = 4000


def format_dependency_outputs(dependencies: list[DependencyOutput], limit: int) -> str:
    parts = []
    for dep in dependencies:
        text = dep.text if dep.text is not None else "(no stored output)"
        if len(text) > limit:
            note = (
                f"\n[output cut: first {limit} of {len(text)} characters; "
                f"full text in artifacts/tasks/{dep.task_id}.md]"
            )
            text = text[:limit] + note
        parts.append(f"### {dep.task_id}: {dep.title}\n{text.rstrip()}")
    return "\n\n".join(parts)


def build_task_prompt(template: str, data: TaskPromptInput) -> str:
    """Render ``template`` for a task and append whatever it does not name."""
    criteria = "\n".join(f"- {c}" for c in data.acceptance_criteria)
    dependency_text = format_dependency_outputs(data.dependencies, data.output_limit)
    variables = {
        "task_id": data.task_id,
        "task_title": data.task_title,
        "task_description": data.task_description or "",
        "acceptance_criteria": criteria,
        "iteration_id": data.iteration_id,
        "iteration_name": data.iteration_name,
        "iteration_goal": data.iteration_goal or "",
        "project_name": data.project_name,
        "dependency_outputs": dependency_text,
        "context_files": data.context,
    }
    named = placeholders(template)
    rendered = render_template(template, variables)

    sections: list[str] = []
    task_named = {"task_id", "task_title"} <= named and (
        "task_description" in named or not data.task_description
    )
    if not task_named:
        task_block = f"## Task {data.task_id}: {data.task_title}"
        if data.task_description:
            task_block += f"\n{data.task_description.rstrip()}"
        sections.append(task_block)
    if criteria and "acceptance_criteria" not in named:
        sections.append(f"## Acceptance criteria\n{criteria}")
    if data.iteration_goal and "iteration_goal" not in named:
        sections.append(f"## Iteration goal ({data.iteration_id}: {data.iteration_name})\n{data.iteration_goal}")
    if dependency_text and "dependency_outputs" not in named:
        sections.append(f"## Dependency outputs\n{dependency_text}")
    if data.context and "context_files" not in named:
        sections.append(f"## Context files\n{data.context}")
    if not sections:
        return rendered
    return rendered.rstrip() + "\n\n---\n\n" + "\n\n".join(sections) + "\n"
