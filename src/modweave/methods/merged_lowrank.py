"""A frozen projection plus a trained low-rank update as ONE linear map:
`P(x) + U (D x + c) + u = x (P + U D)^T + (b + U c + u)`.

Used where the update is linear in x: an ungated ana site (`ModalityExperts.folded` gives `D [r, d_in]`,
`c [r]`, `U [d_out, r]`, `u [d_out]`, the experts' scales and fixed weights 1/E folded in) and a LoRA
layer without dropout (`D = A`, `U = scaling * B`, no biases: methods/lora_layer.py). Forward is one
matmul with the merged weight, the cost of the frozen P alone. Backward is written out: autograd through
`F.linear(x, P + U D, ...)` would form the full `[d_out, d_in]` weight gradient `g^T x` only to project it
onto U and D; here the rank-r factors' gradients come from four skinny matmuls, each laid out so that its
long dimension (the N tokens) is the reduction (`[r, N] @ [N, d]`: measured 4-7x faster on CPU than the
`[d, N] @ [N, r]` autograd picks for an unmerged Up's weight gradient).

With `U = 0`, `u = 0` (a new `init: zero` adapter) the merged weight and bias are exactly P and b, so the
site output is exactly `P(x)`, bit for bit."""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable
from torch.nn import functional as F


class MergedLowRankLinear(torch.autograd.Function):
    """`y = F.linear(x, P + U D, b + U c + u)`; `x [..., d_in]` -> `[..., d_out]`. P, b: the frozen site;
    D, c, U, u: the low-rank update; any bias may be None. Gradients for every input that needs one."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, down_w: torch.Tensor,
                down_b: torch.Tensor | None, up_w: torch.Tensor, up_b: torch.Tensor | None) -> torch.Tensor:
        # under autocast these run in its dtype, as F.linear on the unmerged site would
        merged_w = torch.addmm(weight, up_w, down_w)
        merged_b = bias if up_b is None else up_b if bias is None else bias + up_b
        if down_b is not None:
            merged_b = up_w @ down_b if merged_b is None else torch.addmv(merged_b, up_w, down_b)
        # dtypes of the inputs, for their gradients (autocast computes in another one)
        ctx.dtypes = tuple(None if t is None else t.dtype for t in (weight, bias, down_b, up_b))
        ctx.save_for_backward(x, down_w, down_b, up_w, merged_w)
        return F.linear(x, merged_w, merged_b)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        x, down_w, down_b, up_w, merged_w = ctx.saved_tensors
        need = ctx.needs_input_grad
        weight_dtype, bias_dtype, down_b_dtype, up_b_dtype = ctx.dtypes
        dtype = grad.dtype  # the output's (under autocast: the compute) dtype; every matmul below runs in it
        g = grad.reshape(-1, grad.shape[-1])  # [N, d_out]
        xs = x.reshape(-1, x.shape[-1]).to(dtype)  # [N, d_in]
        grad_x = (grad @ merged_w.to(dtype)).to(x.dtype) if need[0] else None
        grad_w = (g.t() @ xs).to(weight_dtype) if need[1] else None
        g_sum = g.sum(0)  # [d_out]: the gradient of every bias added to the output
        grad_b = g_sum.to(bias_dtype) if need[2] else None
        grad_up_b = g_sum.to(up_b_dtype) if need[6] else None
        grad_down_w = grad_down_b = grad_up_w = None
        if need[3] or need[4]:
            gh_t = up_w.to(dtype).t() @ g.t()  # [r, N]: dL/dh^T for h = D x + c
            grad_down_w = (gh_t @ xs).to(down_w.dtype) if need[3] else None  # [r, d_in]
            grad_down_b = gh_t.sum(1).to(down_b_dtype) if need[4] else None
        if need[5]:
            # [r, N]: h^T = D x^T + c, recomputed (as cheap as keeping it from forward, and no memory)
            h_t = (down_w.to(dtype) @ xs.t() if down_b is None
                   else torch.addmm(down_b.to(dtype).unsqueeze(1), down_w.to(dtype), xs.t()))
            grad_up_w = (h_t @ g).t().to(up_w.dtype)  # [d_out, r]
        return grad_x, grad_w, grad_b, grad_down_w, grad_down_b, grad_up_w, grad_up_b


def merged_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, down_w: torch.Tensor,
                  down_b: torch.Tensor | None, up_w: torch.Tensor, up_b: torch.Tensor | None) -> torch.Tensor:
    """`x [..., d_in]` -> `P(x) + U (D x + c) + u` `[..., d_out]` as one matmul (see the module docstring);
    `weight [d_out, d_in]`, `down_w [r, d_in]`, `up_w [d_out, r]`; any bias may be None (no bias)."""
    return MergedLowRankLinear.apply(x, weight, bias, down_w, down_b, up_w, up_b)
