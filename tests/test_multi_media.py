"""Several media per sample: each through its own modality's path, spliced at its placeholder."""

from __future__ import annotations

import pytest
import torch

from modweave.config import EncoderConfig
from modweave.data.collate import MEDIA_TOKEN_ID
from modweave.model import XModalLM

from tinyfactory import FRAME_SHAPES, make_items

AUDIO = EncoderConfig(kind="tiny-audio", width=32, options={"n_mels": 16, "patch_frames": 4})


@pytest.fixture
def model(tiny_model) -> XModalLM:
    """The tiny base (image) plus an audio path (its own encoder)."""
    tiny_model.add_modality("audio", method="ana", encoder=AUDIO, cue=" audio: ")
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # as if trained: the audio path's adapters are not zero
        for p in tiny_model.trainable_parameters().values():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    tiny_model.end_stage()
    return tiny_model.eval()


def _pair(prompt: str = "is <media:1> the same as <media:2> ?", seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"id": "pair", "modality": "image+audio", "media_modalities": ["image", "audio"], "task": "qa",
            "media": [torch.rand(FRAME_SHAPES["image"], generator=g), torch.rand(FRAME_SHAPES["audio"], generator=g)],
            "prompt": prompt, "answer": "seven"}


def test_a_two_media_sample_is_the_splice_of_the_two_single_media_embeddings(model):
    item = _pair()
    batch = model.collator()([item])
    ids = batch["input_ids"][0].tolist()
    assert ids.count(MEDIA_TOKEN_ID) == 2 and batch["media_modalities"] == [["image", "audio"]]
    embeds, _, labels = model.embed_batch(batch)
    q = (batch.get("qformer_input_ids"), batch.get("qformer_attention_mask"))  # the instruction, if read
    with torch.no_grad():
        parts = [torch.cat([model.cue_embeddings(m), model.encode(m, x.unsqueeze(0), *q)[0]])
                 for m, x in zip(item["media_modalities"], item["media"])]
        text = model.llm.get_input_embeddings()(batch["input_ids"][0].clamp(min=0))
    first, second = (i for i, t in enumerate(ids) if t == MEDIA_TOKEN_ID)
    expected = torch.cat([text[:first], parts[0], text[first + 1:second], parts[1], text[second + 1:]])
    assert embeds.shape[1] == expected.shape[0]
    assert torch.equal(embeds[0], expected)  # token by token, bit for bit
    assert (labels[0, first:first + parts[0].shape[0]] == -100).all()


def test_markers_choose_the_order_and_without_markers_media_sit_at_the_template_slot(model):
    swapped = model.collator()([_pair("is <media:2> the same as <media:1> ?")])
    assert swapped["media_modalities"] == [["audio", "image"]]
    plain = model.collator()([_pair("are these the same ?")])
    ids = plain["input_ids"][0].tolist()
    first = ids.index(MEDIA_TOKEN_ID)  # the tiny template is "{prompt}{media}": both media after the prompt
    assert ids[first + 1] == MEDIA_TOKEN_ID and plain["media_modalities"] == [["image", "audio"]]


def test_each_media_goes_through_its_own_path(model):
    """The audio media of a pair row is encoded with the audio path's adapters (routing by the media's
    modality, not the row's), the image media with the base image path."""
    item = _pair()
    batch = model.collator()([item])
    embeds, _, _ = model.embed_batch(batch)
    q = (batch.get("qformer_input_ids"), batch.get("qformer_attention_mask"))
    with torch.no_grad():
        routed = model.encode("audio", item["media"][1].unsqueeze(0), *q)[0]
        sites = [s for s in model.modules() if hasattr(s, "ana") and "audio" in s.ana]
        saved = [s.ana.pop("audio") for s in sites]  # the same path with its adapters taken out
        plain = model.encode("audio", item["media"][1].unsqueeze(0), *q)[0]
        for s, e in zip(sites, saved):
            s.ana["audio"] = e
    assert sites and not torch.equal(plain, routed)
    n = routed.shape[0]
    assert any(torch.equal(embeds[0, i:i + n], routed) for i in range(embeds.shape[1] - n + 1))


def test_mixed_batch_of_single_and_multi_media_rows_matches_each_row_alone(model):
    items = make_items(["image", "text", "audio"]) + [_pair(seed=1), _pair("which is larger , <media:2> or <media:1> ?", seed=2)]
    mixed = model(model.collator()(items), reduction="none").nll
    alone = torch.cat([model(model.collator()([it]), reduction="none").nll for it in items])
    torch.testing.assert_close(mixed, alone, rtol=1e-5, atol=1e-5)
    answers = model.generate(model.collator(train=False)(items), max_new_tokens=2)
    assert len(answers) == len(items)


def test_llm_rows_carry_every_media_modality_for_routing(model):
    batch = model.collator()(make_items(["text", "image"]) + [_pair()])
    assert model.row_modalities(batch) == [("text",), ("image",), ("image", "audio")]


def test_placeholders_and_media_must_agree(model):
    item = _pair()
    with pytest.raises(ValueError, match="<media:3> names no media"):
        model.collator()([{**item, "prompt": "is <media:3> odd ?"}])
    batch = model.collator()([item])
    batch["media"] = [[item["media"][0]]]
    batch["media_modalities"] = [["image"]]
    with pytest.raises(ValueError, match="2 media placeholders for 1 media"):
        model.embed_batch(batch)
