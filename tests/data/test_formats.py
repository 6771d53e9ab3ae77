"""Annotation readers: the library's JSONL, LAVIS- and LLaVA-style JSON, and media path resolution."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modweave.data.dataset import read_records
from modweave.data.formats import AnnotationError, Record, read_jsonl, read_lavis, read_llava, resolve_media, write_jsonl

REC = {"id": "a", "modality": "audio", "media": "a.wav", "task": "qa", "prompt": "Question: x? Answer:", "answer": "low"}


def _lines(path: Path, *objs) -> Path:
    path.write_text("".join((o if isinstance(o, str) else json.dumps(o)) + "\n" for o in objs))
    return path


def test_jsonl_round_trip(tmp_path):
    recs = [Record(**REC), Record("t", "text", None, "cls", "p", "seven", ["six", "seven"])]
    write_jsonl(tmp_path / "r.jsonl", recs)
    back = read_jsonl(tmp_path / "r.jsonl")
    assert back == recs and back[1].source == f"{tmp_path / 'r.jsonl'}:2"
    assert "candidates" not in json.loads((tmp_path / "r.jsonl").read_text().splitlines()[0])


@pytest.mark.parametrize(
    "bad, reason",
    [
        ("{not json", "malformed JSON"),
        (dict(REC, modality="smell"), "unknown modality 'smell'"),
        (dict(REC, task="dance"), "unknown task"),
        ({k: v for k, v in REC.items() if k != "answer"}, "lacks answer"),
        (dict(REC, candidates="low"), "candidates"),
        (dict(REC, colour=1), "unknown record keys colour"),
        (dict(REC, id="first"), "duplicate id"),
    ],
)
def test_bad_jsonl_line_names_file_and_line(tmp_path, bad, reason):
    path = _lines(tmp_path / "bad.jsonl", dict(REC, id="first"), "", bad)
    with pytest.raises(AnnotationError, match=reason) as err:
        read_jsonl(path)
    assert str(err.value).startswith(f"{path}:3: ") and "\n" not in str(err.value)


def test_lavis_msrvtt_qa(tmp_path):
    path = tmp_path / "msrvtt_qa.json"
    path.write_text(json.dumps([{"video": "v/video7010.mp4", "question": "what is a man doing", "answer": ["cooking"], "question_id": 3}]))
    (r,) = read_lavis(path)
    assert (r.id, r.modality, r.media, r.task, r.answer) == ("3", "video", "v/video7010.mp4", "qa", "cooking")
    assert r.prompt == "Question: what is a man doing Answer:"


@pytest.mark.parametrize("key, modality", [("audio", "audio"), ("image", "image"), ("pc", "point_cloud"), ("point_cloud", "point_cloud")])
def test_lavis_captions(tmp_path, key, modality):
    path = tmp_path / "cap.json"
    path.write_text(json.dumps([{key: "x/1.bin", "caption": "a dog barks", "instance_id": "7"}, {key: "x/2.bin", "caption": ["two", "three"]}]))
    recs = read_lavis(path)
    assert [r.modality for r in recs] == [modality] * 2 and [r.task for r in recs] == ["caption"] * 2
    assert [r.id for r in recs] == ["7", "cap-1"] and recs[1].answer == "two"


def test_lavis_errors(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps([{"caption": "no media"}]))
    with pytest.raises(AnnotationError, match=r"a\.json\[0\]: no media key"):
        read_lavis(tmp_path / "a.json")
    (tmp_path / "b.json").write_text('[{"video": "v.mp4",\n "caption": }]')
    with pytest.raises(AnnotationError, match=r"b\.json:2: malformed JSON"):
        read_lavis(tmp_path / "b.json")


def test_llava_conversations(tmp_path):
    path = tmp_path / "llava.json"
    conv = [
        {"from": "human", "value": "<image>\nWhat is in the photo?"},
        {"from": "gpt", "value": "A cat."},
        {"from": "human", "value": "What colour?"},
        {"from": "gpt", "value": "Black."},
    ]
    path.write_text(json.dumps([{"id": "000001", "image": "coco/1.jpg", "conversations": conv}, {"id": "t", "conversations": conv[:2]}]))
    recs = read_llava(path)
    assert [r.id for r in recs] == ["000001-0", "000001-1", "t-0"]
    assert recs[0].prompt == "Question: What is in the photo? Answer:" and recs[1].answer == "Black."
    assert recs[0].media == "coco/1.jpg" and (recs[2].modality, recs[2].media) == ("text", None)
    assert read_records(path) == recs  # dispatch by content


def test_read_records_dispatch_and_unknown_suffix(tmp_path):
    assert read_records(_lines(tmp_path / "r.jsonl", REC))[0].id == "a"
    (tmp_path / "l.json").write_text(json.dumps([{"audio": "a.wav", "caption": "rain"}]))
    assert read_records(tmp_path / "l.json")[0].task == "caption"
    (tmp_path / "r.csv").write_text("x")
    with pytest.raises(AnnotationError, match="unknown annotation format"):
        read_records(tmp_path / "r.csv")
    with pytest.raises(AnnotationError, match="not found"):
        read_records(tmp_path / "missing.jsonl")


def test_resolve_media_inside_root(tmp_path):
    assert resolve_media("a/b.png", tmp_path) == tmp_path / "a" / "b.png"
    assert resolve_media("a/../b.png", tmp_path) == tmp_path / "b.png"
    assert resolve_media(str(tmp_path / "c.png"), tmp_path) == tmp_path / "c.png"  # absolute but inside
    assert resolve_media({"depth": "d.png", "rgb": "r.png"}, tmp_path) == {"depth": tmp_path / "d.png", "rgb": tmp_path / "r.png"}
    assert resolve_media(None, tmp_path) is None


@pytest.mark.parametrize("media", ["../x.png", "a/../../x.png", "/etc/passwd", {"depth": "ok.png", "rgb": "../r.png"}])
def test_resolve_media_refuses_escape(tmp_path, media):
    with pytest.raises(ValueError, match="escapes the data root"):
        resolve_media(media, tmp_path / "root")
