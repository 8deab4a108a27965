"""The README's quickstart demo command, run exactly as a user would.

`python3 dev.py demo` sets up .venv if needed (under `python3 dev.py test`, as
in CI, it already exists), copies examples/demo to .demo/, creates the plan with
`rad plan` and crafts it with the mock engine: progress, one retry, summary.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_readme_demo_command(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "dev.py"), "demo"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        # The same command, in this test's own directory: two test runs at once must not share .demo/.
        env={**os.environ, "DEV_DEMO_DIR": str(tmp_path / "demo")},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "[Iteration 1] Progress: 0/5 tasks | Current: I1.T1" in out
    assert "Attempt 1: Error (rate limit) → Wait 1 second (1000ms * 2^0)" in out
    assert "• Progress: 100%" in out
    assert "→ All tasks completed. Execution finished." in out
    assert "Tasks: 5 completed · 0 failed · 0 blocked · 0 remaining (of 5)" in out
    assert "Retries: 1" in out
    readme = (ROOT / "README.md").read_text()
    assert "python3 dev.py demo" in readme and "python3 dev.py test" in readme
    assert "python3 dev.py test" in (ROOT / ".ci" / "run").read_text()
