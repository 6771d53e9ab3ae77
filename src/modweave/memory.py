"""GPU memory estimate per stage, from the architecture on the meta device (no weights, seconds).

What one GPU holds while a stage trains (DDP replicates everything; with `processes` N, phases whose
`train.distributed.strategy` is fsdp count one process's shards, `_sharded_weights_bytes`):
- weights: every parameter in its own dtype (the LLM in `llm.dtype`, e.g. bf16 = 2 bytes; connectors,
  paths and method modules as built, fp32 = 4 bytes); 8-bit / 4-bit loading (`--quantization`)
  counts the frozen LLM at 1 / 0.5 bytes per weight;
- optimizer: for each trainable parameter its gradient (own dtype) and AdamW's two moments (fp32);
- activations kept for backward through the (frozen) LLM, which the loss must traverse to reach
  the connector: per layer `bytes * b * s * (7h + 4 * I * k)` (attention inputs/outputs and the
  SwiGLU MLP of the k routed experts; attention scores are not stored with SDPA/flash attention);
  with gradient checkpointing (each phase's `train.gradient_checkpointing`, as the trainer does, unless
  forced on or off) only each layer's input `bytes * b * s * h` plus one layer in full;
  the logits `b * s * V * (bytes + 8)` (fp32 upcast for the loss and its gradient); the Q-Former's
  activations (fp32) per frame; the frozen encoders run without grad and are not counted;
- not counted: CUDA context and allocator fragmentation (add ~1-3 GiB), temporary buffers of fused
  kernels, data loader pinned memory.
`s` (tokens per sample) = prompt tokens + frames x media tokens, or `--seq-len`.
Inference: weights + KV cache `2 * layers * b * s * kv_heads * head_dim * bytes`.
"""

from __future__ import annotations

from typing import Any

import torch

from .config import RunConfig
from .model import BASE_CONNECTOR, XModalLM
from .stages import walk_phases
from .training.config import TrainConfig, run_sections

GiB = 1024 ** 3
QUANT_BYTES = {None: None, "none": None, "8bit": 1.0, "4bit": 0.5}


