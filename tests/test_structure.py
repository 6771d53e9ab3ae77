"""The package's structure: the checkpoint format and the base builders never import the model (the
model imports them and passes itself as `model_cls`), so no import cycle runs through model /
checkpoint / bases."""

from __future__ import annotations

import pytest

grimp = pytest.importorskip("grimp")


@pytest.fixture(scope="module")
def graph():
    return grimp.build_graph("modweave", exclude_type_checking_imports=True)


@pytest.mark.parametrize("importer", ["modweave.checkpoint", "modweave.checkpoint_manifest", "modweave.checkpoint_refs",
                                      "modweave.checkpoint_target", "modweave.model_card", "modweave.hub",
                                      "modweave.stages", "modweave.registry", "modweave.runs", "modweave.bases",
                                      "modweave.bases.instructblip"])
def test_lower_layers_do_not_import_the_model(graph, importer):
    assert graph.find_shortest_chain(importer=importer, imported="modweave.model") is None


def test_no_cross_module_private_model_access():
    """Outside model.py no code reaches into the model's private members (`model._...`)."""
    import re
    from pathlib import Path

    src = Path(__file__).resolve().parents[1] / "src" / "modweave"
    hits = [f"{p.relative_to(src)}:{i}" for p in src.rglob("*.py") if p.name != "model.py"
            for i, line in enumerate(p.read_text().splitlines(), 1) if re.search(r"\bmodel\._[a-z]", line)]
    assert not hits, hits
