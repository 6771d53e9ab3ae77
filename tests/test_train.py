"""The continual trainer: a whole tiny run, exact resume after a kill, config errors, NaN loss,
optimizer/schedule/data order, the CLI, and 2-process CPU DDP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from modweave.config import ConfigError, load_run_config
from modweave.model import XModalLM
from modweave.train import ContinualTrainer, TrainingError, run_training

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "test-train.yaml"
FAST = ["eval.enabled=false", "train.checkpoint_every=2"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def digits_root(tmp_path_factory) -> Path:
    from modweave.data.digits import write_digits

    root = tmp_path_factory.mktemp("digits") / "mcl"
    write_digits(root, n_train=6, n_test=3, modalities=["text", "image", "video", "audio"], workers=1, progress=False)
    return root


def _cfg(root: Path, *overrides: str):
    return load_run_config(CONFIG, [f"data.root={root}", *overrides])


@pytest.fixture(scope="module")
def trained_run(digits_root, tmp_path_factory) -> tuple[Path, Path]:
    """The whole tiny run through the CLI: base (text + image), video (frozen), audio (lora)."""
    from modweave.cli import main

    out = tmp_path_factory.mktemp("run")
    assert main(["train", str(CONFIG), f"data.root={digits_root}", "--out", str(out)]) == 0
    return out, digits_root


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return XModalLM.from_pretrained(run_dir / "checkpoint").state_dict()


def test_run_writes_checkpoint_report_and_log(trained_run):
    out, _ = trained_run
    report = json.loads((out / "report.json").read_text())
    assert report["benchmark"] == "mcl-digits" and report["modalities"] == ["text", "image", "video", "audio"]
    entry = report["methods"]["test-train"]  # stages mix methods: the run's name labels it
    matrix = entry["acc_matrix"]
    assert [len(r) for r in matrix] == [4, 4, 4]
    assert matrix[0][2:] == [None, None] and matrix[1][3] is None  # no path yet: null, not 0
    assert all(v is not None for v in matrix[2])
    assert set(entry["trainable_params"]) == {"base", "video", "audio"}
    assert entry["trainable_params"]["video"] < entry["trainable_params"]["audio"] < entry["trainable_params"]["base"]
    assert entry["total_params"] == sum(t.numel() for t in XModalLM.from_pretrained(out / "checkpoint").parameters())
    for key in ("avg_acc", "plasticity", "forgetting", "bwt"):
        assert isinstance(entry[key], float)
    names = [s["name"] for s in json.loads((out / "checkpoint" / "manifest.json").read_text())["stages"]]
    assert names == ["base", "video", "audio"]
    assert not any((out / "trainer").glob("*/step-*"))  # in-stage checkpoints are dropped when a stage ends
    log = (out / "train.log").read_text()
    assert "after audio:" in log
    losses = json.loads((out / "loss_history.json").read_text())["test-train"]
    assert [len(losses[s]) for s in ("base", "video", "audio")] == [4, 3, 3]
    for name in ("report.md", "accuracy_matrix.png", "loss_curves.png"):
        assert (out / name).stat().st_size > 0
    from huggingface_hub import ModelCard

    card = ModelCard.load(out / "checkpoint" / "README.md")  # a Hub model card, with the run's results
    assert card.data.library_name == "modweave" and "plasticity" in card.text.lower()


def test_a_second_run_into_the_same_folder_needs_resume(trained_run):
    out, root = trained_run
    with pytest.raises(ConfigError, match="--resume"):
        run_training(_cfg(root), out)


class SimulatedKill(BaseException):
    """Imitates a killed process at a chosen moment (not an Exception: nothing may catch it)."""


class KillAfter:
    """A trainer callback that 'kills' the run after `steps` optimizer steps or `stages` saved stages."""

    def __init__(self, steps: int | None = None, stages: int | None = None):
        self.steps, self.stages, self.stages_done = steps, stages, 0

    def on_step(self, trainer) -> None:
        if self.steps is not None and trainer.steps_done >= self.steps:
            raise SimulatedKill(f"after {trainer.steps_done} steps")

    def on_stage_end(self, trainer, name: str) -> None:
        self.stages_done += 1
        if self.stages is not None and self.stages_done >= self.stages:
            raise SimulatedKill(f"after stage {name}")


@pytest.mark.parametrize("kill", [{"steps": 7}, {"stages": 2}, {"steps": 9}],
                         ids=["mid-video-stage", "after-video-end_stage", "mid-audio-stage"])
def test_resume_after_kill_is_bit_identical(digits_root, tmp_path, kill):
    # base 4 steps (checkpoints at 2), video 3 (at 2), audio 3 (at 2): step 7 = video step 3, step 9 = audio 2
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    run_training(_cfg(digits_root, *FAST), ref)
    with pytest.raises(SimulatedKill):
        run_training(_cfg(digits_root, *FAST), cut, callbacks=[KillAfter(**kill)])
    base_file = cut / "checkpoint" / "stage-00-base.safetensors"
    before = (base_file.stat().st_mtime_ns, base_file.read_bytes())
    run_training(_cfg(digits_root, *FAST), cut, resume=True)
    assert (base_file.stat().st_mtime_ns, base_file.read_bytes()) == before  # finished: never rewritten
    a, b = _weights(ref), _weights(cut)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])][:5]
    for stage in ("base", "video", "audio"):
        la = json.loads((ref / "progress.json").read_text())["losses"][stage]
        lb = json.loads((cut / "progress.json").read_text())["losses"][stage]
        assert la == lb


@pytest.mark.parametrize("override, key", [
    ("stages.0.method=nope", r"stages\[0\]\.method"),
    ("stages.1.settings={rank: 4, bogus: 1}", r"stages\[1\]\.settings"),
    ("stages.1.modality.name=depth", r"data\.train.*'depth'"),
    ("stages.0.modality.loader.size=32", r"stages\[0\]\.modality"),
    ("train.stepz=3", r"train\.stepz"),
    ("stages.0.train.lr_typo=1", r"stages\[0\]\.train\.lr_typo"),
    ("eval.qa_mode=guess", r"eval\.qa_mode"),
])
def test_config_errors_fail_before_training(digits_root, tmp_path, override, key):
    with pytest.raises(ConfigError, match=key):
        run_training(_cfg(digits_root, override), tmp_path / "out")
    assert not (tmp_path / "out" / "checkpoint").exists()


def test_nan_loss_stops_the_stage_and_keeps_the_last_checkpoint(digits_root, tmp_path, monkeypatch):
    # the second video step's loss turns NaN (as a diverging run's would)
    forward, calls = XModalLM.forward, []

    def nan_on_second_video_step(self, batch, reduction="mean"):
        out = forward(self, batch, reduction)
        if self.training and self.stages[-1].name == "video":
            calls.append(1)
            if len(calls) == 2:
                out.loss = out.loss * float("nan")
        return out

    monkeypatch.setattr(XModalLM, "forward", nan_on_second_video_step)
    with pytest.raises(TrainingError, match=r"stage 'video' step 2: loss is nan"):
        run_training(_cfg(digits_root, *FAST), tmp_path)
    manifest = json.loads((tmp_path / "checkpoint" / "manifest.json").read_text())
    assert [s["name"] for s in manifest["stages"]] == ["base"]
    model = XModalLM.from_pretrained(tmp_path / "checkpoint")
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_decay_groups_and_warmup_cosine():
    from modweave.training.optim import WarmupCosine, decay_groups

    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4))
    net.add_module("frozen", torch.nn.Linear(2, 2).requires_grad_(False))
    groups = decay_groups(net.named_parameters(), 0.1)
    assert [len(g["params"]) for g in groups] == [1, 3]  # weight | bias, norm weight, norm bias
    assert groups[0]["params"][0] is net[0].weight and groups[1]["weight_decay"] == 0.0
    sched = WarmupCosine(warmup=2, total=6, min_ratio=0.1)
    assert [round(sched(s), 4) for s in range(7)] == [0.5, 1.0, 1.0, round(0.1 + 0.9 * 0.5 * (1 + 2 ** -0.5), 4),
                                                      0.55, round(0.1 + 0.9 * 0.5 * (1 - 2 ** -0.5), 4), 0.1]


def test_batch_order_is_seeded_and_sharded():
    from modweave.training.data import BatchOrder

    one = BatchOrder(10, 2, seed=3)
    r0, r1 = BatchOrder(10, 2, seed=3, rank=0, world=2), BatchOrder(10, 2, seed=3, rank=1, world=2)
    # micro-batch k of a 2-process run = global slice k of the single-process order
    assert r0.indices(0) + r1.indices(0) == one.indices(0) + one.indices(1)
    epoch = [i for k in range(5) for i in one.indices(k)]
    assert sorted(epoch) == list(range(10))
    assert BatchOrder(10, 2, seed=3).indices(7) == one.indices(7) != BatchOrder(10, 2, seed=4).indices(7)


def test_eval_cli_on_a_trained_checkpoint(trained_run, capsys):
    from modweave.cli import main

    run_dir, data_root = trained_run
    assert main(["eval", str(run_dir / "checkpoint"), "--data", str(data_root / "audio_test.jsonl"),
                 "--upto", "video", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"audio": None}
    assert main(["eval", str(run_dir / "checkpoint"), "--data", str(data_root / "video_test.jsonl"),
                 "--qa-mode", "rank", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["video"]["n"] == 6 and 0.0 <= out["video"]["score"] <= 1.0


def test_generate_cli_greedy_and_beam(trained_run, capsys):
    from modweave.cli import main

    run_dir, data_root = trained_run
    wav = sorted((data_root / "audio").iterdir())[0]
    assert main(["generate", str(run_dir / "checkpoint"), "--modality", "audio", "--media", str(wav),
                 "--prompt", "Question: What digit is it? Answer:", "--num-beams", "2", "--max-new-tokens", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("greedy: ") and lines[1].startswith("beam(2): ")
    assert main(["generate", str(run_dir / "checkpoint"), "--modality", "audio", "--media", str(wav),
                 "--prompt", "q", "--upto", "video"]) == 2  # no audio path before the audio stage


def test_xmodal_pairs_are_evaluated_after_every_stage_and_reported(trained_run):
    out, _ = trained_run
    entry = json.loads((out / "report.json").read_text())["methods"]["test-train"]
    x = entry["xmodal"]
    assert set(x["labels"]) == {"image+image", "image+video", "image+audio", "video+audio"}
    by_row = [dict(zip(x["labels"], row)) for row in x["matrix"]]  # rows: base, video, audio
    assert by_row[0]["image+image"] is not None and by_row[0]["image+video"] is None
    assert by_row[1]["image+video"] is not None and by_row[1]["video+audio"] is None
    assert all(v is not None for v in by_row[2].values()) and x["final"] == by_row[2]
    assert x["mean_without_image"] == x["final"]["video+audio"]  # the only pair without image
    assert all(0.1 <= c <= 0.5 for c in x["chance"].values())  # yes/no, first/second and 10 digits
    assert "## X-modal reasoning" in (out / "report.md").read_text() and (out / "xmodal.png").stat().st_size > 0


def test_a_loader_setting_no_loader_takes_names_its_key_for_single_and_pair_data(digits_root):
    from modweave.config import ConfigError
    from modweave.training.config import DataConfig
    from modweave.training.data import RunData

    data = RunData(load_run_config(CONFIG), DataConfig(root=str(digits_root)))
    data.settings["image"] = {**data.settings.get("image", {}), "no_such_setting": 1}
    with pytest.raises(ConfigError, match=r"^config key 'data\.loader\.image' \(or the path spec's loader\)"):
        data.train("image")
    with pytest.raises(ConfigError, match=r"^config key 'data\.loader\.image' \(or the path spec's loader\)"):
        data.xmodal_train(["text", "image"])  # the pairs are image + image: the same key, the same line


def test_the_base_trains_on_pairs_of_its_own_modalities_only(digits_root):
    from modweave.training.config import DataConfig
    from modweave.training.data import RunData

    data = RunData(load_run_config(CONFIG), DataConfig(root=str(digits_root)))
    pairs = data.xmodal_train(["text", "image"])
    assert len(pairs) > 0 and all(pairs[i]["media_modalities"] == ["image", "image"] for i in range(len(pairs)))
    assert data.xmodal_train(["text"]) is None
    assert RunData(load_run_config(CONFIG), DataConfig(root=str(digits_root), xmodal="")).xmodal_labels() == []


def test_generate_and_eval_cli_with_two_media_of_different_modalities(trained_run, capsys, tmp_path):
    from modweave.cli import main

    run_dir, data_root = trained_run
    png, wav = sorted((data_root / "image").iterdir())[0], sorted((data_root / "audio").iterdir())[0]
    ck = str(run_dir / "checkpoint")
    assert main(["generate", ck, "--modality", "image", "--media", str(png), "--modality", "audio", "--media", str(wav),
                 "--prompt", "Question: Is <media:1> the digit of <media:2>? Answer:", "--max-new-tokens", "2"]) == 0
    assert capsys.readouterr().out.startswith("greedy: ")
    assert main(["generate", ck, "--modality", "image", "--media", str(png), "--media", str(wav), "--prompt", "q"]) == 2
    assert "1 --modality for 2 --media" in capsys.readouterr().err
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"id": "p", "task": "qa", "prompt": "Question: Same digit in <media:1> and <media:2>? Answer:",
                                 "answer": "yes", "media": [{"modality": "image", "path": str(png.relative_to(data_root))},
                                                            {"modality": "audio", "path": str(wav.relative_to(data_root))}]}) + "\n")
    assert main(["eval", ck, "--data", str(pairs), "--root", str(data_root), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["image+audio"]["n"] == 1
    assert main(["eval", ck, "--data", str(pairs), "--root", str(data_root), "--upto", "video", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"image+audio": None}  # no audio path yet


DDP_SCRIPT = """
import sys, torch
from safetensors.torch import save_file
from modweave.config import load_run_config
from modweave.train import ContinualTrainer
torch.set_num_threads(1)
config, out, *overrides = sys.argv[1:]
trainer = ContinualTrainer(load_run_config(config, overrides), out)
trainer.run()
acc = trainer.accelerator
state = {k: v.detach().clone().contiguous() for k, v in trainer.model.state_dict().items()}
save_file(state, f"{out}/rank{acc.process_index}-of-{acc.num_processes}.safetensors")
"""


@pytest.mark.distributed
def test_two_process_cpu_ddp_gives_identical_parameters(digits_root, tmp_path):
    from safetensors.torch import load_file

    script = tmp_path / "ddp_train.py"
    script.write_text(DDP_SCRIPT)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--main_process_port", "29533", str(script), str(CONFIG), str(out), f"data.root={digits_root}",
           "eval.enabled=false", "train.steps=2", "train.base.steps=2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = load_file(str(out / "rank0-of-2.safetensors")), load_file(str(out / "rank1-of-2.safetensors"))
    assert r0.keys() == r1.keys()
    assert all(torch.equal(r0[k], r1[k]) for k in r0)
    saved = _weights(out)
    assert all(torch.equal(saved[k], r0[k]) for k in saved)


def test_activation_checkpointing_gives_the_same_training(digits_root, tmp_path, monkeypatch):
    # a lora stage: its adapters are routed by model.context, which must stay set for the recomputation
    import transformers.modeling_utils as hf

    calls, original = [], hf.checkpoint
    monkeypatch.setattr(hf, "checkpoint", lambda *a, **k: calls.append(1) or original(*a, **k))
    runs = {}
    for on in (False, True):
        cfg = _cfg(digits_root, "eval.enabled=false", "train.steps=2", "train.base.steps=2",
                   f"train.gradient_checkpointing={str(on).lower()}")
        cfg.stages = cfg.stages[1:]  # audio through lora
        trainer = ContinualTrainer(cfg, tmp_path / str(on))
        trainer.run()
        runs[on] = trainer
    assert calls  # the checkpointed run did recompute
    assert runs[True].progress["losses"] == runs[False].progress["losses"]
    a, b = runs[False].model.state_dict(), runs[True].model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not runs[True].model.llm.is_activation_checkpointing  # switched off after the stage


def test_compiled_training_gives_the_same_losses_and_leaves_eager_modules(digits_root, tmp_path):
    # aot_eager: dynamo's graphs through autograd without generating C++ (inductor compiles for minutes
    # on 2 cores; benchmarks/step_time.py --compile measures it)
    from torch._dynamo.utils import counters

    runs, graphs = {}, {}
    for on in (False, True):
        before = counters["stats"]["unique_graphs"]
        cfg = _cfg(digits_root, "eval.enabled=false", "train.steps=2", "train.base.steps=0",
                   f"train.compile={str(on).lower()}", "train.compile_backend=aot_eager")
        cfg.stages = cfg.stages[1:]  # audio through lora
        trainer = ContinualTrainer(cfg, tmp_path / str(on))
        trainer.run()
        runs[on], graphs[on] = trainer, counters["stats"]["unique_graphs"] - before
    assert graphs[False] == 0 and graphs[True] > 0  # dynamo did capture the compiled run
    eager, compiled = (runs[k].progress["losses"]["audio"] for k in (False, True))
    assert [s for s, _ in eager] == [s for s, _ in compiled]
    assert all(abs(a - b) <= 1e-5 * max(1.0, abs(a)) for (_, a), (_, b) in zip(eager, compiled))
    a, b = runs[False].model.state_dict(), runs[True].model.state_dict()
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    model = runs[True].model
    assert all(m._compiled_call_impl is None for m in (model.llm, *model.connectors.values()))


def test_log_with_a_tracker_that_is_not_installed_only_warns(digits_root, tmp_path, caplog):
    import importlib.util

    trainer = ContinualTrainer(_cfg(digits_root, "train.log_with=tensorboard"), tmp_path)
    with caplog.at_level("WARNING", logger="modweave"):
        acc = trainer._make_accelerator()
    installed = importlib.util.find_spec("tensorboard") or importlib.util.find_spec("tensorboardX")
    assert bool(acc.log_with) == bool(installed)
    assert installed or "not installed" in caplog.text


def test_phase_overrides_apply_to_their_phase_only():
    from modweave.config import ConfigError
    from modweave.training.config import TrainConfig, phase_train_configs

    cfgs = phase_train_configs(TrainConfig(lr=1e-3, steps=10), {"steps": 4, "phases": {"finetune": {"lr": 2e-5}}},
                               ("align", "extender", "finetune"), "stages[0].train")
    assert {p: (c.lr, c.steps) for p, c in cfgs.items()} == {
        "align": (1e-3, 4), "extender": (1e-3, 4), "finetune": (2e-5, 4)}
    with pytest.raises(ConfigError, match=r"stages\[0\].train.phases.tune"):
        phase_train_configs(TrainConfig(), {"phases": {"tune": {}}}, ("align",), "stages[0].train")


def test_tensorboard_receives_losses_grad_norms_and_accuracy_rows(digits_root, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    run_training(_cfg(digits_root, "train.log_with=tensorboard", "train.steps=2", "train.base.steps=2"), out)
    events = sorted((out / "trackers").rglob("events.out.tfevents.*"))
    assert events, "no tensorboard event file written"
    tags: set[str] = set()
    values: dict[str, list] = {}
    for path in {e.parent for e in events}:
        acc = EventAccumulator(str(path))
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            tags.add(tag)
            values.setdefault(tag, []).extend(acc.Scalars(tag))
    assert {"loss/base", "loss/video", "loss/audio", "lr/base", "grad_norm/audio", "acc/text", "acc/audio",
            "trainable_params/audio"} <= tags, sorted(tags)
    progress = json.loads((out / "progress.json").read_text())
    assert [round(e.value, 5) for e in values["loss/audio"]] == [round(v, 5) for _, v in progress["losses"]["audio"]]
    assert [e.step for e in values["acc/text"]] == [0, 1, 2]  # one point per accuracy-matrix row


def test_adamw_takes_the_fused_kernel_where_every_parameter_allows_it():
    from torch import nn

    from modweave.training.optim import adamw

    cpu = [nn.Parameter(torch.zeros(3)), nn.Parameter(torch.zeros(2, 2))]
    assert adamw([{"params": cpu[:1]}, {"params": cpu[1:], "weight_decay": 0.0}], lr=1e-3).defaults["fused"]
    meta = adamw([*cpu, nn.Parameter(torch.zeros(2, device="meta"))], lr=1e-3)  # one not on a fused device
    assert not meta.defaults.get("fused") and meta.defaults["foreach"]
