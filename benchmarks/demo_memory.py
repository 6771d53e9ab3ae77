"""Peak memory (max resident set size) of the demo, measured on a child process.

The figure is the largest single process: the demo's own, or one of its method-run workers (forked
workers share the decoded media with it copy-on-write, so their sum would count those pages twice).

    .venv/bin/python benchmarks/demo_memory.py [--quick] [-- extra demo arguments]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("rest", nargs="*", help="extra arguments passed to `modweave demo`")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-m", "modweave.cli", "demo", "--out", out, "train.progress=false",
               *(["--quick"] if args.quick else []), *args.rest]
        t = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        seconds = time.perf_counter() - t
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # Linux: KiB
    print(f"demo{' --quick' if args.quick else ''}: {seconds:.0f} s, peak resident memory {peak_kib / 1024 ** 2:.2f} GiB")


if __name__ == "__main__":
    main()
