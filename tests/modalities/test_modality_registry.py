"""Registry behaviour and the tensor contract of every registered modality, on benchmark files."""

from __future__ import annotations

import shutil

import pytest
import torch

from modweave.modalities import MediaError, Modality, get_modality, list_modalities, register_modality

# Expected shape per modality under SMALL settings: a newly registered modality must add a row here.
CONTRACT = {
    "image": (3, 32, 32),
    "video": (3, 3, 32, 32),
    "audio": (2, 64, 32),
    "depth": (1, 3, 32, 32),
    "point_cloud": (256, 3),
}
IN_UNIT_RANGE = {"image", "video", "depth"}
MEDIA = [m for m in list_modalities() if get_modality(m).has_media]
CORRUPT_SUFFIX = {"video": ".mp4"}


def test_six_modalities_registered_text_first():
    assert list_modalities()[:1] == ["text"]
    assert set(list_modalities()) >= {"text", "image", "video", "audio", "depth", "point_cloud"}
    assert not get_modality("text").has_media


def test_every_media_modality_has_a_contract():
    assert set(MEDIA) == set(CONTRACT)


def test_unknown_modality_is_one_line_naming_the_known():
    with pytest.raises(ValueError) as err:
        get_modality("smell")
    msg = str(err.value)
    assert "\n" not in msg and "'smell'" in msg and "audio" in msg and "point_cloud" in msg


def test_duplicate_registration_refused():
    with pytest.raises(ValueError, match="already registered"):

        @register_modality("image")
        class Again(Modality):
            pass


def test_text_has_no_media(tmp_path):
    with pytest.raises(MediaError):
        get_modality("text").load(tmp_path / "x.txt")


@pytest.mark.parametrize("name", MEDIA)
def test_loads_benchmark_file_to_contract(name, digits_root, first_media, small):
    x = get_modality(name).load(first_media(digits_root, name), small[name])
    assert x.dtype == torch.float32 and tuple(x.shape) == CONTRACT[name]
    assert torch.isfinite(x).all()
    if name in IN_UNIT_RANGE:
        assert x.min() >= 0 and x.max() <= 1 and x.max() > 0


@pytest.mark.parametrize("name", MEDIA)
def test_settings_default_and_dict_and_instance(name, small):
    mod = get_modality(name)
    assert mod.make_settings(None) == mod.settings_cls()
    assert mod.make_settings(small[name]) == mod.settings_cls(**small[name])
    with pytest.raises(TypeError):
        mod.make_settings(object())


def _one_line(err: pytest.ExceptionInfo, path) -> None:
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg


@pytest.mark.parametrize("name", MEDIA)
def test_missing_file(name, tmp_path, small):
    path = tmp_path / f"nothing{get_modality(name).extensions[0]}"
    with pytest.raises(MediaError, match="not found") as err:
        get_modality(name).load(path, small[name])
    _one_line(err, path)


@pytest.mark.parametrize("name", MEDIA)
def test_wrong_extension(name, tmp_path, small):
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    with pytest.raises(MediaError, match="wrong extension") as err:
        get_modality(name).load(path, small[name])
    _one_line(err, path)


@pytest.mark.parametrize("name", MEDIA)
def test_corrupt_file(name, tmp_path, small):
    path = tmp_path / f"bad{CORRUPT_SUFFIX.get(name, get_modality(name).extensions[0])}"
    path.write_bytes(b"\x00garbage, not media\xff" * 8)
    with pytest.raises(MediaError) as err:
        get_modality(name).load(path, small[name])
    _one_line(err, path)


@pytest.mark.parametrize("name", MEDIA)
def test_truncated_benchmark_file(name, digits_root, tmp_path, first_media, small):
    src = first_media(digits_root, name)
    path = tmp_path / src.name
    shutil.copy(src, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(MediaError) as err:
        get_modality(name).load(path, small[name])
    _one_line(err, path)
