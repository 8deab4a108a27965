"""The plan file formats: markdown (read and written), and the entry point that also takes JSON.

The markdown format (the full description, with an example, is in
``docs/plan-format.md``)::

    # Project title
    Optional project description (free text, kept).

    ## Tech Stack                       any "##" heading that is not an iteration:
    - Python                            kept, heading and all, in the project description

    ## Iteration 1: Setup               iteration I1, name "Setup"
    Goal: Have a repository             the iteration's goal
    Free text here is the iteration's description.

    1. **Create the repo** - Initialize git and add a README
       More description (indented). Indented numbered lines
       1. like this one
       stay in the description.
       - Agent: setup-agent
       - Dependencies: none             or "I1.T1, I1.T2"; "Depends:" works too
       - Acceptance: README.md exists   repeatable
       - [ ] CI is green                a checkbox is an acceptance criterion too

Rules that matter:

* Iterations are **only** ``## Iteration N: Name`` headings (case-insensitive;
  ``:``, ``-`` or ``.`` after the number; the name may be left out). Ids come
  from positions, not from the numbers written: the k-th iteration heading is
  ``Ik`` and the m-th task under it is ``Ik.Tm``. The iteration ``name`` is the
  text after ``Iteration N:`` (``Setup``), or ``Iteration k`` when there is none.
* A task is a numbered list item at the **start of a line** (``1.`` or ``1)``).
  The title is the bold part, or the text before `` - ``; the rest of the line
  starts the description. Indented lines, and unindented lines after the task
  that are nothing else, continue the description.
* Task fields are bullets (``-``, ``*`` or ``+``, usually indented) whose text
  starts with ``Agent:``, ``Dependencies:``/``Depends:``/``Depends on:``,
  ``Acceptance:``/``Acceptance criteria:`` or ``Description:``, or a checkbox
  ``[ ]``/``[x]``. ``Dependencies: none`` (or empty) means no dependencies.
  An empty ``Acceptance:``/``Dependencies:`` may be followed by a nested list.
* Lines inside fenced code blocks are never interpreted.

JSON is accepted too, as the whole text or as a ```` ```json ```` block (when
the text has no iteration heading): either the original Radium's ``ParsedPlan``
shape (``project_name``, ``description``, ``tech_stack``, ``iterations[]`` with
``tasks[]``) or a full ``plan_manifest.json``. A manifest's execution state is
reset: a new plan starts with every task pending. Parsing JSON is
``radium.planning.plan_json``'s.

``parse_plan_text`` returns a ``PlanManifest`` whose requirement number is the
placeholder 0 (``rad plan`` sets it). ``export_markdown`` writes a manifest in
the markdown format; parsing the export gives back the same plan content.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from radium.codec import extras_of
from radium.errors import InvalidDataError
from radium.models import Iteration, PlanManifest, PlanTask, RequirementId
from radium.planning.plan_json import FORMAT_HINT, parse_plan_json

# ---------------------------------------------------------------- line patterns

# Patterns end in ``(.*\S|)\s*$`` (greedy, then trailing blanks) rather than the
# lazy ``(.*?)\s*$``, which backtracks quadratically on long runs of spaces.
_TITLE = re.compile(r"^#(?:[ \t]+(.*\S|))?[ \t]*$")
_SECTION = re.compile(r"^##(?:[ \t]+(.*\S|))?[ \t]*$")
_ITERATION = re.compile(r"^iteration\s+(\d+)\b\s*(?:[:.\-–—]\s*)?(.*?)$", re.IGNORECASE)
ITERATION_NAME_PREFIX = re.compile(r"^iteration\s+\d+\s*[:.\-–—]\s*", re.IGNORECASE)
_GOAL = re.compile(r"^(?:\*\*|__)?goal(?:\*\*|__)?\s*:(?:\*\*|__)?\s*(.*\S|)\s*$", re.IGNORECASE)
_TASK = re.compile(r"^(\d{1,6})[.)]\s+(.*\S|)\s*$")
_NUMBERED = re.compile(r"^(\s*)(\d{1,6})[.)]\s+(.*\S|)\s*$")
_BULLET = re.compile(r"^(\s*)[-*+]\s+(.*\S|)\s*$")
_CHECKBOX = re.compile(r"^\[[ xX]\]\s*(.*?)$")
_FIELD = re.compile(
    r"^(?:\*\*|__)?(agent[ _]id|agent|dependencies|dependency|depends[ _]on|depends|deps|"
    r"acceptance[ _]criteria|acceptance|criteria|description)(?:\*\*|__)?\s*:(?:\*\*|__)?\s*(.*\S|)\s*$",
    re.IGNORECASE,
)
_FENCE = re.compile(r"^\s*(```|~~~)")
_RULE = re.compile(r"^(?:-{3,}|\*{3,}|_{3,})\s*$")
_TASKS_HEADING = re.compile(r"^#{3,}\s*tasks?\s*:?\s*$", re.IGNORECASE)
_TASK_ID_PREFIX = re.compile(r"^\[?(I\d+\.T\d+)\]?\s*(?:[:.\-–—]\s*)?(?=\S)", re.IGNORECASE)
_DASH_SPLIT = re.compile(r"\s+[-–—]\s+")
_DEP_SPLIT = re.compile(r"\s*(?:,|;|\band\b)\s*", re.IGNORECASE)
_NONE_VALUES = {"", "none", "n/a", "na", "-", "—", "nothing", "no", "[]"}

_FIELD_KINDS = {
    "agent": "agent",
    "agent id": "agent",
    "agent_id": "agent",
    "dependencies": "deps",
    "dependency": "deps",
    "depends on": "deps",
    "depends_on": "deps",
    "depends": "deps",
    "deps": "deps",
    "acceptance criteria": "criteria",
    "acceptance_criteria": "criteria",
    "acceptance": "criteria",
    "criteria": "criteria",
    "description": "description",
}


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


# ---------------------------------------------------------------- drafts


@dataclass
class _Block:
    """Free text collected line by line: blank lines kept only between text."""

    lines: list[str] = field(default_factory=list)
    pending_blanks: int = 0

    def add(self, line: str) -> None:
        if self.lines:
            self.lines.extend([""] * self.pending_blanks)
        self.pending_blanks = 0
        self.lines.append(line.rstrip())

    def blank(self) -> None:
        if self.lines:
            self.pending_blanks += 1

    def cut(self) -> None:
        """Forget pending blank lines (a field line came in between)."""
        self.pending_blanks = 0

    def text(self, dedent: bool = True) -> str | None:
        lines = list(self.lines)
        if dedent:
            widths = [_indent(line) for line in lines if line.strip()]
            strip = min(widths, default=0)
            lines = [line[strip:] if line.strip() else "" for line in lines]
        text = "\n".join(lines).strip("\n")
        return text or None


@dataclass
class _TaskDraft:
    line: int
    title: str
    first: str | None
    body: _Block = field(default_factory=_Block)
    agent: str | None = None
    agent_line: int | None = None
    dependencies: list[str] = field(default_factory=list)
    criteria: list[str] = field(default_factory=list)
    open_list: tuple[str, int] | None = None
    """A field with an empty value whose items follow as a nested list: (kind, indent)."""
    last_criterion_indent: int | None = None
    """Indent of the bullet of the last criterion, for wrapped continuation lines."""

    def description(self) -> str | None:
        body = self.body.text()
        parts = [p for p in (self.first, body) if p]
        return "\n".join(parts) if parts else None


@dataclass
class _IterationDraft:
    line: int
    name: str
    goal: str | None = None
    body: _Block = field(default_factory=_Block)
    tasks: list[_TaskDraft] = field(default_factory=list)


def _strip_closing_hashes(heading: str) -> str:
    """``Setup ##`` → ``Setup`` (an ATX closing sequence); ``C#`` stays ``C#``."""
    heading = heading.strip()
    bare = heading.rstrip("#")
    if bare != heading and (not bare or bare[-1] in " \t"):
        return bare.strip()
    return heading


