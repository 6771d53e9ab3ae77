"""XModalLM core: loss masking, splice positions, mixed batches, per-frame token counts, bad input."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from modweave.config import EncoderConfig, PromptConfig
from modweave.data.collate import IGNORE_INDEX, MEDIA_TOKEN_ID, Collator
from modweave.model import XModalLM

from tinyfactory import make_items


def test_labels_cover_only_answer_and_eos(tiny_model):
    batch = tiny_model.collator()(make_items(["image", "text"]))
    tok = tiny_model.tokenizer
    answer = tok("seven", add_special_tokens=False).input_ids + [tok.eos_token_id]
    for row in batch["labels"]:
        assert [t for t in row.tolist() if t != IGNORE_INDEX] == answer
    assert (batch["input_ids"] == MEDIA_TOKEN_ID).sum(1).tolist() == [1, 0]


def test_loss_is_cross_entropy_on_answer_tokens_only(tiny_model):
    batch = tiny_model.collator()(make_items(["image", "image"]))
    out = tiny_model(batch)
    embeds, attn, labels = tiny_model.embed_batch(batch)
    logits = tiny_model.llm(inputs_embeds=embeds, attention_mask=attn).logits
    # media positions carry no label: only answer + EOS tokens (2 per sample) are scored
    assert int((labels != IGNORE_INDEX).sum()) == 4
    ref = F.cross_entropy(logits[:, :-1].transpose(1, 2), labels[:, 1:], ignore_index=IGNORE_INDEX)
    torch.testing.assert_close(out.loss, ref)


@pytest.mark.parametrize("template,media_first", [("{media} {prompt}", True), ("{prompt}{media}", False)])
def test_splice_position_follows_template(tiny_model, template, media_first):
    tiny_model.config.prompt = PromptConfig(template=template)
    batch = tiny_model.collator()(make_items(["image"]))
    embeds, attn, labels = tiny_model.embed_batch(batch)
    media = tiny_model.encode("image", batch["media"][0].unsqueeze(0), batch["qformer_input_ids"],
                              batch["qformer_attention_mask"])[0]
    cue_len = tiny_model.cue_embeddings("image").shape[0]
    q = media.shape[0]
    ids = batch["input_ids"][0].tolist()
    pos = ids.index(MEDIA_TOKEN_ID)
    assert (pos == 1) == media_first  # right after BOS, or after the question
    torch.testing.assert_close(embeds[0, pos + cue_len: pos + cue_len + q], media)
    assert embeds.shape[1] == len(ids) - 1 + cue_len + q
    assert (labels[0, pos: pos + cue_len + q] == IGNORE_INDEX).all()


def test_mixed_batch_matches_separate_batches(tiny_model):
    tiny_model.add_modality("audio", method="frozen", encoder=EncoderConfig(kind="tiny-audio", width=32,
                            options={"n_mels": 16, "patch_frames": 4}), cue=" audio: ")
    tiny_model.end_stage()
    items = make_items(["image", "text", "audio", "image"])
    mixed = tiny_model(tiny_model.collator()(items), reduction="none").nll
    alone = torch.cat([tiny_model(tiny_model.collator()([it]), reduction="none").nll for it in items])
    torch.testing.assert_close(mixed, alone, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("modality,frames", [("video", 2), ("audio", 2), ("image", 1), ("point_cloud", 1)])
def test_frames_give_f_times_q_tokens(tiny_model, modality, frames):
    encoders = {"video": "image",
                "audio": EncoderConfig(kind="tiny-audio", width=32, options={"n_mels": 16, "patch_frames": 4}),
                "point_cloud": EncoderConfig(kind="tiny-points", width=64, options={"num_tokens": 4})}
    if modality != "image":
        tiny_model.add_modality(modality, method="frozen", encoder=encoders[modality])
        tiny_model.end_stage()
    media = make_items([modality])[0]["media"].unsqueeze(0)
    q = tiny_model.connectors["base"].num_query_tokens
    assert tiny_model.encode(modality, media).shape == (1, frames * q, tiny_model.llm_width)


def test_generate_returns_strings_for_greedy_and_beam(tiny_model):
    batch = tiny_model.collator(train=False)(make_items(["image", "text"]))
    for beams in (1, 2):
        out = tiny_model.generate(batch, max_new_tokens=3, num_beams=beams)
        assert len(out) == 2 and all(isinstance(s, str) for s in out)


def test_new_path_trains_only_its_own_parameters(tiny_model):
    tiny_model.add_modality("video", method="frozen", encoder="image", cue=" video: ")
    names = set(tiny_model.trainable_parameters())
    assert names == {"paths.video.query_tokens", "paths.video.input_norm.weight", "paths.video.input_norm.bias"}
    # query tokens start from the previous modality's (the image path's)
    assert torch.equal(tiny_model.paths["video"].query_tokens, tiny_model.paths["image"].query_tokens)


def test_width_mismatch_gets_a_projection(tiny_model):
    path = tiny_model.add_modality("audio", method="frozen", encoder=EncoderConfig(
        kind="tiny-audio", width=32, options={"n_mels": 16, "patch_frames": 4}))
    assert isinstance(path.input_proj, torch.nn.Linear)
    assert (path.input_proj.in_features, path.input_proj.out_features) == (32, 64)


def test_unknown_modality_is_named(tiny_model):
    items = make_items(["image"])
    items[0]["modality"] = "smell"
    with pytest.raises(ValueError, match="unknown modality 'smell'"):
        tiny_model(tiny_model.collator()(items))


def test_wrong_media_shape_is_reported(tiny_model):
    items = make_items(["image"])
    items[0]["media"] = torch.rand(16, 16)
    with pytest.raises(ValueError, match="modality 'image'"):
        tiny_model(tiny_model.collator()(items))


def test_prompt_longer_than_context_is_refused(tiny_model):
    items = make_items(["text"])
    items[0]["prompt"] = " ".join(["digit"] * 300)
    with pytest.raises(ValueError, match="exceed the LLM's context of 256"):
        tiny_model(tiny_model.collator()(items))


def test_collator_max_length_names_the_sample(tiny_model):
    col = Collator(tiny_model.tokenizer, PromptConfig(), max_length=4)
    with pytest.raises(ValueError, match="sample image-0"):
        col(make_items(["image"]))


def test_duplicate_modality_refused(tiny_model):
    with pytest.raises(ValueError, match="already has a path"):
        tiny_model.add_modality("image", method="frozen", encoder="image")


def test_dense_llm_works_too(tiny_cfg):
    tiny_cfg.model.llm.kind = "tiny-llama"
    model = XModalLM.build(tiny_cfg.model)
    out = model(model.collator()(make_items(["image", "text"])))
    assert torch.isfinite(out.loss) and out.aux_loss is None


def test_builders_are_deterministic(tiny_cfg):
    a, b = XModalLM.build(tiny_cfg.model), XModalLM.build(tiny_cfg.model)
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    tiny_cfg.model.llm.seed = 1
    c = XModalLM.build(tiny_cfg.model)
    assert not torch.equal(c.state_dict()["llm.lm_head.weight"], sa["llm.lm_head.weight"])


def test_llm_frozen_by_default(tiny_model):
    assert not any(p.requires_grad for p in tiny_model.llm.parameters())
    assert not tiny_model.trainable_parameters()  # nothing trains until a stage says so
