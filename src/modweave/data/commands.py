"""CLI commands ``data digits`` and ``data check``, added to the main parser by ``add_data_commands``.

Handlers print one line and return exit status 2 for expected bad input, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

EXIT_BAD_INPUT = 2


def add_data_commands(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``data {digits,check}`` to ``subparsers``; each leaf sets ``func`` to its handler."""
    data = subparsers.add_parser("data", help="write the MCL-Digits benchmark, check annotation files")
    sub = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    p = sub.add_parser("digits", help="write MCL-Digits (six modalities of real handwritten digits)")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-train", type=int, default=None, help="first N training samples per modality")
    p.add_argument("--n-test", type=int, default=None, help="first N test samples per modality")
    p.add_argument("--modalities", default=None, help="comma-separated subset (default: all six)")
    p.add_argument("--workers", type=int, default=None, help="processes (default: CPU count, at most 8)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing non-empty --out")
    p.set_defaults(func=cmd_digits)

    p = sub.add_parser("check", help="validate records and open every media file")
    p.add_argument("file", type=Path, metavar="PATH",
                   help="annotation file (.jsonl, or LAVIS / LLaVA .json), or a data folder: every annotation file under it")
    p.add_argument("--root", type=Path, default=None,
                   help="data root for media paths (default: the file's folder; for a folder, the folder)")
    p.add_argument("--follow-symlinks", action="store_true",
                   help="allow media that a symlink inside the root points to outside it (data.follow_symlinks)")
    p.set_defaults(func=cmd_check)
    return data


def _expected_errors() -> tuple[type[BaseException], ...]:
    from ..modalities import MediaError
    from .formats import AnnotationError

    return (MediaError, AnnotationError, FileNotFoundError, FileExistsError, ValueError)


def _fail(err: BaseException) -> int:
    print(f"error: {err}", file=sys.stderr)
    return EXIT_BAD_INPUT


def cmd_digits(args: argparse.Namespace) -> int:
    """Write the benchmark; prints where and how many records per modality."""
    from .digits import DIGIT_MODALITIES, write_digits

    modalities = tuple(m.strip() for m in args.modalities.split(",")) if args.modalities else DIGIT_MODALITIES
    start = time.perf_counter()
    try:
        meta = write_digits(args.out, seed=args.seed, n_train=args.n_train, n_test=args.n_test, modalities=modalities, workers=args.workers, overwrite=args.overwrite)
    except _expected_errors() as err:
        return _fail(err)
    counts = ", ".join(f"{m} {c['train']}/{c['test']}" for m, c in meta["counts"].items())
    print(f"wrote MCL-Digits to {args.out} in {time.perf_counter() - start:.1f}s (train/test records: {counts})")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """Check one annotation file, or every one under a folder; exit 2 when any record or media file is bad."""
    from .check import check_file, check_folder

    follow = getattr(args, "follow_symlinks", False)
    try:
        if args.file.is_dir():
            reports, skipped = check_folder(args.file, args.root, follow_symlinks=follow)
        else:
            reports, skipped = {args.file: check_file(args.file, args.root, follow_symlinks=follow)}, []
    except _expected_errors() as err:
        return _fail(err)
    for path, report in reports.items():
        if len(reports) > 1:
            print(f"== {path}")
        for line in report.summary():
            print(line)
        for line in report.errors:
            print(f"error: {line}", file=sys.stderr)
    if len(reports) > 1 or skipped:
        n_ok = sum(sum(r.counts.values()) for r in reports.values())
        n_bad = sum(len(r.errors) for r in reports.values())
        note = f" (skipped {len(skipped)} .json files that hold no annotation list: {', '.join(p.name for p in skipped)})"
        print(f"{len(reports)} annotation files, {n_ok} records ok, {n_bad} problems" + (note if skipped else ""))
    return 0 if all(r.ok for r in reports.values()) else EXIT_BAD_INPUT