def _lines(text: str) -> list[str]:
    """Split on line breaks only (``str.splitlines`` also splits on U+2028, form feeds…)."""
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


class _Problems:
    def __init__(self, source: str) -> None:
        self.source = source
        self.items: list[str] = []

    def add(self, line: int | None, message: str) -> None:
        where = f"line {line}: " if line else ""
        self.items.append(f"{where}{message}")

    def raise_if_any(self) -> None:
        if self.items:
            raise plan_error(self.source, self.items)


def plan_error(source: str, problems: list[str]) -> InvalidDataError:
    """One ``InvalidDataError`` for a list of problems (all listed, ``; `` separated)."""
    return InvalidDataError(f"{source}: " + "; ".join(problems), hint=FORMAT_HINT)


# ---------------------------------------------------------------- public API


def looks_like_plan(text: str) -> str | None:
    """``"markdown"``, ``"json"`` or None (free-form spec) for an input text.

    Markdown is a plan when it has an ``## Iteration N`` heading outside code
    fences, or numbered tasks with indented ``- Agent:`` bullets, which only a
    plan has (it is then parsed, and the missing heading is reported). JSON is a
    plan when the text is a JSON object, or holds a ```` ```json ```` block, that
    has an ``"iterations"`` key: a spec quoting an example payload is a spec.
    """
    stripped = text.strip()
    if stripped.startswith("{") and '"iterations"' in stripped:
        return "json"
    in_fence = False
    has_agent_field = has_task = False
    for line in _lines(text):
        if _FENCE.match(line):
            in_fence = not in_fence
            continue
        if in_fence:
            continue
        section = _SECTION.match(line)
        if section and _ITERATION.match(_strip_closing_hashes(section.group(1) or "").strip("*_ ")):
            return "markdown"
        has_task = has_task or bool(_TASK.match(line))
        bullet = _BULLET.match(line)
        if bullet and bullet.group(1):
            found = _FIELD.match(bullet.group(2))
            if found and _FIELD_KINDS.get(found.group(1).lower()) == "agent":
                has_agent_field = True
    if has_agent_field and has_task:
        return "markdown"
    block = _json_block(text)
    if block is not None and '"iterations"' in block[0]:
        return "json"
    return None


