"""A real HTTP server on 127.0.0.1 that speaks just enough of three provider APIs.

It answers, with provider-shaped JSON:

* OpenAI Chat Completions   ``POST /v1/chat/completions`` (also ``POST /chat/completions``)
* Anthropic Messages        ``POST /v1/messages``
* Gemini generateContent    ``POST /v1beta/models/<model>:generateContent`` (any API version)

Each endpoint (``"openai"``, ``"anthropic"``, ``"gemini"``) has a queue of scripted steps; a
request takes the next step of its endpoint's queue, and an empty queue answers ``ok``. Steps
are plain dicts so a script can be passed as JSON to the standalone server:

``{"kind": "ok", "text": "...", "prompt_tokens": 5, "completion_tokens": 7, "headers": {...}}``
    a normal answer (the text defaults to ``fake answer #N``), with extra response headers.
``{"kind": "status", "status": 429, "headers": {"Retry-After": "1"}, "body": {...}, "message": "..."}``
    an HTTP error (a header value ``@+1.5`` is sent as the RFC 3339 time 1.5 s later); without ``body`` a provider-shaped error body is built. ``echo_key``
    (default true for 401) puts the API key the client sent into the error message, the
    way some providers echo a bad key back, so redaction can be tested.
``{"kind": "stall", "seconds": 0.5}``
    sleep that long, then answer ``ok`` (if the client is still there).
``{"kind": "drop"}``
    send a 200 status line and headers announcing a body, a few bytes of it, then close
    the connection mid-body.

Any step may carry ``"when": "text"``: it then answers only a request whose body contains
that text (e.g. a task id in the prompt), so parallel tasks can be scripted one by one; a
request takes the first queued step whose ``when`` matches, else the first without one.

``FakeProvider.window(endpoint, limit, window_s, dialect)`` puts a sliding-window limit in
front of an endpoint, as a gateway would: at most ``limit`` requests are let through in
any ``window_s`` seconds, the others get 429. Every answer carries the limit headers of
``dialect`` (``openai``: ``x-ratelimit-{limit,remaining,reset}-requests`` with a duration;
``anthropic``: ``anthropic-ratelimit-requests-*`` with an RFC 3339 time), where "reset"
is when the window is fully replenished, as both providers document it.

Every request is logged (``FakeProvider.requests``): wall time, endpoint, method, path,
headers (lower-cased names), parsed body, and the step kind used to answer it.

Use it in tests as a context manager (or through a pytest fixture)::

    with FakeProvider() as server:
        server.script("openai", status(429, headers={"Retry-After": "1"}), ok("hi"))
        ... point the SDK at server.openai_base_url ...
        assert len(server.requests_for("openai")) == 2

or as a process, for CLI tests::

    python tests/fake_provider.py --port-file PORT_FILE --script '{"openai": [...]}'

The process writes its port to ``PORT_FILE`` once it listens. It also serves two control
endpoints (never logged): ``GET /_fake/log`` returns the request log as JSON, and
``POST /_fake/script`` (body ``{"openai": [...], ...}``) appends steps to queues.
``POST /_fake/reset`` clears the queues and the log.
"""

from __future__ import annotations

import argparse
import json
import re
import socket
import sys
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ENDPOINTS = ("openai", "anthropic", "gemini")
_GEMINI_PATH = re.compile(r"^/v[0-9a-z]+/models/(?P<model>[^/:]+):generateContent$")


# ------------------------------------------------------------------ step builders


def ok(
    text: str | None = None,
    *,
    prompt_tokens: int = 11,
    completion_tokens: int = 7,
    headers: dict[str, str] | None = None,
    when: str | None = None,
) -> dict:
    """A successful answer (with extra response ``headers``; only for a body containing ``when``)."""
    step: dict[str, Any] = {
        "kind": "ok",
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
    }
    if text is not None:
        step["text"] = text
    if headers:
        step["headers"] = headers
    if when is not None:
        step["when"] = when
    return step


def status(
    code: int,
    *,
    headers: dict[str, str] | None = None,
    body: Any = None,
    message: str | None = None,
    echo_key: bool | None = None,
    error_code: str | None = None,
    when: str | None = None,
) -> dict:
    """An HTTP error answer with a provider-shaped body (unless ``body`` is given)."""
    step: dict[str, Any] = {"kind": "status", "status": code, "headers": headers or {}}
    if when is not None:
        step["when"] = when
    if body is not None:
        step["body"] = body
    if message is not None:
        step["message"] = message
    if echo_key is not None:
        step["echo_key"] = echo_key
    if error_code is not None:
        step["error_code"] = error_code
    return step


