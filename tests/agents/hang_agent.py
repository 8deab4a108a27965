"""Test agent: starts a child that sleeps, records both pids, and hangs.

``hang_agent.py PIDFILE [--ignore-term] [--exit]``: writes ``<own pid> <child pid>`` to
PIDFILE (atomically), then sleeps for a minute. With ``--ignore-term`` both processes
ignore SIGTERM (so only SIGKILL ends them). With ``--exit`` the agent itself exits at once
with status 0 after printing "done", leaving the child holding stdout/stderr open.
"""

import os
import signal
import subprocess
import sys
import time

pidfile = sys.argv[1]
ignore_term = "--ignore-term" in sys.argv
leave = "--exit" in sys.argv
if ignore_term:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
child_code = (
    "import signal, time\n"
    + ("signal.signal(signal.SIGTERM, signal.SIG_IGN)\n" if ignore_term else "")
    + "time.sleep(60)\n"
)
child = subprocess.Popen([sys.executable, "-S", "-c", child_code])
tmp = pidfile + ".tmp"
with open(tmp, "w") as fh:
    fh.write(f"{os.getpid()} {child.pid}")
os.replace(tmp, pidfile)
if leave:
    print("done", flush=True)
    os._exit(0)
time.sleep(60)
