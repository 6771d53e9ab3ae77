"""XModalLM: a causal LM plus named modality paths, held in one object.

Data flow of one batch (see data/collate.py for the batch layout):
  media of modality m [b, F, ...] -> encoder -> path m's LayerNorm/projection -> connector (+ method
  modules, selected by `context`) -> [b, F*Q, d_llm] -> spliced with the cue at the prompt's media
  placeholder -> LLM -> loss on answer tokens only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from .config import GENERATE_MAX_NEW_TOKENS, EncoderConfig, ModalitySpec, ModelConfig, modality_spec, to_dict
from .connectors import build_connector
from .context import PathContext
from .data.collate import IGNORE_INDEX, MEDIA_TOKEN_ID, row_media
from .encoders import build_encoder
from .llm import build_llm, is_moe
from .methods import get_method
from .paths import BASE_CONNECTOR, ModalityPath
from .stages import StageRecord, stage_name
from .tokenizer import build_tokenizer
from .utils import seeded

logger = logging.getLogger(__name__)


@dataclass
class XModalOutput:
    loss: torch.Tensor | None
    logits: torch.Tensor | None = None
    nll: torch.Tensor | None = None  # [B] summed answer-token NLL (reduction="none")
    num_tokens: torch.Tensor | None = None  # [B] answer tokens per sample
    aux_loss: torch.Tensor | None = None


class XModalLM(nn.Module):
    """A frozen causal LM + tokenizer + modality paths. Build with `XModalLM.build(config)`,
    grow with `add_modality(...)`, save with `save_pretrained`, load with `from_pretrained`."""

    def __init__(self, config: ModelConfig, llm: nn.Module, tokenizer: Any, connector: nn.Module):
        super().__init__()
        self.config = config
        self.llm = llm
        self.tokenizer = tokenizer
        self.encoders = nn.ModuleDict()
        self.connectors = nn.ModuleDict({BASE_CONNECTOR: connector})
        self.paths = nn.ModuleDict()
        self.context = PathContext()
        self.stages: list[StageRecord] = [StageRecord(name="base", modality=None, method="base")]
        self._aux_losses: dict[str, Any] = {}  # key -> callable () -> Tensor | None, added to the loss
        self._builtin_router_loss = is_moe(llm) and getattr(llm.config, "router_aux_loss_coef", 0.0) > 0
        self._scratch: dict[str, dict[str, Any]] = {}  # per-method state held while a phase trains
        # kept by checkpoint.py, never saved: the checkpoint this model was loaded from
        # ({"dir", "stages", "manifest_sha256"}) and, per folder, the stage files it loaded or wrote there
        self.checkpoint_origin: dict[str, Any] | None = None
        self.saved_stage_files: dict[str, dict[int, tuple[str, str]]] = {}
        self._cue_cache: dict[str, torch.Tensor] = {}
        # frozen-encoder features reused across steps (feature_cache.FeatureCache; set by the trainer), or None
        self.feature_cache: Any = None
        self._stage_keys: list[set[str]] = []  # state keys created in each stage (what its file holds)
        # parameter names trainable in each stage, as named when the stage opened (a later stage may
        # rename them: peft moves a wrapped Linear's weight to `base_layer.weight`); the base: none
        self._stage_trained: list[set[str]] = [set()]
        self._stage_open = True

    # ------------------------------------------------------------------------------------------
    # construction

    @classmethod
    def build(cls, config: ModelConfig, device: str | torch.device | None = None) -> "XModalLM":
        """Build the base model from `config` (`device="meta"`: architecture only, no weights)."""
        if config.base:  # a ready-made base from a real checkpoint (e.g. InstructBLIP)
            from .bases import build_base

            return build_base(config, device, model_cls=cls)
        meta = device is not None and torch.device(device).type == "meta"
        # on the meta device a hub tokenizer is not fetched (no download for an architecture); a local
        # one is read (files only, no weights), so the connector's text vocabulary is exact
        local = config.tokenizer.kind != "hf" or Path(config.tokenizer.name_or_path or "").is_dir()
        tokenizer = build_tokenizer(config.tokenizer) if (local or not meta) else None
        special = {}
        vocab = None
        if tokenizer is not None:
            vocab = len(tokenizer)
            special = {k: getattr(tokenizer, f"{k}") for k in ("pad_token_id", "bos_token_id", "eos_token_id")}
        llm = build_llm(config.llm, vocab, special, device=device)
        llm_width = llm.config.get_text_config().hidden_size
        if vocab is None:  # a hub tokenizer on meta: the LLM's vocabulary is the closest count
            vocab = llm.config.get_text_config().vocab_size
        ctx = torch.device("meta") if meta else torch.device("cpu")
        with ctx:
            connector = build_connector(config.connector, llm_width, vocab)
            for p in connector.parameters():
                p.requires_grad_(False)
            model = cls(config, llm, tokenizer, connector)
            for i, spec in enumerate(config.base_modalities):
                with seeded(config.connector.seed + 1 + i):  # base query tokens: deterministic per seed
                    model.new_path(spec, connector=BASE_CONNECTOR, input_norm=False)
        return model.finish_build()

    def finish_build(self) -> "XModalLM":
        """The one ending of every build path (`build`, a registered base): everything frozen, the
        base stage owns every state key there is. Returns the model."""
        self.freeze_all()
        self._record_new_keys()
        return self

    def _record_new_keys(self) -> None:
        """Note the state keys that appeared since the previous stage as the current stage's own."""
        seen = set().union(*self._stage_keys) if self._stage_keys else set()
        new = set(self.state_dict()) - seen
        while len(self._stage_keys) < len(self.stages) - 1:
            self._stage_keys.append(set())
        if len(self._stage_keys) == len(self.stages):
            self._stage_keys[-1] |= new
        else:
            self._stage_keys.append(new)

    @property
    def base_connector_name(self) -> str:
        return BASE_CONNECTOR

    @property
    def device(self) -> torch.device:
        return next(self.llm.parameters()).device

    @property
    def llm_width(self) -> int:
        return self.llm.config.get_text_config().hidden_size

    @property
    def modalities(self) -> list[str]:
        return list(self.paths)

    def get_encoder(self, spec: ModalitySpec) -> tuple[str, nn.Module]:
        """The encoder of `spec`: an existing one named by a string, or a new one built from its config."""
        if isinstance(spec.encoder, str):
            if spec.encoder not in self.encoders:
                raise ValueError(f"modality '{spec.name}': encoder '{spec.encoder}' is not in the model "
                                 f"(have: {', '.join(self.encoders) or 'none'})")
            return spec.encoder, self.encoders[spec.encoder]
        if spec.name in self.encoders:
            raise ValueError(f"an encoder named '{spec.name}' already exists")
        with torch.device(self.param_device):
            enc = build_encoder(spec.encoder)
        self.encoders[spec.name] = enc
        return spec.name, enc

    def new_path(self, spec: ModalitySpec | dict, connector: str = BASE_CONNECTOR, input_norm: bool = True,
                 query_init: str = "previous") -> ModalityPath:
        """Create modality `spec.name`'s path on `connector`: its encoder, a LayerNorm over the encoder
        features (`input_norm`), a `Linear(d_enc -> connector width)` where the widths differ, and query
        tokens (`query_init="previous"`: a copy of the latest path's on a same-width connector)."""
        spec = modality_spec(spec)
        if spec.name in self.paths:
            raise ValueError(f"modality '{spec.name}' already has a path")
        if spec.name == "text":
            raise ValueError("'text' is the LLM's own modality: it has no path")
        if connector not in self.connectors:
            raise ValueError(f"connector '{connector}' not in the model (have: {', '.join(self.connectors)})")
        conn = self.connectors[connector]
        enc_name, enc = self.get_encoder(spec)
        d_enc, d_conn = enc.output_width, conn.encoder_width
        with torch.device(self.param_device):
            norm = nn.LayerNorm(d_enc) if input_norm else nn.Identity()
            proj = nn.Linear(d_enc, d_conn) if d_enc != d_conn else nn.Identity()
            queries = None
            if conn.num_query_tokens:
                prev = [p for p in self.paths.values() if p.query_tokens is not None
                        and p.query_tokens.shape == (conn.num_query_tokens, conn.query_width)]
                if query_init == "previous" and prev:
                    queries = prev[-1].query_tokens.detach().clone()
                else:
                    queries = conn.init_query_tokens()
        path = ModalityPath(spec, enc_name, connector, norm, proj, queries)
        self.paths[spec.name] = path
        return path

    # ------------------------------------------------------------------------------------------
    # growing: stages

    def add_modality(self, spec: ModalitySpec | dict | str, method: str = "ana", *,
                     settings: dict[str, Any] | None = None, **spec_fields: Any) -> ModalityPath:
        """Add modality m through `method`; the first phase of its step starts: exactly the method's
        trainable set trains, everything else (all earlier steps included) is frozen.

        `spec` may be a `ModalitySpec`, a dict, or a name with the spec's fields as keywords:
        `model.add_modality("video", method="ana", encoder="image", cue=" video: ")`.
        """
        if isinstance(spec, str):
            spec = ModalitySpec(name=spec, **spec_fields)
            if isinstance(spec.encoder, dict):
                spec.encoder = EncoderConfig(**spec.encoder)
        spec = modality_spec(spec)
        if spec.name in self.paths:
            raise ValueError(f"modality '{spec.name}' already has a path")
        impl = get_method(method)
        settings = impl.check_settings(dict(settings or {}))
        self.replay(StageRecord(name=stage_name(spec.name, impl.phases, impl.phases[0]), modality=spec.name,
                                method=method, phase=impl.phases[0], spec=to_dict(spec), settings=settings))
        return self.paths[spec.name]

    def replay(self, record: StageRecord) -> None:
        """Open the stage `record` describes: the ONE way a stage comes into being, for growth
        (`add_modality`, `next_phase`) and reload (`from_pretrained`) alike. The method builds the
        modality's path and modules on its first phase and applies the phase's structural changes
        (with the state earlier phases recorded); the keys that appear belong to this stage; exactly
        the phase's trainable set trains."""
        if self._stage_open and len(self.stages) > 1:
            raise RuntimeError(f"stage '{self.stages[-1].name}' is still open: call end_stage() first")
        if record.modality is None:
            raise ValueError(f"stage '{record.name}': only the base has no modality")
        impl = get_method(record.method)
        # a stage recorded before a setting existed replays with that setting's default (today's
        # behaviour): completed here once, every method hook of this stage and later phases sees them all
        record = replace(record, settings=impl.check_settings(record.settings, f"stage '{record.name}' settings"))
        if record.modality not in self.paths:
            impl.add_modality(self, modality_spec(record.spec, f"stage {record.name}"), record.settings)
        impl.start_phase(self, record.modality, record.phase, record.settings, self.method_state(record.modality))
        self.stages.append(record)
        self._record_new_keys()
        self._stage_open = True
        self.freeze_all()
        for p in impl.trainable(self, record.modality, record.phase, record.settings):
            p.requires_grad_(True)
        self._stage_trained.append(set(self.trainable_parameters()))

    def next_phase(self) -> StageRecord | None:
        """After `end_stage`, open the current modality's next phase (None when its step is complete)."""
        last = self.stages[-1]
        if last.modality is None:
            return None
        impl = get_method(last.method)
        i = impl.phases.index(last.phase)
        if i + 1 >= len(impl.phases):
            return None
        phase = impl.phases[i + 1]
        record = StageRecord(name=stage_name(last.modality, impl.phases, phase), modality=last.modality,
                             method=last.method, phase=phase, spec=last.spec, settings=last.settings)
        self.replay(record)
        return record

    def end_stage(self, save_dir: str | Path | None = None, data: Any = None, *, replayed: bool = False
                  ) -> StageRecord:
        """Close the open stage: the method records what it needs (`data`: held-out batches for
        methods that measure something), and the stage's tensors are written to `save_dir` if given.
        `replayed=True` (a reload): the stage's state is already recorded; the method only drops what
        it keeps while a phase trains (`Method.close_replayed_phase`)."""
        record = self.stages[-1]
        if record.modality is not None:
            impl = get_method(record.method)
            if replayed:
                impl.close_replayed_phase(self, record.modality, record.phase, record.settings, record.state)
            else:
                record.state = impl.end_phase(self, record.modality, record.phase, record.settings, data) or {}
        self._stage_open = False
        self.freeze_all()
        if save_dir is not None:
            from .checkpoint import write_stage

            write_stage(self, Path(save_dir), len(self.stages) - 1)
        return record

    # ------------------------------------------------------------------------------------------
    # what a method may use (the method contract; see methods/__init__.py)

    def add_aux_loss(self, key: str, fn: Any, *, replaces_router_loss: bool = False) -> None:
        """Add `fn() -> Tensor | None` to every training loss, once per `key` (a second call with the
        same key keeps the first). `replaces_router_loss`: the LLM's built-in MoE balance loss is off
        from now on (a method that changes expert counts computes its own)."""
        self._aux_losses.setdefault(key, fn)
        if replaces_router_loss:
            self._builtin_router_loss = False

    def has_aux_loss(self, key: str) -> bool:
        return key in self._aux_losses

    @property
    def uses_builtin_router_loss(self) -> bool:
        """Whether training adds the LLM's own MoE load-balancing loss (`router_aux_loss_coef`)."""
        return self._builtin_router_loss

    def scratch(self, owner: str) -> dict[str, Any]:
        """A method's working state while one of its phases trains (never saved: what must last goes
        into the stage record's `state` or into the method's own modules)."""
        return self._scratch.setdefault(owner, {})

    @property
    def stage_open(self) -> bool:
        """Whether the latest stage is open (training); `end_stage` closes it."""
        return self._stage_open

    def stage_keys(self, index: int) -> set[str]:
        """The state keys stage `index` created (what its stage file holds, with what it trained)."""
        return set(self._stage_keys[index]) if index < len(self._stage_keys) else set()

    def stage_trained(self, index: int) -> set[str]:
        """The parameters that trained in stage `index`, by the names they had then (none for the base)."""
        return set(self._stage_trained[index]) if index < len(self._stage_trained) else set()

    def method_state(self, modality: str | None) -> dict[str, Any]:
        """Merged state recorded by the earlier phases of `modality`'s step."""
        state: dict[str, Any] = {}
        for rec in self.stages:
            if rec.modality == modality and modality is not None:
                state.update(rec.state)
        return state

    def set_base_trainable(self, llm: bool = True, connector: bool = True, paths: bool = True) -> None:
        """Base stage: train the LLM / base connector / base paths (encoders stay frozen)."""
        if len(self.stages) != 1:
            raise RuntimeError("the base can only be trained before any modality is added")
        self.freeze_all()
        for flag, mod in ((llm, self.llm), (connector, self.connectors[BASE_CONNECTOR]), (paths, self.paths)):
            if flag:
                mod.modweave_external = False  # trained here: its weights must go into the checkpoint
                for p in mod.parameters():
                    p.requires_grad_(True)

    def freeze_all(self) -> None:
        for p in self.parameters():
            p.requires_grad_(False)

    def trainable_parameters(self) -> dict[str, nn.Parameter]:
        return {n: p for n, p in self.named_parameters() if p.requires_grad}

    @property
    def param_device(self) -> torch.device:
        """Where new modules go: the device of the model's parameters (CPU before it has any)."""
        try:
            return self.device
        except StopIteration:
            return torch.device("cpu")


    # ------------------------------------------------------------------------------------------
    # forward

    def encode(self, modality: str, media: torch.Tensor, text_ids: torch.Tensor | None = None,
               text_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Media of one modality `[b, F, *frame]` (or `[b, *frame]` for F = 1) -> tokens `[b, F*Q, d_llm]`.
        Each frame goes through the connector separately (with the sample's instruction text)."""
        if modality not in self.paths:
            raise ValueError(f"unknown modality '{modality}' (this model has: {', '.join(self.paths) or 'none'})")
        path = self.paths[modality]
        enc = self.encoders[path.encoder_name]
        frame_dims = getattr(enc, "frame_dims", 3)
        if media.dim() == frame_dims + 1:
            media = media.unsqueeze(1)
        if media.dim() != frame_dims + 2:
            raise ValueError(f"modality '{modality}': media of shape {list(media.shape)} is neither "
                             f"[B, *frame] nor [B, F, *frame] with a {frame_dims}-d frame")
        b, n_frames = media.shape[:2]
        frames = media.flatten(0, 1).to(self.device)
        with torch.no_grad():  # encoders are frozen: no activations kept for them
            feats = enc(frames) if self.feature_cache is None else self.feature_cache.encode(enc, frames)
        feats = path.input_proj(path.input_norm(feats))
        if text_ids is not None:
            text_ids = text_ids.repeat_interleave(n_frames, dim=0)
            text_mask = text_mask.repeat_interleave(n_frames, dim=0) if text_mask is not None else None
        with self.context.path(modality):
            tokens = self.connectors[path.connector_name](feats, path.query_tokens, text_ids, text_mask)
        return tokens.reshape(b, n_frames * tokens.shape[1], tokens.shape[2])

    def cue_embeddings(self, modality: str) -> torch.Tensor:
        """Embeddings `[C, d_llm]` of modality's cue string (empty when it has no cue)."""
        cue = self.paths[modality].cue
        if cue not in self._cue_cache:
            ids = self.tokenizer(cue, add_special_tokens=False).input_ids if cue else []
            self._cue_cache[cue] = torch.tensor(ids, dtype=torch.long)
        ids = self._cue_cache[cue].to(self.device)
        return self.llm.get_input_embeddings()(ids)

    def embed_batch(self, batch: dict[str, Any], padding_side: str = "right"
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Splice cue + modality tokens at each media placeholder of each sample (a row may hold several
        media of different modalities, each encoded through its own modality's path).
        Returns `inputs_embeds [B, L, d]`, `attention_mask [B, L]`, `labels [B, L]` (or None)."""
        input_ids = batch["input_ids"].to(self.device)
        mask = batch["attention_mask"].to(self.device)
        labels = batch.get("labels")
        labels = labels.to(self.device) if labels is not None else None
        tok = self.llm.get_input_embeddings()(input_ids.clamp(min=0))
        media_tokens = self._encode_media(batch, tok.dtype)
        seqs, labs = [], []
        for i in range(len(batch["modalities"])):
            n = int(mask[i].sum())
            left = padding_side != "right" and not mask[i, 0]  # a left-padded row: its tokens are the last n
            part = slice(-n, None) if left else slice(0, n)
            emb, lab = self._splice(i, batch["modalities"][i], input_ids[i, part], tok[i, part],
                                    None if labels is None else labels[i, :n], media_tokens.get(i, []))
            seqs.append(emb)
            labs.append(lab)
        return self._pad(seqs, labs, mask, labels, padding_side, batch.get("ids"))

    def _encode_media(self, batch: dict[str, Any], dtype: torch.dtype) -> dict[int, list[torch.Tensor]]:
        """Grouping + encoding: every media of the batch, of every row and placeholder, grouped by
        modality (and shape: frame counts may differ between samples), one connector call per group; returns each row's cue + modality tokens
        `[C + F*Q, d]` per placeholder, in placeholder order."""
        rows = [row_media(batch, i) for i in range(len(batch["modalities"]))]
        q_ids, q_mask = batch.get("qformer_input_ids"), batch.get("qformer_attention_mask")
        groups: dict[tuple[str, tuple[int, ...]], list[tuple[int, int]]] = {}
        for i, parts in enumerate(rows):
            for k, (m, media) in enumerate(parts):
                groups.setdefault((m, tuple(media.shape)), []).append((i, k))
        out: dict[int, list[torch.Tensor | None]] = {i: [None] * len(parts) for i, parts in enumerate(rows) if parts}
        for (m, _), slots in groups.items():
            sel = torch.tensor([i for i, _ in slots])
            tokens = self.encode(m, torch.stack([rows[i][k][1] for i, k in slots]),
                                 q_ids[sel].to(self.device) if q_ids is not None else None,
                                 q_mask[sel].to(self.device) if q_mask is not None else None)
            cue = self.cue_embeddings(m)
            for j, (i, k) in enumerate(slots):
                out[i][k] = torch.cat([cue, tokens[j].to(dtype)], dim=0)
        return out  # type: ignore[return-value]

    @staticmethod
    def _splice(i: int, modality: str, ids: torch.Tensor, emb: torch.Tensor, lab: torch.Tensor | None,
                media: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Splicing: one row's token embeddings `[n, d]` with its k-th media tokens in place of its k-th
        placeholder (labels there are ignored)."""
        pos = (ids == MEDIA_TOKEN_ID).nonzero().flatten().tolist()
        if len(pos) != len(media):
            if not pos:
                raise ValueError(f"sample {i} ({modality}) has media but no placeholder in its prompt")
            if not media:
                raise ValueError(f"sample {i} ({modality}) has a media placeholder but no media")
            raise ValueError(f"sample {i} ({modality}): {len(pos)} media placeholders for {len(media)} media")
        if not pos:
            return emb, lab
        embs, labs, start = [], [], 0
        for p, tokens in zip(pos, media):
            embs += [emb[start:p], tokens]
            if lab is not None:
                labs += [lab[start:p], lab.new_full((tokens.shape[0],), IGNORE_INDEX)]
            start = p + 1
        embs.append(emb[start:])
        if lab is not None:
            labs.append(lab[start:])
        return torch.cat(embs), (torch.cat(labs) if lab is not None else None)

    def _pad(self, seqs: list[torch.Tensor], labs: list[torch.Tensor | None], mask: torch.Tensor,
             labels: torch.Tensor | None, padding_side: str, ids: list | None
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Rows of different lengths -> one padded batch (refusing rows past the LLM's context)."""
        max_len = max(s.shape[0] for s in seqs)
        limit = getattr(self.llm.config.get_text_config(), "max_position_embeddings", None)
        if limit is not None and max_len > limit:
            worst = max(range(len(seqs)), key=lambda k: seqs[k].shape[0])
            ident = (ids or [None] * len(seqs))[worst] or f"#{worst}"
            raise ValueError(f"sample {ident}: {max_len} tokens exceed the LLM's context of {limit}")
        first = seqs[0]
        embeds = first.new_zeros(len(seqs), max_len, first.shape[-1])
        attn = mask.new_zeros(len(seqs), max_len)
        out_labels = None if labels is None else labels.new_full((len(seqs), max_len), IGNORE_INDEX)
        for i, s in enumerate(seqs):
            n = s.shape[0]
            sl = slice(0, n) if padding_side == "right" else slice(max_len - n, max_len)
            embeds[i, sl] = s
            attn[i, sl] = 1
            if out_labels is not None:
                out_labels[i, sl] = labs[i]
        return embeds, attn, out_labels

    @staticmethod
    def row_modalities(batch: dict[str, Any]) -> list[tuple[str, ...]]:
        """Each LLM row's modalities, for routing inside the LLM: the modalities of its media (a row
        holding image and audio: `("image", "audio")`), `(label,)` for a row without media (text)."""
        out = []
        for i, label in enumerate(batch["modalities"]):
            mods = tuple(dict.fromkeys(m for m, _ in row_media(batch, i)))
            out.append(mods or (label,))
        return out

    def forward(self, batch: dict[str, Any], reduction: str = "mean") -> XModalOutput:
        """LM loss on answer tokens only. `reduction="none"` also gives per-sample summed NLL."""
        embeds, attn, labels = self.embed_batch(batch, padding_side="right")
        if labels is None:
            raise ValueError("forward needs labels: build the batch with a training collator")
        router = self._builtin_router_loss and self.training
        kwargs = {"output_router_logits": True} if router else {}
        with self.context.samples(self.row_modalities(batch)):
            out = self.llm(inputs_embeds=embeds, attention_mask=attn, use_cache=False, **kwargs)
        logits = out.logits[:, :-1].float()
        target = labels[:, 1:]
        tok_nll = F.cross_entropy(logits.transpose(1, 2), target, ignore_index=IGNORE_INDEX, reduction="none")
        valid = target != IGNORE_INDEX
        n_tok = valid.sum(1)
        nll = tok_nll.sum(1)
        loss = nll.sum() / n_tok.sum().clamp(min=1)
        aux = None
        if router and getattr(out, "aux_loss", None) is not None:
            aux = self.llm.config.router_aux_loss_coef * out.aux_loss
        for fn in self._aux_losses.values():
            extra = fn()
            if extra is not None:
                aux = extra if aux is None else aux + extra
        total = loss + aux if aux is not None else loss
        if reduction == "none":
            return XModalOutput(loss=total, logits=out.logits, nll=nll, num_tokens=n_tok, aux_loss=aux)
        return XModalOutput(loss=total, logits=out.logits, aux_loss=aux)

    @torch.no_grad()
    def generate(self, batch: dict[str, Any], max_new_tokens: int = GENERATE_MAX_NEW_TOKENS, num_beams: int = 1,
                 **kwargs: Any) -> list[str]:
        """Answer strings for a batch built by an inference collator (no answers in it)."""
        embeds, attn, _ = self.embed_batch({**batch, "labels": None}, padding_side="left")
        tok = self.tokenizer
        with self.context.samples(self.row_modalities(batch)):
            out = self.llm.generate(inputs_embeds=embeds, attention_mask=attn, max_new_tokens=max_new_tokens,
                                    num_beams=num_beams, do_sample=False, pad_token_id=tok.pad_token_id,
                                    eos_token_id=tok.eos_token_id, **kwargs)
        return [s.strip() for s in tok.batch_decode(out, skip_special_tokens=True)]

    @torch.no_grad()
    def score(self, batch: dict[str, Any]) -> torch.Tensor:
        """Per-sample log-likelihood `[B]` of the answer tokens (candidate ranking)."""
        out = self.forward(batch, reduction="none")
        return -out.nll

    # ------------------------------------------------------------------------------------------
    # persistence (checkpoint.py holds the format)

    def save_pretrained(self, save_dir: str | Path, copy_parent: bool = False, push_to_hub: bool = False,
                        repo_id: str | None = None, private: bool = False, revision: str | None = None,
                        token: str | None = None) -> Path:
        """Write every stage not yet written (safetensors + manifest.json + a model card). A model loaded
        from another checkpoint references that checkpoint's stages unless `copy_parent=True` (a
        standalone copy). `push_to_hub=True` then uploads the folder to `repo_id`."""
        from .checkpoint import save_pretrained

        return save_pretrained(self, Path(save_dir), copy_parent=copy_parent, push_to_hub=push_to_hub,
                               repo_id=repo_id, private=private, revision=revision, token=token)

    @classmethod
    def from_pretrained(cls, save_dir: str | Path, upto: str | None = None,
                        device: str | torch.device | None = None, verify: bool = True,
                        revision: str | None = None) -> "XModalLM":
        """The model saved in `save_dir` as it was after stage or modality `upto` (default: the last).
        `verify=False` skips the stage checksums and accepts changed referenced sources (warning)."""
        from .checkpoint import load_pretrained

        return load_pretrained(save_dir, upto=upto, device=device, verify=verify, revision=revision, model_cls=cls)

    def collator(self, train: bool = True, **kwargs: Any):
        """A collator for this model's tokenizer and prompt layout."""
        from .data.collate import Collator

        qtok = None
        conn = self.connectors[BASE_CONNECTOR]
        if conn.instruction_input:
            # InstructBLIP's Q-Former reads the instruction with its own (BERT) tokenizer
            qtok = conn.instruction_tokenizer or self.tokenizer
        return Collator(self.tokenizer, self.config.prompt, train=train, qformer_tokenizer=qtok, **kwargs)
