"""The extended sparse-MoE layer: a pretrained block's frozen router and fused experts, plus new experts.

`ExtendedMoeBlock` takes the place of a transformers sparse-MoE block (Mixtral, Qwen2/3-MoE, OLMoE...:
a top-k router `gate` with a `weight [E, H]` and fused `experts` with `gate_up_proj [E, 2I, H]`,
`down_proj [E, H, I]`). It registers the original block's children under their own names, so every
original tensor keeps its state-dict key and its Parameter object (frozen, untouched), and holds one
`ExpertExtension` per continual step (new experts, router rows, a calibration module).

Routing over E + n experts (n = all steps' new experts routable in a row):
  z = [W_orig x ; w_new x],  p = softmax(z) in fp32,  top-k on p (uncalibrated),
  p~ = p + W2 GELU(W1 p) (each step's calibration applied in step order over the experts existing
  up to that step), mixing weights = p~ at the chosen experts, renormalised.
Exactness: the original experts module is always called with the ORIGINAL router's indices (so the
expert computation is the original one, whatever `experts_implementation` transformers dispatches to);
an original slot not chosen any more gets weight 0, new experts are computed separately on their rows.
On tokens that chose no new expert the weights are the original router's times a factor that is exactly
1.0 while the calibration is the identity: such tokens are bit-identical to the original block.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

CALIBRATION_HIDDEN = 16


def router_renormalises(gate: nn.Module) -> bool:
    """Whether a top-k router renormalises its top-k weights (Mixtral always; Qwen/OLMoE via config)."""
    return bool(getattr(gate, "norm_topk_prob", True))


def check_block(block: nn.Module) -> None:
    """Refuse blocks whose routing or expert layout the extended layer does not reproduce exactly."""
    gate, experts = getattr(block, "gate", None), getattr(block, "experts", None)
    if gate is None or experts is None or not hasattr(gate, "weight") or not hasattr(experts, "gate_up_proj"):
        raise ValueError(f"{type(block).__name__} is not a sparse-MoE block with a top-k router `gate` "
                         "and fused `experts` (gate_up_proj / down_proj)")
    if getattr(experts, "is_transposed", False) or getattr(experts, "has_bias", False):
        raise ValueError(f"{type(experts).__name__}: transposed or biased fused experts are not supported")
    if not router_renormalises(gate):
        raise ValueError(f"{type(gate).__name__} does not renormalise its top-k weights (norm_topk_prob=False):"
                         " the extended layer's renormalised mixing would change every token")


class _Fp32Linear(torch.autograd.Function):
    """`x [T, H]` (any float dtype) @ `w [n, H]` (fp32).T -> `[T, n]` fp32, saving `x` in its own dtype
    (an fp32 copy of `x` would be saved otherwise: 2x the activation memory in bf16)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, w)
        return F.linear(x.float(), w)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, w = ctx.saved_tensors
        grad_x = (grad @ w).to(x.dtype) if ctx.needs_input_grad[0] else None
        grad_w = grad.t() @ x.float() if ctx.needs_input_grad[1] else None
        return grad_x, grad_w


