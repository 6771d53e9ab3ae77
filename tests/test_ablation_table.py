"""benchmarks/ablation.py's table: mean ± std over seeds per variant, trainable share of separate's, the goal lines."""

from __future__ import annotations

import importlib.util
import statistics
from pathlib import Path

import pytest

from modweave.demo import resolve_methods

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ablation():
    spec = importlib.util.spec_from_file_location("ablation", ROOT / "benchmarks" / "ablation.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def entry(plast: float, trainable: int, xm: float | None) -> dict:
    return {"acc_matrix": [[0.5, plast]], "avg_acc": (0.5 + plast) / 2, "plasticity": plast, "forgetting": 0.0,
            "bwt": 0.0, "trainable_params": {"base": 10_000, "video": trainable, "audio": trainable // 2},
            "total_params": 20_000, "train_seconds": {}, "stages": ["video"],
            "xmodal": {"labels": ["video+audio"], "matrix": [[xm]], "final": {"video+audio": xm},
                       "chance": {"video+audio": 0.5}, "mean_without_image": xm}}


def test_every_variant_is_valid_and_the_table_is_mean_and_std(ablation):
    variants = resolve_methods([t for _, t in ablation.VARIANTS])  # every variant passes the checks
    labels = {v.text: v.label for v in variants}
    assert len(set(labels.values())) == len(labels)
    reports = []
    for seed, bump in ((0, 0.0), (1, 0.1)):
        methods = {label: entry(0.4 + bump, 100, 0.5 + bump) for label in labels.values()}
        methods["separate"] = entry(0.5 + bump, 1000, 0.45)
        reports.append({"benchmark": "b", "modalities": ["text", "video"], "seed": seed, "methods": methods})
    table, data = ablation.ablation_table(reports, labels)
    rows = table.splitlines()
    assert len(rows) == 2 + len(ablation.VARIANTS)
    full = data["ana"]
    assert full["plasticity"]["values"] == [0.4, 0.5] and full["plasticity"]["std"] == statistics.stdev([0.4, 0.5])
    assert full["trainable_pct"]["values"] == [10.0, 10.0]  # largest stage 100 of separate's 1000
    assert ("| full ana `ana` | 0.450 ± 0.071 | 0.475 ± 0.035 | 0.000 ± 0.000 | 0.550 ± 0.071 | 10.0 ± 0.0 |"
            in rows)
    assert rows[-1].startswith("| separate (reference) `separate` | 0.550 ± 0.071 |")
    assert rows[-1].endswith("| 100.0 ± 0.0 |")
    goal = "\n".join(ablation.goal_lines(data))
    assert "plasticity 0.450 = 0.450: NO" in goal  # not above the uni-modal ablation (same numbers here)
    assert "plasticity 0.450 < 0.550: NO" in goal and "xmodal.mean_without_image 0.550 > 0.450: yes" in goal
    assert "10.0% of separate's (goal < 15%): yes" in goal


def test_one_seed_has_no_std(ablation):
    labels = {v.text: v.label for v in resolve_methods([t for _, t in ablation.VARIANTS])}
    methods = {label: entry(0.4, 100, None) for label in labels.values()}
    table, data = ablation.ablation_table([{"benchmark": "b", "modalities": ["text", "video"], "seed": 0,
                                            "methods": methods}], labels)
    assert "±" not in table and "| full ana `ana` | 0.400 | 0.450 | 0.000 | – | 100.0 |" in table
