"""`modweave demo`: the whole comparison on MCL-Digits, on a CPU, in minutes."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="MCL-Digits end to end: base, 4 continual stages per method, report",
                       description="Write MCL-Digits, train a small MoE MLLM on text + image, grow it by video, "
                                   "audio, depth and point cloud with each method, and compare what each "
                                   "learned and kept.")
    p.add_argument("--out", help="output folder (data, checkpoints, report); default runs/demo (runs/demo-quick)")
    p.add_argument("--methods", metavar="M1,M2", type=lambda s: [m for m in s.split(",") if m],
                   help="comma-separated methods to compare (default: ana,moextend,finetune,lora,separate,frozen)")
    p.add_argument("--quick", action="store_true", help="a reduced budget (about two minutes)")
    p.add_argument("--seed", type=int, default=0, help="seed of the data and of every run (default 0)")
    p.add_argument("overrides", nargs="*", help="key=value overrides of the demo preset (e.g. train.steps=100)")
    p.set_defaults(func=run, interrupt_hint="rerun the same command to continue where it stopped")


def run(args: argparse.Namespace) -> int:
    import time

    from ..demo import run_demo, summary_table

    t0 = time.perf_counter()
    out = args.out or ("runs/demo-quick" if args.quick else "runs/demo")
    report = run_demo(out, args.methods, args.quick, args.seed, args.overrides)
    print()
    print(summary_table(report))
    print(f"\nreport: {out}/report.md, {out}/report.json, plots: {out}/accuracy_matrix.png "
          f"({time.perf_counter() - t0:.0f} s)")
    return 0
