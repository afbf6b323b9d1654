"""The age of this process, for the peers that run in their own virtual environments (each
imports this file from beside it: a script's own folder is first on ``sys.path``)."""

import os
import time


def process_age_s() -> float:
    """Seconds since this process started (/proc/self/stat field 22, against the boot time in
    /proc/stat, whole seconds: good to about 1 s)."""
    with open("/proc/self/stat") as handle:
        ticks = int(handle.read().rsplit(")", 1)[1].split()[19])
    with open("/proc/stat") as handle:
        boot = next(int(line.split()[1]) for line in handle if line.startswith("btime"))
    return time.time() - (boot + ticks / os.sysconf("SC_CLK_TCK"))
