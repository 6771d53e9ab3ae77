"""`modweave params CONFIG [--json]`: trainable / total parameters per stage, on the meta device."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("params", help="trainable and total parameter counts per stage (meta device, seconds)")
    p.add_argument("config", help="a YAML preset (e.g. configs/pathweave/instructblip-vicuna7b.yaml)")
    p.add_argument("overrides", nargs="*", help="key=value overrides")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..config import load_run_config
    from ..params import format_table, stage_param_counts

    counts = stage_param_counts(load_run_config(args.config, args.overrides))
    print(json.dumps(counts, indent=2) if args.json else format_table(counts))
    return 0
