"""`modweave demo`: the quick pipeline end to end on a reduced budget, its report schema, CLI help/errors."""

from __future__ import annotations

import json
import math

import pytest
import torch

from modweave.cli import main
from modweave.demo import DEMO_METHODS, METHOD_STAGE, demo_config, method_config
from modweave.methods import list_methods
from modweave.report import check_report

TINY_BUDGET = ["train.base.steps=6", "train.steps=2", "train.batch_size=8", "data.max_test=8", "data.heldout=8",
               "train.progress=false", "data.digits.n_train=24", "data.digits.n_test=8"]


UNIMODAL = "ana[in_adapters=false,gate=false]"
UNIMODAL_LABEL = "ana-no_gate-no_in_adapters"


@pytest.mark.slow
def test_quick_demo_runs_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out), "--methods", f"ana,{UNIMODAL}", *TINY_BUDGET]) == 0
    report = json.loads((out / "report.json").read_text())
    check_report(report)
    assert report["benchmark"] == "mcl-digits"
    assert report["modalities"] == ["text", "image", "video", "audio", "depth", "point_cloud"]
    assert list(report["methods"]) == ["ana", UNIMODAL_LABEL]  # a variant is reported under its label
    assert "seeds" not in report and report["seed"] == 0
    for entry in report["methods"].values():
        assert len(entry["acc_matrix"]) == 5  # base + 4 stages
        assert set(entry["trainable_params"]) == {"base", "video", "audio", "depth", "point_cloud"}
    assert "variant" not in report["methods"]["ana"]
    assert report["methods"][UNIMODAL_LABEL]["variant"] == {"method": "ana",
                                                            "settings": {"in_adapters": False, "gate": False}}
    # PathWeave keeps every earlier modality exactly: its accuracy on them never moves
    ana = report["methods"]["ana"]["acc_matrix"]
    for j in range(2):  # text, image (base modalities)
        assert len({row[j] for row in ana}) == 1
    assert report["methods"]["ana"]["forgetting"] == 0.0
    assert (out / "report.md").exists() and (out / "accuracy_matrix.png").exists()
    printed = capsys.readouterr().out
    assert "ana" in printed and "forget." in printed and "report.md" in printed and "±" not in printed
    # the single-seed layout: data, base and one folder per run, named by label, right in OUT
    assert {p.name for p in out.iterdir() if p.is_dir()} == {"data", "base", "ana", UNIMODAL_LABEL}
    # the variant's stages ran through ana with its settings on top of the demo's (none for ana)
    progress = json.loads((out / UNIMODAL_LABEL / "progress.json").read_text())
    assert [(s["method"], s["settings"]) for s in progress["config"]["stages"]] == \
        [("ana", {"in_adapters": False, "gate": False})] * 4
    assert [s["train"]["lr"] for s in progress["config"]["stages"]] == [METHOD_STAGE["ana"]["train"]["lr"]] * 4
    # the base was trained once and shared: both runs hold the same base stage file
    a = (out / "ana" / "checkpoint" / "stage-00-base.safetensors").read_bytes()
    b = (out / UNIMODAL_LABEL / "checkpoint" / "stage-00-base.safetensors").read_bytes()
    assert a == b


