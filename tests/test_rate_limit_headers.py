"""Every way providers say "come back at T", parsed from real header objects.

These are pure parsing tests (the CLI-level behaviour, a wait of the right
length against a real server through the official SDKs, is in
``test_rate_limits.py``).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import httpx2 as httpx  # the header type the installed openai/anthropic SDKs use
import pytest

from radium.ratelimit.headers import parse_go_duration, parse_snapshot, server_wait

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


def wait(headers: dict[str, str]) -> tuple[float, str] | None:
    found = server_wait(httpx.Headers(headers), now=NOW)
    return (round(found.seconds, 3), found.source) if found else None


def test_retry_after_seconds_date_and_milliseconds() -> None:
    assert wait({"Retry-After": "3"}) == (3, "retry-after")
    date = (NOW + timedelta(seconds=7)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert wait({"Retry-After": date}) == (7, "retry-after")
    # The precise form wins over the rounded one when a server sends both.
    assert wait({"retry-after-ms": "250", "Retry-After": "1"}) == (0.25, "retry-after-ms")
    assert wait({"Retry-After": "soon"}) is None
    assert server_wait(None) is None
    assert wait({"RETRY-AFTER": "4"}) == (4, "retry-after")


@pytest.mark.parametrize(
    "text,seconds",
    [("250ms", 0.25), ("6s", 6), ("1m30.5s", 90.5), ("2h0m0s", 7200), ("0.5", 0.5), ("1m", 60), ("20ms", 0.02)],
)
def test_openai_reset_durations(text: str, seconds: float) -> None:
    assert parse_go_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "soon", "6x", "1m30", "ms"])
def test_garbled_durations_are_ignored(text: str) -> None:
    assert parse_go_duration(text) is None


def test_openai_reset_of_the_exhausted_limit_is_the_wait() -> None:
    headers = {
        "x-ratelimit-limit-requests": "60",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "12s",
        "x-ratelimit-remaining-tokens": "39000",
        "x-ratelimit-reset-tokens": "6m0s",
    }
    # The tokens limit is not exhausted: its (long) reset is not what we wait for.
    assert wait(headers) == (12, "x-ratelimit-reset-requests")
    assert wait({"x-ratelimit-reset-tokens": "1m30.5s"}) == (90.5, "x-ratelimit-reset-tokens")


def test_anthropic_rfc3339_resets() -> None:
    reset = (NOW + timedelta(seconds=20)).isoformat().replace("+00:00", "Z")
    for dimension in ("requests", "tokens", "input-tokens", "output-tokens"):
        headers = {
            f"anthropic-ratelimit-{dimension}-remaining": "0",
            f"anthropic-ratelimit-{dimension}-reset": reset,
        }
        assert wait(headers) == (20, f"anthropic-ratelimit-{dimension}-reset")


def test_litellm_forwarded_headers() -> None:
    assert wait({"llm_provider-retry-after": "60"}) == (60, "llm_provider-retry-after")
    assert wait({"llm_provider-x-ratelimit-reset-requests": "2s"}) == (2, "llm_provider-x-ratelimit-reset-requests")


def test_success_snapshot_reports_exhausted_limits_only() -> None:
    snapshot = parse_snapshot(
        httpx.Headers(
            {
                "x-ratelimit-limit-requests": "10",
                "x-ratelimit-remaining-requests": "4",
                "x-ratelimit-reset-requests": "3s",
            }
        ),
        now=NOW,
    )
    assert snapshot is not None and snapshot.exhausted() is None
    requests = snapshot.get("requests")
    assert (requests.limit, requests.remaining, requests.reset.seconds) == (10, 4, 3)
    exhausted = parse_snapshot(
        httpx.Headers({"x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "1.5s"}), now=NOW
    )
    assert exhausted.exhausted().seconds == 1.5
    assert parse_snapshot(httpx.Headers({"content-type": "application/json"})) is None