def stall(seconds: float, *, when: str | None = None) -> dict:
    """Wait ``seconds`` before answering (to trigger a client read timeout)."""
    step: dict[str, Any] = {"kind": "stall", "seconds": seconds}
    if when is not None:
        step["when"] = when
    return step


def drop() -> dict:
    """Send headers and part of the body, then close the connection."""
    return {"kind": "drop"}


SECRET_KEY = "sk-test-SECRET-1234567890"
"""A recognisable fake API key: tests assert it never shows up in a message or a file."""


def standard_faults() -> list[tuple[str, dict, str, int | None, float | None]]:
    """(id, step, radium error class name, expected status, expected retry_after) per fault kind.

    Every engine test runs these against its endpoint: each must give that error, after
    exactly one request.
    """
    return [
        ("429-retry-after", status(429, headers={"Retry-After": "1"}), "RateLimitError", None, 1.0),
        ("429-retry-after-ms", status(429, headers={"retry-after-ms": "1500"}), "RateLimitError", None, 1.5),
        ("429-no-header", status(429), "RateLimitError", None, None),
        ("408", status(408), "ServerError", 408, None),
        ("409", status(409), "ServerError", 409, None),
        ("500", status(500), "ServerError", 500, None),
        ("502", status(502), "ServerError", 502, None),
        ("503-retry-after", status(503, headers={"Retry-After": "2"}), "ServerError", 503, 2.0),
        ("529", status(529), "ServerError", 529, None),
        ("401", status(401), "AuthenticationError", 401, None),
        ("403", status(403), "AuthenticationError", 403, None),
        ("404", status(404), "ModelNotFoundError", 404, None),
        ("400", status(400), "BadRequestError", 400, None),
        ("422", status(422), "BadRequestError", 422, None),
        ("stall", stall(0.6), "ModelTimeoutError", None, None),
        ("drop", drop(), "ConnectionFailedError", None, None),
    ]


# ------------------------------------------------------------------ request log


@dataclass
class RecordedRequest:
    time: float
    endpoint: str
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    step: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ------------------------------------------------------------------ provider shapes

_OPENAI_ERROR_TYPES = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
}
_ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
_GEMINI_STATUSES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    408: "DEADLINE_EXCEEDED",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def _reason(code: int) -> str:
    try:
        return HTTPStatus(code).phrase
    except ValueError:
        return {529: "Overloaded", 499: "Client Closed Request"}.get(code, "Error")


def _ok_body(endpoint: str, step: dict, request_body: Any, number: int, model: str) -> dict:
    text = step.get("text", f"fake answer #{number}")
    p, c = int(step.get("prompt_tokens", 11)), int(step.get("completion_tokens", 7))
    if endpoint == "openai":
        return {
            "id": f"chatcmpl-fake{number}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": step.get("finish_reason", "stop"),
                }
            ],
            "usage": {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c},
        }
    if endpoint == "anthropic":
        return {
            "id": f"msg_fake{number}",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": text}],
            "stop_reason": step.get("finish_reason", "end_turn"),
            "stop_sequence": None,
            "usage": {"input_tokens": p, "output_tokens": c},
        }
    return {
        "candidates": [
            {
                "content": {"parts": [{"text": text}], "role": "model"},
                "finishReason": step.get("finish_reason", "STOP"),
                "index": 0,
            }
        ],
        "usageMetadata": {"promptTokenCount": p, "candidatesTokenCount": c, "totalTokenCount": p + c},
        "modelVersion": model,
        "responseId": f"fake{number}",
    }


def _error_body(endpoint: str, step: dict, key: str) -> Any:
    if "body" in step:
        return step["body"]
    code = int(step["status"])
    message = step.get("message") or f"fake {code} {_reason(code)}"
    if step.get("echo_key", code == 401) and key:
        message = f"{message}: Incorrect API key provided: {key}"
    if endpoint == "openai":
        err_type, err_code = _OPENAI_ERROR_TYPES.get(code, ("server_error" if code >= 500 else "invalid_request_error", None))
        return {
            "error": {
                "message": message,
                "type": err_type,
                "param": None,
                "code": step.get("error_code", err_code),
            }
        }
    if endpoint == "anthropic":
        error: dict[str, Any] = {"type": _ANTHROPIC_ERROR_TYPES.get(code, "api_error"), "message": message}
        if step.get("error_code"):
            error["details"] = {"error_code": step["error_code"]}
        return {"type": "error", "error": error, "request_id": "req_fake"}
    body: dict[str, Any] = {
        "error": {"code": code, "message": message, "status": _GEMINI_STATUSES.get(code, "UNKNOWN")}
    }
    if step.get("error_code"):
        body["error"]["details"] = [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": step["error_code"],
                "domain": "googleapis.com",
            }
        ]
    return body


