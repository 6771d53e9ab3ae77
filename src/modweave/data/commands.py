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
    p.add_argument("file", type=Path, help="annotation file (.jsonl, or LAVIS / LLaVA .json)")
    p.add_argument("--root", type=Path, default=None, help="data root for media paths (default: the file's folder)")
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
    """Check one annotation file; exit 2 when any record or media file is bad."""
    from .check import check_file

    try:
        report = check_file(args.file, args.root)
    except _expected_errors() as err:
        return _fail(err)
    for line in report.summary():
        print(line)
    for line in report.errors:
        print(f"error: {line}", file=sys.stderr)
    return 0 if report.ok else EXIT_BAD_INPUT
