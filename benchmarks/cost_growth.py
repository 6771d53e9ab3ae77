"""How inference cost grows as modalities are added: 1, 2, 4, 8 synthetic modalities through `ana`, and
1, 2, 4, 8 continual steps through `moextend` (routing: modality), on a tiny model (CPU).

After each count k, in eval mode under no_grad, the forward of a batch of the FIRST added modality and of
the NEWEST one are timed round robin (benchmarks/_timing.py) with the BASE: the same batch through a
`frozen` path (same encoder and connector, no adapters / new experts); printed as the median of per-round
ratios with the spread. Also: parameters added per step and the bytes each step's checkpoint files add.
The first path's cost must not grow with k (ana routes by modality; moextend `modality` routing too).
Synthetic modalities: tiny image encoders with their own names (`syn1`, `syn2`, ...); weights are random
(trained-looking: the fresh zero-initialised adapters are perturbed), which timing does not need.

    .venv/bin/python benchmarks/cost_growth.py [--rounds 15] [--batch 16] [--threads 1] [--out docs/img/cost_growth.png]
"""

from __future__ import annotations

import argparse
import copy
import tempfile
from pathlib import Path

import torch

from _timing import median_ms, ratios, round_robin
from modweave.config import (ConnectorConfig, EncoderConfig, LLMConfig, ModalitySpec, ModelConfig, PromptConfig,
                             TokenizerConfig)
from modweave.model import XModalLM

COUNTS = (1, 2, 4, 8)
CORPUS = ["question : what is shown ? answer : zero one two three four five six seven eight nine"]
ROOT = Path(__file__).resolve().parents[1]


def tiny_model() -> XModalLM:
    """A tiny Mixtral LLM (4 experts, 2 layers) with a tiny Q-Former base connector."""
    llm = LLMConfig(kind="tiny-mixtral", hidden_size=64, intermediate_size=96, num_layers=2, num_heads=4,
                    num_kv_heads=2, num_experts=4, top_k=2, max_positions=128)
    connector = ConnectorConfig(kind="qformer", hidden_size=64, num_layers=2, num_heads=4, intermediate_size=128,
                                encoder_width=32, num_query_tokens=8)
    cfg = ModelConfig(llm=llm, tokenizer=TokenizerConfig(corpus=CORPUS), connector=connector,
                      prompt=PromptConfig(template="{prompt}{media}"))
    torch.manual_seed(0)
    model = XModalLM.build(cfg)
    model.end_stage()
    return model


def spec(i: int) -> ModalitySpec:
    return ModalitySpec(name=f"syn{i}", cue=f" syn{i}: ",
                        encoder=EncoderConfig(kind="tiny-image", width=32, options={"image_size": 16, "patch": 4}))


def batch(model: XModalLM, modality: str, n: int) -> dict:
    g = torch.Generator().manual_seed(0)
    items = [{"id": f"{modality}-{i}", "modality": modality, "media": torch.rand(3, 16, 16, generator=g),
              "prompt": "question : what is shown ?", "answer": "seven"} for i in range(n)]
    return model.collator()(items)  # with labels: forward computes the loss too (as in training)


def add_step(model: XModalLM, method: str, s: ModalitySpec, save_dir: Path) -> None:
    """Add `s` through `method` and close all its phases (no training: perturbed fresh weights)."""
    settings = {"routing": "modality", "layers": [0, 1], "connector": "mlp"} if method == "moextend" else {}
    model.add_modality(s, method=method, settings=settings)
    while True:
        with torch.no_grad():
            for p in model.trainable_parameters().values():
                p.add_(torch.randn_like(p) * 0.02)
        model.end_stage(save_dir)
        if model.next_phase() is None:
            return