def fp32_linear(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """`F.linear(x, w)` computed and returned in fp32 (`w` fp32): the plain op when `x` is fp32."""
    if torch.is_autocast_enabled(x.device.type):  # mixed precision would run it in bf16/fp16
        with torch.autocast(x.device.type, enabled=False):
            return fp32_linear(x, w)
    if x.dtype == torch.float32:
        return F.linear(x, w)
    return _Fp32Linear.apply(x, w)


class Calibration(nn.Module):
    """`p~ = p + W2 GELU(W1 p)`, W1: n -> 16, W2: 16 -> n, no biases. W1 ~ N(0, 0.02), W2 = 0 (identity)."""

    def __init__(self, num_experts: int, hidden: int = CALIBRATION_HIDDEN):
        super().__init__()
        self.w1 = nn.Linear(num_experts, hidden, bias=False)
        self.w2 = nn.Linear(hidden, num_experts, bias=False)
        nn.init.normal_(self.w1.weight, std=0.02)
        nn.init.zeros_(self.w2.weight)

    def delta(self, p: torch.Tensor) -> torch.Tensor:
        """`[T, n]` fp32 probabilities -> the correction `W2 GELU(W1 p)` `[T, n]` (fp32)."""
        return F.linear(F.gelu(F.linear(p, self.w1.weight.float())), self.w2.weight.float())

    def forward(self, p: torch.Tensor) -> torch.Tensor:
        return p + self.delta(p)


class ExpertExtension(nn.Module):
    """One step's additions to one layer: `n` new experts (copies of `donors`), their router rows and a
    calibration module over the `num_before + n` experts existing after the step.

    `step`: the modality (or task) of the step; `exclusive`: routing policy `modality` (the new experts
    are routable only in batch rows of `step`) versus `open`."""

    def __init__(self, block: nn.Module, donors: list[int], step: str, exclusive: bool, num_before: int,
                 calibration_hidden: int = CALIBRATION_HIDDEN):
        super().__init__()
        experts, gate = block.experts, block.gate
        idx = torch.tensor(donors, dtype=torch.long, device=gate.weight.device)
        with torch.no_grad():  # copies: the original fused tensors are never referenced or modified
            self.gate_up_proj = nn.Parameter(experts.gate_up_proj.detach()[idx].clone())  # [n, 2I, H]
            self.down_proj = nn.Parameter(experts.down_proj.detach()[idx].clone())  # [n, H, I]
            self.router = nn.Parameter(gate.weight.detach()[idx].clone())  # [n, H]
        self.calibration = Calibration(num_before + len(donors), calibration_hidden).to(gate.weight.device)
        # on the module's device, not in the state dict: no host-to-device copy per forward
        self.register_buffer("donor_index", idx, persistent=False)
        self.donors = list(donors)
        self.step = step
        self.exclusive = exclusive
        self.num_before = num_before

    @property
    def num_new(self) -> int:
        return self.router.shape[0]

    def expert(self, j: int, x: torch.Tensor, apply_gate) -> torch.Tensor:
        """New expert `j` on tokens `[N, H]` -> `[N, H]` (the family's own gating, e.g. SiLU(g) * u)."""
        return F.linear(apply_gate(F.linear(x, self.gate_up_proj[j])), self.down_proj[j])


class ExtendedMoeBlock(nn.Module):
    """A sparse-MoE block with frozen original router/experts plus `extensions` (one per step)."""

    def __init__(self, block: nn.Module, layer: int, context=None):
        super().__init__()
        check_block(block)
        object.__setattr__(self, "original", block)  # not a submodule: its children are registered below
        for name, child in block.named_children():
            self.add_module(name, child)
        for name, param in block.named_parameters(recurse=False):
            self.register_parameter(name, param)
        self.extensions = nn.ModuleList()
        self.layer = layer
        self.context = context  # the model's PathContext (per-row modalities), read at forward time
        # (p [T, E+n] fp32, top_idx [T, k]) of the last training forward, for the balance loss (balance.py)
        self.last_routing: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def num_original(self) -> int:
        return self.original.gate.weight.shape[0]

    @property
    def num_experts(self) -> int:
        return self.num_original + sum(e.num_new for e in self.extensions)

    @property
    def top_k(self) -> int:
        return int(getattr(self.original.gate, "top_k", getattr(self.original, "top_k", 2)))

    def add_extension(self, donors: list[int], step: str, exclusive: bool,
                      calibration_hidden: int = CALIBRATION_HIDDEN) -> ExpertExtension:
        ext = ExpertExtension(self.original, donors, step, exclusive, self.num_experts, calibration_hidden)
        self.extensions.append(ext)
        return ext

    # ------------------------------------------------------------------------------------------

    def _active_rows(self, rows: int) -> torch.Tensor:
        """`[rows, S]` bool, on the CPU: whether step s's experts are routable in each LLM batch row."""
        mods = self.context.sample_modalities if self.context is not None else None
        if mods and rows % len(mods) == 0:  # beam search: B * num_beams rows, repeat-interleaved
            mods = [m for m in mods for _ in range(rows // len(mods))]
        elif mods and len(mods) != rows:
            raise ValueError(f"layer {self.layer}: {len(mods)} sample modalities for {rows} batch rows")
        active = torch.ones(rows, len(self.extensions), dtype=torch.bool)
        for s, ext in enumerate(self.extensions):
            if ext.exclusive:  # no sample info: treated as "not this step's modality"
                # a row holding several modalities routes to every present modality's steps
                active[:, s] = torch.tensor([ext.step in m for m in mods] if mods else [False] * rows)
        return active

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """`[B, S, H]` -> `[B, S, H]`."""
        b, s, h = hidden_states.shape
        active = self._active_rows(b)
        if not self.extensions or not bool(active.any()):  # checked on the CPU copy: no device sync
            self.last_routing = None
            return self.original(hidden_states)  # no new expert routable anywhere: the original block
        # evaluation: steps after the last one routable in some row of this batch add only zero-probability
        # columns and calibrations masked to 0, so they are left out (the same values, bit for bit: their
        # logits are -inf, exp gives 0, the normaliser never adds them, p + 0.0 is p), and an earlier
        # modality's path costs the same however many steps follow it. Training keeps every step's columns:
        # the balance loss reads p over all E + n experts
        exts = self.extensions
        if not self.training:
            used = int(active.any(0).nonzero().max()) + 1
            exts, active = self.extensions[:used], active[:, :used]
        if self.training and getattr(self.original, "jitter_noise", 0) > 0:
            hidden_states = hidden_states * torch.empty_like(hidden_states).uniform_(
                1.0 - self.original.jitter_noise, 1.0 + self.original.jitter_noise)
        x = hidden_states.reshape(-1, h)
        tok_active = active.to(x.device).repeat_interleave(s, dim=0)  # [T, S]
        orig_logits, w_orig, idx_orig = self.gate(x)  # exactly the original router's computation
        e0 = self.num_original
        new_logits = [z.masked_fill(~tok_active[:, si:si + 1], -math.inf)
                      for si, z in enumerate(self.new_logits(x, orig_logits, exts))]
        p = self._nested_softmax(orig_logits.float(), new_logits, tok_active)  # [T, E+n]
        # chosen on the uncalibrated p; a stable sort sends ties to the lower index, so a new expert tied
        # with its donor (a fresh copy) loses to it unless the donor is itself chosen
        top_idx = torch.sort(p, dim=-1, descending=True, stable=True).indices[:, :self.top_k]
        p_cal = p
        for si, ext in enumerate(exts):  # step order: each refines the previous model's p~
            n = ext.num_before + ext.num_new
            delta = torch.where(tok_active[:, si:si + 1], ext.calibration.delta(p_cal[:, :n]), 0.0)
            p_cal = torch.cat([p_cal[:, :n] + delta, p_cal[:, n:]], dim=-1)
        chosen = p_cal.gather(1, top_idx)
        mix = chosen / chosen.sum(-1, keepdim=True)  # [T, k] renormalised calibrated weights

        # weights for the ORIGINAL router's slots: 0 where that expert is no longer chosen
        match = idx_orig.unsqueeze(-1) == top_idx.unsqueeze(-2)  # [T, k_orig, k]
        mix_at_orig = torch.where(match, mix.unsqueeze(-2), 0.0).sum(-1)
        # tokens that chose no new expert: original weights x (p~/p) / (sum p~ / sum p), == 1.0 exactly
        # while p~ == p (ratios are scale-free, so p over E+n serves for the router's p over E)
        p_o, c_o = p.gather(1, idx_orig), p_cal.gather(1, idx_orig)
        ratio = torch.where(p_o > 0, c_o / p_o, 1.0)
        factor = ratio / (c_o.sum(-1, keepdim=True) / p_o.sum(-1, keepdim=True))
        touched = (top_idx >= e0).any(-1, keepdim=True)
        weights = torch.where(touched, mix_at_orig, w_orig.float() * factor).to(w_orig.dtype)
        out = self.experts(x, idx_orig, weights)

        # (token, slot) pairs routed to any new expert, sorted by expert: ONE nonzero (one device sync)
        # for all new experts, then contiguous slices per expert
        new_pairs = (top_idx >= e0).nonzero()  # [P, 2]
        if new_pairs.shape[0]:
            num_new = sum(ext.num_new for ext in exts)
            if num_new == 1:
                groups = [new_pairs]
            else:
                expert_of_pair = top_idx[new_pairs[:, 0], new_pairs[:, 1]] - e0
                order = torch.argsort(expert_of_pair, stable=True)  # stable: token order within an expert
                counts = torch.bincount(expert_of_pair, minlength=num_new).tolist()
                groups = torch.split(new_pairs[order], counts)
            experts = iter(groups)
            for ext in exts:
                for j in range(ext.num_new):
                    tok, slot = next(experts).unbind(-1)
                    if tok.numel():
                        y = ext.expert(j, x[tok], self.experts._apply_gate) * mix[tok, slot, None]
                        # rows unique per expert, so a gather-add-scatter gives index_add_'s bits (one add per
                        # element) without its CPU scatter_add path (measured ~50 ms at 100 x 1024 rows)
                        out[tok] = out[tok] + y.to(out.dtype)
        if hasattr(self.original, "shared_expert"):  # Qwen2-MoE: a gated always-on expert
            shared = self.original.shared_expert(x)
            out = out + F.sigmoid(self.original.shared_expert_gate(x)) * shared
        self.last_routing = (p, top_idx) if self.training else None
        return out.reshape(b, s, h)

    def new_logits(self, x: torch.Tensor, orig_logits: torch.Tensor,
                   extensions: "list[ExpertExtension] | nn.ModuleList | None" = None) -> list[torch.Tensor]:
        """Each step's new router logits `[T, n]` (fp32) from tokens `x [T, H]` and the original router's
        logits `orig_logits [T, E]` (model dtype); `extensions`: those steps (default: all)."""
        out = []
        for ext in (self.extensions if extensions is None else extensions):
            # w_new x computed as w_donor x + (w_new - w_donor) x: the same value mathematically, and
            # bit-equal to the donor's logit while the row is still its copy (a separate GEMM is not).
            # The difference term is computed in fp32: in bf16 its own rounding would add to the donor
            # logit's (measured 2.6x the error of a direct bf16 product once the row has moved)
            donors = ext.donor_index
            diff = ext.router.float() - self.gate.weight[donors].float()  # [n, H]; exact for bf16 rows
            out.append(orig_logits.float()[:, donors] + fp32_linear(x, diff))
        return out

    @staticmethod
    def _nested_softmax(orig: torch.Tensor, new: list[torch.Tensor], active: torch.Tensor) -> torch.Tensor:
        """softmax over `[orig | new_1 | ... ]` logits whose normaliser adds each step's block only in rows
        where the step is active: a row sees exactly the sums (and so the bits) the model had before
        later steps were added (a plain softmax's vectorised sum regroups when columns are appended)."""
        z = torch.cat([orig, *new], dim=-1)
        e = torch.exp(z - z.max(-1, keepdim=True).values)
        total = e[:, : orig.shape[1]].sum(-1, keepdim=True)
        start = orig.shape[1]
        for si, block in enumerate(new):
            part = e[:, start:start + block.shape[1]].sum(-1, keepdim=True)
            total = total + torch.where(active[:, si:si + 1], part, 0.0)
            start += block.shape[1]
        return e / total
