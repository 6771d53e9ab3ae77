"""`modweave demo`: the whole comparison on MCL-Digits, on a CPU, in minutes."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="MCL-Digits end to end: base, 4 continual stages per method, report",
                       description="Write MCL-Digits, train a small MoE MLLM on text + image, grow it by video, "
                                   "audio, depth and point cloud with each method, and compare what each "
                                   "learned and kept.")
    p.add_argument("--out", help="output folder (data, checkpoints, report); default runs/demo (runs/demo-quick)")
    # parsed by run(), not by argparse: a bad entry is one line of error, exit 2 (argparse prints usage too)
    p.add_argument("--methods", metavar="M1,M2",
                   help="comma-separated methods or variants to compare, e.g. "
                        "'ana,ana[in_adapters=false,gate=false],lora' (a variant runs in OUT/<label>, e.g. "
                        "ana-no_gate-no_in_adapters; default: ana,moextend,finetune,lora,separate,frozen)")
    p.add_argument("--quick", action="store_true", help="a reduced budget: a smaller MCL-Digits, 100 base steps, 20 steps a stage")
    p.add_argument("--seed", type=int, default=None, help="seed of the data and of every run (default 0)")
    p.add_argument("--seeds", metavar="S1,S2",
                   help="run the whole demo once per seed (OUT/seed-<s>/: data, base, runs, report) and "
                        "report mean +- std over seeds in OUT/report.{json,md}; one seed = --seed")
    p.add_argument("--workers", type=int, default=None,
                   help="method runs at once, each a process of one thread (default: one per CPU core); "
                        "the numbers do not depend on it")
    p.add_argument("overrides", nargs="*", help="key=value overrides of the demo preset (e.g. train.steps=100)")
    p.set_defaults(func=run, interrupt_hint="rerun the same command to continue where it stopped")


def run(args: argparse.Namespace) -> int:
    import time

    from ..config import ConfigError
    from ..demo import parse_seeds, resolve_methods, run_demo, summary_table

    t0 = time.perf_counter()
    if args.seed is not None and args.seeds is not None:
        raise ConfigError("--seed and --seeds: give one of them")
    seeds = parse_seeds(args.seeds) if args.seeds is not None else [0 if args.seed is None else args.seed]
    methods = resolve_methods(args.methods)  # before any work: an unknown method or setting fails now
    out = args.out or ("runs/demo-quick" if args.quick else "runs/demo")
    report = run_demo(out, methods, args.quick, seeds[0], args.overrides, seeds=seeds, workers=args.workers)
    print()
    print(summary_table(report))
    extra = f", per seed: {out}/seed-<s>/" if len(seeds) > 1 else ""
    print(f"\nreport: {out}/report.md, {out}/report.json, plots: {out}/accuracy_matrix.png{extra} "
          f"({time.perf_counter() - t0:.0f} s)")
    return 0
