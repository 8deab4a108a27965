"""The plan data model: ``plan_manifest.json`` and ``plan.json``.

The JSON shapes are those of the original Radium (see the README, "Manifest
format"), so a manifest it wrote loads here and a manifest we write loads
there: ``requirement_id`` is an object ``{"number": N}``, optional fields are
omitted rather than ``null``, and keys we do not know are kept and written
back. Our additions per task (``status``, ``attempts``, ``last_error``,
timestamps, ``usage``, ``output_path``) are optional, so an original manifest
validates as it is.

The models are ``msgspec`` structs, not pydantic models, because a manifest
can hold 100,000 tasks: msgspec decodes the file straight into the structs
about eight times faster than pydantic and at a quarter of its memory per
task (1.4 KB against 4.9 KB, see ``benchmarks/PROFILE.md``), and encodes it
back in a tenth of a second. Two things msgspec does not do are done here:

* **Unknown keys are kept.** The fast decoder forbids unknown fields; a file
  that has some (a manifest the original Radium or a person wrote) takes
  ``from_data``, which moves each object's unknown keys into its ``extras``
  field. ``encode`` writes them back after the object's own fields.
* **Lenient input.** ``from_data`` also accepts ``"REQ-001"`` (or ``1``) for
  ``requirement_id`` and ``null`` for a task's lists, which hand-written
  manifests contain, and turns msgspec's errors into ``ModelError`` with a
  readable location.

``PlanTask.completed`` (the original's only state) and ``PlanTask.status``
(ours) always agree: on load, ``completed`` wins when they disagree, because it
is the field people edit by hand to skip or re-run a task.
"""

from __future__ import annotations

import enum
import math
import re
import sys
import time
from datetime import datetime, timezone
from typing import Annotated, Any, Iterator, TypeVar

import msgspec
from msgspec import Meta, Struct, field

EXTRAS_KEY = "__radium_extras__"
"""Where an object's unknown keys travel inside msgspec (never written: ``encode`` merges them)."""

_EXTRAS_MARK = f'"{EXTRAS_KEY}"'.encode()


_last_stamp: dict[str, tuple[int, str]] = {"seconds": (-1, ""), "milliseconds": (-1, "")}