@pytest.mark.slow
def test_two_seeds_merge_into_mean_and_std(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out), "--methods", "frozen", "--seeds", "0,1", *TINY_BUDGET]) == 0
    # each seed is a whole single-seed demo of its own: its data (seeded), its base, its report
    per = []
    for s in (0, 1):
        folder = out / f"seed-{s}"
        assert {p.name for p in folder.iterdir() if p.is_dir()} == {"data", "base", "frozen"}
        assert json.loads((folder / "data" / "meta.json").read_text())["seed"] == s
        per.append(json.loads((folder / "report.json").read_text()))
        assert per[-1]["seed"] == s
    assert not (out / "data").exists() and not (out / "base").exists()
    assert (out / "seed-0" / "data" / "image_test.jsonl").read_bytes() != \
        (out / "seed-1" / "data" / "image_test.jsonl").read_bytes()
    merged = json.loads((out / "report.json").read_text())
    check_report(merged)
    assert merged["seeds"] == [0, 1] and merged["seed"] == 0
    a, b = per[0]["methods"]["frozen"], per[1]["methods"]["frozen"]
    m = merged["methods"]["frozen"]
    by_hand = {k: (a[k], b[k]) for k in ("avg_acc", "plasticity", "forgetting", "bwt")}
    by_hand |= {f"final.{mod}": (x, y) for mod, x, y in zip(merged["modalities"], a["acc_matrix"][-1],
                                                            b["acc_matrix"][-1])}
    by_hand |= {f"xmodal.{k}": (a["xmodal"]["final"][k], b["xmodal"]["final"][k]) for k in a["xmodal"]["labels"]}
    by_hand["xmodal.mean_without_image"] = (a["xmodal"]["mean_without_image"], b["xmodal"]["mean_without_image"])
    assert set(m["spread"]) == set(by_hand)
    for key, (x, y) in by_hand.items():
        s = m["spread"][key]
        assert s["values"] == [x, y] and s["n"] == 2
        assert s["mean"] == (x + y) / 2  # exact: a sum of two floats, halved
        assert s["std"] == pytest.approx(abs(x - y) / math.sqrt(2), rel=1e-12, abs=1e-15)
    for k in ("avg_acc", "plasticity", "forgetting", "bwt"):
        assert m[k] == m["spread"][k]["mean"]
    assert m["trainable_params"] == a["trainable_params"] == b["trainable_params"]
    md = (out / "report.md").read_text()
    assert "seeds 0, 1" in md and "±" in md and (out / "seed-1" / "report.md").exists()
    printed = capsys.readouterr().out
    assert "±" in printed and "seed-<s>" in printed


WORKER_METHODS = "ana,moextend"


@pytest.fixture(scope="module")
def one_by_one(tmp_path_factory):
    """The tiny demo of WORKER_METHODS run one by one in this process (`--workers 1`)."""
    out = tmp_path_factory.mktemp("demo") / "w1"
    assert main(["demo", "--quick", "--out", str(out), "--methods", WORKER_METHODS, "--workers", "1",
                 *TINY_BUDGET]) == 0
    assert not (out / "ana" / "console.log").exists()  # in this process: the output stays on the console
    return out


@pytest.mark.slow
@pytest.mark.parametrize("start", ["fork", "spawn"])
def test_worker_processes_give_the_same_bits_as_one_by_one(one_by_one, tmp_path, monkeypatch, start):
    """Method runs in two workers (forked: Linux's default; spawned: elsewhere) hold, tensor for tensor,
    what the same runs give one by one in this process: the thread count per run is fixed, so the
    number of workers cannot change a bit."""
    from safetensors.torch import load_file

    import modweave.demo

    monkeypatch.setattr(modweave.demo, "_start_method", lambda: start)
    out = tmp_path / "w2"
    assert main(["demo", "--quick", "--out", str(out), "--methods", WORKER_METHODS, "--workers", "2",
                 *TINY_BUDGET]) == 0
    runs = {"w1": one_by_one, "w2": out}
    reports = {w: json.loads((d / "report.json").read_text()) for w, d in runs.items()}
    for label in WORKER_METHODS.split(","):
        a, b = reports["w1"]["methods"][label], reports["w2"]["methods"][label]
        assert a["acc_matrix"] == b["acc_matrix"] and a["xmodal"] == b["xmodal"]
        losses = [json.loads((d / label / "progress.json").read_text())["losses"] for d in runs.values()]
        assert losses[0] == losses[1]
        files = sorted((one_by_one / label / "checkpoint").glob("stage-*.safetensors"))
        assert len(files) >= 5  # base + 4 stages (moextend: 3 phase files a stage)
        for f in files:
            x, y = load_file(f), load_file(out / label / "checkpoint" / f.name)
            assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x), (label, f.name)
    # a worker's console output went to its run's folder, not to the terminal
    assert "after video" in (out / "ana" / "console.log").read_text()


