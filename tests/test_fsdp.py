"""Sharded training (`train.distributed.strategy: fsdp`, PyTorch FSDP2) on 2 CPU processes with gloo:
the same training as one process with the same global batch, stage files from the gathered full state,
MoExtend's modality routing kept exact, DCP trainer checkpoints resumed exactly after `kill -9` of every
rank, and a failing or stalled rank ending the run with a clear message instead of a hang."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from modweave.config import ConfigError, load_run_config
from modweave.model import XModalLM

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "test-fsdp.yaml"
TRAIN_CONFIG = ROOT / "configs" / "test-train.yaml"
SHARDED = ["train.distributed.strategy=fsdp", "train.checkpoint_every=1"]
# fp32 on CPU: sharded reductions (reduce-scatter, the norm from shards) add in another order than one
# process does; measured max |diff| on the final tensors 4e-9 (test-fsdp.yaml) and 1.2e-7 (test-train.yaml),
# losses equal or within 1e-7 relative
ATOL = 1e-6
LOSS_RTOL = 1e-6

SCRIPT = """
import json, os, signal, sys, time, torch
from safetensors.torch import save_file
from modweave.config import load_run_config
from modweave.train import ContinualTrainer
torch.set_num_threads(1)
config, out, *overrides = sys.argv[1:]
resume = "--resume" in overrides
overrides = [o for o in overrides if o != "--resume"]

class Interrupt:  # KILL_AT: every rank kill -9s itself after that many optimizer steps (and their checkpoint)
    def on_step(self, trainer):
        if trainer.steps_done == int(os.environ.get("KILL_AT", "0")):
            os.kill(os.getpid(), signal.SIGKILL)
        if os.environ.get("FAIL_AT") and trainer.accelerator.process_index == 1 \\
                and trainer.steps_done == int(os.environ["FAIL_AT"]):
            if os.environ.get("FAIL_HOW") == "stall":
                time.sleep(300)
            raise RuntimeError("rank 1 fails on purpose")

accelerator = None
if os.environ.get("MIXED"):  # accelerate allows bf16 autocast on CPU; the trainer's own choice there is "no"
    from accelerate import Accelerator
    accelerator = Accelerator(cpu=True, mixed_precision=os.environ["MIXED"])
trainer = ContinualTrainer(load_run_config(config, overrides), out, resume=resume, callbacks=[Interrupt()],
                           accelerator=accelerator)
trainer.run()
rank, model = trainer.accelerator.process_index, trainer.model
save_file({k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}, f"{out}/rank{rank}.safetensors")
from torch.distributed.tensor import DTensor
left = {"fsdp_classes": [type(m).__name__ for m in model.modules() if type(m).__name__.startswith("FSDP")],
        "dtensors": [n for n, p in model.named_parameters() if isinstance(p, DTensor)],
        "forward_hooks": sum(len(m._forward_pre_hooks) + len(m._forward_hooks) for m in model.modules())}
