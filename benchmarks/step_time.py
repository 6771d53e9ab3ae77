"""Training step time of each method over the `frozen` baseline on the same batch (demo model, CPU).

For every registered method: the demo's base model gains the video modality through that method (for
MoExtend: its `finetune` phase, with new experts in both layers), then one optimizer step (forward,
backward, AdamW) on the same batch of 32 random 3-frame clips is timed; median of the repeats.

    .venv/bin/python benchmarks/step_time.py [--batch 32] [--repeats 10] [--modality video]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

from _demo_model import demo_base, items
from modweave.demo import METHOD_STAGE
from modweave.methods import list_methods

# the demo's per-method settings; MoExtend extends both layers (no extender statistics needed)
SETTINGS = {m: dict(v["settings"]) for m, v in METHOD_STAGE.items()}
SETTINGS["moextend"]["layers"] = [0, 1]


def step_time(model, batch, repeats: int, warmup: int = 2) -> float:
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    model.train()
    times = []
    for i in range(warmup + repeats):
        t = time.perf_counter()
        model(batch).loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i >= warmup:
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--modality", default="video")
    args = ap.parse_args()
    base, specs = demo_base()
    spec = next(s for s in specs if s.name == args.modality)
    results = {}
    for method in list_methods():
        model = copy.deepcopy(base)
        model.add_modality(spec, method=method, settings=SETTINGS.get(method, {}))
        while method == "moextend" and model.stages[-1].phase != "finetune":
            model.end_stage()
            model.next_phase()
        batch = model.collator()(items(args.modality, args.batch))
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        results[method] = (step_time(model, batch, args.repeats), trainable)
    ref = results["frozen"][0]
    print(f"{args.modality} stage, batch {args.batch}, {torch.get_num_threads()} threads, median of {args.repeats}")
    print(f"{'method':<10}{'step ms':>10}{'x frozen':>10}{'trainable':>12}")
    for method, (t, n) in sorted(results.items(), key=lambda kv: kv[1][0]):
        print(f"{method:<10}{1000 * t:>10.1f}{t / ref:>10.2f}{n:>12,}")


if __name__ == "__main__":
    main()
