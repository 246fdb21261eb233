"""Run a command and write what it cost to a file: peak RSS (KiB), user and system seconds,
its read and write calls, and the bytes it wrote, on one line in that order.

    python3 bench/measure.py OUT COMMAND [ARGS...]     (exits with the command's status)

The calls and bytes come from /proc/PID/io, read while the finished command is a zombie, so
nothing it does at its exit is missed; RSS and CPU from the same wait4. A daemon or import
does nearly all of its read and write calls on the store (sockets go through recv/send,
which are not counted): counts that other load on the machine does not move, unlike time.
"""

import os
import subprocess
import sys

p = subprocess.Popen(sys.argv[2:])
os.waitid(os.P_PID, p.pid, os.WEXITED | os.WNOWAIT)
with open(f"/proc/{p.pid}/io") as f:
    io = dict(line.split(": ") for line in f.read().splitlines())
_, status, ru = os.wait4(p.pid, 0)
with open(sys.argv[1], "w") as f:
    print(ru.ru_maxrss, ru.ru_utime, ru.ru_stime, io["syscr"], io["syscw"], io["wchar"], file=f)
sys.exit(os.waitstatus_to_exitcode(status))
