"""The package's structure: the checkpoint format and the base builders never import the model (the
model imports them), so no import cycle runs through model / checkpoint / bases."""

from __future__ import annotations

import pytest

grimp = pytest.importorskip("grimp")


@pytest.fixture(scope="module")
def graph():
    return grimp.build_graph("modweave", exclude_type_checking_imports=True)


@pytest.mark.parametrize("importer", ["modweave.checkpoint", "modweave.checkpoint_manifest", "modweave.checkpoint_refs",
                                      "modweave.checkpoint_target", "modweave.model_card", "modweave.hub",
                                      "modweave.stages", "modweave.registry", "modweave.runs"])
def test_lower_layers_do_not_import_the_model(graph, importer):
    assert graph.find_shortest_chain(importer=importer, imported="modweave.model") is None
