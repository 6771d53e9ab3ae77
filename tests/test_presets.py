"""Every shipped YAML preset parses: model, stages, and the trainer's train / data / eval keys (per phase)."""

from __future__ import annotations

from pathlib import Path

import pytest

from modweave.config import load_run_config
from modweave.methods import get_method
from modweave.training.config import DataConfig, EvalConfig, TrainConfig, parse_section, phase_train_configs

REPO = Path(__file__).resolve().parents[1]
PRESETS = sorted(p.relative_to(REPO).as_posix() for p in (REPO / "configs").rglob("*.yaml"))
PRESETS.append("src/modweave/presets/demo.yaml")


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_parses_for_the_trainer(preset):
    cfg = load_run_config(REPO / preset)
    train = parse_section(TrainConfig, cfg.train, "train")
    parse_section(DataConfig, cfg.data, "data")
    parse_section(EvalConfig, cfg.eval, "eval")
    for i, st in enumerate(cfg.stages):
        impl = get_method(st.method)
        impl.check_settings(dict(st.settings))
        per_phase = phase_train_configs(train, st.train, impl.phases, f"stages[{i}].train")
        assert set(per_phase) == set(impl.phases)


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_round_trips_through_the_checked_parser(preset):
    # a manifest / progress file stores to_dict(config): reading it back gives the same values and types
    from modweave.config import ModelConfig, from_dict, run_config, to_dict

    cfg = load_run_config(REPO / preset)
    assert from_dict(ModelConfig, to_dict(cfg.model), "config") == cfg.model
    assert run_config(to_dict(cfg)) == cfg


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_path_specs_fit_their_loaders(preset):
    # what the trainer does before any data: each spec's num_frames folded into its loader settings
    from modweave.training.data import resolve_spec_loaders

    resolve_spec_loaders(load_run_config(REPO / preset))
