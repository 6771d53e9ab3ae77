"""`modweave list [methods|modalities|encoders|connectors|bases]`: what is registered and its settings."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    from ..discovery import KINDS

    p = sub.add_parser("list", help="registered methods, modalities, encoders, connectors, bases and their settings")
    p.add_argument("kind", nargs="?", choices=KINDS, help="one kind (default: all)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..discovery import KINDS, format_units

    for i, kind in enumerate([args.kind] if args.kind else KINDS):
        print(("\n" if i else "") + f"{kind}:")
        print(format_units(kind))
    return 0
