"""Test agent for the Ray backend (run by the command engine inside a Ray worker).

``ray_agent.py node``: print the node's tag (``RADIUM_TEST_NODE``, set per node by the test cluster).
``ray_agent.py crash-once MARKER``: the first time, write own pid to MARKER, SIGKILL the parent
(the Ray worker running the attempt) and hang; afterwards print "recovered".
``ray_agent.py hang-while FLAG PIDDIR``: while FLAG exists, start a child, write
"<own pid> <child pid>" to PIDDIR/<own pid> (atomically) and hang; otherwise print "done".
"""

import os
import signal
import subprocess
import sys
import time


def write_atomically(path: str, text: str) -> None:
    with open(path + ".tmp", "w") as fh:
        fh.write(text)
    os.replace(path + ".tmp", path)


mode = sys.argv[1]
if mode == "node":
    print(os.environ.get("RADIUM_TEST_NODE", "unknown"))
elif mode == "crash-once":
    marker = sys.argv[2]
    if os.path.exists(marker):
        print("recovered")
    else:
        write_atomically(marker, str(os.getpid()))
        os.kill(os.getppid(), signal.SIGKILL)
        time.sleep(60)
elif mode == "hang-while":
    flag, piddir = sys.argv[2], sys.argv[3]
    if os.path.exists(flag):
        child = subprocess.Popen([sys.executable, "-S", "-c", "import time; time.sleep(60)"])
        write_atomically(os.path.join(piddir, str(os.getpid())), f"{os.getpid()} {child.pid}")
        time.sleep(60)
    print("done")
