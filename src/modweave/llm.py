"""Build or load the causal LM (dense or MoE) and freeze it.

`tiny-mixtral` / `tiny-llama` build small models from transformers configs (seeded, deterministic);
`hf` loads any transformers causal LM from a hub id or a local directory (HF_HUB_OFFLINE honoured by
huggingface_hub itself), never running checkpoint code (`trust_remote_code=False`; a checkpoint with an
`auto_map` is refused). On the meta device (`device="meta"`, or inside `with torch.device("meta")`) only
the architecture is built from the checkpoint's config: no weight is read, no `from_pretrained` call.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, LlamaConfig, MixtralConfig, PreTrainedModel

from .config import LLMConfig
from .utils import seeded

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def torch_dtype(name: str) -> torch.dtype:
    if name not in DTYPES:
        raise ValueError(f"unknown dtype '{name}' (known: {', '.join(DTYPES)})")
    return DTYPES[name]


def tiny_config(cfg: LLMConfig, vocab_size: int, special: dict[str, int]):
    """A transformers config for the embedded tiny LLMs (Mixtral-shaped MoE or Llama-shaped dense)."""
    common = dict(
        vocab_size=vocab_size,
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_kv_heads,
        max_position_embeddings=cfg.max_positions,
        tie_word_embeddings=False,
        **special,
    )
    if cfg.kind == "tiny-mixtral":
        return MixtralConfig(
            num_local_experts=cfg.num_experts,
            num_experts_per_tok=cfg.top_k,
            router_aux_loss_coef=cfg.router_aux_loss_coef,
            **common,
        )
    if cfg.kind == "tiny-llama":
        return LlamaConfig(**common)
    raise ValueError(f"unknown llm.kind '{cfg.kind}' (known: tiny-mixtral, tiny-llama, hf)")


def llm_config(cfg: LLMConfig, vocab_size: int | None, special: dict[str, int]):
    """The transformers config the model will be built from (no weights read)."""
    if cfg.kind == "hf":
        if not cfg.name_or_path:
            raise ValueError("llm.name_or_path is required for llm.kind=hf")
        path = Path(cfg.name_or_path)
        if path.suffix == ".json" and path.is_file():  # an architecture file shipped with a preset
            data = json.loads(path.read_text())
            return AutoConfig.for_model(data.pop("model_type"), **data)
        from .bases.gguf import resolve_name_or_path
        from .bases.hub import pretrained_config

        return pretrained_config(resolve_name_or_path(cfg.name_or_path))
    if vocab_size is None:
        raise ValueError("a tiny LLM needs the tokenizer's vocabulary size")
    return tiny_config(cfg, vocab_size, special)


def build_llm(cfg: LLMConfig, vocab_size: int | None = None, special: dict[str, int] | None = None,
              device: str | torch.device | None = None) -> PreTrainedModel:
    """Build (`tiny-*`, or `hf` on the meta device) or load (`hf`) the causal LM, frozen if asked."""
    from .bases.hub import from_pretrained, is_meta

    special = special or {}
    dtype = torch_dtype(cfg.dtype)
    meta = is_meta(device)
    if cfg.kind == "hf" and not cfg.name_or_path:
        raise ValueError("llm.name_or_path is required for llm.kind=hf")
    if cfg.kind == "hf" and not meta and not cfg.name_or_path.endswith(".json"):
        from .bases.gguf import resolve_name_or_path  # `gguf:pkg/file.gguf` -> a converted local dir

        model = from_pretrained(AutoModelForCausalLM, resolve_name_or_path(cfg.name_or_path), dtype=dtype)
    else:
        config = llm_config(cfg, vocab_size, special)
        if meta:
            with torch.device("meta"):
                model = AutoModelForCausalLM.from_config(config, dtype=dtype, trust_remote_code=False)
        else:
            with seeded(cfg.seed):
                model = AutoModelForCausalLM.from_config(config, dtype=dtype, trust_remote_code=False)
    if cfg.freeze:
        freeze(model)
    return model


def freeze(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def is_moe(llm: PreTrainedModel) -> bool:
    """True when the LLM has sparse-MoE blocks (a router `gate` next to `experts`)."""
    return any(hasattr(m, "gate") and hasattr(m, "experts") for m in llm.modules())
