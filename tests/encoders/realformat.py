"""Tiny checkpoints in the real on-disk formats, written with `save_pretrained` into a folder: the same
files (config.json, model.safetensors, preprocessor_config.json, tokenizer files) and the same loading
code users hit with hub checkpoints, at test sizes (seconds, no download).

Every writer is `write_<name>(folder) -> model` (the seeded reference module, eval mode, so tests compare
weights or outputs against it) and leaves `folder` loadable with `from_pretrained`:

| writer                   | folder holds                                            | modweave config                        |
|--------------------------|---------------------------------------------------------|----------------------------------------|
| `write_clip_vision`      | CLIPVisionModel 16 px, CLIPImageProcessor               | `encoder: {kind: hf-vision, ...}`      |
| `write_siglip_vision`    | SiglipVisionModel 16 px, SiglipImageProcessor           | `encoder: {kind: hf-vision, ...}`      |
| `write_whisper`          | WhisperModel (8 mels, 100 frames), WhisperFeatureExtractor | `encoder: {kind: hf-whisper, ...}`  |
| `write_ast`              | ASTModel (16 mels, 32 frames), ASTFeatureExtractor      | `encoder: {kind: hf-ast, ...}`         |
| `write_llama`            | LlamaForCausalLM + the word tokenizer of `CORPUS`       | `llm` / `tokenizer: {kind: hf, ...}`   |
| `write_mixtral`          | MixtralForCausalLM (2 experts) + the same tokenizer     | `llm` / `tokenizer: {kind: hf, ...}`   |
| `write_instructblip`     | InstructBlipForConditionalGeneration + both tokenizers  | `model.base: instructblip:<folder>`    |
| `write_remote_code`      | a config with `auto_map` and a `.py` that would write `MARKER` next to it | refused at every load |

`encoder_entry(kind, folder)` gives the matching `EncoderConfig` dict (for a YAML / overrides) and
`WRITERS` maps each writer's short name to it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import torch

CORPUS = ("question : what digit is shown ? which way does it move ? answer : zero one two three four five six "
          "seven eight nine left right up down high low near far video : audio : image : 3d : depth :")
MARKER = "REMOTE_CODE_RAN"


def _save(model: torch.nn.Module, folder: str | Path) -> torch.nn.Module:
    Path(folder).mkdir(parents=True, exist_ok=True)
    model.eval().save_pretrained(str(folder))
    return model


def write_clip_vision(folder: str | Path, image_size: int = 16) -> torch.nn.Module:
    from transformers import CLIPImageProcessorPil, CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(0)
    model = _save(CLIPVisionModel(CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                                   num_attention_heads=2, image_size=image_size, patch_size=8)), folder)
    CLIPImageProcessorPil(size={"shortest_edge": image_size},
                       crop_size={"height": image_size, "width": image_size}).save_pretrained(str(folder))
    return model


def write_siglip_vision(folder: str | Path, image_size: int = 16) -> torch.nn.Module:
    from transformers import SiglipImageProcessorPil, SiglipVisionConfig, SiglipVisionModel

    torch.manual_seed(0)
    model = _save(SiglipVisionModel(SiglipVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                                       num_attention_heads=2, image_size=image_size, patch_size=8)),
                  folder)
    SiglipImageProcessorPil(size={"height": image_size, "width": image_size}).save_pretrained(str(folder))
    return model


def write_whisper(folder: str | Path, n_mels: int = 8) -> torch.nn.Module:
    """A WhisperModel whose encoder takes 100 frames (1 s) of `n_mels` mels, and the extractor with the
    same window (`chunk_length=1`), as whisper-tiny's takes 3000 frames (30 s) of 80."""
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel

    torch.manual_seed(0)
    model = _save(WhisperModel(WhisperConfig(
        d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
        encoder_ffn_dim=32, decoder_ffn_dim=32, num_mel_bins=n_mels, max_source_positions=50,
        vocab_size=60, pad_token_id=1, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1)), folder)
    WhisperFeatureExtractor(feature_size=n_mels, chunk_length=1).save_pretrained(str(folder))
    return model


def write_ast(folder: str | Path, n_mels: int = 16, frames: int = 32) -> torch.nn.Module:
    from transformers import ASTConfig, ASTFeatureExtractor, ASTModel

    torch.manual_seed(0)
    model = _save(ASTModel(ASTConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                                     num_mel_bins=n_mels, max_length=frames, patch_size=8, frequency_stride=8,
                                     time_stride=8)), folder)
    ASTFeatureExtractor(num_mel_bins=n_mels, max_length=frames).save_pretrained(str(folder))
    return model