def _header_value(value: str) -> str:
    """``@+1.5`` becomes the RFC 3339 time 1.5 s after the answer is sent (Anthropic resets)."""
    if isinstance(value, str) and value.startswith("@+"):
        when = datetime.fromtimestamp(time.time() + float(value[2:]), timezone.utc)
        return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return value


def _sent_key(headers: dict[str, str]) -> str:
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:]
    return headers.get("x-api-key") or headers.get("x-goog-api-key") or ""


# ------------------------------------------------------------------ the server


class SlidingWindow:
    """At most ``limit`` requests in any ``window_s`` seconds, announced in a provider's dialect."""

    def __init__(self, limit: int, window_s: float, dialect: str = "openai") -> None:
        self.limit = limit
        self.window_s = window_s
        self.dialect = dialect
        self.accepted: deque[float] = deque()

    def admit(self, now: float) -> tuple[bool, dict[str, str]]:
        """Let a request through or not; the limit headers to send either way."""
        while self.accepted and self.accepted[0] <= now - self.window_s:
            self.accepted.popleft()
        allowed = len(self.accepted) < self.limit
        if allowed:
            self.accepted.append(now)
        remaining = self.limit - len(self.accepted)
        # "Reset": when the window is fully replenished (the newest request has left it).
        reset = max(self.accepted[-1] + self.window_s - now, 0.0) if self.accepted else 0.0
        if self.dialect == "anthropic":
            when = datetime.fromtimestamp(time.time() + reset, timezone.utc).isoformat(timespec="milliseconds")
            headers = {
                "anthropic-ratelimit-requests-limit": str(self.limit),
                "anthropic-ratelimit-requests-remaining": str(remaining),
                "anthropic-ratelimit-requests-reset": when.replace("+00:00", "Z"),
            }
        else:
            headers = {
                "x-ratelimit-limit-requests": str(self.limit),
                "x-ratelimit-remaining-requests": str(remaining),
                "x-ratelimit-reset-requests": f"{reset * 1000:.0f}ms",
            }
        return allowed, headers


class FakeProvider:
    """The fake provider server (start/stop it, or use it as a context manager)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._windows: dict[str, SlidingWindow] = {}
        self._lock = threading.Lock()
        self._queues: dict[str, deque[dict]] = {name: deque() for name in ENDPOINTS}
        self._log: list[RecordedRequest] = []
        self._served = 0
        handler = type("Handler", (_Handler,), {"provider": self})
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    # lifecycle
    def start(self) -> "FakeProvider":
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=2)

    def __enter__(self) -> "FakeProvider":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # addresses
    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def openai_base_url(self) -> str:
        return f"{self.url}/v1"

    @property
    def anthropic_base_url(self) -> str:
        return self.url

    @property
    def gemini_base_url(self) -> str:
        return self.url

    # scripting
    def script(self, endpoint: str, *steps: dict) -> None:
        """Append ``steps`` to ``endpoint``'s queue (``"*"`` appends to all three)."""
        names = ENDPOINTS if endpoint == "*" else (endpoint,)
        with self._lock:
            for name in names:
                if name not in self._queues:
                    raise ValueError(f"unknown endpoint {name!r}")
                self._queues[name].extend(dict(step) for step in steps)

    def load_script(self, script: dict[str, list[dict]]) -> None:
        for endpoint, steps in script.items():
            self.script(endpoint, *steps)

    def window(self, endpoint: str, limit: int, window_s: float, dialect: str = "openai") -> None:
        """Limit ``endpoint`` to ``limit`` requests per sliding ``window_s`` seconds (see module doc)."""
        with self._lock:
            self._windows[endpoint] = SlidingWindow(limit, window_s, dialect)

    def reset(self) -> None:
        with self._lock:
            for queue in self._queues.values():
                queue.clear()
            self._log.clear()
            self._windows.clear()

    def pending(self, endpoint: str) -> int:
        with self._lock:
            return len(self._queues[endpoint])

    # log
    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._log)

    def requests_for(self, endpoint: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.endpoint == endpoint]

    # used by the handler
    def _admit(self, endpoint: str) -> tuple[bool, dict[str, str]]:
        with self._lock:
            window = self._windows.get(endpoint)
            return window.admit(time.monotonic()) if window is not None else (True, {})

    def _next_step(self, endpoint: str, raw_body: bytes = b"") -> tuple[dict, int]:
        with self._lock:
            self._served += 1
            queue = self._queues[endpoint]
            text = raw_body.decode("utf-8", "replace")
            chosen = next((step for step in queue if step.get("when") and step["when"] in text), None)
            if chosen is None:
                chosen = next((step for step in queue if not step.get("when")), None)
            if chosen is None:
                return {"kind": "ok"}, self._served
            queue.remove(chosen)
            return chosen, self._served

    def _record(self, entry: RecordedRequest) -> None:
        with self._lock:
            self._log.append(entry)


