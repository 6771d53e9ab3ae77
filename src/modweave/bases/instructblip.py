"""InstructBLIP (e.g. `Salesforce/instructblip-vicuna-7b`) as the PathWeave base model.

The checkpoint's five parts go to their places in an `XModalLM`, key by key:

| checkpoint key          | XModalLM key                                   |
|-------------------------|------------------------------------------------|
| `vision_model.*`        | `encoders.image.model.*` (an `HFVisionEncoder`)  |
| `qformer.*`             | `connectors.base.qformer.*`                    |
| `language_projection.*` | `connectors.base.proj.*`                       |
| `query_tokens [1, Q, H]`| `paths.image.query_tokens [Q, H]`              |
| `language_model.*`      | `llm.*`                                        |

The modules are built empty (no random init of 7B parameters), then every shard is mapped, checked
(unknown keys and shape mismatches fail at once, keys never filled fail at the end; the first
offenders are listed) and assigned. Nothing is left randomly initialised.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from accelerate import init_empty_weights
from transformers import (AutoModelForCausalLM, AutoTokenizer, InstructBlipConfig, InstructBlipQFormerModel,
                          InstructBlipVisionModel)

from ..checkpoint_manifest import CheckpointError
from ..config import ConnectorConfig, LLMConfig, ModalitySpec, ModelConfig, PromptConfig, TokenizerConfig
from ..connectors.qformer import QFormerConnector
from ..encoders.hf import CLIP_MEAN, CLIP_STD, HFVisionEncoder
from ..llm import torch_dtype
from ..paths import BASE_CONNECTOR
from . import register_base
from .hub import from_pretrained, is_meta, one_line, refuse_remote_code

if TYPE_CHECKING:
    from ..model import XModalLM

logger = logging.getLogger(__name__)

PREFIXES = (  # checkpoint prefix -> XModalLM prefix (image path named "image")
    ("vision_model.", "encoders.image.model."),
    ("qformer.", f"connectors.{BASE_CONNECTOR}.qformer."),
    ("language_projection.", f"connectors.{BASE_CONNECTOR}.proj."),
    ("language_model.", "llm."),
)
QUERY_KEY, QUERY_TARGET = "query_tokens", "paths.image.query_tokens"


def map_instructblip_key(key: str) -> str | None:
    """The XModalLM key of checkpoint key `key` (None: not part of the architecture)."""
    if key == QUERY_KEY:
        return QUERY_TARGET
    for src, dst in PREFIXES:
        if key.startswith(src):
            return dst + key[len(src):]
    return None


def map_instructblip_state(state: dict[str, torch.Tensor], source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Rename a (partial) InstructBLIP state dict to XModalLM keys; `query_tokens` loses its leading 1.
    A key outside the five parts is an error (listing the first ones)."""
    out: dict[str, torch.Tensor] = {}
    unknown = []
    for key, value in state.items():
        target = map_instructblip_key(key)
        if target is None:
            unknown.append(key)
            continue
        out[target] = value[0] if key == QUERY_KEY and value.dim() == 3 else value
    if unknown:
        raise CheckpointError(f"{source}: {len(unknown)} keys belong to no InstructBLIP part, e.g. "
                              + ", ".join(unknown[:5]))
    return out


def instructblip_model_config(config: InstructBlipConfig, name_or_path: str, dtype: str) -> ModelConfig:
    """A ModelConfig describing the base (written to manifests; the weights come from `name_or_path`)."""
    q = config.qformer_config
    return ModelConfig(
        llm=LLMConfig(kind="hf", name_or_path=name_or_path, dtype=dtype),
        tokenizer=TokenizerConfig(kind="hf", name_or_path=name_or_path),
        connector=ConnectorConfig(kind="qformer", hidden_size=q.hidden_size, num_layers=q.num_hidden_layers,
                                  num_heads=q.num_attention_heads, intermediate_size=q.intermediate_size,
                                  cross_attention_frequency=q.cross_attention_frequency,
                                  encoder_width=q.encoder_hidden_size, num_query_tokens=config.num_query_tokens,
                                  instruction_input=True),
        prompt=PromptConfig(template="{media} {prompt}"),
        base_modalities=[ModalitySpec(name="image", encoder="image", cue="")],
    )


def build_empty(config: InstructBlipConfig, name_or_path: str, dtype: str = "bfloat16",
                tokenizer: Any = None, *, model_cls: type) -> "XModalLM":
    """The InstructBLIP-shaped XModalLM with parameters on the meta device (buffers real)."""
    dt = torch_dtype(dtype)
    with init_empty_weights(include_buffers=False):
        llm = AutoModelForCausalLM.from_config(config.text_config, dtype=dt, trust_remote_code=False)
        qformer = InstructBlipQFormerModel(config.qformer_config)
        connector = QFormerConnector(qformer, config.text_config.hidden_size, config.num_query_tokens)
        vision = InstructBlipVisionModel(config.vision_config)
    encoder = HFVisionEncoder(vision, config.vision_config.image_size, CLIP_MEAN, CLIP_STD)
    model = model_cls(instructblip_model_config(config, name_or_path, dtype), llm, tokenizer, connector)
    model.encoders["image"] = encoder
    with init_empty_weights(include_buffers=False):
        model.new_path(model.config.base_modalities[0], connector=BASE_CONNECTOR, input_norm=False)
    return model


