"""`modweave train CONFIG.yaml [key=value ...] --out DIR [--resume] [--method NAME] [--from CKPT]`."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a base model and its modality stages (continual), evaluate, report")
    p.add_argument("config", help="a YAML preset (keys: model, base_train, stages, train, data, eval)")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. train.steps=50 data.root=DIR")
    p.add_argument("--out", required=True, help="run folder: checkpoint/, progress.json, train.log, report.*")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    p.add_argument("--method", help="use this method for every stage (overrides the preset's)")
    p.add_argument("--from", dest="parent", metavar="CKPT",
                   help="grow this checkpoint: its base and stages are the run's start, CONFIG lists only the new "
                        "stages (the new checkpoint references CKPT, nothing is copied)")
    p.add_argument("--force-config", action="store_true",
                   help="with --resume: continue even though the config differs from the run's")
    p.set_defaults(func=run, interrupt_hint="rerun with --resume to continue")


def run(args: argparse.Namespace) -> int:
    import json

    from ..config import load_run_config
    from ..train import run_training

    if args.parent is not None:
        from ..config import load_yaml

        if "model" in load_yaml(args.config):
            raise ValueError(f"{args.config}: with --from, the model comes from {args.parent}: remove the "
                             "'model' section (list only the new stages)")
    cfg = load_run_config(args.config, args.overrides)
    if args.method:
        for st in cfg.stages:
            st.method, st.settings = args.method, {}
    if args.force_config and not args.resume:
        raise ValueError("--force-config only makes sense with --resume")
    result = run_training(cfg, args.out, resume=args.resume, force_config=args.force_config, parent=args.parent)
    summary = {k: result[k] for k in ("avg_acc", "plasticity", "forgetting", "bwt")}
    print(json.dumps(summary))
    return 0
