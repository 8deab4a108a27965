"""``rad report``'s page: one self-contained HTML file (inline style and script, no network).

The page is ``report_template.html`` with the report data (``report_data``)
embedded as JSON in a ``<script type="application/json">`` block and drawn by
the inline script with DOM APIs (``textContent``, ``setAttribute``), never by
building HTML from strings. Model outputs are untrusted, so the JSON is made
safe for its place in the page: every ``<``, ``>`` and ``&`` is written as a
``\\u00XX`` escape, so no text can close the script block or open a tag, and a
Content-Security-Policy forbids any network access from the page.
"""

from __future__ import annotations

import html
import json
from importlib import resources
from pathlib import Path
from typing import Any

from radium.files import atomic_write_text

_JSON_ESCAPES = str.maketrans(
    {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)


def embed_json(data: Any) -> str:
    """JSON text that is inert inside ``<script type="application/json">`` (no ``</script>``)."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.translate(_JSON_ESCAPES)


def render_report(data: dict[str, Any]) -> str:
    template = resources.files("radium.reporting").joinpath("report_template.html").read_text(encoding="utf-8")
    summary = data["summary"]
    title = html.escape(f"Radium report · {summary['requirement_id']} · {summary['project']}")
    head, tail = template.split("__DATA__")
    return head.replace("__TITLE__", title) + embed_json(data) + tail


def write_report(path: Path, data: dict[str, Any]) -> int:
    """Write the page atomically; return its size in bytes."""
    text = render_report(data)
    atomic_write_text(path, text, durable=False)
    return len(text.encode("utf-8"))