def parse_plan_text(text: str, source_name: str = "plan") -> PlanManifest:
    """Parse a markdown or JSON plan; raise ``InvalidDataError`` naming lines on bad input.

    The result's requirement number is the placeholder 0.
    """
    text = text.removeprefix("\ufeff")
    if not text.strip():
        raise InvalidDataError(f"{source_name}: the plan is empty", hint=FORMAT_HINT)
    kind = looks_like_plan(text)
    if kind == "json":
        stripped = text.strip()
        if stripped.startswith("{"):
            offset = text[: len(text) - len(text.lstrip())].count("\n")
            return parse_plan_json(stripped, source_name, line_offset=offset)
        block = _json_block(text)
        assert block is not None
        return parse_plan_json(block[0], source_name, line_offset=block[1])
    return _parse_markdown(text, source_name)


def export_markdown(manifest: PlanManifest) -> str:
    """Render ``manifest`` in the markdown plan format.

    Task ids are positional in the format, so dependencies are written with the
    ids the tasks will have when the export is parsed (the same ids for a plan
    made by ``rad plan``).
    """
    new_ids: dict[str, str] = {}
    for i, iteration in enumerate(manifest.iterations, start=1):
        for m, task in enumerate(iteration.tasks, start=1):
            new_ids.setdefault(task.id, f"I{i}.T{m}")

    out: list[str] = [f"# {_one_line(manifest.project_name)}", ""]
    description = _project_description(manifest)
    if description:
        out += [description, ""]
    for i, iteration in enumerate(manifest.iterations, start=1):
        # A name written as "Iteration 1: Setup" (the original's convention) is exported as "Setup".
        name = _one_line(ITERATION_NAME_PREFIX.sub("", iteration.name.strip(), count=1))
        heading = f"## Iteration {i}" if name in ("", f"Iteration {i}") else f"## Iteration {i}: {name}"
        out += [heading, ""]
        if iteration.goal:
            out += [f"Goal: {_one_line(iteration.goal)}", ""]
        if iteration.description:
            out += [iteration.description.strip("\n"), ""]
        for m, task in enumerate(iteration.tasks, start=1):
            out += _export_task(m, task, new_ids)
            out.append("")
    return "\n".join(out).rstrip("\n") + "\n"


