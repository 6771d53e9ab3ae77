"""Forward time of MoExtend's extended MoE block (E + 1 experts) over the original block, side by side.

    .venv/bin/python benchmarks/moe_block_overhead.py                      # CPU, fp32, hidden 1024, FFN 3584
    .venv/bin/python benchmarks/moe_block_overhead.py --device cuda --dtype bfloat16

Both run on the same tokens in the same process, no_grad (round robin after warm-up, benchmarks/_timing.py:
median of the per-round ratios, with their spread).
`--new-router random` gives the new expert a typical share of tokens (as after training); `donor` is the
state at initialisation (the new row is the donor's copy: the new expert only takes the donor's top-1 tokens).
Target: ratio <= 1.15.
"""

from __future__ import annotations

import argparse
import torch
from transformers import MixtralConfig
from transformers.models.mixtral.modeling_mixtral import MixtralSparseMoeBlock

from _timing import median_ms, report, round_robin
from modweave.methods.moextend.block import ExtendedMoeBlock

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def build(args: argparse.Namespace) -> tuple[MixtralSparseMoeBlock, ExtendedMoeBlock, torch.Tensor]:
    torch.manual_seed(0)
    config = MixtralConfig(hidden_size=args.hidden, intermediate_size=args.ffn, num_local_experts=args.experts,
                           num_experts_per_tok=args.top_k)
    config._experts_implementation = args.experts_impl
    block = MixtralSparseMoeBlock(config)
    with torch.no_grad():
        for p in block.parameters():
            p.normal_(0, 0.02)
    block = block.to(args.device, DTYPES[args.dtype]).eval()
    extended = ExtendedMoeBlock(block, layer=0)
    ext = extended.add_extension(list(range(args.new_experts)), step="image", exclusive=False)
    if args.new_router == "random":
        with torch.no_grad():
            ext.router.normal_(0, 0.02)
    extended.eval()
    x = torch.randn(1, args.tokens, args.hidden, device=args.device, dtype=DTYPES[args.dtype])
    return block, extended, x


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


@torch.no_grad()
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--ffn", type=int, default=3584)
    ap.add_argument("--experts", type=int, default=8)
    ap.add_argument("--new-experts", type=int, default=1)
    ap.add_argument("--top-k", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32", choices=sorted(DTYPES))
    ap.add_argument("--experts-impl", default="grouped_mm", help="transformers experts_implementation (eager, grouped_mm, batched_mm)")
    ap.add_argument("--new-router", default="random", choices=["random", "donor"])
    args = ap.parse_args()

    block, extended, x = build(args)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else None
    cpu: dict[str, list[float]] = {}
    times = round_robin({"original": lambda: block(x), "extended": lambda: extended(x)}, args.repeats,
                        args.warmup, sync=sync, cpu=cpu)
    e = block.gate.weight.shape[0]
    p = torch.softmax(torch.cat([block.gate(x[0])[0].float(), (x[0] @ extended.extensions[0].router.T).float()], -1), -1)
    share = float((p.topk(args.top_k, -1).indices >= e).any(-1).float().mean())
    print(f"device {args.device} {args.dtype}, experts impl {args.experts_impl}, hidden {args.hidden}, ffn {args.ffn}, "
          f"{args.experts}+{args.new_experts} experts top-{args.top_k}, {args.tokens} tokens, "
          f"new-expert token share {share:.2f} ({args.new_router} router row)")
    r = report(times, "original", label="block", cpu=cpu)
    print(f"original block: {median_ms(times['original']):.2f} ms   extended block: {median_ms(times['extended']):.2f} ms   "
          f"ratio (median per round) {r['extended'].median:.3f} (target <= 1.15)")

if __name__ == "__main__":
    main()