def _tokenizer(folder: str | Path):
    from modweave.tokenizer import build_word_tokenizer

    tok = build_word_tokenizer([CORPUS])
    tok.save_pretrained(str(folder))
    return tok


def _causal_lm(folder: str | Path, config_cls: type, **extra: Any) -> torch.nn.Module:
    from transformers import AutoModelForCausalLM

    Path(folder).mkdir(parents=True, exist_ok=True)
    tok = _tokenizer(folder)
    torch.manual_seed(0)
    config = config_cls(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=128,
                        pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                        tie_word_embeddings=False, **extra)
    return _save(AutoModelForCausalLM.from_config(config), folder)


def write_llama(folder: str | Path) -> torch.nn.Module:
    from transformers import LlamaConfig

    return _causal_lm(folder, LlamaConfig)


def write_mixtral(folder: str | Path) -> torch.nn.Module:
    from transformers import MixtralConfig

    return _causal_lm(folder, MixtralConfig, num_local_experts=2, num_experts_per_tok=1)


def write_instructblip(folder: str | Path) -> torch.nn.Module:
    """InstructBLIP in its public layout (16-px EVA-style tower, 2-layer Q-Former, 4 queries, Llama)
    with the word tokenizer as its LLM tokenizer and `qformer_tokenizer/`."""
    from transformers import InstructBlipConfig, InstructBlipForConditionalGeneration, LlamaConfig

    Path(folder).mkdir(parents=True, exist_ok=True)
    tok = _tokenizer(folder)
    tok.save_pretrained(str(Path(folder) / "qformer_tokenizer"))
    config = InstructBlipConfig(
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           image_size=16, patch_size=8),
        qformer_config=dict(hidden_size=24, num_hidden_layers=2, num_attention_heads=2, intermediate_size=48,
                            encoder_hidden_size=32, vocab_size=len(tok), cross_attention_frequency=1),
        text_config=LlamaConfig(vocab_size=len(tok), hidden_size=40, intermediate_size=64, num_hidden_layers=1,
                                num_attention_heads=2, num_key_value_heads=2, pad_token_id=tok.pad_token_id).to_dict(),
        num_query_tokens=4)
    torch.manual_seed(0)
    return _save(InstructBlipForConditionalGeneration(config), folder)


REMOTE_CODE = f'''from pathlib import Path
Path(__file__).with_name("{MARKER}").write_text("ran")
from transformers import LlamaConfig


class EvilConfig(LlamaConfig):
    model_type = "evil"
'''


def write_remote_code(folder: str | Path, base: Callable[[str | Path], Any] = write_llama) -> Path:
    """A `base` checkpoint whose config (and tokenizer / preprocessor config where present) names custom
    code: `auto_map` pointing at `evil.py`, which writes `folder/MARKER` when anything imports it."""
    folder = Path(folder)
    base(folder)
    (folder / "evil.py").write_text(REMOTE_CODE)
    for name in ("config.json", "tokenizer_config.json", "preprocessor_config.json"):
        path = folder / name
        if path.is_file():
            data = json.loads(path.read_text())
            data["auto_map"] = {"AutoConfig": "evil.EvilConfig", "AutoTokenizer": ["evil.EvilConfig", None],
                                "AutoFeatureExtractor": "evil.EvilConfig"}
            path.write_text(json.dumps(data))
    return folder / MARKER


WRITERS: dict[str, Callable[..., Any]] = {
    "clip": write_clip_vision, "siglip": write_siglip_vision, "whisper": write_whisper, "ast": write_ast,
    "llama": write_llama, "mixtral": write_mixtral, "instructblip": write_instructblip,
}
ENCODER_KIND = {"clip": "hf-vision", "siglip": "hf-vision", "whisper": "hf-whisper", "ast": "hf-ast"}


def encoder_entry(name: str, folder: str | Path, **options: Any) -> dict[str, Any]:
    """The `encoder:` mapping of a modality path for the checkpoint `WRITERS[name]` wrote into `folder`."""
    return {"kind": ENCODER_KIND[name], "name_or_path": str(folder), "options": dict(options)}