def round_trip_differences(manifest: PlanManifest, exported: str) -> list[str]:
    """How parsing ``exported`` (``export_markdown(manifest)``) would differ from ``manifest``.

    Free text can contain lines the format would read as structure (a heading,
    a numbered task, a field); rather than let such a plan change silently on
    its way through markdown, ``rad plan --export`` reports what would not come
    back. An empty list means the export parses back to the same plan content.
    """
    try:
        back = parse_plan_text(exported, "export")
    except InvalidDataError as exc:
        return [f"the export does not parse back: {exc.message}"]
    new_ids = {
        task.id: f"I{i}.T{m}"
        for i, iteration in enumerate(manifest.iterations, start=1)
        for m, task in enumerate(iteration.tasks, start=1)
    }
    differences: list[str] = []
    if len(back.iterations) != len(manifest.iterations):
        differences.append(f"{len(manifest.iterations)} iterations would come back as {len(back.iterations)}")
    for i, (old, new) in enumerate(zip(manifest.iterations, back.iterations), start=1):
        if len(old.tasks) != len(new.tasks):
            differences.append(f"iteration I{i}: {len(old.tasks)} tasks would come back as {len(new.tasks)}")
        if _one_line(old.goal or "") != (new.goal or ""):
            differences.append(f"iteration I{i}: the goal would change")
        for old_task, new_task in zip(old.tasks, new.tasks):
            label = new_ids[old_task.id]
            expected = {
                "title": _one_line(old_task.title),
                "agent": old_task.agent_id,
                "dependencies": [new_ids.get(d, d) for d in old_task.dependencies],
                "acceptance criteria": old_task.acceptance_criteria,
                "description": (old_task.description or "").strip() or None,
            }
            actual = {
                "title": new_task.title,
                "agent": new_task.agent_id,
                "dependencies": new_task.dependencies,
                "acceptance criteria": new_task.acceptance_criteria,
                "description": (new_task.description or "").strip() or None,
            }
            for field_name, value in expected.items():
                if actual[field_name] != value:
                    differences.append(f"task {label}: the {field_name} would change")
    return differences


# ---------------------------------------------------------------- markdown parser


