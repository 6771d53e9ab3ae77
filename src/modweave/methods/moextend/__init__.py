"""MoExtend (ACL 2024 SRW, arXiv 2408.03511): new experts in a frozen pretrained MoE LLM, per modality.

One continual step = three phases (one stage each, `<modality>:<phase>`):
- `align`: a new projector (`MLPProjector d_enc -> d_llm`, or a Q-Former copy) and the path's input
  layers train; everything else is frozen.
- `extender`: ALL layers' original routers (`gate.weight`) train. `end_phase` measures expert usage on
  held-out batches under the tuned and the original routers, selects the layers to extend and the donor
  experts, and restores the original routers bit for bit (the tuned ones are thrown away).
- `finetune`: each selected layer gets `num_new_experts` new experts (donor copies), router rows and a
  calibration module; those and the projector train.

Settings: `num_new_experts` (1), `routing` (`open`: every token may use every expert, the paper;
`modality`: this step's experts only in rows of this modality, other rows bit-identical), `donor`
(`most_used` | `most_increased`), `layer_fraction` (0.5: floor(L * fraction) layers, the authors'
`L // 2`) or `num_layers`, or an explicit `layers` list (skips selection; `donors`, a list parallel to
`layers` or a `{layer: [experts]}` mapping, may go with it; settings.py), `connector` (`mlp` | `qformer`),
`projector_hidden` / `projector_layers`.

Balance loss once a layer is extended (balance.py): every MoE layer's Switch term (E + n experts in
extended layers, E elsewhere), padding masked, mean over all layers, times the LLM's router_aux_loss_coef.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from .. import Method, register_method
from ...config import ModalitySpec
from ...connectors import MLPProjector
from ...fields import setting
from .balance import BalanceLoss, balance_term
from .settings import check_layers_in_model, check_selection_settings, given_donors
from .block import Calibration, ExpertExtension, ExtendedMoeBlock
from .inject import extend_layer, extended_blocks, moe_blocks
from .select import DONOR_RULES, expert_usage, layer_count, layer_scores, pick_donors, select_layers

if TYPE_CHECKING:
    from ...model import XModalLM

__all__ = ["MoExtend", "ExtendedMoeBlock", "ExpertExtension", "Calibration", "expert_usage", "layer_scores",
           "pick_donors", "select_layers", "moe_blocks", "extend_layer", "extended_blocks", "original_routers",
           "BalanceLoss", "balance_term", "given_donors", "layer_count"]

logger = logging.getLogger(__name__)

ROUTING = ("open", "modality")


def original_routers(model: "XModalLM") -> dict[int, nn.Parameter]:
    """`{layer: gate.weight}`: every MoE layer's original router weight."""
    return {layer: blk.gate.weight for layer, (_, _, blk) in moe_blocks(model.llm).items()}


@dataclass
class MoExtendSettings:
    """`routing`: `open` (the paper: any token may pick the new experts) or `modality` (only rows of the
    step's modality: text and earlier modalities stay bit-identical). Layer selection: `layer_fraction`
    / `num_layers` of the MoE layers whose routing shifts most, or explicit `layers` (+ `donors`)."""

    num_new_experts: int = setting(1, min=1)
    routing: str = setting("open", choices=ROUTING)
    donor: str = setting("most_used", choices=DONOR_RULES)
    layer_fraction: float | None = 0.5  # in (0, 1]: checked with the other selection settings
    num_layers: int | None = setting(None, min=1)
    layers: list[int] | None = None
    donors: Any = None  # a list parallel to `layers`, or a {layer: experts} mapping (settings.py checks it)
    connector: str = setting("mlp", choices=("mlp", "qformer"))
    projector_hidden: int | None = setting(None, min=1)
    projector_layers: int = setting(2, min=1)
    calibration_hidden: int = setting(16, min=1)


