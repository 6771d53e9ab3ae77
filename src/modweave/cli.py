"""`modweave` command line. Each subcommand lives in `modweave/commands/<name>.py` exposing
`register(subparsers)`; this file only discovers and dispatches them.

Expected bad input (a missing file, a config error, a corrupt checkpoint) ends with one line on
stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
from typing import NoReturn

from .version import __version__

# exceptions that mean "the user's input is wrong": printed as one line
EXPECTED_ERRORS: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError, KeyError, RuntimeError)


class OneLineParser(argparse.ArgumentParser):
    """argparse's errors (a bad `--workers abc`, a missing argument) as one line, exit 2, like every other
    bad input: the usage block it prints by default is what `--help` is for. Subcommands inherit it."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="modweave",
        description="Grow a pretrained (multimodal) LLM into new modalities one at a time, forgetting nothing.",
    )
    parser.add_argument("--version", action="version", version=f"modweave {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    from . import commands

    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda i: i.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        if hasattr(module, "register"):
            module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # `key=value` overrides may follow the flags too (`train CONFIG --out RUN train.steps=5`): argparse
    # stops filling a positional list at the first flag, so the ones after it arrive here
    if extra and hasattr(args, "overrides") and all("=" in t and not t.startswith("-") for t in extra):
        args.overrides = [*(args.overrides or []), *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except EXPECTED_ERRORS as err:
        if args.verbose:
            raise
        print(f"modweave {args.command}: error: {one_line(err)}", file=sys.stderr)
        return 2
    except OSError as err:  # disk full, permission denied, a folder where a file should be: the user's to fix
        if args.verbose:
            raise
        print(f"modweave {args.command}: error: {one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        hint = getattr(args, "interrupt_hint", None)
        print(f"modweave {args.command}: interrupted" + (f": {hint}" if hint else ""), file=sys.stderr)
        return 130


def one_line(err: BaseException) -> str:
    """The error as one sentence: a bare KeyError's quoted key gets its name said, newlines are folded."""
    text = str(err)
    if isinstance(err, KeyError) and len(err.args) == 1 and text == repr(err.args[0]):
        text = f"missing key {text}"
    return " ".join(text.split()) or type(err).__name__


if __name__ == "__main__":
    sys.exit(main())