def checkpoint_shards(name_or_path: str) -> list[Path]:
    """The weight files of a local directory or a hub id (from the local cache when HF_HUB_OFFLINE=1)."""
    root = Path(name_or_path)
    if not root.is_dir():
        from huggingface_hub import snapshot_download

        root = Path(snapshot_download(name_or_path, allow_patterns=["*.safetensors", "*.json", "*.model",
                                                                     "qformer_tokenizer/*"]))
    files = sorted(root.glob("*.safetensors")) or sorted(root.glob("pytorch_model*.bin"))
    if not files:
        raise CheckpointError(f"{name_or_path}: no *.safetensors or pytorch_model*.bin weight files")
    return files


def read_shards(files: list[Path]) -> Iterator[tuple[Path, dict[str, torch.Tensor]]]:
    from safetensors.torch import load_file

    for f in files:
        # a pickle is read only as plain tensors (weights_only): no code runs from a downloaded file
        yield f, (load_file(str(f)) if f.suffix == ".safetensors"
                  else torch.load(str(f), map_location="cpu", weights_only=True))


def load_instructblip_weights(model: "XModalLM", shards: Iterator[tuple[Any, dict[str, torch.Tensor]]],
                              device: str | torch.device = "cpu") -> None:
    """Map, check and assign every shard; afterwards every parameter must have been filled."""
    own = model.state_dict()
    dtype = next(model.llm.parameters()).dtype
    filled: set[str] = set()
    for source, raw in shards:
        mapped = map_instructblip_state(raw, str(source))
        unknown = [k for k in mapped if k not in own]
        bad = [f"{k}: file {list(v.shape)} vs model {list(own[k].shape)}"
               for k, v in mapped.items() if k in own and v.shape != own[k].shape]
        if unknown or bad:
            lines = [f"unexpected key {k}" for k in unknown[:5]] + bad[:5]
            raise CheckpointError(f"{source} does not match the InstructBLIP architecture: " + "; ".join(lines))
        part = {k: (v.to(device, dtype) if v.is_floating_point() else v.to(device)) for k, v in mapped.items()}
        model.load_state_dict(part, strict=False, assign=True)
        filled |= set(part)
    missing = [k for k in own if k not in filled and own[k].is_meta]
    if missing:
        raise CheckpointError(f"the checkpoint leaves {len(missing)} tensors of the InstructBLIP architecture "
                              "unfilled (nothing is randomly initialised), e.g. " + ", ".join(missing[:5]))
    if getattr(model.llm.config.get_text_config(), "tie_word_embeddings", False):
        model.llm.tie_weights()
    model.to(device)


def build_instructblip(name_or_path: str = "Salesforce/instructblip-vicuna-7b", dtype: str = "bfloat16",
                       device: str | torch.device = "cpu", load_tokenizers: bool = True, *,
                       model_cls: type) -> "XModalLM":
    """The PathWeave base: an XModalLM with InstructBLIP's vision tower, Q-Former, query tokens,
    language projection and LLM, all frozen. The base connector's `instruction_tokenizer` is the
    checkpoint's BERT tokenizer (subfolder `qformer_tokenizer`), which the Q-Former instruction must be
    tokenised with.
    `device="meta"`: the architecture from the config alone (no weight, no tokenizer read)."""
    meta = is_meta(device)
    refuse_remote_code(name_or_path)
    try:
        config = InstructBlipConfig.from_pretrained(name_or_path, trust_remote_code=False)
    except (OSError, ValueError, KeyError) as err:
        raise ValueError(f"{name_or_path}: cannot read the InstructBLIP config ({one_line(err)})") from None
    tokenizer = qtok = None
    if load_tokenizers and not meta:  # on the meta device (preflight, params) no tokenizer is needed
        tokenizer = from_pretrained(AutoTokenizer, name_or_path)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.unk_token or tokenizer.eos_token
        qtok = from_pretrained(AutoTokenizer, name_or_path, subfolder="qformer_tokenizer")
    model = build_empty(config, name_or_path, dtype, tokenizer, model_cls=model_cls)
    if meta:  # architecture only: no shard is read; the buffers join the parameters on meta
        model.to("meta")
    else:
        load_instructblip_weights(model, read_shards(checkpoint_shards(name_or_path)), device)
    model.connectors[BASE_CONNECTOR].instruction_tokenizer = qtok  # the Q-Former reads BERT-tokenised text
    for part in (model.llm, model.encoders["image"], model.connectors[BASE_CONNECTOR]):
        part.modweave_external = True  # stage files keep only what modweave trains
    model.finish_build()
    model.eval()
    logger.info("InstructBLIP base loaded from %s (%s)", name_or_path, dtype)
    return model


@register_base("instructblip")
def _instructblip_base(name_or_path: str, config: ModelConfig, device: Any, model_cls: type) -> "XModalLM":
    return build_instructblip(name_or_path, dtype=config.llm.dtype, device=device, model_cls=model_cls)
