"""Open a page in real headless Chromium: the DOM after its scripts ran, and a screenshot.

Chromium is required, not optional: a missing browser fails the test with the
command that installs it (``.ci/run`` installs it by itself when run as root).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

ARTIFACTS = Path(__file__).parent / "artifacts"
"""Screenshots kept for people to look at (git-ignored)."""

INSTALL_HINT = "install it: `sudo apt-get install -y chromium` (Debian/Ubuntu), or run .ci/run as root"


def chromium_binary() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail(f"headless Chromium is needed to check the report page and was not found; {INSTALL_HINT}")


def _run(args: list[str], profile: Path) -> subprocess.CompletedProcess[str]:
    command = [
        chromium_binary(),
        "--headless",
        "--no-sandbox",  # tests often run as root in containers
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        *args,
    ]
    env = {**os.environ, "HOME": str(profile)}
    return subprocess.run(command, capture_output=True, text=True, timeout=90, env=env)


def dump_dom(page: Path, profile: Path, window: str = "1300,1400") -> str:
    """The page's DOM serialized after load (its scripts have run)."""
    result = _run([f"--window-size={window}", "--dump-dom", page.resolve().as_uri()], profile)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def screenshot(page: Path, profile: Path, name: str, window: str = "1300,1400") -> Path:
    """A PNG of the page, written to tests/artifacts/<name> (atomically: parallel runs share it)."""
    shot = profile / name
    result = _run([f"--window-size={window}", f"--screenshot={shot}", page.resolve().as_uri()], profile)
    assert result.returncode == 0 and shot.is_file(), result.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ARTIFACTS.mkdir(exist_ok=True)
    temporary = ARTIFACTS / f".{name}.{os.getpid()}.tmp"
    shutil.copyfile(shot, temporary)
    os.replace(temporary, ARTIFACTS / name)
    return ARTIFACTS / name


class Elements(HTMLParser):
    """Every start tag of a document with its attributes, in order."""

    def __init__(self, markup: str) -> None:
        super().__init__()
        self.items: list[tuple[str, dict[str, str]]] = []
        self.feed(markup)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.items.append((tag, {k: v or "" for k, v in attrs}))

    def find(self, tag: str | None = None, cls: str | None = None, **attrs: str) -> list[dict[str, str]]:
        found = []
        for name, values in self.items:
            if tag is not None and name != tag:
                continue
            if cls is not None and cls not in values.get("class", "").split():
                continue
            if all(values.get(k.replace("_", "-")) == v for k, v in attrs.items()):
                found.append(values)
        return found