def _parse_markdown(text: str, source: str) -> PlanManifest:
    problems = _Problems(source)
    lines = _lines(text)

    title: str | None = None
    title_line = 0
    preamble = _Block()
    sections: list[_Block] = []  # non-iteration "##" sections, heading included
    iterations: list[_IterationDraft] = []
    context: str = "start"  # start | preamble | section | iteration
    current_section: _Block | None = None
    current: _IterationDraft | None = None
    task: _TaskDraft | None = None
    in_fence = False

    def text_target() -> _Block:
        if task is not None:
            return task.body
        if current is not None:
            return current.body
        if current_section is not None:
            return current_section
        return preamble

    for number, raw in enumerate(lines, start=1):
        line = raw.rstrip()
        stripped = line.strip()

        # Fenced code: every line is text of whatever is being described.
        if in_fence or _FENCE.match(line):
            if _FENCE.match(line):
                in_fence = not in_fence
            if context == "start":
                problems.add(number, "expected the '# Project title' line first")
                break
            text_target().add(line)
            continue

        if not stripped:
            if task is not None:
                task.body.blank()
            else:
                text_target().blank()
            continue

        # Headings.
        title_match = _TITLE.match(line)
        if title_match:
            heading = _strip_closing_hashes(title_match.group(1) or "")
            if title is None and context == "start":
                if not heading:
                    problems.add(number, "the '# ' title is empty")
                title, title_line, context = heading, number, "preamble"
            else:
                problems.add(number, f"a second '# ' title ({heading!r}); a plan has one '# Project title'")
            continue
        if context == "start":
            problems.add(
                number,
                f"expected the '# Project title' line first, found {_excerpt(stripped)}",
            )
            break
        section = _SECTION.match(line)
        if section:
            heading = _strip_closing_hashes(section.group(1) or "")
            match = _ITERATION.match(heading.strip("*_ "))
            task = None
            if match:
                position = len(iterations) + 1
                name = match.group(2).strip().strip("*_").strip() or f"Iteration {position}"
                current = _IterationDraft(number, name)
                iterations.append(current)
                current_section = None
                context = "iteration"
            else:
                current = None
                current_section = _Block()
                current_section.add(line)
                sections.append(current_section)
                context = "section"
            continue

        if _RULE.match(line):
            continue  # horizontal rules between iterations are decoration

        bullet = _BULLET.match(line)
        field_match = _FIELD.match(bullet.group(2)) if bullet else None
        checkbox = _CHECKBOX.match(bullet.group(2)) if bullet else None

        if context != "iteration":
            # Outside iterations everything is description text, except an
            # "Agent:" field: tasks under a heading that is not an iteration
            # would be lost silently.
            if field_match and _FIELD_KINDS[field_match.group(1).lower()] == "agent":
                where = (
                    "before the first '## Iteration N: Name' heading"
                    if context == "preamble"
                    else f"under '{sections[-1].lines[0]}', which is not an iteration heading "
                    "(write '## Iteration N: Name')"
                )
                problems.add(number, f"task field '{field_match.group(1)}:' {where}")
                continue
            text_target().add(line)
            continue

        assert current is not None
        if _TASKS_HEADING.match(stripped) and task is None:
            continue

        goal = _GOAL.match(line) if _indent(line) == 0 else None
        if goal and task is None:
            if current.goal is not None:
                problems.add(number, f"a second 'Goal:' line for iteration I{len(iterations)}")
            current.goal = goal.group(1) or None
            continue

        task_match = _TASK.match(line)
        if task_match:
            position = len(current.tasks) + 1
            expected = f"I{len(iterations)}.T{position}"
            parsed = _parse_task_line(task_match.group(2), expected, number, problems)
            task = _TaskDraft(number, parsed[0], parsed[1])
            current.tasks.append(task)
            continue

        if task is None:
            if field_match and _FIELD_KINDS[field_match.group(1).lower()] != "description":
                problems.add(
                    number,
                    f"task field '{field_match.group(1)}:' before any task of iteration I{len(iterations)} "
                    "(tasks are numbered items at the start of a line: '1. **Title** - description')",
                )
                continue
            current.body.add(line)
            continue

        indent = _indent(line)
        # Items of an open list field (an empty "Acceptance:" followed by a nested list).
        if task.open_list is not None:
            kind, list_indent = task.open_list
            nested = bullet or _NUMBERED.match(line)
            if nested and indent > list_indent and not field_match:
                item = (bullet.group(2) if bullet else nested.group(3)).strip()  # type: ignore[union-attr]
                if kind == "criteria":
                    box = _CHECKBOX.match(item)
                    _add_criterion(task, box.group(1) if box else item, indent)
                else:
                    task.dependencies += split_dependencies(item)
                continue
            task.open_list = None
        if field_match:
            _apply_field(task, field_match, indent, number, problems)
            task.body.cut()
            continue
        if checkbox:
            _add_criterion(task, checkbox.group(1), indent)
            task.body.cut()
            continue
        if (
            task.last_criterion_indent is not None
            and indent > task.last_criterion_indent
            and not bullet
            and not _NUMBERED.match(line)
        ):
            # A wrapped criterion: continuation line indented under its bullet.
            task.criteria[-1] = task.criteria[-1] + "\n" + stripped
            continue
        task.last_criterion_indent = None
        task.body.add(line)

    if title is None and not problems.items:
        problems.add(None, "no '# Project title' line (the first line of a plan is '# <project name>')")
    if title is not None and not iterations:
        # Whatever else is wrong follows from this; say only this.
        problems.items = []
        problems.add(
            title_line,
            "no iterations: a plan needs '## Iteration N: Name' headings "
            "(other '##' headings such as '## Overview' are not iterations)",
        )
    if iterations and not any(it.tasks for it in iterations) and not problems.items:
        problems.add(
            iterations[0].line,
            "no tasks: write tasks as numbered items at the start of a line, "
            "e.g. '1. **Title** - description'",
        )
    problems.raise_if_any()
    assert title is not None

    parts = [block.text(dedent=False) for block in (preamble, *sections)]
    description = "\n\n".join(p for p in parts if p) or None
    manifest = PlanManifest(
        requirement_id=RequirementId(number=0),
        project_name=title,
        iterations=[
            Iteration(
                id=f"I{i}",
                number=i,
                name=draft.name,
                description=draft.body.text(),
                goal=draft.goal,
                tasks=[
                    PlanTask(
                        id=f"I{i}.T{m}",
                        number=m,
                        title=t.title,
                        description=t.description(),
                        agent_id=t.agent,
                        dependencies=t.dependencies,
                        acceptance_criteria=t.criteria,
                    )
                    for m, t in enumerate(draft.tasks, start=1)
                ],
            )
            for i, draft in enumerate(iterations, start=1)
        ],
    )
    if description:
        manifest.extras = {"description": description}
    return manifest


