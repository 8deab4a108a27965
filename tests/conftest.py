"""Fixtures shared by several test files."""

from __future__ import annotations

import pytest

from fake_provider import FakeProvider


@pytest.fixture
def fake():
    """A fake provider (real HTTP on 127.0.0.1) running in this process for one test."""
    with FakeProvider() as server:
        yield server
