"""Test agent: answers with exactly the bytes it was given.

``echo_agent.py [--out FILE] [--arg TEXT]``: with ``--arg`` the answer is that argv element
(as raw bytes, ``os.fsencode``), otherwise all of stdin. The bytes go to stdout and, with
``--out``, to FILE as well (so a test can compare byte for byte). It also prints its
working directory on stderr.
"""

import os
import sys

args = sys.argv[1:]
out = None
data = None
while args:
    flag = args.pop(0)
    if flag == "--out":
        out = args.pop(0)
    elif flag == "--arg":
        data = os.fsencode(args.pop(0))
if data is None:
    data = sys.stdin.buffer.read()
if out:
    with open(out, "wb") as fh:
        fh.write(data)
sys.stderr.write(f"cwd={os.getcwd()}\n")
sys.stdout.buffer.write(data)
sys.stdout.flush()
