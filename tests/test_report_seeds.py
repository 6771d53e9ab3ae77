"""Merging one demo's reports over seeds: means, spread (mean, sample std, n, values), markdown and figures."""

from __future__ import annotations

import json
import statistics

import pytest

from modweave.report import check_report, markdown, write_report
from modweave.report_seeds import merge_seeds, spread

MODS = ["text", "image", "video"]


def entry(acc: float, xm: float, seconds: float) -> dict:
    """One seed's method entry: the final row and the X-modal scores move with `acc` / `xm`."""
    return {"acc_matrix": [[0.9, 0.8, None], [0.9, 0.7, acc]], "avg_acc": (0.9 + 0.7 + acc) / 3,
            "plasticity": acc, "forgetting": 0.1, "bwt": -0.1,
            "trainable_params": {"base": 1000, "video": 10}, "total_params": 1010,
            "train_seconds": {"base": 1.0, "video": seconds}, "stages": ["base", "video"],
            "plasticity_per_modality": {"video": acc},
            "xmodal": {"labels": ["image+image", "image+video"], "matrix": [[0.6, None], [0.6, xm]],
                       "final": {"image+image": 0.6, "image+video": xm},
                       "chance": {"image+image": 0.5, "image+video": 0.5}, "mean_without_image": None}}


def report(seed: int, acc: float, xm: float, seconds: float) -> dict:
    return {"benchmark": "mcl-digits", "modalities": MODS, "seed": seed,
            "methods": {"ana": entry(acc, xm, seconds), "frozen": entry(0.25, 0.5, 0.1)}}


SEEDS = [report(0, 0.5, 0.55, 2.0), report(1, 0.7, 0.65, 3.0), report(2, 0.6, 0.45, 4.0)]


def test_spread_is_mean_and_sample_std_of_the_values_given():
    s = spread([0.5, None, 0.7])
    assert s == {"mean": statistics.fmean([0.5, 0.7]), "std": statistics.stdev([0.5, 0.7]), "n": 2,
                 "values": [0.5, None, 0.7]}
    assert spread([0.3]) == {"mean": 0.3, "std": None, "n": 1, "values": [0.3]}
    assert spread([None, None])["mean"] is None


def test_merge_gives_means_and_the_spread_of_every_metric():
    merged = merge_seeds(SEEDS)
    check_report(merged)  # the single-seed schema still holds
    assert merged["seeds"] == [0, 1, 2] and merged["seed"] == 0 and list(merged["methods"]) == ["ana", "frozen"]
    m = merged["methods"]["ana"]
    per = [r["methods"]["ana"] for r in SEEDS]
    expect = {"avg_acc": [e["avg_acc"] for e in per], "plasticity": [0.5, 0.7, 0.6], "forgetting": [0.1] * 3,
              "bwt": [-0.1] * 3, "final.text": [0.9] * 3, "final.image": [0.7] * 3, "final.video": [0.5, 0.7, 0.6],
              "xmodal.image+image": [0.6] * 3, "xmodal.image+video": [0.55, 0.65, 0.45],
              "xmodal.mean_without_image": [None] * 3}
    assert set(m["spread"]) == set(expect)
    for key, values in expect.items():
        have = [v for v in values if v is not None]
        assert m["spread"][key] == {"mean": statistics.fmean(have) if have else None,
                                    "std": statistics.stdev(have) if len(have) > 1 else None,
                                    "n": len(have), "values": values}, key
    assert m["spread"]["plasticity"]["std"] == pytest.approx(0.1, rel=1e-12)  # sample std of .5, .7, .6
    # the entry's own numbers are the means; equal values (counts) stay as they are
    assert m["plasticity"] == statistics.fmean([0.5, 0.7, 0.6]) and m["forgetting"] == 0.1
    assert m["acc_matrix"] == [[0.9, 0.8, None], [0.9, 0.7, statistics.fmean([0.5, 0.7, 0.6])]]
    assert m["trainable_params"] == {"base": 1000, "video": 10} and m["total_params"] == 1010
    assert m["train_seconds"] == {"base": 1.0, "video": 3.0}
    assert m["xmodal"]["final"] == {"image+image": 0.6, "image+video": statistics.fmean([0.55, 0.65, 0.45])}
    assert m["xmodal"]["matrix"][0] == [0.6, None] and m["xmodal"]["chance"]["image+video"] == 0.5
    assert merged["methods"]["frozen"]["spread"]["plasticity"]["std"] == 0.0


def test_merged_markdown_and_figures_show_mean_and_std(tmp_path):
    merged = merge_seeds(SEEDS)
    md = markdown(merged)
    assert md.startswith("# mcl-digits (seeds 0, 1, 2: mean ± std over n = 3 seeds")
    plast = merged["methods"]["ana"]["spread"]["plasticity"]
    assert f"| ana | {merged['methods']['ana']['avg_acc']:.3f} ± " in md
    assert f"{plast['mean']:.3f} ± {plast['std']:.3f}" in md
    assert "| ana | 0.900 ± 0.000 | 0.700 ± 0.000 | 0.600 ± 0.100 |" in md  # final accuracy table
    assert "0.550 ± 0.100" in md  # X-modal image+video
    write_report(tmp_path, merged, {})
    assert json.loads((tmp_path / "report.json").read_text()) == merged
    for name in ("report.md", "accuracy_matrix.png", "xmodal.png"):
        assert (tmp_path / name).exists()


def test_single_seed_markdown_has_no_spread():
    md = markdown(SEEDS[0])
    assert md.startswith("# mcl-digits (seed 0)") and "±" not in md


@pytest.mark.parametrize("change, match", [
    (lambda r: r.update(seed=0), "repeat"),
    (lambda r: r.update(modalities=["text"]), "modalities"),
    (lambda r: r["methods"].pop("frozen"), "methods"),
    (lambda r: r["methods"]["ana"]["acc_matrix"].pop(), "stages"),
])
def test_merge_refuses_reports_of_different_runs(change, match):
    other = json.loads(json.dumps(SEEDS[1]))
    change(other)
    with pytest.raises(ValueError, match=match):
        merge_seeds([SEEDS[0], other])


def test_parameter_counts_that_differ_between_seeds_show_as_rounded_means():
    """MoExtend may extend other layers in another seed: its counts are means over seeds, shown rounded."""
    seeds = [report(s, 0.5, 0.5, 1.0) for s in range(3)]
    for s, r in enumerate(seeds):
        r["methods"]["ana"]["trainable_params"] = {"base": 1000, "video": 685_792 + 32 * s}
        r["methods"]["ana"]["total_params"] = 4_316_448 + 32 * s
    md = markdown(merge_seeds(seeds))
    assert "| 685,824 | 4,316,480 |" in md and "| video | 685,824 |" in md and "685824.0" not in md
