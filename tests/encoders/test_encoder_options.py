"""Every built-in encoder kind declares its options; unknown or mistyped ones are refused in one line,
at config parse time (config.check_encoder_options uses the same hook) and at build time."""

from __future__ import annotations

import pytest

from modweave.config import EncoderConfig
from modweave.encoders import build_encoder, encoder_options, list_encoders


@pytest.mark.parametrize("kind", list_encoders())
def test_every_kind_declares_its_options(kind):
    import dataclasses

    schema = encoder_options(kind)
    assert schema is not None and dataclasses.is_dataclass(schema)
    schema()  # every option has a default


def test_unknown_and_mistyped_options_are_refused_when_built():
    with pytest.raises(ValueError, match=r"'encoder.options \(tiny-image\).pach'"):
        build_encoder(EncoderConfig(kind="tiny-image", options={"pach": 4}))
    with pytest.raises(ValueError, match=r"patch"):
        build_encoder(EncoderConfig(kind="tiny-image", options={"patch": "4"}))
    with pytest.raises(ValueError, match=r"length"):
        build_encoder(EncoderConfig(kind="hf-whisper", name_or_path="x", options={"length": "30s"}))
    with pytest.raises(ValueError, match="unknown encoder kind 'nope'"):
        encoder_options("nope")
    assert build_encoder(EncoderConfig(kind="tiny-image", options={"image_size": 16, "patch": 4})).output_width == 128
