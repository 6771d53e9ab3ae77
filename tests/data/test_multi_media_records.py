"""Records with several media of different modalities: the JSONL schema, prompt markers, LAVIS and
LLaVA readers, the dataset (each media by its own loader) and `data check`."""

from __future__ import annotations

import json

import pytest
import torch

from modweave.data.check import check_file
from modweave.data.dataset import MediaDataset, read_records
from modweave.data.formats import AnnotationError, read_jsonl, validate_record

PAIR = {"id": "p0", "task": "qa", "prompt": "Is <media:1> the digit of <media:2>?", "answer": "yes",
        "media": [{"modality": "image", "path": "a.png"}, {"modality": "audio", "path": "b.wav"}]}


def test_a_multi_media_record_gets_its_label_and_parts():
    rec = validate_record(PAIR)
    assert rec.multi and rec.modality == "image+audio"
    assert rec.media_parts() == [("image", "a.png"), ("audio", "b.wav")]
    assert validate_record({**PAIR, "modality": "image+audio"}) == rec
    single = validate_record({"id": "s", "modality": "image", "media": "a.png", "task": "qa", "prompt": "q", "answer": "a"})
    assert not single.multi and single.media_parts() == [("image", "a.png")] and single.media_modalities == ["image"]


@pytest.mark.parametrize("change, reason", [
    ({"media": []}, "empty list"),
    ({"media": [{"modality": "image"}]}, "exactly 'modality' and 'path'"),
    ({"media": [{"modality": "smell", "path": "x"}]}, "unknown modality 'smell'"),
    ({"media": [{"modality": "text", "path": "x"}]}, "takes no media"),
    ({"modality": "audio+image"}, "must be 'image\\+audio'"),
    ({"prompt": "Is <media:3> odd?"}, "<media:3> names no media"),
    ({"prompt": "Is <media:1> <media:1>?"}, "references <media:1> 2 times"),
    ({"media": [{"modality": "depth", "path": "x.png"}, {"modality": "image", "path": {"depth": "d"}}]}, "image"),
])
def test_bad_multi_media_records_are_refused_in_one_line(tmp_path, change, reason):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({**PAIR, **change}) + "\n")
    with pytest.raises(AnnotationError, match=reason) as err:
        read_jsonl(path)
    assert str(err.value).startswith(f"{path}:1: ") and "\n" not in str(err.value)


def test_a_text_or_single_record_with_a_stray_marker_is_refused():
    with pytest.raises(ValueError, match="names no media"):
        validate_record({"id": "t", "modality": "text", "task": "qa", "prompt": "<media:1>?", "answer": "a"})
    with pytest.raises(ValueError, match="<media:2> names no media"):
        validate_record({"id": "s", "modality": "image", "media": "a.png", "task": "qa", "prompt": "<media:2>", "answer": "a"})


def test_lavis_items_with_two_media_keys_or_a_list_become_multi_media(tmp_path):
    path = tmp_path / "lavis.json"
    path.write_text(json.dumps([
        {"image": "a.png", "audio": "b.wav", "question": "Same digit in <media:1> and <media:2>?", "answer": "yes"},
        {"image": ["a.png", "c.png"], "caption": "two digits"},
        {"image": "a.png", "caption": "one digit"},
    ]))
    pair, two, one = read_records(path)
    assert pair.media_parts() == [("image", "a.png"), ("audio", "b.wav")] and pair.modality == "image+audio"
    assert two.media_parts() == [("image", "a.png"), ("image", "c.png")] and two.modality == "image+image"
    assert one.media == "a.png" and one.modality == "image"


def test_llava_multi_image_conversations_map_tags_to_markers(tmp_path):
    path = tmp_path / "llava.json"
    path.write_text(json.dumps([{"id": "x", "image": ["a.png", "b.png"], "conversations": [
        {"from": "human", "value": "<image>\n<image>\nAre these the same digit?"}, {"from": "gpt", "value": "no"},
        {"from": "human", "value": "Which is larger?"}, {"from": "gpt", "value": "first"}]}]))
    first, second = read_records(path)
    assert first.multi and first.modality == "image+image"
    assert "<media:1>" in first.prompt and "<media:2>" in first.prompt and "<image>" not in first.prompt
    assert second.media == first.media and "<media:" not in second.prompt  # all media at the media slot


def test_dataset_loads_each_media_with_its_own_loader(digits_root, first_media, small):
    image, audio = first_media(digits_root, "image"), first_media(digits_root, "audio")
    rec = {**PAIR, "media": [{"modality": "image", "path": str(image.relative_to(digits_root))},
                             {"modality": "audio", "path": str(audio.relative_to(digits_root))}]}
    path = digits_root.parent / "pair.jsonl"
    path.write_text(json.dumps(rec) + "\n")
    ds = MediaDataset.from_file(path, root=digits_root, settings_by_modality=small)
    item = ds[0]
    assert item["modality"] == "image+audio" and item["media_modalities"] == ["image", "audio"]
    alone = {m: MediaDataset.from_file(digits_root / f"{m}_train.jsonl", settings_by_modality=small)[0]["media"]
             for m in ("image", "audio")}
    assert torch.equal(item["media"][0], alone["image"]) and torch.equal(item["media"][1], alone["audio"])
    report = check_file(path, digits_root, small, progress=False)
    assert not report.errors and report.counts[("image+audio", "qa")] == 1
    broken = {**rec, "id": "p1", "media": [rec["media"][0], {"modality": "audio", "path": "missing.wav"}]}
    path.write_text(json.dumps(rec) + "\n" + json.dumps(broken) + "\n")
    report = check_file(path, digits_root, small, progress=False)
    assert report.counts[("image+audio", "qa")] == 1 and len(report.errors) == 1 and "missing.wav" in report.errors[0]
