"""The paper's ablation on MCL-Digits, with error bars: full `ana`, its cross-modal parts switched off
(gate, in-adapters, both = uni-modal adapters only), its init choices, and `separate` as the reference,
each over several seeds, through the demo's machinery (`modweave demo --methods ... --seeds ...`: per
seed one MCL-Digits, one shared base, every variant grown from it).

Writes OUT/ablation.md (and ablation.json): rows = variants, columns = plasticity, avg acc, forgetting,
X-modal mean over the pairs without image (zero-shot), trainable parameters per stage as a % of
`separate`'s; every cell mean ± std over seeds (sample std), computed per seed from OUT/seed-<s>/report.json.
The demo's merged report (OUT/report.md) has every other metric.

    .venv/bin/python benchmarks/ablation.py [--seeds 0,1,2] [--quick] [--out runs/ablation] [key=value ...]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from modweave.config import ConfigError
from modweave.demo import parse_seeds, resolve_methods, run_demo, seed_folder
from modweave.report import largest_stage_trainable
from modweave.report_seeds import metric_values, spread
from modweave.utils import atomic_write_bytes

# (row name, demo method variant), in the table's order; the last one is the reference
VARIANTS = [
    ("full ana", "ana"),
    ("no gate (fixed 1/E)", "ana[gate=false]"),
    ("no in-adapters", "ana[in_adapters=false]"),
    ("uni-modal only (no gate, no in-adapters)", "ana[in_adapters=false,gate=false]"),
    ("authors' init (adapters + in-adapters N(0, 0.02))", "ana[init=authors,in_adapter_init=authors]"),
    ("identity in-adapters", "ana[in_adapter_init=identity]"),
    ("separate (reference)", "separate"),
]
REFERENCE = "separate"
COLUMNS = [("plasticity", "plasticity"), ("avg acc", "avg_acc"), ("forgetting", "forgetting"),
           ("X-modal mean w/o image", "xmodal.mean_without_image"),
           ("trainable / stage, % of separate", "trainable_pct")]


def per_seed_rows(report: dict[str, Any], labels: dict[str, str]) -> dict[str, dict[str, Any]]:
    """One seed's report -> {variant text: {metric: value}} for the table's columns."""
    ref = largest_stage_trainable(report["methods"][labels[REFERENCE]])
    rows = {}
    for text, label in labels.items():
        entry = report["methods"][label]
        values = metric_values(entry, report["modalities"])
        per = largest_stage_trainable(entry)
        values["trainable_pct"] = None if not ref or per is None else 100.0 * per / ref
        rows[text] = values
    return rows


def _cell(s: dict[str, Any], digits: int = 3) -> str:
    if s["mean"] is None:
        return "–"
    mean = f"{s['mean']:.{digits}f}"
    return mean if s["std"] is None else f"{mean} ± {s['std']:.{digits}f}"


def ablation_table(reports: list[dict[str, Any]], labels: dict[str, str]) -> tuple[str, dict[str, Any]]:
    """Markdown table and its data ({variant: {metric: spread}}) from the per-seed reports."""
    seeds = [per_seed_rows(r, labels) for r in reports]
    data = {text: {key: spread([s[text].get(key) for s in seeds]) for _, key in COLUMNS} for text in labels}
    names = dict((t, n) for n, t in VARIANTS)
    lines = ["| variant | " + " | ".join(c for c, _ in COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for text in labels:
        cells = [_cell(data[text][key], 1 if key == "trainable_pct" else 3) for _, key in COLUMNS]
        lines.append(f"| {names.get(text, text)} `{text}` | " + " | ".join(cells) + " |")
    return "\n".join(lines), data


def goal_lines(data: dict[str, Any]) -> list[str]:
    """The issue's goal, said with the numbers: full ana above its uni-modal ablation and at or above
    separate in plasticity and X-modal accuracy, at < 15% of separate's trainable parameters."""
    full, uni, sep = data["ana"], data["ana[in_adapters=false,gate=false]"], data[REFERENCE]

    def cmp(a: dict, b: dict, key: str, rel: str) -> str:
        x, y = a[key]["mean"], b[key]["mean"]
        if x is None or y is None:
            return f"{key}: not measured"
        ok = x > y if rel == ">" else x >= y
        return f"{key} {x:.3f} {'>' if x > y else ('=' if x == y else '<')} {y:.3f}: {'yes' if ok else 'NO'}"

    pct = full["trainable_pct"]["mean"]
    return ["- full ana above uni-modal only: " + "; ".join(cmp(full, uni, k, ">") for k in
                                                           ("plasticity", "xmodal.mean_without_image")),
            "- full ana at or above separate: " + "; ".join(cmp(full, sep, k, ">=") for k in
                                                           ("plasticity", "xmodal.mean_without_image")),
            f"- full ana's trainable parameters per stage: {pct:.1f}% of separate's (goal < 15%): "
            f"{'yes' if pct is not None and pct < 15 else 'NO'}" if pct is not None else
            "- trainable parameters: not measured",
            "(means over seeds; a difference smaller than the stds is not a finding)"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    p.add_argument("--quick", action="store_true", help="the demo's --quick budget")
    p.add_argument("--out", help="output folder (default runs/ablation, runs/ablation-quick with --quick)")
    p.add_argument("overrides", nargs="*", help="key=value overrides of the demo preset")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        seeds = parse_seeds(args.seeds)
        variants = resolve_methods([t for _, t in VARIANTS])
        out = Path(args.out or ("runs/ablation-quick" if args.quick else "runs/ablation"))
        t0 = time.perf_counter()
        report = run_demo(out, variants, args.quick, seeds[0], args.overrides, seeds=seeds)
    except (ConfigError, ValueError, FileNotFoundError) as err:
        print(f"ablation: error: {err}", file=sys.stderr)
        return 2
    wall = time.perf_counter() - t0
    reports = ([json.loads((seed_folder(out, s) / "report.json").read_text()) for s in seeds]
               if len(seeds) > 1 else [report])
    labels = {v.text: v.label for v in variants}
    table, data = ablation_table(reports, labels)
    budget = "--quick" if args.quick else "full"
    cmd = " ".join(["benchmarks/ablation.py", f"--seeds {args.seeds}", *(["--quick"] if args.quick else []),
                    f"--out {out}", *args.overrides])
    text = "\n".join([
        f"# PathWeave ablation on MCL-Digits ({budget} demo budget, seeds {', '.join(map(str, seeds))})", "",
        f"`{cmd}` ({wall:.0f} s). Each cell: mean ± sample std over the {len(seeds)} seeds (one MCL-Digits "
        "and one shared base per seed). Plasticity, avg acc and forgetting over the 4 continual stages "
        "(video, audio, depth, point cloud); X-modal: two-media questions after the last stage, averaged "
        "over the pairs without image (never trained together: zero-shot; chance 0.37: a third of the questions are 10-way digits, the rest yes/no or first/second); trainable / stage: "
        "the largest continual stage's trainable parameters as a % of separate's.", "",
        table, "", "Goal (issue 12):", *goal_lines(data), "",
        f"Every metric per variant: {out}/report.md; per seed: {out}/seed-<s>/report.md.", ""])
    atomic_write_bytes(out / "ablation.md", text.encode())
    atomic_write_bytes(out / "ablation.json", (json.dumps({"seeds": seeds, "budget": budget, "wall_seconds":
                                                           round(wall, 1), "rows": data}, indent=1) + "\n").encode())
    print("\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