def files_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def grow(method: str, args: argparse.Namespace) -> list[dict]:
    """One row per count k: first/newest path ratios over the base, parameters and checkpoint bytes."""
    model = tiny_model()
    base = copy.deepcopy(model)
    base.add_modality(spec(0), method="frozen")  # the reference: same encoder and connector, nothing added
    base.end_stage()
    base.eval()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        ck = Path(tmp) / "ck"
        model.save_pretrained(ck)
        last_bytes, last_params = files_bytes(ck), sum(p.numel() for p in model.parameters())
        first_bytes, first_params = last_bytes, last_params
        for k in range(1, max(COUNTS) + 1):
            add_step(model, method, spec(k), ck)
            params, size = sum(p.numel() for p in model.parameters()), files_bytes(ck)
            step_params, step_bytes, last_params, last_bytes = params - last_params, size - last_bytes, params, size
            if k not in COUNTS:
                continue
            model.eval()
            batches = {"base": batch(base, "syn0", args.batch), "first": batch(model, "syn1", args.batch),
                       "newest": batch(model, f"syn{k}", args.batch)}
            models = {"base": base, "first": model, "newest": model}
            cpu: dict[str, list[float]] = {}
            with torch.no_grad():
                times = round_robin({n: (lambda n=n: models[n](batches[n])) for n in batches}, args.rounds,
                                    args.warmup, cpu=cpu)
            r, rc = ratios(times, "base"), ratios(cpu, "base")
            rows.append({"k": k, "first": r["first"], "newest": r["newest"], "first_cpu": rc["first"],
                         "newest_cpu": rc["newest"], "newest_step_params": step_params, "newest_step_bytes": step_bytes,
                         "params_per_step": (params - first_params) / k, "bytes_per_step": (size - first_bytes) / k,
                         "base_ms": median_ms(times["base"])})
    return rows


def plot(results: dict[str, list[dict]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for method, rows in results.items():
        ks = [r["k"] for r in rows]
        for which, style in (("first", "-o"), ("newest", "--s")):
            rs = [r[which + "_cpu"] for r in rows]  # CPU time: less disturbed by other processes
            med = [x.median for x in rs]
            err = [[x.median - x.q1 for x in rs], [x.q3 - x.median for x in rs]]
            axes[0].errorbar(ks, med, yerr=err, fmt=style, capsize=3, label=f"{method}: {which} path")
        axes[1].plot(ks, [r["bytes_per_step"] / 1024 for r in rows], "-o", label=method)
    axes[0].axhline(1.0, color="grey", lw=0.8)
    axes[0].set(xscale="log", xticks=list(COUNTS), xticklabels=list(map(str, COUNTS)), xlabel="modalities / steps added",
                ylabel="forward CPU time / base (median per round, IQR)", title="latency")
    axes[1].set(xscale="log", xticks=list(COUNTS), xticklabels=list(map(str, COUNTS)), xlabel="modalities / steps added",
                ylabel="checkpoint KiB per step", title="checkpoint bytes per step")
    axes[1].set_ylabel("checkpoint KiB per step (mean over the k steps)")
    for ax in axes:
        ax.minorticks_off()  # log x axis: only the 1, 2, 4, 8 ticks
        ax.legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp.png")
    fig.savefig(tmp, dpi=100)
    tmp.replace(out)  # atomic


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--methods", default="ana,moextend")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1: a descheduled OpenMP thread stalls the others on a shared machine)")
    ap.add_argument("--out", default=str(ROOT / "docs" / "img" / "cost_growth.png"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    results = {m: grow(m, args) for m in args.methods.split(",")}
    print(f"batch {args.batch}, {torch.get_num_threads()} threads, {args.rounds} rounds round robin; "
          "forward latency / the base (frozen) path's, median per round (IQR, min-max), wall and process CPU time")
    for method, rows in results.items():
        print(f"{method}: base forward {rows[0]['base_ms']:.2f} ms (wall, median at k=1)")
        print(f"{'k':>3}  {'time':<5}{'first path / base':<47}{'newest path / base':<47}"
              f"{'params: newest step':>20}{'mean/step':>10}{'ckpt bytes: newest step':>24}{'mean/step':>10}")
        for r in rows:
            for kind, suffix in (("wall", ""), ("cpu", "_cpu")):
                sizes = (f"{r['newest_step_params']:>20,}{r['params_per_step']:>10,.0f}{r['newest_step_bytes']:>24,}"
                         f"{r['bytes_per_step']:>10,.0f}") if kind == "wall" else ""
                print(f"{r['k'] if kind == 'wall' else '':>3}  {kind:<5}{str(r['first' + suffix]):<47}"
                      f"{str(r['newest' + suffix]):<47}{sizes}")
        for kind, suffix in (("wall", ""), ("cpu", "_cpu")):
            growth = rows[-1]["first" + suffix].median / rows[0]["first" + suffix].median
            print(f"{method}: first path / base at k={rows[-1]['k']} over at k=1 ({kind}): {growth:.3f}")
    plot(results, Path(args.out))
    print(f"plot: {args.out}")


if __name__ == "__main__":
    main()