class _Handler(BaseHTTPRequestHandler):
    provider: FakeProvider
    protocol_version = "HTTP/1.1"
    server_version = "FakeProvider/1.0"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silence stderr
        pass

    # ---- plumbing

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send_json(self, code: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(code, _reason(code))
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, _header_value(value))
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _endpoint(self) -> tuple[str | None, str]:
        path = self.path.split("?", 1)[0]
        if path in ("/v1/chat/completions", "/chat/completions"):
            return "openai", ""
        if path in ("/v1/messages",):
            return "anthropic", ""
        match = _GEMINI_PATH.match(path)
        if match:
            return "gemini", match["model"]
        return None, ""

    # ---- verbs

    def do_GET(self) -> None:
        try:
            if self.path.split("?", 1)[0] == "/_fake/log":
                self._send_json(200, [r.to_dict() for r in self.provider.requests])
            else:
                self._send_json(404, {"error": {"message": f"no route {self.path}"}})
        except (ConnectionError, OSError):
            pass

    def do_POST(self) -> None:
        try:
            self._post()
        except (ConnectionError, OSError):
            # The client gave up (read timeout) or we dropped the connection on purpose.
            self.close_connection = True

    def _post(self) -> None:
        raw = self._read_body()
        path = self.path.split("?", 1)[0]
        if path == "/_fake/script":
            self.provider.load_script(json.loads(raw or b"{}"))
            self._send_json(200, {"ok": True})
            return
        if path == "/_fake/reset":
            self.provider.reset()
            self._send_json(200, {"ok": True})
            return

        endpoint, gemini_model = self._endpoint()
        headers = {name.lower(): value for name, value in self.headers.items()}
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        if endpoint is None:
            self.provider._record(RecordedRequest(time.time(), "unknown", "POST", self.path, headers, body, "404"))
            self._send_json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
            return

        allowed, limit_headers = self.provider._admit(endpoint)
        if not allowed:
            self.provider._record(RecordedRequest(time.time(), endpoint, "POST", self.path, headers, body, "window-429"))
            refusal = {"status": 429, "message": "rate limit reached for requests"}
            self._send_json(429, _error_body(endpoint, refusal, ""), limit_headers)
            return
        step, number = self.provider._next_step(endpoint, raw)
        kind = step.get("kind", "ok")
        self.provider._record(RecordedRequest(time.time(), endpoint, "POST", self.path, headers, body, kind))
        model = gemini_model or (body.get("model") if isinstance(body, dict) else None) or "fake-model"
        extra = {**limit_headers, **step.get("headers", {})}

        if kind == "stall":
            time.sleep(float(step.get("seconds", 0.5)))
            self._send_json(200, _ok_body(endpoint, step, body, number, model), extra)
        elif kind == "ok":
            self._send_json(200, _ok_body(endpoint, step, body, number, model), extra)
        elif kind == "status":
            code = int(step["status"])
            self._send_json(code, _error_body(endpoint, step, _sent_key(headers)), extra)
        elif kind == "drop":
            data = json.dumps(_ok_body(endpoint, step, body, number, model)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 3])
            self.wfile.flush()
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        else:
            self._send_json(500, {"error": {"message": f"fake provider: unknown step kind {kind!r}"}})


# ------------------------------------------------------------------ helpers for CLI tests


def fetch_log(url: str) -> list[dict[str, Any]]:
    """The request log of a standalone fake server at ``url``."""
    import urllib.request

    with urllib.request.urlopen(f"{url}/_fake/log", timeout=5) as response:
        return json.loads(response.read())


def post_script(url: str, script: dict[str, list[dict]]) -> None:
    """Append steps to a standalone fake server's queues."""
    import urllib.request

    request = urllib.request.Request(
        f"{url}/_fake/script",
        data=json.dumps(script).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        response.read()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file", type=Path, help="write the port here once listening")
    parser.add_argument("--script", default="{}", help='JSON: {"openai": [steps], "anthropic": [...], ...}')
    args = parser.parse_args(argv)
    server = FakeProvider(port=args.port)
    server.load_script(json.loads(args.script))
    server.start()
    if args.port_file:
        tmp = args.port_file.with_suffix(".tmp")
        tmp.write_text(str(server.port))
        tmp.replace(args.port_file)
    print(f"fake provider listening on {server.url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
