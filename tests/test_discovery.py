"""`modweave list` and docs/config.md come from the registries and the settings dataclasses the
validators use: every registered unit and every config key is listed, and the doc is up to date."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from modweave.cli import main
from modweave.discovery import KINDS, config_reference, registered

REPO = Path(__file__).resolve().parents[1]


def test_docs_config_md_is_generated_from_the_dataclasses():
    assert (REPO / "docs" / "config.md").read_text() == config_reference(), (
        "docs/config.md is stale: regenerate it with "
        "python -c 'from modweave.discovery import config_reference as c; open(\"docs/config.md\",\"w\").write(c())'")


def test_every_config_key_is_documented():
    from modweave.config import EncoderConfig, LLMConfig, ModalitySpec, RunConfig
    from modweave.training.config import DataConfig, EvalConfig, TrainConfig

    text = config_reference()
    for cls in (RunConfig, LLMConfig, EncoderConfig, ModalitySpec, TrainConfig, DataConfig, EvalConfig):
        for f in dataclasses.fields(cls):
            assert f"| `{f.name}` |" in text, f"{cls.__name__}.{f.name} is not in docs/config.md"


@pytest.mark.parametrize("kind", KINDS)
def test_list_prints_every_registered_unit_with_its_settings(kind, capsys):
    assert main(["list", kind]) == 0
    out = capsys.readouterr().out
    for unit in registered(kind):
        assert unit["name"] in out
        for f in unit["settings"]:
            assert f"    {f['key']}: " in out