open(f"{out}/rank{rank}-left.json", "w").write(json.dumps(left))
"""


@pytest.fixture(scope="module")
def script(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("fsdp") / "train_script.py"
    path.write_text(SCRIPT)
    return path


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    """MCL-Digits as configs/test-fsdp.yaml asks for it, written once (before any launch: no race)."""
    from modweave.data.digits import write_digits

    root = tmp_path_factory.mktemp("digits") / "mcl"
    digits = load_run_config(CONFIG).data["digits"]
    write_digits(root, **{**digits, "workers": 1}, progress=False)
    return root


_PORT = [29610]


def launch(script: Path, config: Path, out: Path, *overrides: str, procs: int = 2, env: dict | None = None,
           timeout: int = 240) -> subprocess.CompletedProcess:
    """`accelerate launch` with `procs` CPU processes (gloo), or a plain process for `procs=1`."""
    _PORT[0] += 1
    args = [str(script), str(config), str(out), *overrides]
    if procs > 1:
        args = ["-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(procs),
                "--main_process_port", str(_PORT[0]), *args]
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", **(env or {})}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=full_env, timeout=timeout)


def _load(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


def _losses(run: Path) -> dict[str, list]:
    return json.loads((run / "progress.json").read_text())["losses"]


@pytest.fixture(scope="module")
def runs(script, data_root, tmp_path_factory) -> dict[str, Path]:
    """The same run sharded on 2 processes (batch 2 each) and on one process (batch 2, 2 micro-batches)."""
    base = tmp_path_factory.mktemp("runs")
    out = {"fsdp": base / "fsdp", "single": base / "single"}
    proc = launch(script, CONFIG, out["fsdp"], f"data.root={data_root}", *SHARDED)
    assert proc.returncode == 0, proc.stderr[-4000:]
    proc = launch(script, CONFIG, out["single"], f"data.root={data_root}", "train.grad_accum=2", procs=1)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return out


@pytest.mark.distributed
def test_sharded_training_equals_one_process_with_the_same_global_batch(runs):
    fsdp, single = _load(runs["fsdp"] / "rank0.safetensors"), _load(runs["single"] / "rank0.safetensors")
    assert fsdp.keys() == single.keys()
    worst = max((fsdp[k] - single[k]).abs().max().item() for k in fsdp)
    assert worst <= ATOL, worst
    lf, ls = _losses(runs["fsdp"]), _losses(runs["single"])
    assert list(lf) == ["base", "video", "audio:align", "audio:extender", "audio:finetune"] == list(ls)
    for stage in lf:
        assert [s for s, _ in lf[stage]] == [s for s, _ in ls[stage]] == [1, 2]
        assert all(abs(a - b) <= LOSS_RTOL * abs(b) for (_, a), (_, b) in zip(lf[stage], ls[stage])), stage
    # MoExtend's extender statistics: each rank counted its share of the held-out batches, summed over ranks
    def extender(run):
        stages = json.loads((run / "checkpoint" / "manifest.json").read_text())["stages"]
        return next(s["state"] for s in stages if s["name"] == "audio:extender")

    a, b = extender(runs["fsdp"]), extender(runs["single"])
    assert (a["layers"], a["donors"], a["usage_orig"]) == (b["layers"], b["donors"], b["usage_orig"])
    assert torch.allclose(torch.tensor(a["usage_tuned"]), torch.tensor(b["usage_tuned"]), atol=1e-6)


@pytest.mark.distributed
def test_baselines_sharded_equal_one_process(script, data_root, tmp_path):
    """configs/test-train.yaml under fsdp: base training, `frozen` (video) and peft `lora` (audio)."""
    common = [f"data.root={data_root}", "eval.enabled=false", "train.steps=2", "train.base.steps=2"]
    proc = launch(script, TRAIN_CONFIG, tmp_path / "fsdp", *common, "train.distributed.strategy=fsdp")
    assert proc.returncode == 0, proc.stderr[-4000:]
    proc = launch(script, TRAIN_CONFIG, tmp_path / "one", *common, "train.grad_accum=2", procs=1)
    assert proc.returncode == 0, proc.stderr[-4000:]
    fsdp, one = _load(tmp_path / "fsdp" / "rank0.safetensors"), _load(tmp_path / "one" / "rank0.safetensors")
    assert fsdp.keys() == one.keys()
    assert max((fsdp[k] - one[k]).abs().max().item() for k in fsdp) <= ATOL
    lf, lo = _losses(tmp_path / "fsdp"), _losses(tmp_path / "one")
    assert list(lf) == ["base", "video", "audio"] == list(lo)
    assert all(abs(a - b) <= LOSS_RTOL * abs(b) for st in lf for (_, a), (_, b) in zip(lf[st], lo[st]))


@pytest.mark.distributed
def test_stage_files_hold_the_gathered_full_state_and_fsdp_leaves_no_trace(runs):
    r0, r1 = _load(runs["fsdp"] / "rank0.safetensors"), _load(runs["fsdp"] / "rank1.safetensors")
    assert r0.keys() == r1.keys() and all(torch.equal(r0[k], r1[k]) for k in r0)  # both ranks: the full model
    saved = XModalLM.from_pretrained(runs["fsdp"] / "checkpoint").state_dict()
    assert saved.keys() == r0.keys() and all(torch.equal(saved[k], r0[k]) for k in saved)
    single = XModalLM.from_pretrained(runs["single"] / "checkpoint").state_dict()
    assert saved.keys() == single.keys()  # the same stage-file keys as a single-process run
    for rank in (0, 1):
        left = json.loads((runs["fsdp"] / f"rank{rank}-left.json").read_text())
        assert left["fsdp_classes"] == [] and left["dtensors"] == []
    one = json.loads((runs["single"] / "rank0-left.json").read_text())
    assert left["forward_hooks"] == one["forward_hooks"]  # only the model's own hooks (MoExtend's balance loss)
    assert not any((runs["fsdp"] / "trainer").glob("*/step-*"))  # in-stage checkpoints dropped at stage ends


@pytest.mark.distributed
def test_modality_routing_keeps_text_and_earlier_modalities_bit_identical_under_sharding(runs, data_root):
    """MoExtend with `routing: modality` trained sharded: rows of text, image and video (ana's step) go
    through the model exactly as before the audio step; audio rows do change."""
    from modweave.training.config import run_sections
    from modweave.training.data import RunData, resolve_spec_loaders

    ckpt = runs["fsdp"] / "checkpoint"
    before, after = XModalLM.from_pretrained(ckpt, upto="video"), XModalLM.from_pretrained(ckpt)
    cfg = load_run_config(CONFIG, [f"data.root={data_root}"])
    resolve_spec_loaders(cfg)
    data = RunData(cfg, run_sections(cfg).data, [])
    for model in (before, after):
        model.eval()
    with torch.no_grad():
        for m in ("text", "image", "video"):
            batch = before.collator(train=True)([data.test(m)[i] for i in range(3)])
            assert torch.equal(before(batch).logits, after(batch).logits), m
        batch = after.collator(train=True)([data.test("audio")[i] for i in range(3)])
        assert not torch.equal(XModalLM.from_pretrained(ckpt, upto="audio:extender").eval()(batch).logits,
                               after(batch).logits)


@pytest.mark.distributed
def test_kill_of_every_rank_then_resume_continues_exactly(runs, script, data_root, tmp_path):
    # steps: base 2, video 2, audio align 2, extender 2, finetune 2; checkpoints after step 1 of each phase:
    # step 9 = finetune step 1 (MoExtend's new experts rebuilt from the manifest, then the DCP state)
    cut = tmp_path / "cut"
    killed = launch(script, CONFIG, cut, f"data.root={data_root}", *SHARDED, env={"KILL_AT": "9"})
    assert killed.returncode != 0
    shards = sorted(p.name for p in (cut / "trainer" / "audio-finetune" / "step-000001" / "dcp").iterdir())
    assert shards == [".metadata", "__0_0.distcp", "__1_0.distcp"]  # each rank wrote its own shard
    resumed = launch(script, CONFIG, cut, f"data.root={data_root}", *SHARDED, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert "audio:finetune: resumed from" in (cut / "train.log").read_text()
    ref, got = _load(runs["fsdp"] / "rank0.safetensors"), _load(cut / "rank0.safetensors")
    assert ref.keys() == got.keys()
    assert all(torch.equal(ref[k], got[k]) for k in ref), [k for k in ref if not torch.equal(ref[k], got[k])][:5]
    assert _losses(cut) == _losses(runs["fsdp"])


@pytest.mark.distributed
def test_bf16_mixed_precision_under_fsdp_computes_in_bf16_and_keeps_fp32_weights(runs, script, data_root, tmp_path):
    out = tmp_path / "bf16"
    proc = launch(script, CONFIG, out, f"data.root={data_root}", "train.distributed.strategy=fsdp",
                  "train.steps=1", "train.base.steps=1", env={"MIXED": "bf16"})
    assert proc.returncode == 0, proc.stderr[-4000:]
    saved = XModalLM.from_pretrained(out / "checkpoint").state_dict()
    assert {v.dtype for v in saved.values() if v.is_floating_point()} == {torch.float32}  # shards stay fp32
    bf16, fp32 = _losses(out)["base"][0][1], _losses(runs["fsdp"])["base"][0][1]  # same model, same batch
    assert bf16 != fp32 and abs(bf16 - fp32) < 1e-2 * fp32
    assert list(_losses(out)) == ["base", "video", "audio:align", "audio:extender", "audio:finetune"]


@pytest.mark.distributed
@pytest.mark.parametrize("how, expect", [
    ("raise", "rank 1 fails on purpose"),
    ("stall", "a collective waited longer than train.distributed.timeout=8 s"),
])
def test_a_failing_rank_ends_every_process_with_a_clear_message(script, data_root, tmp_path, how, expect):
    import time

    t0 = time.monotonic()
    proc = launch(script, TRAIN_CONFIG, tmp_path / "run", f"data.root={data_root}", "eval.enabled=false",
                  "train.steps=2", "train.base.steps=2", "train.distributed.strategy=fsdp",
                  "train.distributed.timeout=8", env={"FAIL_AT": "1", "FAIL_HOW": how}, timeout=120)
    assert proc.returncode != 0
    assert expect in proc.stderr, proc.stderr[-3000:]
    assert time.monotonic() - t0 < 100  # no hang: the launcher ends every rank


# ------------------------------------------------------------------------------------------------
# in-process checks (no second process)


@pytest.mark.parametrize("override, key", [
    ("train.distributed.strategy=zero3", r"train\.distributed\.strategy"),
    ("train.distributed.timeout=0", r"train\.distributed\.timeout"),
    ("train.distributed={strategy: fsdp, bogus: 1}", r"train\.distributed\.bogus"),
])
def test_distributed_settings_are_checked(override, key):
    from modweave.training.config import run_sections

    with pytest.raises(ConfigError, match=key):
        run_sections(load_run_config(CONFIG, [override]))


def test_fsdp_refuses_fp16_and_stage_overrides_merge():
    from modweave.training.config import run_sections

    with pytest.raises(ConfigError, match=r"train\.mixed_precision.*fp16"):
        run_sections(load_run_config(CONFIG, ["train.distributed.strategy=fsdp", "train.mixed_precision=fp16"]))
    sections = run_sections(load_run_config(CONFIG, ["train.distributed.timeout=60",
                                                     "stages.1.train={distributed: {strategy: fsdp}}"]))
    finetune = sections.stages[1]["finetune"].distributed
    assert (finetune.strategy, finetune.timeout) == ("fsdp", 60.0)  # only the key given changes
    assert all(c.distributed.strategy == "ddp" for c in sections.stages[0].values())


def test_decoder_layers_are_the_llms_layers(tiny_model):
    from modweave.training.distributed import decoder_layers

    layers = decoder_layers(tiny_model.llm)
    assert layers and all(a is b for a, b in zip(layers, tiny_model.llm.model.layers))


def test_sharded_state_metadata_is_read_without_running_code(tmp_path):
    import torch.distributed.checkpoint as dcp

    from modweave.training.sharded_state import SafeFileSystemReader

    with pytest.warns(UserWarning, match="single process"):  # no process group: one writer
        dcp.save({"w": torch.arange(4.0)}, checkpoint_id=str(tmp_path / "ok"), no_dist=True)
    metadata = SafeFileSystemReader(str(tmp_path / "ok")).read_metadata()
    assert "w" in metadata.state_dict_metadata

    class Payload:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / ".metadata").write_bytes(pickle.dumps(Payload()))
    with pytest.raises(pickle.UnpicklingError, match="not part of a checkpoint's metadata"):
        SafeFileSystemReader(str(tmp_path / "bad")).read_metadata()
    assert not (tmp_path / "pwned").exists()


def test_memory_estimate_counts_one_process_share_of_fsdp_phases():
    from modweave.memory import estimate_memory

    preset = ROOT / "configs" / "moextend" / "mixtral-8x7b-clip336.yaml"
    one = estimate_memory(load_run_config(preset), grad_checkpointing=True)["stages"]["image:finetune"]
    ddp = estimate_memory(load_run_config(preset), grad_checkpointing=True, processes=8)["stages"]["image:finetune"]
    fsdp = estimate_memory(load_run_config(preset, ["train.distributed.strategy=fsdp"]), grad_checkpointing=True,
                           processes=8)["stages"]["image:finetune"]
    assert ddp == {**one, "processes": 1}  # ddp replicates: per process as on one GPU
    assert fsdp["processes"] == 8 and fsdp["optimizer"] == one["optimizer"] / 8
    # 1/8 of the 32 layers, one layer gathered, the root (embeddings, head, CLIP, projector) whole
    assert one["weights"] / 8 < fsdp["weights"] < one["weights"] / 5


def test_accelerate_fsdp_launches_get_the_per_phase_fsdp_and_zero3_is_refused():
    from types import SimpleNamespace

    from accelerate.utils import DistributedType

    from modweave.training.distributed import check_accelerator, wants_fsdp

    def acc(kind, n=2, zero=None):
        return SimpleNamespace(distributed_type=kind, num_processes=n,
                               state=SimpleNamespace(deepspeed_plugin=SimpleNamespace(zero_stage=zero)))

    assert wants_fsdp("fsdp", acc(DistributedType.MULTI_CPU)) and not wants_fsdp("fsdp", acc(DistributedType.NO, 1))
    assert wants_fsdp("ddp", acc(DistributedType.FSDP))  # an accelerate FSDP config: modweave's FSDP2 per phase
    assert not wants_fsdp("ddp", acc(DistributedType.MULTI_GPU))
    check_accelerator(acc(DistributedType.DEEPSPEED, zero=2))  # ZeRO-1/2 keep whole parameters
    with pytest.raises(ConfigError, match="ZeRO-3.*train.distributed.strategy=fsdp"):
        check_accelerator(acc(DistributedType.DEEPSPEED, zero=3))


def test_resuming_a_sharded_state_without_sharding_is_refused(tmp_path):
    from modweave.training.sharded_state import check_state_kind
    from modweave.training.state import TrainerStateError

    sharded, plain = tmp_path / "trainer" / "video" / "step-000002", tmp_path / "trainer" / "audio" / "step-000001"
    (sharded / "dcp").mkdir(parents=True)
    plain.mkdir(parents=True)
    check_state_kind(sharded, True)
    check_state_kind(plain, False)
    with pytest.raises(TrainerStateError, match=r"sharded \(fsdp\) trainer state.*train.distributed.strategy"):
        check_state_kind(sharded, False)
    with pytest.raises(TrainerStateError, match=r"replicated .* trainer state, and this phase is sharded"):
        check_state_kind(plain, True)