def _parse_task_line(text: str, expected_id: str, line: int, problems: _Problems) -> tuple[str, str | None]:
    """(title, first description line) of ``1. **Title** - description``."""
    text = _strip_task_id(text, expected_id, line, problems)
    if text.startswith("**") or text.startswith("__"):
        marker = text[:2]
        end = text.find(marker, 2)
        if end > 2:
            title = text[2:end].strip()
            rest = text[end + 2 :].strip()
            title = _strip_task_id(title, expected_id, line, problems).rstrip(":").strip()
            rest = re.sub(r"^(?:[-–—:]\s*)", "", rest).strip()
            if not title:
                problems.add(line, f"task {expected_id} has no title")
            return title, rest or None
    parts = _DASH_SPLIT.split(text, maxsplit=1)
    title = parts[0].strip()
    if not title:
        problems.add(line, f"task {expected_id} has no title")
    return title, (parts[1].strip() or None) if len(parts) > 1 else None


def _strip_task_id(text: str, expected_id: str, line: int, problems: _Problems) -> str:
    match = _TASK_ID_PREFIX.match(text)
    if not match:
        return text
    written = match.group(1)
    if written.upper() != expected_id.upper():
        problems.add(
            line,
            f"this task is written as {written} but is task {expected_id} by position "
            "(ids come from the order of '## Iteration' headings and of the tasks under each)",
        )
    return text[match.end() :]


def _apply_field(task: _TaskDraft, match: re.Match[str], indent: int, line: int, problems: _Problems) -> None:
    kind = _FIELD_KINDS[match.group(1).lower()]
    value = match.group(2).strip()
    task.last_criterion_indent = None
    if kind == "agent":
        if task.agent_line is not None:
            problems.add(line, f"a second 'Agent:' line for the task of line {task.line}")
            return
        agent = value.strip("`'\"*").strip()
        task.agent = None if agent.lower() in _NONE_VALUES else agent
        task.agent_line = line
    elif kind == "deps":
        task.dependencies += split_dependencies(value)
        if not value:
            task.open_list = ("deps", indent)
    elif kind == "criteria":
        if value:
            _add_criterion(task, value, indent)
        else:
            task.open_list = ("criteria", indent)
    else:  # description
        if value:
            task.body.add(value)


def _add_criterion(task: _TaskDraft, text: str, indent: int) -> None:
    text = text.strip()
    if text:
        task.criteria.append(text)
        task.last_criterion_indent = indent


def split_dependencies(value: str) -> list[str]:
    value = value.strip().strip("[]").strip()
    if value.lower() in _NONE_VALUES:
        return []
    items = []
    for item in _DEP_SPLIT.split(value):
        item = item.strip().strip("`'\"*").strip()
        if item and item.lower() not in _NONE_VALUES:
            items.append(item)
    return items


def _excerpt(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


# ---------------------------------------------------------------- a JSON plan inside markdown


def _json_block(text: str) -> tuple[str, int] | None:
    """The first ```` ```json ```` fenced block: (content, line offset of its first line)."""
    lines = _lines(text)
    for start, line in enumerate(lines):
        if re.match(r"^\s*```\s*json\s*$", line, re.IGNORECASE):
            for end in range(start + 1, len(lines)):
                if lines[end].strip().startswith("```"):
                    return "\n".join(lines[start + 1 : end]), start + 1
            return "\n".join(lines[start + 1 :]), start + 1
    return None


# ---------------------------------------------------------------- export


def _project_description(manifest: PlanManifest) -> str | None:
    value = extras_of(manifest).get("description")
    return value.strip("\n") if isinstance(value, str) and value.strip() else None


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _export_task(position: int, task: PlanTask, new_ids: dict[str, str]) -> list[str]:
    marker = f"{position}. "
    pad = " " * len(marker)
    title = _one_line(task.title)
    description_lines = (task.description or "").strip("\n").split("\n") if task.description else []
    first = description_lines[0].strip() if description_lines else ""
    head = f"{marker}**{title}**"
    rest = description_lines[1:]
    if first:
        head += f" - {first}"
    elif description_lines:
        rest = description_lines  # description starts with a blank line: keep it all below
    out = [head]
    out += [pad + line if line.strip() else "" for line in rest]
    if task.agent_id:
        out.append(f"{pad}- Agent: {task.agent_id}")
    deps = ", ".join(new_ids.get(dep, dep) for dep in task.dependencies)
    out.append(f"{pad}- Dependencies: {deps or 'none'}")
    for criterion in task.acceptance_criteria:
        criterion_lines = criterion.split("\n")
        out.append(f"{pad}- Acceptance: {criterion_lines[0]}")
        out += [f"{pad}  {line.strip()}" for line in criterion_lines[1:] if line.strip()]
    return out
