"""CLI subcommands: one module each, with `register(subparsers)` (discovered by cli.py)."""
