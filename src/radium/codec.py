"""The plan models' JSON, both ways: fast where the file is ours, faithful where it is not.

* ``from_json`` decodes a file straight into the structs of ``radium.models``
  (msgspec, no dicts in between: a 100,000-task manifest in ~0.3 s). The fast
  decoder forbids unknown fields; a file that has some (a manifest the
  original Radium or a person wrote) takes ``from_data``, which moves each
  object's unknown keys into its ``extras`` field and also accepts the lenient
  forms hand-written manifests contain (``"REQ-001"`` or ``1`` for
  ``requirement_id``, ``null`` for a task's lists). Errors become
  ``ModelError`` with a readable location (``iterations[0].tasks[2].title``).
* ``encode``/``to_json`` write a model back, unknown keys after its own
  fields; ``to_json`` is the file layout (2-space indented, as the original's
  ``to_string_pretty``).
* ``manifest_pieces``/``render_pieces`` produce the same bytes as
  ``to_json_bytes(manifest)`` in pieces, so a compaction streams the file.
"""

from __future__ import annotations

import re
from typing import Any, Iterator, TypeVar

import msgspec

from radium.models import (
    EXTRAS_KEY,
    AttemptRecord,
    Iteration,
    ManifestModel,
    PlanManifest,
    PlanMetadata,
    PlanStatus,
    PlanTask,
    RequirementId,
    TaskErrorRecord,
    TaskStatus,
    TokenUsage,
)

_EXTRAS_MARK = f'"{EXTRAS_KEY}"'.encode()

ModelT = TypeVar("ModelT", bound=ManifestModel)


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


def encode(obj: ManifestModel) -> bytes:
    """Compact JSON of a model, its unknown keys after its own fields."""
    return _encode_value(obj)


def to_json_bytes(obj: ManifestModel) -> bytes:
    """The file content of a model: 2-space indented UTF-8 JSON (``json.dumps(indent=2)``'s layout).

    100,000 tasks take about 0.15 s, so a compaction simply re-encodes the whole manifest.
    """
    return msgspec.json.format(encode(obj), indent=2)


def to_json(obj: ManifestModel) -> str:
    """``to_json_bytes`` as text."""
    return to_json_bytes(obj).decode("utf-8")


_CHUNK_MARK = "__radium_chunk__"
_ENCODED_MARK = _ENCODER.encode(_CHUNK_MARK)


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
    split = _split_at_mark(_pretty(top), b"") if manifest.iterations else None
    if split is None:  # no iterations, or a value that is the mark itself: not worth streaming
        return [to_json_bytes(manifest)]
    head, indent, tail = split
    pieces: list[_Piece] = [head]
    for number, iteration in enumerate(manifest.iterations):
        if number:
            pieces.append(b",\n")
        shell = to_data(msgspec.structs.replace(iteration, tasks=[]))
        shell["tasks"] = [_CHUNK_MARK]
        split = _split_at_mark(_pretty(shell), indent) if iteration.tasks else None
        if split is None:
            pieces.append(indent + to_json_bytes(iteration).replace(b"\n", b"\n" + indent))
            continue
        iteration_head, task_indent, iteration_tail = split
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


def _pretty(data: Any) -> bytes:
    return msgspec.json.format(_ENCODER.encode(data), indent=2)


def _encode_value(value: Any) -> bytes:
    """Compact JSON of models or lists of them, unknown keys included."""
    raw = _ENCODER.encode(value)
    if _EXTRAS_MARK in raw:
        raw = _ENCODER.encode(_merge_extras(msgspec.to_builtins(value)))
    return raw


def _split_at_mark(pretty: bytes, indent: bytes) -> tuple[bytes, bytes, bytes] | None:
    """Indent ``pretty`` by ``indent``; split it around the line holding ``_CHUNK_MARK``: (before, its indent, after).

    None when the mark is there more than once (some string in the file is the mark itself):
    the split would be ambiguous, and the caller encodes that part whole.
    """
    if pretty.count(_ENCODED_MARK) != 1:
        return None
    text = indent + pretty.replace(b"\n", b"\n" + indent)
    at = text.index(_ENCODED_MARK)
    line_start = text.rindex(b"\n", 0, at) + 1
    return text[:line_start], text[line_start:at], text[at + len(_ENCODED_MARK) :]


def to_data(obj: ManifestModel) -> Any:
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
        raise _model_error(str(exc), data) from None


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
        elif value is None and key == "status":
            continue  # the default (a task's is then derived from ``completed``), as before
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


_STATUS_VALUES = {
    "a task": ", ".join(status.value for status in TaskStatus),
    "an iteration": ", ".join(status.value for status in PlanStatus),
}
_PATH_PART = re.compile(r"\.?([^.\[]+)|\[(\d+)\]")


def _model_error(message: str, data: Any = None) -> ModelError:
    """msgspec's ``Expected `int`, got `str` - at `$.iterations[0].number``` as a ModelError.

    Says what was found where msgspec does not (``Expected int >= 0`` gets
    ``, got -1``) and lists the allowed values of a status.
    """
    problem, _, where = message.partition(" - at `$")
    location = where.rstrip("`").lstrip(".")
    missing = _MISSING.match(problem)
    problem = problem.replace("`", "")
    if missing:
        location = f"{location}.{missing.group(1)}".lstrip(".")
        problem = "Field required"  # as pydantic says it for agent files
    elif problem.startswith("Invalid enum value") and location.endswith("status"):
        kind = "a task" if ".tasks[" in location else "an iteration"
        problem += f" ({kind} status is one of: {_STATUS_VALUES[kind]})"
    elif problem.startswith("Expected") and ", got" not in problem:
        found = _value_at(data, location)
        if found is not _NOT_FOUND:
            problem += f", got {found!r}"
    return ModelError(location, problem)


_NOT_FOUND = object()


def _value_at(data: Any, location: str) -> Any:
    """The value at ``iterations[0].tasks[2].number`` in plain data, or ``_NOT_FOUND``."""
    for name, index in _PATH_PART.findall(location):
        try:
            data = data[int(index)] if index else data[name]
        except (KeyError, IndexError, TypeError):
            return _NOT_FOUND
    return data


def extras_of(obj: ManifestModel) -> dict[str, Any]:
    """The unknown keys an object was loaded with (empty when none)."""
    return obj.extras or {}