def _stamp(timespec: str, units: int) -> str:
    # Tasks that start or end within the same second (or millisecond) share one string:
    # a 100,000-task run keeps four timestamps per task, 75 bytes each when not shared.
    count = time.time_ns() // (1_000_000_000 // units)
    last_count, text = _last_stamp[timespec]
    if count != last_count:
        seconds, fraction = divmod(count, units)
        moment = datetime.fromtimestamp(seconds, timezone.utc).replace(microsecond=fraction * (1_000_000 // units))
        text = moment.isoformat(timespec=timespec)
        _last_stamp[timespec] = (count, text)
    return text


def utc_now_iso() -> str:
    """Current time as an ISO 8601 UTC timestamp with second precision."""
    return _stamp("seconds", 1)


def utc_now_iso_ms() -> str:
    """Current time as an ISO 8601 UTC timestamp with millisecond precision."""
    return _stamp("milliseconds", 1000)


def _always(value: Any) -> Any:
    """A default that is still written: ``omit_defaults`` omits plain defaults, never a factory's."""
    if isinstance(value, list):
        return field(default_factory=lambda: [])
    return field(default_factory=lambda: value)


class _Model(Struct, kw_only=True, omit_defaults=True, forbid_unknown_fields=True, gc=False):
    """Base for manifest objects: ``None`` fields are omitted, unknown keys ride in ``extras``.

    Assignment is not validated (structs never are): the executor updates task
    state on a hot path, and the values it assigns are its own. ``gc=False``:
    the objects are plain JSON data and can form no reference cycle, so the
    garbage collector need not track 300,000 of them (decoding 100,000 tasks
    takes 0.27 s instead of 0.46 s, mostly collections it no longer runs).
    """

    extras: dict[str, Any] | None = field(default=None, name=EXTRAS_KEY)
    """Keys of the file this version does not know, written back as they were."""


_REQ_PATTERN = re.compile(r"^REQ-(\d+)$", re.IGNORECASE)


class RequirementId(_Model):
    """``REQ-001``; stored as ``{"number": 1}`` as the original does."""

    number: Annotated[int, Meta(ge=0)]

    @classmethod
    def parse(cls, text: str) -> "RequirementId":
        """Parse ``REQ-7``/``REQ-007`` (case-insensitive); raise ``ValueError`` otherwise."""
        match = _REQ_PATTERN.match(text.strip())
        if not match:
            raise ValueError(f"invalid requirement id {text!r}: expected REQ-<number>, e.g. REQ-001")
        return cls(number=int(match.group(1)))

    def __str__(self) -> str:
        return f"REQ-{self.number:03d}"


class PlanStatus(str, enum.Enum):
    """Status of a plan or an iteration (the original's ``PlanStatus``)."""

    NOT_STARTED = "not_started"
    IN_PROGRESS = "in_progress"
    PAUSED = "paused"
    BLOCKED = "blocked"
    COMPLETED = "completed"
    FAILED = "failed"

    @property
    def label(self) -> str:
        return self.value.replace("_", " ").title()


class TaskStatus(str, enum.Enum):
    """Execution state of one task."""

    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"
    BLOCKED = "blocked"



class TaskErrorRecord(_Model):
    """The last error a task met: what kind, and the message shown to the user."""

    category: str
    message: str
    kind: str | None = None


class TokenUsage(_Model):
    """Token counts reported by the provider for one task (summed over attempts)."""

    prompt_tokens: int = _always(0)
    completion_tokens: int = _always(0)

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class AttemptRecord(_Model):
    """One attempt of a task, kept in the checkpoint (``PlanTask.attempt_log``).

    ``attempt`` counts over all runs (1-based). ``started_at``/``ended_at`` are
    ISO 8601 UTC with milliseconds; ``started_at`` is when the attempt began,
    including any time it spent at the shared per-provider rate-limit gate
    (``rate_limit_wait_ms``, the first part of the attempt). ``outcome`` is
    ``ok``, ``error`` or ``interrupted`` (the run was cancelled mid-attempt).
    ``wait_ms``/``wait_source`` describe the wait *after* this attempt, before
    the next one (``backoff``, ``retry-after``, ``x-ratelimit-reset-requests``…).
    """

    attempt: int
    started_at: str
    ended_at: str
    outcome: str
    category: str | None = None
    kind: str | None = None
    message: str | None = None
    wait_ms: int | None = None
    wait_source: str | None = None
    rate_limit_wait_ms: int | None = None


class PlanTask(_Model):
    """One task: an agent applied to a piece of work, possibly after other tasks."""

    id: str
    number: int
    title: str
    description: str | None = None
    completed: bool = _always(False)
    agent_id: str | None = None
    dependencies: list[str] = _always([])
    acceptance_criteria: list[str] = _always([])
    # --- Radium (Python) additions; all optional so original manifests load.
    status: TaskStatus = _always(TaskStatus.PENDING)
    attempts: int = _always(0)
    last_error: TaskErrorRecord | None = None
    started_at: str | None = None
    completed_at: str | None = None
    duration_ms: int | None = None
    usage: TokenUsage | None = None
    output_path: str | None = None
    rate_limit_wait_ms: int | None = None
    """Total time this task has waited on rate limits, over all runs."""
    cost_usd: float | None = None
    """Tokens x price of the task's model (all attempts); absent when the price is unknown."""
    attempt_log: list[AttemptRecord] = []
    """Every attempt over all runs, oldest first (omitted while empty)."""

    def __post_init__(self) -> None:
        if self.agent_id is not None:
            self.agent_id = sys.intern(self.agent_id)  # a few agents, 100,000 tasks
        # ``completed`` wins over ``status`` (it is what people edit by hand).
        if self.completed:
            if self.status is not TaskStatus.COMPLETED:
                self.status = TaskStatus.COMPLETED
        elif self.status is TaskStatus.COMPLETED:
            self.status = TaskStatus.PENDING

    def set_status(self, status: TaskStatus) -> None:
        """Change the status and keep the original's ``completed`` flag in step."""
        self.status = status
        self.completed = status is TaskStatus.COMPLETED

    def reset(self) -> None:
        """Forget every trace of execution (``--restart``): pending, no attempts, no results."""
        self.set_status(TaskStatus.PENDING)
        self.attempts = 0
        self.last_error = None
        self.started_at = self.completed_at = None
        self.duration_ms = None
        self.usage = None
        self.output_path = None
        self.rate_limit_wait_ms = None
        self.cost_usd = None
        self.attempt_log = []


class Iteration(_Model, kw_only=True):
    """An ordered group of tasks; iterations run one after the other."""

    id: str
    number: int
    name: str
    description: str | None = None
    goal: str | None = None
    tasks: list[PlanTask]
    status: PlanStatus = _always(PlanStatus.NOT_STARTED)

    def is_complete(self) -> bool:
        """True when the iteration has tasks and all of them completed (as the original)."""
        return bool(self.tasks) and all(task.completed for task in self.tasks)

    def refresh_status(self) -> None:
        """Derive the iteration's status from its tasks' states."""
        if self.is_complete():
            self.status = PlanStatus.COMPLETED
        elif any(t.status is TaskStatus.FAILED for t in self.tasks):
            self.status = PlanStatus.FAILED
        elif any(t.status is not TaskStatus.PENDING for t in self.tasks):
            self.status = PlanStatus.IN_PROGRESS
        else:
            self.status = PlanStatus.NOT_STARTED


class PlanManifest(_Model):
    """``plan/plan_manifest.json``: the plan and its execution state (the checkpoint)."""

    requirement_id: RequirementId
    project_name: str
    iterations: list[Iteration]

    def tasks(self) -> Iterator[tuple[Iteration, PlanTask]]:
        """Every task with its iteration, in file order."""
        for iteration in self.iterations:
            for task in iteration.tasks:
                yield iteration, task

    def task_index(self) -> dict[str, tuple[Iteration, PlanTask]]:
        """Task id → (iteration, task). The first occurrence wins for duplicate ids."""
        index: dict[str, tuple[Iteration, PlanTask]] = {}
        for iteration, task in self.tasks():
            index.setdefault(task.id, (iteration, task))
        return index

    def counts(self) -> tuple[int, int]:
        """(completed tasks, total tasks)."""
        total = completed = 0
        for _, task in self.tasks():
            total += 1
            completed += task.completed
        return completed, total

    def calculate_progress(self) -> int:
        """Percent complete, ``floor(completed / total * 100)``; 0 for an empty plan."""
        completed, total = self.counts()
        return math.floor(completed * 100 / total) if total else 0

    def has_incomplete_tasks(self) -> bool:
        return any(not task.completed for _, task in self.tasks())

    def to_json(self) -> str:
        """The file text: 2-space indented JSON, field order as declared, unknown keys last."""
        return to_json(self)


class PlanMetadata(_Model):
    """``plan.json``: what the plan is and a summary of its progress.

    Radium keeps the status and counts in step with the manifest after every
    checkpoint (the original left them stale).
    """

    requirement_id: RequirementId
    project_name: str
    folder_name: str
    stage: str = _always("backlog")
    status: PlanStatus = _always(PlanStatus.NOT_STARTED)
    created_at: int = _always(0)
    updated_at: int = _always(0)
    specification_path: str | None = None
    total_iterations: int = _always(0)
    completed_iterations: int = _always(0)
    total_tasks: int = _always(0)
    completed_tasks: int = _always(0)

    def sync_with(self, manifest: PlanManifest, now: int) -> None:
        """Refresh counts and status from the manifest."""
        completed, total = manifest.counts()
        self.total_iterations = len(manifest.iterations)
        self.completed_iterations = sum(it.is_complete() for it in manifest.iterations)
        self.total_tasks = total
        self.completed_tasks = completed
        failed = any(t.status is TaskStatus.FAILED for _, t in manifest.tasks())
        if total and completed == total:
            self.status = PlanStatus.COMPLETED
        elif failed:
            self.status = PlanStatus.FAILED
        elif completed or any(t.status is not TaskStatus.PENDING for _, t in manifest.tasks()):
            self.status = PlanStatus.IN_PROGRESS
        else:
            self.status = PlanStatus.NOT_STARTED
        self.updated_at = now

    def to_json(self) -> str:
        return to_json(self)


# ------------------------------------------------------------------ encoding and decoding

ModelT = TypeVar("ModelT", bound=_Model)


class ModelError(ValueError):
    """Data that does not fit a model: ``location`` (``iterations[0].tasks[2].title``) and ``problem``."""

    def __init__(self, location: str, problem: str) -> None:
        super().__init__(f"{location or 'top level'}: {problem}")
        self.location = location
        self.problem = problem


_ENCODER = msgspec.json.Encoder()
_DECODERS: dict[type, msgspec.json.Decoder] = {}

_NESTED: dict[type, dict[str, type]] = {
    PlanManifest: {"requirement_id": RequirementId, "iterations": Iteration},
    PlanMetadata: {"requirement_id": RequirementId},
    Iteration: {"tasks": PlanTask},
    PlanTask: {"last_error": TaskErrorRecord, "usage": TokenUsage, "attempt_log": AttemptRecord},
}
"""Which fields hold models (or lists of them), for ``from_data``'s walk."""


def encode(obj: _Model) -> bytes:
    """Compact JSON of a model, its unknown keys after its own fields."""
    return _encode_value(obj)


def to_json_bytes(obj: _Model) -> bytes:
    """The file content of a model: 2-space indented UTF-8 JSON (``json.dumps(indent=2)``'s layout).

    100,000 tasks take about 0.15 s, so a compaction simply re-encodes the whole manifest.
    """
    return msgspec.json.format(encode(obj), indent=2)


def to_json(obj: _Model) -> str:
    """``to_json_bytes`` as text."""
    return to_json_bytes(obj).decode("utf-8")


_CHUNK_MARK = "__radium_chunk__"


_Piece = bytes | tuple[bytes | list[PlanTask], bytes]
"""A piece of the manifest text, or a batch of tasks (encoded or not) with the indent of its place."""


def manifest_pieces(manifest: PlanManifest, batch: int = 1000, *, snapshot: bool = True) -> list[_Piece]:
    """The manifest's file text in pieces for ``render_pieces``, taken on the thread that owns it.

    The pieces are the file's text, except for the tasks, in batches of
    ``batch`` as ``(tasks, indent)``: indenting (and, without ``snapshot``,
    encoding) is left to ``render_pieces``, one batch at a time, as the file
    is written. ``snapshot`` encodes the tasks now (compact: 0.45 KB a task),
    for a render in a worker thread while the run goes on and changes them;
    without it the render reads the live tasks, so nothing may change them
    until it ends (a compaction with no task in flight). Either way a
    compaction never holds the whole indented file (0.8 KB a task).
    """
    top = to_data(msgspec.structs.replace(manifest, iterations=[]))
    top["iterations"] = [_CHUNK_MARK]
    head, indent, tail = _split_at_mark(_pretty(top), b"")
    pieces: list[_Piece] = [head]
    for number, iteration in enumerate(manifest.iterations):
        if number:
            pieces.append(b",\n")
        if not iteration.tasks:
            pieces.append(indent + encode_pretty(iteration).replace(b"\n", b"\n" + indent))
            continue
        shell = to_data(msgspec.structs.replace(iteration, tasks=[]))
        shell["tasks"] = [_CHUNK_MARK]
        iteration_head, task_indent, iteration_tail = _split_at_mark(_pretty(shell), indent)
        pieces.append(iteration_head)
        for start in range(0, len(iteration.tasks), batch):
            if start:
                pieces.append(b",\n")
            tasks = iteration.tasks[start : start + batch]
            pieces.append((_encode_value(tasks) if snapshot else tasks, task_indent))
        pieces.append(iteration_tail)
    pieces.append(tail)
    return pieces


def render_pieces(pieces: list[_Piece]) -> Iterator[bytes]:
    """The file's bytes from ``manifest_pieces``, piece by piece, emptying the list as it goes.

    A batch formatted at depth 0 is ``[\\n  {...},\\n  {...}\\n]``: without its
    brackets, its items move from depth 1 to their place by re-indenting each
    line, which is exact because the layout depends only on depth and a JSON
    string holds no raw newline.
    """
    pieces.reverse()
    while pieces:
        piece = pieces.pop()
        if isinstance(piece, bytes):
            yield piece
            continue
        tasks, task_indent = piece
        compact = tasks if isinstance(tasks, bytes) else _encode_value(tasks)
        inner = msgspec.json.format(compact, indent=2)[2:-2]
        yield task_indent + inner[2:].replace(b"\n  ", b"\n" + task_indent)


def encode_pretty(obj: _Model) -> bytes:
    return msgspec.json.format(encode(obj), indent=2)


def _pretty(data: Any) -> bytes:
    return msgspec.json.format(_ENCODER.encode(data), indent=2)


def _encode_value(value: Any) -> bytes:
    """Compact JSON of models or lists of them, unknown keys included."""
    raw = _ENCODER.encode(value)
    if _EXTRAS_MARK in raw:
        raw = _ENCODER.encode(_merge_extras(msgspec.to_builtins(value)))
    return raw


def _split_at_mark(pretty: bytes, indent: bytes) -> tuple[bytes, bytes, bytes]:
    """Indent ``pretty`` by ``indent``; split it around the line holding ``_CHUNK_MARK``: (before, its indent, after)."""
    text = indent + pretty.replace(b"\n", b"\n" + indent)
    mark = _ENCODER.encode(_CHUNK_MARK)
    at = text.index(mark)
    line_start = text.rindex(b"\n", 0, at) + 1
    return text[:line_start], text[line_start:at], text[at + len(mark) :]


def to_data(obj: _Model) -> Any:
    """A model as plain JSON data (dicts, lists, strings, numbers), unknown keys included."""
    return _merge_extras(msgspec.to_builtins(obj))


def _merge_extras(data: Any) -> Any:
    if isinstance(data, dict):
        extras = data.pop(EXTRAS_KEY, None)
        for key, value in data.items():
            if isinstance(value, (dict, list)):
                data[key] = _merge_extras(value)
        if extras:
            for key, value in extras.items():
                data.setdefault(key, value)
    elif isinstance(data, list):
        for index, value in enumerate(data):
            if isinstance(value, (dict, list)):
                data[index] = _merge_extras(value)
    return data


def from_json(raw: bytes | str, cls: type[ModelT], *, lenient: bool = True) -> ModelT:
    """Decode JSON text straight into ``cls`` (the fast path), else through ``from_data``.

    Raises ``ValueError`` for text that is not JSON and ``ModelError`` for JSON
    that does not fit. ``lenient=False`` skips ``from_data``: text that is not
    exactly our own format raises ``ModelError``, for a caller with its own slow path.
    """
    decoder = _DECODERS.get(cls)
    if decoder is None:
        decoder = _DECODERS[cls] = msgspec.json.Decoder(cls)
    try:
        return decoder.decode(raw)
    except msgspec.ValidationError as exc:
        if not lenient:
            raise _model_error(str(exc)) from None
    except msgspec.DecodeError as exc:
        raise ValueError(str(exc)) from None
    return from_data(cls, msgspec.json.decode(raw))


def from_data(cls: type[ModelT], data: Any) -> ModelT:
    """Validate plain JSON data as ``cls``, keeping unknown keys and accepting lenient forms.

    Raises ``ModelError`` naming the first problem's location.
    """
    try:
        return msgspec.convert(data, cls)
    except msgspec.ValidationError:
        pass  # unknown keys, a lenient form, or a real problem: take the walk
    try:
        prepared = _prepare(cls, data, "")
        return msgspec.convert(prepared, cls)
    except msgspec.ValidationError as exc:
        raise _model_error(str(exc)) from None


def _prepare(cls: type, data: Any, location: str) -> Any:
    """``data`` with each object's unknown keys moved under ``EXTRAS_KEY`` and lenient forms made strict."""
    if not isinstance(data, dict):
        return data
    known = set(cls.__struct_encode_fields__) - {EXTRAS_KEY}
    nested = _NESTED.get(cls, {})
    prepared: dict[str, Any] = {}
    extras: dict[str, Any] = {}
    for key, value in data.items():
        if key not in known:
            extras[key] = value
            continue
        inner = nested.get(key)
        if inner is RequirementId and not isinstance(value, dict):
            value = _requirement_id(value, f"{location}.{key}".lstrip("."))
        elif inner is not None and isinstance(value, list):
            value = [_prepare(inner, item, f"{location}.{key}[{i}]") for i, item in enumerate(value)]
        elif inner is not None:
            value = _prepare(inner, value, f"{location}.{key}")
        elif value is None and key in ("dependencies", "acceptance_criteria"):
            value = []
        prepared[key] = value
    if extras:
        prepared[EXTRAS_KEY] = extras
    return prepared


def _requirement_id(value: Any, location: str) -> Any:
    # Hand-written manifests often say "REQ-001" (or 1); accept it rather than fail.
    if isinstance(value, str):
        try:
            return {"number": RequirementId.parse(value).number}
        except ValueError as exc:
            raise ModelError(location, str(exc)) from None
    if isinstance(value, int) and not isinstance(value, bool):
        return {"number": value}
    return value


_MISSING = re.compile(r"Object missing required field `([^`]*)`")


def _model_error(message: str) -> ModelError:
    """msgspec's ``Expected `int`, got `str` - at `$.iterations[0].number``` as a ModelError."""
    problem, _, where = message.partition(" - at `$")
    location = where.rstrip("`").lstrip(".")
    missing = _MISSING.match(problem)
    if missing:
        location = f"{location}.{missing.group(1)}".lstrip(".")
        problem = "Field required"  # as pydantic says it for agent files
    return ModelError(location, problem.replace("`", ""))


def extras_of(obj: _Model) -> dict[str, Any]:
    """The unknown keys an object was loaded with (empty when none)."""
    return obj.extras or {}
