"""A gated ana site in training, with its backward written out.

Forward: the same ops as `ModalityExperts.forward`'s autograd path, in the same order, so the output is
bit-identical to it: `[P(x) | h | clean | raw] = x [P; D; W_g; W_n]^T + [b; c; 0; 0]` (P fused into the
one matmul where `fuse`, else P(x) on its own), `g = softmax(clean + noise * (softplus(raw) + min_std))`,
`out = P(x) + [h * g_rep | g] U^T` (`g_rep`: each expert's weight repeated over its rank).

Backward, by hand: autograd through the fused matmul would form the weight gradient of P's rows too
(`[d_out, N] @ [N, d_in]`, the size of the site's own projection) only to drop it, and it lays out the Up
gradient as `[d_out, N] @ [N, R + E]`, slow on CPU; here every weight gradient is `[k, N] @ [N, d]` and only
the trained ones are formed. Not used under autocast (the autograd path then handles the dtypes)."""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable
from torch.nn import functional as F


class GatedSite(torch.autograd.Function):
    """`x [..., d_in]` -> `[..., d_out]`. `down_w [R + E (+E), d_in]`, `down_b`: the experts' Downs (their
    in-adapters folded in), then the gate's rows (`W_g`, and `W_n` when `noise` is given); `up_w
    [d_out, R + E]`: the experts' scaled Ups, then their scaled biases; `noise [..., E]`: the gate's
    standard-normal draw (None: no noise branch); `ranks`: the experts' ranks (sum R)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, down_w: torch.Tensor,
                down_b: torch.Tensor, up_w: torch.Tensor, noise: torch.Tensor | None, min_std: float,
                ranks: tuple[int, ...], fuse: bool) -> torch.Tensor:
        num_e, total_r, d_out = len(ranks), sum(ranks), weight.shape[0]
        sizes = [total_r, num_e] + ([num_e] if noise is not None else [])
        if fuse:
            rows_b = bias if bias is not None else weight.new_zeros(d_out)
            fused = F.linear(x, torch.cat([weight, down_w]), torch.cat([rows_b, down_b]))
            parts = list(fused.split([d_out, *sizes], -1))
            base_out = parts.pop(0)
        else:
            parts = list(F.linear(x, down_w, down_b).split(sizes, -1))
            base_out = F.linear(x, weight, bias)
        h, clean = parts[0], parts[1]
        raw = parts[2] if noise is not None else None
        logits = clean + noise * (F.softplus(raw) + min_std) if raw is not None else clean
        g = torch.softmax(logits, dim=-1)  # [..., E]
        repeats = ranks[0] if len(set(ranks)) == 1 else torch.tensor(ranks, device=g.device)
        g_rep = g.repeat_interleave(repeats, dim=-1)  # [..., R]
        mixed = torch.cat([h * g_rep, g], dim=-1)  # [..., R + E]
        out = torch.addmm(base_out.reshape(-1, d_out), mixed.reshape(-1, mixed.shape[-1]), up_w.t())
        ctx.ranks, ctx.has_bias = ranks, bias is not None
        ctx.save_for_backward(x, weight, down_w, up_w, h, g, g_rep, mixed, noise, raw)
        return out.view(*base_out.shape)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        x, weight, down_w, up_w, h, g, g_rep, mixed, noise, raw = ctx.saved_tensors
        need = ctx.needs_input_grad
        ranks, num_e, total_r = ctx.ranks, len(ctx.ranks), sum(ctx.ranks)
        go = grad.reshape(-1, grad.shape[-1])  # [N, d_out]
        xs = x.reshape(-1, x.shape[-1])  # [N, d_in]
        flat = (-1, num_e)
        g, h, g_rep = g.reshape(flat), h.reshape(-1, total_r), g_rep.reshape(-1, total_r)
        grad_up_w = (mixed.reshape(-1, mixed.shape[-1]).t() @ go).t() if need[5] else None  # [d_out, R + E]
        g_mixed = go @ up_w  # [N, R + E]
        g_hr, g_gate = g_mixed[:, :total_r], g_mixed[:, total_r:]
        g_h = g_hr * g_rep  # [N, R]
        per_rank = g_hr * h
        if len(set(ranks)) == 1:  # the gate's gradient from every expert's rank block: sum over the block
            from_mix = per_rank.view(-1, num_e, ranks[0]).sum(-1)
        else:
            from_mix = torch.stack([c.sum(-1) for c in per_rank.split(list(ranks), -1)], -1)
        g_gate = g_gate + from_mix  # [N, E]
        g_logits = g * (g_gate - (g_gate * g).sum(-1, keepdim=True))  # softmax backward
        cols = [g_h, g_logits]
        if noise is not None:  # d/d raw of noise * softplus(raw) = noise * sigmoid(raw)
            cols.append(g_logits * noise.reshape(flat) * torch.sigmoid(raw.reshape(flat)))
        g_rows = torch.cat(cols, -1)  # [N, R + E (+E)]: the gradient of the Down / gate matmul's output
        grad_down_w = g_rows.t() @ xs if need[3] else None
        grad_down_b = g_rows.sum(0) if need[4] else None
        grad_x = None
        if need[0]:
            grad_x = (go @ weight).addmm_(g_rows, down_w).view(x.shape)  # in place: no copy of go @ P
        grad_w = go.t() @ xs if need[1] else None
        grad_b = go.sum(0) if need[2] and ctx.has_bias else None
        return grad_x, grad_w, grad_b, grad_down_w, grad_down_b, grad_up_w, None, None, None, None


def gated_site(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, down_w: torch.Tensor,
               down_b: torch.Tensor, up_w: torch.Tensor, noise: torch.Tensor | None, min_std: float,
               ranks: list[int], fuse: bool) -> torch.Tensor:
    """The gated site's output `[..., d_out]` with the hand-written backward (see the module docstring)."""
    return GatedSite.apply(x, weight, bias, down_w, down_b, up_w, noise, min_std, tuple(ranks), fuse)
