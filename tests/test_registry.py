"""The one registry helper: duplicates refused, unknown names listed, every registry discoverable."""

from __future__ import annotations

import pytest

from modweave.registry import Registry


def test_registry_refuses_a_second_entry_under_one_name():
    reg: Registry = Registry("widget")

    @reg.register("a")
    def first():  # noqa: ANN202
        return 1

    reg.add("a", first)  # the same object again is harmless (a module imported twice)
    with pytest.raises(ValueError, match="widget 'a' is already registered"):
        reg.add("a", lambda: 2)
    assert reg.get("a") is first and reg.names() == ["a"] and "a" in reg


def test_unknown_names_list_the_known_ones():
    reg: Registry = Registry("widget")
    reg.add("x", object())
    with pytest.raises(ValueError, match=r"unknown widget 'y' \(known: x\)"):
        reg.get("y")


def test_methods_register_through_the_helper():
    from modweave.methods import METHODS, Method, list_methods, register_method

    assert {"ana", "moextend", "finetune", "lora", "separate", "frozen"} <= set(list_methods())
    with pytest.raises(ValueError, match="method 'ana' is already registered"):
        register_method(type("Fake", (Method,), {"name": "ana"}))
    assert METHODS.get("ana").__name__ != "Fake"


def test_connectors_register_through_the_helper():
    from modweave.config import ConnectorConfig
    from modweave.connectors import Connector, build_connector, list_connectors

    assert list_connectors() == ["mlp", "qformer"]
    with pytest.raises(ValueError, match=r"connector.kind: unknown connector 'conv' \(known: mlp, qformer\)"):
        build_connector(ConnectorConfig(kind="conv"), 8)
    for kind in list_connectors():
        conn = build_connector(ConnectorConfig(kind=kind, hidden_size=16, num_layers=1, num_heads=2,
                                               intermediate_size=32, encoder_width=8, num_query_tokens=2), 12)
        assert isinstance(conn, Connector) and conn.encoder_width == 8
        conn.set_grad_checkpointing(True)  # every connector answers the interface
        conn.set_grad_checkpointing(False)


@pytest.mark.parametrize("method, settings, key", [
    ("ana", {"rank": 0}, "stages[0].settings.rank"),
    ("ana", {"rank": "8"}, "stages[0].settings.rank"),
    ("ana", {"sites": ["ffn"]}, "stages[0].settings.sites"),
    ("ana", {"gate_noise": {"sigma": 1}}, "stages[0].settings.gate_noise.sigma"),
    ("ana", {"ranks": 8}, "stages[0].settings.ranks"),
    ("lora", {"rank": True}, "stages[0].settings.rank"),
    ("lora", {"dropout": 2}, "stages[0].settings.dropout"),
    ("finetune", {"lr": 1}, "stages[0].settings.lr"),
])
def test_method_settings_are_typed_and_checked_when_created(method, settings, key):
    from modweave.methods import get_method

    import re

    with pytest.raises(ValueError, match=re.escape(f"config key '{key}'")):
        get_method(method).check_settings(settings, where="stages[0].settings")


@pytest.mark.parametrize("name", __import__("modweave.methods", fromlist=["list_methods"]).list_methods())
def test_every_method_completes_its_defaults_as_json(name):
    import json

    from modweave.methods import get_method

    impl = get_method(name)
    full = impl.check_settings({})
    assert json.loads(json.dumps(full)) == full  # what the stage record keeps
    assert impl.check_settings(dict(full)) == full  # idempotent: a saved stage's settings re-check to themselves


def test_modalities_register_through_the_helper():
    from modweave.modalities import Modality, list_modalities, register_modality
    from modweave.modalities.base import MODALITIES

    assert list_modalities()[0] == "text"  # registration order kept
    with pytest.raises(ValueError, match="modality 'image' is already registered"):
        register_modality("image")(type("Fake", (Modality,), {}))
    assert type(MODALITIES.get("image")).__name__ != "Fake"


def test_encoders_register_through_the_helper():
    from modweave.encoders import ENCODERS, list_encoders, register_encoder

    assert {"tiny-image", "tiny-audio", "tiny-points", "hf-vision", "hf-whisper", "hf-ast", "beats",
            "pointbert"} <= set(list_encoders())
    with pytest.raises(ValueError, match="encoder 'tiny-image' is already registered"):
        register_encoder("tiny-image")(lambda cfg: None)
    assert ENCODERS.get("tiny-image")[0].__name__ != "<lambda>"


def test_bases_register_through_the_helper():
    from modweave.bases import list_bases

    assert list_bases() == ["instructblip"]
