#!/usr/bin/env python3
"""Quickstart runner: `python3 dev.py demo` runs the demo plan, `python3 dev.py test` the tests.

Each command first makes sure `.venv/` exists and holds this project with its
extras (`pip install -e ".[all,test]"`, redone only when pyproject.toml
changes), so a fresh clone needs nothing but Python 3.11+ and pip.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / ("python.exe" if os.name == "nt" else "python")
STAMP = VENV / ".radium-install-stamp"
DEMO_DIR = Path(os.environ.get("DEV_DEMO_DIR") or ROOT / ".demo")  # tests use their own, so two suites can run at once


def ensure_venv() -> None:
    if sys.version_info < (3, 11):
        sys.exit(f"Radium needs Python 3.11 or newer; this is {sys.version.split()[0]}.")
    if not PYTHON.exists():
        print("Creating .venv ...", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == wanted:
        return
    print('Installing radium and its extras into .venv (pip install -e ".[all,test]") ...', flush=True)
    subprocess.run(
        [str(PYTHON), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-e", ".[all,test]"],
        cwd=ROOT,
        check=True,
    )
    STAMP.write_text(wanted)


def rad(*args: str) -> int:
    return subprocess.run([str(PYTHON), "-m", "radium", *args], cwd=ROOT).returncode


def demo() -> int:
    """Copy examples/demo to .demo/, turn its plan.md into a plan, and craft it."""
    ensure_venv()
    shutil.rmtree(DEMO_DIR, ignore_errors=True)
    shutil.copytree(ROOT / "examples" / "demo", DEMO_DIR)
    for step in (
        ("init", str(DEMO_DIR)),
        ("-w", str(DEMO_DIR), "plan", str(DEMO_DIR / "plan.md"), "--id", "REQ-001"),
    ):
        if (code := rad(*step)) != 0:
            return code
    print(flush=True)
    code = rad("-w", str(DEMO_DIR), "craft", "REQ-001")
    shown = os.path.relpath(DEMO_DIR, ROOT) if DEMO_DIR.is_relative_to(ROOT) else str(DEMO_DIR)
    print(
        f"\nDemo workspace: {DEMO_DIR} (try: .venv/bin/rad -w {shown} status REQ-001, "
        f"then .venv/bin/rad -w {shown} report REQ-001)"
    )
    return code


def test() -> int:
    """Run the whole test suite; 'no tests ran' (pytest exit 5) counts as a failure."""
    ensure_venv()
    code = subprocess.run([str(PYTHON), "-m", "pytest", "-n", "2", "--dist", "loadgroup", *sys.argv[2:]], cwd=ROOT).returncode
    if code == 5:
        print("pytest collected no tests: failing on purpose.", file=sys.stderr)
        return 1
    return code


COMMANDS = {"demo": demo, "test": test}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        sys.exit(f"usage: python3 {Path(__file__).name} {{demo|test}} [pytest args]")
    sys.exit(COMMANDS[sys.argv[1]]())
