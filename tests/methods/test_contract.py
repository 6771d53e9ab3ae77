"""The method contract, for every registered method: a new method is tested by registering it.

A method that promises no forgetting (`keeps_earlier_paths`) must leave every earlier modality's
logits bit-identical after each later step, whatever its new modules learned, and after a reload."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from modweave.config import load_run_config
from modweave.methods import get_method, list_methods
from modweave.model import XModalLM
from modweave.stages import walk_phases
from tinyfactory import media_items, pair_items

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "test-train.yaml"
# settings a method needs to grow without held-out data (the extender phase measures it otherwise)
SETTINGS = {"moextend": {"routing": "modality", "layers": [0], "donors": [0]}}

pytestmark = pytest.mark.usefixtures("one_thread")


def _logits(model: XModalLM, items: list[dict]) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(model.collator(train=True)(items)).logits


def _grow(model: XModalLM, spec, method: str, settings: dict, seed: int) -> None:
    """A step through `method` whose trainable parameters move (as if trained), phase by phase."""
    model.add_modality(spec, method=method, settings=settings)
    g = torch.Generator().manual_seed(seed)
    for _ in walk_phases(model):
        with torch.no_grad():
            for p in model.trainable_parameters().values():
                p.add_(0.1 * torch.randn(p.shape, generator=g))


def _seen_items(seen: list[str]) -> list[dict]:
    """One sample per seen modality, then two-media samples over the seen media modalities (each
    modality with the first, and the first with itself), so several media per row are covered too."""
    media = [m for m in seen if m != "text"]
    pairs = [(media[0], media[0])] + [(m, media[0]) for m in media[1:]]
    return media_items(seen) + pair_items(pairs)


@pytest.mark.parametrize("method", list_methods())
def test_earlier_paths_stay_bit_identical_when_the_method_promises_it(method, tmp_path):
    impl = get_method(method)
    settings = impl.check_settings(SETTINGS.get(method, {}))
    cfg = load_run_config(CONFIG)
    torch.manual_seed(0)
    model = XModalLM.build(cfg.model)
    model.end_stage()
    seen = ["text", "image"]
    before = _logits(model, _seen_items(seen))
    for k, st in enumerate(cfg.stages):  # video (image encoder), then audio (its own encoder)
        _grow(model, st.modality, method, SETTINGS.get(method, {}), seed=k)
        after = _logits(model, _seen_items(seen))
        if impl.keeps_earlier_paths(settings):
            assert torch.equal(before, after), f"{method}: earlier modalities changed after {st.modality.name}"
        else:  # the test can see a change: a method that does not promise it does change them
            assert not torch.equal(before, after)
        seen.append(st.modality.name)
        before = _logits(model, _seen_items(seen))
    model.save_pretrained(tmp_path / "ckpt")
    loaded = XModalLM.from_pretrained(tmp_path / "ckpt")
    assert torch.equal(_logits(loaded, _seen_items(seen)), before)  # every path, after a reload


def test_which_methods_promise_no_forgetting():
    assert not get_method("finetune").keeps_earlier_paths({})
    assert not get_method("moextend").keeps_earlier_paths(get_method("moextend").check_settings({"routing": "open"}))


@pytest.mark.parametrize("method", [m for m in list_methods()
                                    if get_method(m).keeps_earlier_paths(get_method(m).check_settings(SETTINGS.get(m, {})))])
def test_rows_without_the_new_modality_are_bit_identical_in_a_batch_with_it(method):
    """The new modality's rows (alone and paired with an earlier modality in one sample) share the
    batch with earlier rows; those rows' logits equal the model's before the step, bit for bit."""
    cfg = load_run_config(CONFIG)
    torch.manual_seed(0)
    model = XModalLM.build(cfg.model)
    model.end_stage()
    earlier = _seen_items(["text", "image"])
    before = _logits(model, earlier)
    audio = next(st.modality for st in cfg.stages if st.modality.name == "audio")
    _grow(model, audio, method, SETTINGS.get(method, {}), seed=3)
    new_rows = media_items(["audio"]) + pair_items([("image", "audio"), ("audio", "audio")])
    mixed = _logits(model, earlier + new_rows)
    width = before.shape[1]
    assert mixed.shape[1] >= width
    assert torch.equal(mixed[: len(earlier), :width], before)
