"""`modweave report DIR [--merge DIR ...]`: re-render report.md and figures from report.json."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="re-render report.md, accuracy_matrix.png, loss_curves.png from report.json")
    p.add_argument("dir", help="a run folder holding report.json (and loss_history.json)")
    p.add_argument("--merge", nargs="+", metavar="RUN_DIR", help="first merge these runs' reports into DIR")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..report import merge_reports, render

    if args.merge:
        merge_reports(args.merge, args.dir)
    for path in render(args.dir):
        print(path)
    return 0