def _llm_shape(model: XModalLM) -> dict[str, int]:
    c = model.llm.config.get_text_config()
    heads = c.num_attention_heads
    return {"layers": c.num_hidden_layers, "hidden": c.hidden_size, "vocab": c.vocab_size,
            "intermediate": getattr(c, "moe_intermediate_size", None) or c.intermediate_size,
            "top_k": getattr(c, "num_experts_per_tok", None) or 1,
            "kv_heads": getattr(c, "num_key_value_heads", None) or heads,
            "head_dim": getattr(c, "head_dim", None) or c.hidden_size // heads}


def _weights_bytes(model: XModalLM, quant_bytes: float | None, params: Any = None) -> float:
    total = 0.0
    llm_params = {id(p) for p in model.llm.parameters()}
    for p in (model.parameters() if params is None else params):
        per = p.element_size()
        if quant_bytes is not None and id(p) in llm_params and not p.requires_grad and p.dim() >= 2:
            per = quant_bytes  # frozen matrices incl. fused experts (whether bnb quantises those depends on versions)
        total += p.numel() * per
    return total


def _sharded_weights_bytes(model: XModalLM, quant_bytes: float | None, processes: int) -> float:
    """Peak weights per process under fsdp: each decoder layer's 1/N shard plus one layer gathered whole,
    and the root group (everything outside the layers) as its shard plus gathered for the whole forward."""
    from .training.distributed import decoder_layers

    layers = [_weights_bytes(model, quant_bytes, layer.parameters()) for layer in decoder_layers(model.llm)]
    root = _weights_bytes(model, quant_bytes) - sum(layers)
    return root * (1 + 1 / processes) + sum(layers) / processes + max(layers, default=0.0)


def _optimizer_bytes(model: XModalLM) -> float:
    return float(sum(p.numel() * (p.element_size() + 8) for p in model.parameters() if p.requires_grad))


def _activation_bytes(model: XModalLM, batch: int, seq: int, frames: int, grad_ckpt: bool) -> float:
    s = _llm_shape(model)
    nbytes = next(model.llm.parameters()).element_size()
    full_layer = nbytes * batch * seq * (7 * s["hidden"] + 4 * s["intermediate"] * s["top_k"])
    if grad_ckpt:
        llm = nbytes * batch * seq * s["hidden"] * s["layers"] + full_layer
    else:
        llm = full_layer * s["layers"]
    logits = batch * seq * s["vocab"] * (nbytes + 8)
    conn = model.connectors[BASE_CONNECTOR]
    tokens = (conn.num_query_tokens or 0) + (64 if conn.instruction_input else 0)  # queries + instruction text
    return llm + logits + conn.activation_bytes(batch, frames, tokens)


def _frames(spec: Any) -> int:
    """Frames (or chunks) per sample the spec's loader gives: its frame setting, else the spec's count."""
    from .modalities import get_modality
    from .modalities.base import loader_settings_for

    try:
        modality = get_modality(spec.name)
    except ValueError:  # a modality without a registered loader: its spec says it
        return spec.num_frames or 1
    if modality.frames_setting is None:
        return spec.num_frames or 1
    settings = modality.make_settings(loader_settings_for(spec))
    value = getattr(settings, modality.frames_setting)  # None: decided when a file loads (one chunk)
    return int(value) if value else (spec.num_frames or 1)


def _media_tokens(model: XModalLM, modality: str, default: int) -> int:
    conn = model.connectors[model.paths[modality].connector_name]
    return getattr(conn, "num_query_tokens", 0) or default


def estimate_memory(cfg: RunConfig, micro_batch: int | None = None, seq_len: int | None = None,
                    grad_checkpointing: bool | None = None, quantization: str | None = None,
                    prompt_tokens: int = 64, media_tokens: int = 576, processes: int = 1) -> dict[str, Any]:
    """Per stage: `{"batch", "seq", "grad_checkpointing", "weights", "optimizer", "activations", "total",
    "processes"}` (sizes in bytes), plus `"inference"` (weights + KV cache for one sample of the last
    stage's length). `grad_checkpointing=None` takes each phase's `train.gradient_checkpointing`, like
    `micro_batch=None` its `train.batch_size`: the estimate describes the run the preset makes.
    `processes` > 1: phases with `train.distributed.strategy: fsdp` count one process's share
    (`_sharded_weights_bytes`, gradients and AdamW moments / N); ddp phases replicate everything."""
    if quantization not in QUANT_BYTES:
        raise ValueError(f"quantization must be one of 8bit, 4bit, none (got {quantization!r})")
    quant = QUANT_BYTES[quantization]
    model = XModalLM.build(cfg.model, device="meta")
    rows: dict[str, dict[str, Any]] = {}

    sections = run_sections(cfg)  # the trainer's own settings per phase: batch sizes, defaults

    def row(name: str, train: TrainConfig, frames: int, modality: str | None) -> None:
        b = micro_batch or train.batch_size  # the trainer's batch_size is per process
        media = frames * _media_tokens(model, modality, media_tokens) if modality else 0
        s = seq_len or prompt_tokens + media
        ckpt = train.gradient_checkpointing if grad_checkpointing is None else grad_checkpointing
        w, o = _weights_bytes(model, quant), _optimizer_bytes(model)
        a = _activation_bytes(model, b, s, max(frames, 1), ckpt) if o else 0.0
        sharded = processes > 1 and train.distributed.strategy == "fsdp" and o > 0
        if sharded:
            w, o = _sharded_weights_bytes(model, quant, processes), o / processes
        rows[name] = {"batch": b, "seq": s, "grad_checkpointing": ckpt, "weights": w, "optimizer": o,
                      "activations": a, "total": w + o + a, "processes": processes if sharded else 1}

    if cfg.base_train is not None:
        model.set_base_trainable(**cfg.base_train)
        spec = cfg.model.base_modalities[0] if cfg.model.base_modalities else None
        row("base", sections.base, _frames(spec) if spec else 0, spec.name if spec else None)
    model.end_stage()
    last_seq = prompt_tokens
    for i, st in enumerate(cfg.stages):
        model.add_modality(st.modality, method=st.method, settings=st.settings)
        for record in walk_phases(model):
            row(record.name, sections.stages[i][record.phase], _frames(st.modality), st.modality.name)
            last_seq = rows[record.name]["seq"]
    shape = _llm_shape(model)
    nbytes = next(model.llm.parameters()).element_size()
    s = seq_len or last_seq
    kv = 2 * shape["layers"] * s * shape["kv_heads"] * shape["head_dim"] * nbytes
    model.freeze_all()
    weights = _weights_bytes(model, quant)
    return {"stages": rows, "inference": {"batch": 1, "seq": s, "weights": weights, "kv_cache": kv,
                                          "total": weights + kv},
            "settings": {"grad_checkpointing": "preset" if grad_checkpointing is None else grad_checkpointing,
                         "quantization": quantization or "none",
                         "dtype": cfg.model.llm.dtype, "processes": processes}}


def format_memory(est: dict[str, Any]) -> str:
    g = lambda x: f"{x / GiB:.2f}"  # noqa: E731
    st = est["settings"]
    ckpt = {r["grad_checkpointing"] for r in est["stages"].values()}
    ckpt_text = "on" if ckpt == {True} else "off" if ckpt <= {False} else "per phase (see --json)"
    source = " (the preset's train.gradient_checkpointing)" if st["grad_checkpointing"] == "preset" else ""
    names = {n: f"{n} (fsdp/{r['processes']})" if r.get("processes", 1) > 1 else n for n, r in est["stages"].items()}
    width = max([22, *(len(n) + 1 for n in names.values())])
    rows = [f"GPU memory per stage (GiB, one GPU; llm {st['dtype']}, quantization {st['quantization']}, "
            f"grad checkpointing {ckpt_text}{source})",
            f"{'stage':<{width}}{'batch':>6}{'seq':>6}{'weights':>10}{'grads+adam':>12}{'activations':>13}{'total':>9}"]
    for name, r in est["stages"].items():
        rows.append(f"{names[name]:<{width}}{r['batch']:>6}{r['seq']:>6}{g(r['weights']):>10}{g(r['optimizer']):>12}"
                    f"{g(r['activations']):>13}{g(r['total']):>9}")
    inf = est["inference"]
    rows.append(f"{'inference (b=1)':<{width}}{1:>6}{inf['seq']:>6}{g(inf['weights']):>10}{'-':>12}"
                f"{'kv ' + g(inf['kv_cache']):>13}{g(inf['total']):>9}")
    rows.append("(+1-3 GiB CUDA context/fragmentation; encoders' no-grad forward not counted; see modweave.memory)")
    return "\n".join(rows)


def bytes_of(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()
