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
