"""Generation latency with all five modality paths loaded (PathWeave: video, audio, depth, point cloud
adapters in the shared Q-Former) over the base model with only the image path, on the same image batch.

Also prints each modality's own latency on the grown model. Demo-sized model, CPU, greedy, 4 new tokens.
Round robin after warm-up (benchmarks/_timing.py): median of the per-round ratios over the base, with spread.

    .venv/bin/python benchmarks/generation_latency.py [--batch 16] [--rounds 10] [--method ana]
"""

from __future__ import annotations

import argparse
import copy
import torch

from _demo_model import demo_base, items
from _timing import report, round_robin


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=10)
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
    runs = {"base": (base, batch), "grown": (grown, batch)}
    # each modality on the grown model (the image row is "grown" itself)
    runs.update({f"grown:{m}": (grown, grown.collator(train=False)(items(m, args.batch))) for m in grown.paths if m != "image"})
    fns = {name: (lambda mb=mb: mb[0].generate(mb[1], max_new_tokens=args.tokens)) for name, mb in runs.items()}
    cpu: dict[str, list[float]] = {}
    times = round_robin(fns, args.rounds, warmup=2, cpu=cpu)
    print(f"image batch {args.batch}, {args.tokens} new tokens, {torch.get_num_threads()} threads, "
          f"{args.rounds} rounds round robin; base: image path only; grown: {len(grown.paths)} paths "
          f"({args.method}), image batch; grown:<m>: modality m's batch on the grown model")
    report(times, "base", label="model", cpu=cpu)

if __name__ == "__main__":
    main()
