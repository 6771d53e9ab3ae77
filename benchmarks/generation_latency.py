"""Generation latency with all five modality paths loaded (PathWeave: video, audio, depth, point cloud
adapters in the shared Q-Former) over the base model with only the image path, on the same image batch.

Also prints each modality's own latency on the grown model. Demo-sized model, CPU, greedy, 4 new tokens.

    .venv/bin/python benchmarks/generation_latency.py [--batch 16] [--repeats 10] [--method ana]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

from _demo_model import demo_base, items


def latency(model, batch, repeats: int, tokens: int) -> float:
    return interleaved([(model, batch)], repeats, tokens)[0]


def interleaved(runs: list, repeats: int, tokens: int) -> list[float]:
    """Median latency of each (model, batch), measured alternately so machine noise hits all alike."""
    for model, batch in runs:
        for _ in range(2):
            model.generate(batch, max_new_tokens=tokens)
    times: list[list[float]] = [[] for _ in runs]
    for _ in range(repeats):
        for i, (model, batch) in enumerate(runs):
            t = time.perf_counter()
            model.generate(batch, max_new_tokens=tokens)
            times[i].append(time.perf_counter() - t)
    return [statistics.median(t) for t in times]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--tokens", type=int, default=4)
    ap.add_argument("--method", default="ana")
    args = ap.parse_args()
    base, specs = demo_base()
    grown = copy.deepcopy(base)
    for spec in specs:
        grown.add_modality(spec, method=args.method)
        with torch.no_grad():  # trained-looking adapters (fresh ones are exact zeros)
            for p in grown.trainable_parameters().values():
                p.add_(torch.randn_like(p) * 0.02)
        grown.end_stage()
    base.eval(), grown.eval()
    collate = base.collator(train=False)
    batch = collate(items("image", args.batch))
    t_base, t_grown = interleaved([(base, batch), (grown, batch)], args.repeats, args.tokens)
    print(f"image batch {args.batch}, {args.tokens} new tokens, {torch.get_num_threads()} threads, "
          f"median of {args.repeats}")
    print(f"base (image path only):        {1000 * t_base:8.1f} ms")
    print(f"grown ({len(grown.paths)} paths, {args.method}):        {1000 * t_grown:8.1f} ms   "
          f"ratio {t_grown / t_base:.3f}")
    for m in grown.paths:
        t = latency(grown, grown.collator(train=False)(items(m, args.batch)), args.repeats, args.tokens)
        print(f"  {m:<12} on the grown model: {1000 * t:8.1f} ms")


if __name__ == "__main__":
    main()
