"""Memory per process while a phase trains: `train.distributed.strategy` fsdp vs ddp, on N CPU processes.

A Mixtral-shaped LLM of a few hundred MB (default: 6 decoder layers, hidden 512, 8 experts of
intermediate 1024, top-2: ~75 M parameters, ~300 MB in fp32) under the trainer of configs/test-train.yaml,
one `frozen` stage (its path trains; the LLM, encoders and connector are frozen). At the first optimizer
step of that stage every rank reports
  frozen_mb      bytes of the frozen parameters this rank holds (a DTensor counts its local shard)
  trainable_mb   the same for the trainable ones
  tensors_mb     every host tensor storage alive in the process (parameters, buffers, optimizer state...)
  rss_mb         the process's resident memory then (VmRSS; the benchmark sets MALLOC_MMAP_THRESHOLD_ so
                 freed tensors leave it), rss_over_imports_mb: minus the RSS after the imports
  peak_rss_mb    its peak so far (VmHWM: includes building the full model before sharding)
Under fsdp the frozen (and trainable) bytes per rank approach 1/N of ddp's.

    .venv/bin/python benchmarks/fsdp_memory.py                    # 2 processes, gloo
    .venv/bin/python benchmarks/fsdp_memory.py --procs 4 --layers 8 --json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MB = 1024 ** 2
# glibc returns a freed block to the OS only if it was mmap-ed: with the default (dynamic) threshold the
# full tensors freed by sharding stay in the heap and RSS would not show them gone
MALLOC = {"MALLOC_MMAP_THRESHOLD_": "1048576"}


def _status_kb(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def _live_tensors_mb() -> float:
    """MB of every host tensor storage alive in this process (each storage once), DTensors by their shard."""
    import gc

    import torch

    storages: dict[int, int] = {}
    for obj in gc.get_objects():
        if isinstance(obj, torch.Tensor) and obj.device.type == "cpu" and type(obj).__name__ != "DTensor":
            storage = obj.untyped_storage()
            storages[storage.data_ptr()] = storage.nbytes()
    return sum(storages.values()) / MB


class Measure:
    """Trainer callback: at the first step of the stage under test, write this rank's numbers and stop."""

    def __init__(self, out: Path, stage: str, rss_before_mb: float):
        self.out, self.stage, self.rss_before_mb = out, stage, rss_before_mb

    def on_step(self, trainer) -> None:
        import torch
        from torch.distributed.tensor import DTensor

        if trainer.model.stages[-1].name != self.stage:
            return
        frozen = trainable = 0
        seen: set[int] = set()
        for p in trainer.model.parameters():
            if id(p) in seen:
                continue
            seen.add(id(p))
            local = p.to_local() if isinstance(p, DTensor) else p
            size = local.numel() * local.element_size()
            if p.requires_grad:
                trainable += size
            else:
                frozen += size
        rank = trainer.accelerator.process_index
        row = {"rank": rank, "frozen_mb": frozen / MB, "trainable_mb": trainable / MB, "tensors_mb": _live_tensors_mb(),
               "rss_mb": _status_kb("VmRSS") / 1024, "peak_rss_mb": _status_kb("VmHWM") / 1024,
               "rss_over_imports_mb": _status_kb("VmRSS") / 1024 - self.rss_before_mb,
               "params": sum(p.numel() for p in trainer.model.parameters()), "torch_threads": torch.get_num_threads()}
        (self.out / f"rank{rank}.json").write_text(json.dumps(row))
        raise SystemExit(0)  # measured: no need to finish the run


def config_file(args: argparse.Namespace, folder: Path, data_root: Path) -> Path:
    import yaml

    cfg = yaml.safe_load((ROOT / "configs" / "test-train.yaml").read_text())
    cfg["model"]["llm"] = {"kind": "tiny-mixtral", "hidden_size": args.hidden, "intermediate_size": args.intermediate,
                           "num_layers": args.layers, "num_heads": 8, "num_kv_heads": 2, "num_experts": args.experts,
                           "top_k": 2, "max_positions": 128}
    cfg.pop("base_train", None)  # the base trains nothing: the stage below is the one measured
    cfg["stages"] = cfg["stages"][:1]  # video through `frozen`
    cfg["train"].update({"steps": 2, "batch_size": 2})
    cfg["data"].update({"root": str(data_root)})
    cfg["eval"] = {"enabled": False}
    path = folder / "fsdp-memory.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def worker(config: str, out: str, strategy: str) -> None:
    import torch

    from modweave.config import load_run_config
    from modweave.train import ContinualTrainer

    torch.set_num_threads(1)
    cfg = load_run_config(config, [f"train.distributed.strategy={strategy}"])
    before = _status_kb("VmRSS") / 1024  # torch, transformers, modweave imported; no model yet
    trainer = ContinualTrainer(cfg, Path(out) / "run", callbacks=[Measure(Path(out), "video", before)])
    trainer.run()


def launch(config: Path, out: Path, strategy: str, procs: int, port: int) -> list[dict]:
    out.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(procs),
           "--main_process_port", str(port), __file__, "--worker", str(config), str(out), strategy]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", **MALLOC}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1200)
    rows = [json.loads(p.read_text()) for p in sorted(out.glob("rank*.json"))]
    if len(rows) != procs:
        raise SystemExit(f"{strategy}: {len(rows)} of {procs} ranks reported\n{proc.stderr[-3000:]}")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--intermediate", type=int, default=1024)
    parser.add_argument("--experts", type=int, default=8)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--worker", nargs=3, metavar=("CONFIG", "OUT", "STRATEGY"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(*args.worker)
        return
    from modweave.data.digits import write_digits

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_digits(folder / "mcl", n_train=6, n_test=1, modalities=["text", "image", "video"], workers=1,
                     progress=False)
        config = config_file(args, folder, folder / "mcl")
        results = {s: launch(config, folder / s, s, args.procs, 29700 + i) for i, s in enumerate(("ddp", "fsdp"))}
    summary = {}
    for key in ("frozen_mb", "trainable_mb", "tensors_mb", "rss_mb", "rss_over_imports_mb", "peak_rss_mb"):
        ddp = max(r[key] for r in results["ddp"])
        fsdp = max(r[key] for r in results["fsdp"])
        summary[key] = {"ddp": round(ddp, 2), "fsdp": round(fsdp, 2), "fsdp/ddp": round(fsdp / ddp, 3) if ddp else None}
    if args.json:
        print(json.dumps({"procs": args.procs, "params": results["ddp"][0]["params"], "summary": summary,
                          "ranks": results}, indent=1))
        return
    print(f"{args.procs} processes, {results['ddp'][0]['params'] / 1e6:.1f} M parameters; per process (largest rank):")
    print("| MB per process | ddp | fsdp | fsdp / ddp |\n|---|---|---|---|")
    for key, row in summary.items():
        print(f"| {key} | {row['ddp']:.1f} | {row['fsdp']:.1f} | {row['fsdp/ddp']} |")


if __name__ == "__main__":
    main()
