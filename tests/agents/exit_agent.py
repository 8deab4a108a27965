"""Test agent: prints some lines on stderr, then exits with the status it is given.

``exit_agent.py STATUS [STDERR_LINE...]``; STATUS ``signal:NAME`` makes it kill itself with
that signal (e.g. ``signal:SIGKILL``). It never reads stdin.
"""

import os
import signal
import sys

status = sys.argv[1]
for line in sys.argv[2:]:
    sys.stderr.write(line + "\n")
sys.stderr.flush()
sys.stdout.write("partial output\n")
sys.stdout.flush()
if status.startswith("signal:"):
    os.kill(os.getpid(), getattr(signal, status.split(":", 1)[1]))
sys.exit(int(status))
