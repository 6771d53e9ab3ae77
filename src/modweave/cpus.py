"""How many CPU cores this process may use (torch-free: the data writers' processes import it too)."""

from __future__ import annotations

import os


def available_cores() -> int:
    """CPU cores this process may run on: its affinity mask (a container's or `taskset`'s limit), not
    the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
