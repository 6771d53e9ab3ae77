"""`modweave data ...` (the handlers live in modweave.data.commands)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    try:
        from ..data.commands import add_data_commands
    except ImportError:  # data package not installed in this build
        return
    add_data_commands(sub)
