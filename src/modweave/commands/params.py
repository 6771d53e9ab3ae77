"""`modweave params CONFIG [--json]`: trainable / total parameters per stage, on the meta device."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("params", help="trainable and total parameter counts per stage (meta device, seconds)")
    p.add_argument("config", help="a YAML preset (e.g. configs/pathweave/instructblip-vicuna7b.yaml)")
    p.add_argument("overrides", nargs="*", help="key=value overrides")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--memory", action="store_true",
                   help="estimate GPU memory per stage instead (weights + grads/AdamW + activations; modweave.memory)")
    p.add_argument("--micro-batch", type=int, default=None, help="per-GPU batch for --memory (default: the preset's)")
    p.add_argument("--seq-len", type=int, default=None, help="tokens per sample for --memory (default: prompt + media)")
    p.add_argument("--grad-checkpointing", action=argparse.BooleanOptionalAction, default=None,
                   help="--memory with (or --no-grad-checkpointing: without) the LLM's gradient checkpointing "
                        "(default: each phase's train.gradient_checkpointing, as the trainer runs it)")
    p.add_argument("--quantization", choices=["none", "8bit", "4bit"], default="none",
                   help="--memory with the frozen LLM loaded in 8 / 4 bits (bitsandbytes)")
    p.add_argument("--processes", type=int, default=1,
                   help="--memory per process of N (phases with train.distributed.strategy=fsdp are sharded N ways)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..config import ConfigError, load_run_config
    from ..params import format_table, stage_param_counts

    for flag, value in (("--micro-batch", args.micro_batch), ("--seq-len", args.seq_len), ("--processes", args.processes)):
        if value is not None and value < 1:
            raise ConfigError(f"{flag} must be a positive integer, got {value}")
    memory_only = {"--micro-batch": args.micro_batch is not None, "--seq-len": args.seq_len is not None,
                   "--grad-checkpointing": args.grad_checkpointing is not None,
                   "--quantization": args.quantization != "none", "--processes": args.processes != 1}
    ignored = [flag for flag, given in memory_only.items() if given]
    if ignored and not args.memory:
        raise ConfigError(f"{ignored[0]} applies to the memory estimate only: add --memory")
    if args.memory:
        from ..memory import estimate_memory, format_memory

        est = estimate_memory(load_run_config(args.config, args.overrides), micro_batch=args.micro_batch,
                              seq_len=args.seq_len, grad_checkpointing=args.grad_checkpointing,
                              quantization=args.quantization, processes=args.processes)
        print(json.dumps(est, indent=2) if args.json else format_memory(est))
        return 0
    counts = stage_param_counts(load_run_config(args.config, args.overrides))
    print(json.dumps(counts, indent=2) if args.json else format_table(counts))
    return 0
