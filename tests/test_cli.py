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