@register_method
class MoExtend(Method):
    name = "moextend"
    phases = ("align", "extender", "finetune")
    data_phases = ("extender",)  # layer selection measures routing on held-out batches
    settings_cls = MoExtendSettings

    def keeps_earlier_paths(self, settings: dict[str, Any]) -> bool:
        return settings["routing"] == "modality"  # open routing lets every token reach the new experts

    def validate(self, settings: dict[str, Any], where: str) -> None:
        check_selection_settings(settings, where)  # fraction range, layers, donors against layers

    # ------------------------------------------------------------------------------------------

    def add_modality(self, model: "XModalLM", spec: ModalitySpec, settings: dict[str, Any]) -> None:
        if not moe_blocks(model.llm):
            raise ValueError("moextend needs a sparse-MoE LLM (router `gate` + fused `experts`)")
        check_layers_in_model(model, settings)
        if settings["connector"] == "qformer":
            model.connectors[spec.name] = copy.deepcopy(model.connectors[model.base_connector_name])
            model.new_path(spec, connector=spec.name)
            return
        enc_name, enc = model.get_encoder(spec)  # built first: the projector's input width is its width
        with torch.device(model.param_device):
            model.connectors[spec.name] = MLPProjector(enc.output_width, model.llm_width,
                                                       settings["projector_hidden"], settings["projector_layers"])
        model.new_path(dataclasses.replace(spec, encoder=enc_name), connector=spec.name, input_norm=False)

    def trainable(self, model: "XModalLM", modality: str, phase: str,
                  settings: dict[str, Any]) -> Iterable[nn.Parameter]:
        if phase == "extender":
            return list(original_routers(model).values())
        params = list(model.connectors[modality].parameters()) + list(model.paths[modality].parameters())
        if phase == "finetune":
            for blk in extended_blocks(model.llm):
                for ext in blk.extensions:
                    if ext.step == modality:
                        params += list(ext.parameters())
        return params

    def start_phase(self, model: "XModalLM", modality: str, phase: str, settings: dict[str, Any],
                    state: dict[str, Any]) -> None:
        if phase == "extender":  # the tuned routers are thrown away in end_phase
            model.scratch(self.name)["router_snapshot"] = {k: w.detach().clone()
                                                           for k, w in original_routers(model).items()}
        elif phase == "finetune":
            self._extend(model, modality, settings, state)

    def end_phase(self, model: "XModalLM", modality: str, phase: str, settings: dict[str, Any],
                  data: Iterable[dict] | None = None) -> dict[str, Any]:
        if phase != "extender":
            return {}
        batches = list(data) if data is not None else None
        usage_tuned = expert_usage(model, batches) if batches else None
        self._restore_routers(model)
        usage_orig = expert_usage(model, batches) if batches else None
        n_new = int(settings["num_new_experts"])
        given = given_donors(settings) or {}
        if usage_orig is not None:
            layers, donors, scores = select_layers(usage_orig, usage_tuned, settings["layer_fraction"],
                                                   settings["num_layers"], n_new, settings["donor"])
            if settings["layers"] is not None:  # explicit layers: no selection; donors given or measured
                layers = sorted(int(x) for x in settings["layers"])
                donors = {x: given[x] if x in given else pick_donors(usage_orig[x], usage_tuned[x], n_new,
                                                                     settings["donor"]) for x in layers}
            state = {"scores": [scores[x] for x in sorted(scores)],
                     "usage_orig": [usage_orig[x].tolist() for x in sorted(usage_orig)],
                     "usage_tuned": [usage_tuned[x].tolist() for x in sorted(usage_tuned)],
                     "moe_layers": sorted(scores)}
        else:
            if settings["layers"] is None:
                raise ValueError("moextend extender phase: held-out data (end_stage(data=...)) is needed to "
                                 "select layers, or give the layers in settings['layers']")
            layers = sorted(int(x) for x in settings["layers"])
            donors = {x: given.get(x, list(range(n_new))) for x in layers}
            if any(x not in given for x in layers):
                logger.warning("moextend: no held-out data and no settings['donors'] for layer(s) %s: donors are "
                               "experts 0..%d", [x for x in layers if x not in given], n_new - 1)
            state = {"scores": None, "usage_orig": None, "usage_tuned": None}
        logger.info("moextend %s: extending layers %s (donors %s)", modality, layers, donors)
        return {"layers": layers, "donors": {str(k): v for k, v in donors.items()}, **state}

    # ------------------------------------------------------------------------------------------

    def close_replayed_phase(self, model: "XModalLM", modality: str, phase: str, settings: dict[str, Any],
                             state: dict[str, Any]) -> None:
        if phase == "extender":  # a reloaded extender phase: its routers were never tuned; drop the copy
            model.scratch(self.name).pop("router_snapshot", None)

    def _restore_routers(self, model: "XModalLM") -> None:
        snapshot = model.scratch(self.name).pop("router_snapshot", None)
        if snapshot is None:
            raise RuntimeError("moextend: no router snapshot (extender phase not started)")
        with torch.no_grad():
            for layer, weight in original_routers(model).items():
                weight.copy_(snapshot[layer])

    @staticmethod
    def _extend(model: "XModalLM", modality: str, settings: dict[str, Any], state: dict[str, Any]) -> None:
        """Build this step's experts from the recorded state (also how a checkpoint is rebuilt)."""
        if "layers" not in state:
            raise RuntimeError(f"moextend {modality}: the extender phase recorded no layers")
        exclusive = settings["routing"] == "modality"
        for layer in state["layers"]:
            donors = [int(d) for d in state["donors"][str(layer)]]
            block = extend_layer(model.llm, int(layer), context=model.context)
            block.add_extension(donors, modality, exclusive, int(settings["calibration_hidden"]))
        # the built-in aux loss assumes one expert count per layer: every MoE layer's term, padding masked
        if not model.has_aux_loss("moextend-balance"):  # one instance: it hooks every router
            model.add_aux_loss("moextend-balance", BalanceLoss(model.llm), replaces_router_loss=True)
