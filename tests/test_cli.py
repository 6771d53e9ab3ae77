"""The command line's own parsing: overrides after flags, unknown arguments."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modweave.cli import main

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "test-train.yaml"


def test_overrides_may_follow_the_flags(capsys):
    assert main(["params", str(CONFIG), "--json", "stages.0.method=ana"]) == 0
    after = json.loads(capsys.readouterr().out)
    assert main(["params", str(CONFIG), "stages.0.method=ana", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == after
    assert main(["params", str(CONFIG), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) != after  # the override did take effect


def test_unknown_arguments_are_still_refused(capsys):
    with pytest.raises(SystemExit) as err:
        main(["params", str(CONFIG), "--json", "--bogus"])
    assert err.value.code == 2 and "unrecognized arguments: --bogus" in capsys.readouterr().err


def test_building_the_parser_imports_neither_torch_nor_transformers():
    """`modweave --help` and every command's argument errors answer at once: the command modules keep
    their heavy imports inside `run` (importing the model made `--help` take ~6 s)."""
    import subprocess
    import sys

    code = "import sys, modweave.cli as c; c.build_parser(); print(sorted({'torch', 'transformers'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("argv,words", [(["demo", "--workers", "abc"], "--workers"),
                                        (["train"], "required"),
                                        (["nosuch"], "invalid choice")])
def test_argument_errors_are_one_line_exit_2(argv, words, capsys):
    """argparse's own errors read like every other bad input: one line naming the argument, exit 2."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0] and "--help" in err[0] and "usage:" not in err[0]
