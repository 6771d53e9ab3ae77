"""`modweave eval CHECKPOINT_DIR --data FILE.jsonl [--upto MODALITY] [--root DIR] [--json]`."""

from __future__ import annotations

import argparse

from ..training.config import EvalConfig


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="score a checkpoint on an annotation file, per modality and task")
    p.add_argument("checkpoint", help="a checkpoint folder (manifest.json + stage files)")
    p.add_argument("--data", required=True, help="annotations (.jsonl, or LAVIS/LLaVA .json)")
    p.add_argument("--root", help="folder media paths are relative to (default: the annotation file's folder)")
    p.add_argument("--upto", help="evaluate the model as it was after this stage/modality")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-new-tokens", type=int, default=EvalConfig.max_new_tokens,
                   help=f"tokens to generate per answer (default {EvalConfig.max_new_tokens}, as in training's eval)")
    p.add_argument("--num-beams", type=int, default=1)
    p.add_argument("--qa-mode", choices=("generate", "rank"), default="generate",
                   help="qa: exact match of the generated answer, or of the best-ranked candidate")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--no-verify", action="store_true",
                   help="skip the stage files' checksums and accept changed sources of referenced modules (warned)")
    p.set_defaults(func=run)


def check_args(args: argparse.Namespace) -> None:
    """Refuse settings that cannot run, before the checkpoint is loaded (one line naming the option)."""
    for option, value in (("--num-beams", args.num_beams), ("--batch-size", args.batch_size),
                          ("--max-new-tokens", args.max_new_tokens)):
        if value < 1:
            raise ValueError(f"{option} must be at least 1 (got {value})")


def run(args: argparse.Namespace) -> int:
    import json

    from ..data.dataset import MediaDataset
    from ..evaluate import can_run, evaluate_items
    from pathlib import Path

    from ..model import XModalLM

    check_args(args)
    model = XModalLM.from_pretrained(Path(args.checkpoint), upto=args.upto, verify=not args.no_verify)
    settings = {name: dict(path.spec.loader) for name, path in model.paths.items()}
    ds = MediaDataset.from_file(args.data, args.root, None)
    missing = sorted({r.modality for r in ds.records if not can_run(model, r.modality)})
    keep = [r for r in ds.records if can_run(model, r.modality)]
    used = {m for r in keep for m in (r.media_modalities or [r.modality])}
    ds = MediaDataset(keep, ds.root, {m: s for m, s in settings.items() if m in used})
    items = [ds[i] for i in range(len(ds))]
    result = evaluate_items(model, items, batch_size=args.batch_size, max_new_tokens=args.max_new_tokens,
                            num_beams=args.num_beams, qa_mode=args.qa_mode, progress=True)
    for m in missing:
        result[m] = None  # no path for this modality in the model: cannot run
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    for m, entry in result.items():
        if entry is None:
            print(f"{m:<14} (no path in this model)")
            continue
        for task, scores in entry["tasks"].items():
            vals = "  ".join(f"{k}={v:.4f}" for k, v in scores.items() if k != "n")
            print(f"{m:<14}{task:<9}n={scores['n']:<6}{vals}")
    return 0
