"""PathWeave inference overhead: the paper-size Q-Former connector on the path of the 4th new modality
(A^4 + three in-adapted earlier adapters + G^4 at all 73 sites) vs. the same connector without adapters.

Both are measured side by side in one run (round robin after warm-up, benchmarks/_timing.py: median of
the per-round ratios, with their spread) under
`torch.no_grad()` in eval mode: BERT-base Q-Former (768 wide, 12 layers, cross-attention every 2nd layer
with 1408-wide encoder tokens), 32 queries, 257 encoder tokens, ~16 instruction tokens, random weights.

    .venv/bin/python benchmarks/ana_overhead.py                      # CPU, float32
    .venv/bin/python benchmarks/ana_overhead.py --device cuda --dtype bfloat16
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path
from types import SimpleNamespace

import torch

from _timing import median_ms, report, round_robin
from modweave.config import ConnectorConfig
from modweave.connectors.qformer import QFormerConnector
from modweave.context import PathContext
from modweave.llm import torch_dtype
from modweave.methods.ana import adapted_sites, inject

QFORMER_JSON = Path(__file__).resolve().parents[1] / "configs" / "pathweave" / "qformer.json"
MODALITIES = ("video", "audio", "depth", "point_cloud")


def build(args: argparse.Namespace) -> tuple[QFormerConnector, QFormerConnector, PathContext]:
    """(reference connector without adapters, adapted copy with 4 modalities' adapters, its context)."""
    cfg = ConnectorConfig(name_or_path=str(QFORMER_JSON), num_query_tokens=args.queries)
    reference = QFormerConnector.from_config(cfg, llm_width=args.llm_width, text_vocab_size=None).eval()
    adapted = copy.deepcopy(reference)
    # `inject` needs only the model's connectors and context: a stand-in keeps the 7B LLM out of this
    host = SimpleNamespace(connectors={"base": adapted}, base_connector_name="base", context=PathContext())
    for modality in MODALITIES:
        for site in inject(host, ["q", "k", "v", "o", "llm_proj"]).values():
            experts = site.add_modality(modality, rank=args.rank)
            with torch.no_grad():  # trained-looking values (zero Up / gate weights would change nothing here)
                for p in experts.parameters():
                    p.normal_(0, 0.02)
    print(f"sites: {len(adapted_sites(host))}, adapter parameters: "
          f"{sum(p.numel() for n, p in adapted.named_parameters() if '.ana.' in n):,}")
    dtype = torch_dtype(args.dtype)
    return reference.to(args.device, dtype).eval(), adapted.to(args.device, dtype).eval(), host.context


def graphed(fn):
    """Capture `fn` (static inputs) into a CUDA graph; return a function replaying it."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return graph.replay


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--encoder-tokens", type=int, default=257)
    ap.add_argument("--text-tokens", type=int, default=16)
    ap.add_argument("--queries", type=int, default=32)
    ap.add_argument("--llm-width", type=int, default=4096)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--cuda-graph", action="store_true",
                    help="replay each forward as a captured CUDA graph (kernel time only, no Python dispatch)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    reference, adapted, context = build(args)
    dtype = torch_dtype(args.dtype)
    g = torch.Generator().manual_seed(1)
    features = torch.randn(args.batch, args.encoder_tokens, 1408, generator=g).to(args.device, dtype)
    queries = (torch.randn(args.queries, 768, generator=g) * 0.02).to(args.device, dtype)
    text_ids = torch.randint(1, 30000, (args.batch, args.text_tokens), generator=g).to(args.device)
    text_mask = torch.ones_like(text_ids)

    def run_reference() -> None:
        reference(features, queries, text_ids, text_mask)

    def run_adapted() -> None:
        with context.path(MODALITIES[-1]):
            adapted(features, queries, text_ids, text_mask)

    with torch.no_grad():
        for _ in range(args.warmup):  # also fills the adapters' folded-weight cache before any capture
            run_reference()
            run_adapted()
        if args.cuda_graph:
            run_reference, run_adapted = graphed(run_reference), graphed(run_adapted)
        sync = torch.cuda.synchronize if args.device.startswith("cuda") else None
        cpu: dict[str, list[float]] = {}
        times = round_robin({"base": run_reference, "ana": run_adapted}, args.repeats, warmup=0, sync=sync, cpu=cpu)
    print(f"device {args.device}, dtype {args.dtype}, batch {args.batch}, threads {torch.get_num_threads()}, "
          f"{args.repeats} rounds round robin{', CUDA graphs' if args.cuda_graph else ''}")
    print(f"connector without adapters (base):     {median_ms(times['base']):9.2f} ms")
    print(f"connector, path of the 4th modality:   {median_ms(times['ana']):9.2f} ms")
    r = report(times, "base", cpu=cpu)
    print(f"ratio (median per round): {r['ana'].median:.3f} (target <= 1.25)")

if __name__ == "__main__":
    main()