@pytest.mark.slow
def test_a_worker_that_dies_is_one_line_naming_the_runs(tmp_path, monkeypatch, capsys):
    import os

    import modweave.demo

    monkeypatch.setattr(modweave.demo, "_start_method", lambda: "fork")  # the child sees the patch below
    monkeypatch.setattr(modweave.demo, "_run_job", lambda cfg, run_dir: os._exit(3))  # killed, as by the OOM killer
    out = tmp_path / "d"
    assert main(["demo", "--quick", "--out", str(out), "--methods", "ana,frozen", "--workers", "2", *TINY_BUDGET]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "worker process died" in err and "ana" in err and "rerun the same command" in err and "Traceback" not in err
    assert (out / "base" / "checkpoint" / "manifest.json").exists()  # the base is kept for the rerun


@pytest.mark.parametrize("workers", ["0", "-1"])
def test_bad_workers_is_one_line(tmp_path, capsys, workers):
    assert main(["demo", "--quick", "--out", str(tmp_path / "d"), "--workers", workers]) == 2
    err = capsys.readouterr().err
    assert "--workers" in err and "Traceback" not in err and not (tmp_path / "d").exists()


def test_every_demo_method_is_registered():
    assert set(DEMO_METHODS) <= set(list_methods())


@pytest.mark.parametrize("method", DEMO_METHODS)
def test_method_config_routes_every_stage(method):
    cfg = method_config(demo_config(), method)
    assert [s.method for s in cfg.stages] == [method] * 4
    assert [s.modality.name for s in cfg.stages] == ["video", "audio", "depth", "point_cloud"]


def test_quick_reduces_the_budget():
    full, quick = demo_config(), demo_config(quick=True)
    assert quick.train["steps"] < full.train["steps"]
    assert quick.train["base"]["steps"] < full.train["base"]["steps"]


def test_help_lists_options(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--quick", "--methods", "--out", "--seed"):
        assert flag in text


def test_unknown_method_is_one_line(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--methods", "magic"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown method 'magic'" in err[0]


def test_bad_override_names_the_key(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "train.bogus=1"]) == 2
    assert "train.bogus" in capsys.readouterr().err


def test_a_different_budget_in_the_same_folder_is_refused(tmp_path, capsys):
    from modweave.demo import _claim

    _claim(tmp_path, {"seed": 0, "quick": True, "overrides": []})
    _claim(tmp_path, {"seed": 0, "quick": True, "overrides": []})  # same budget: resumes
    assert main(["demo", "--out", str(tmp_path)]) == 2
    assert "use another --out" in capsys.readouterr().err


def test_demo_data_seed_comes_from_seed_flag(tmp_path, capsys):
    from modweave.cli import main

    assert main(["demo", "--quick", "--out", str(tmp_path / "d"), "data.digits.seed=3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "data.digits.seed" in err[0] and "--seed" in err[0]
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize("methods, words", [
    ("ana[gat=false]", ["ana[gat=false]", "gat"]),
    ("ana[rank=0]", ["rank"]),
    ("ana[gate=false", ["ana[gate=false", "]"]),
    ("ana,,lora", ["entry 2 is empty"]),
    ("ana,ana[in_adapters=false],ana[in_adapters=false]", ["same run", "ana-no_in_adapters"]),
])
def test_bad_variant_is_one_line_before_any_work(tmp_path, capsys, methods, words):
    assert main(["demo", "--out", str(tmp_path / "d"), "--methods", methods]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and all(w in err[0] for w in words), err
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize("argv, words", [
    (["--seeds", "0,x"], ["--seeds", "'x'"]),
    (["--seeds", "1,1"], ["seed 1 is given twice"]),
    (["--seeds", "0,1", "--seed", "2"], ["--seed and --seeds"]),
])
def test_bad_seeds_are_one_line(tmp_path, capsys, argv, words):
    assert main(["demo", "--out", str(tmp_path / "d"), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and all(w in err[0] for w in words), err
    assert not (tmp_path / "d").exists()


def test_a_seed_folder_of_another_budget_is_refused_before_any_seed_runs(tmp_path, capsys):
    from modweave.demo import _claim

    _claim(tmp_path, {"seeds": [0, 1], "quick": True, "overrides": []})  # an earlier --quick --seeds 0,1
    _claim(tmp_path / "seed-1", {"seed": 1, "quick": False, "overrides": []})  # but seed 1 ran the full budget
    assert main(["demo", "--quick", "--out", str(tmp_path), "--seeds", "0,1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "seed-1" in err[0] and "use another --out" in err[0]
    assert not (tmp_path / "seed-0").exists()


def test_variant_config_stacks_settings_on_the_base_methods():
    from modweave.methods.variants import variant_label

    cfg = method_config(demo_config(), "moextend[num_new_experts=2]")
    assert cfg.name == variant_label("moextend", {"num_new_experts": 2}) == "moextend-num_new_experts=2"
    for st in cfg.stages:
        assert st.method == "moextend"
        assert st.settings == {**METHOD_STAGE["moextend"]["settings"], "num_new_experts": 2}
        assert st.train["lr"] == METHOD_STAGE["moextend"]["train"]["lr"]
    # a variant's setting wins over METHOD_STAGE's
    cfg = method_config(demo_config(), "moextend[routing=open]")
    assert {st.settings["routing"] for st in cfg.stages} == {"open"}
    # nested settings merge key by key
    cfg = method_config(demo_config(), "ana[gate_noise.enabled=false]")
    assert cfg.stages[0].settings == {"gate_noise": {"enabled": False}}


def test_summary_table_shows_mean_and_std_over_seeds():
    from modweave.demo import summary_table
    from modweave.report_seeds import merge_seeds

    entry = {"acc_matrix": [[0.5, 0.25]], "avg_acc": 0.5, "plasticity": 0.25, "forgetting": 0.0, "bwt": 0.0,
             "trainable_params": {"base": 10, "video": 4}, "total_params": 14, "train_seconds": {"video": 1.0}}
    one = {"benchmark": "b", "modalities": ["text", "image"], "seed": 0, "methods": {"m": entry}}
    two = {**one, "seed": 1, "methods": {"m": {**entry, "avg_acc": 0.7, "acc_matrix": [[0.7, 0.25]]}}}
    text = summary_table(merge_seeds([one, two]))
    assert "0.600±0.141" in text and "0.250±0.000" in text and "seeds 0, 1" in text
    assert "±" not in summary_table(one)


@pytest.mark.parametrize("cores,runs,expected", [(2, 6, 2), (8, 3, 3), (1, 6, 1), (4, 0, 1)])
def test_default_workers_is_one_per_core_and_at_most_one_per_run(monkeypatch, cores, runs, expected):
    import modweave.cpus
    from modweave.demo import default_workers

    monkeypatch.setattr(modweave.cpus, "available_cores", lambda: cores)
    assert default_workers(runs) == expected


@pytest.mark.slow
def test_methods_run_later_in_a_demo_folder_add_to_its_report(tmp_path, capsys):
    """benchmarks/ablation.py runs its variants in the demo's folder: the demo's entries stay in the
    report (and its loss histories), a re-run method replaces its own entry in place."""
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out), "--methods", "frozen,finetune", *TINY_BUDGET]) == 0
    first = json.loads((out / "report.json").read_text())
    assert main(["demo", "--quick", "--out", str(out), "--methods", "lora,frozen", *TINY_BUDGET]) == 0
    report = json.loads((out / "report.json").read_text())
    check_report(report)
    assert list(report["methods"]) == ["frozen", "finetune", "lora"]
    assert report["methods"]["finetune"] == first["methods"]["finetune"]  # kept as it was
    assert report["methods"]["frozen"]["acc_matrix"] == first["methods"]["frozen"]["acc_matrix"]  # same seed, same bits
    assert set(json.loads((out / "loss_history.json").read_text())) == {"frozen", "finetune", "lora"}
    assert "| finetune |" in (out / "report.md").read_text()


def test_a_broken_earlier_report_in_the_folder_is_one_line_before_any_work(tmp_path, capsys):
    from modweave.demo import _claim

    out = tmp_path / "demo"
    _claim(out, {"seed": 0, "quick": True, "overrides": TINY_BUDGET})  # an earlier demo of this budget
    (out / "report.json").write_text("{not json")
    assert main(["demo", "--quick", "--out", str(out), "--methods", "frozen", *TINY_BUDGET]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "report.json: not a demo report" in err[0] and "Traceback" not in err[0]
    assert not (out / "data").exists() and not (out / "base").exists()  # nothing ran
    assert (out / "report.json").read_text() == "{not json"  # and the file is left as it was
