"""methods/merged_lowrank.py: `x (P + U D)^T + (b + U c + u)` as one matmul with hand-written gradients."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from modweave.methods.merged_lowrank import merged_linear

BIASES = [pytest.param((True, True, True), id="all-biases"), pytest.param((False, False, False), id="no-biases"),
          pytest.param((True, False, False), id="P-bias-only"), pytest.param((False, True, True), id="update-biases")]


def _inputs(biases, dtype=torch.float64, d_in=12, d_out=7, r=4, frozen=False):
    torch.manual_seed(0)

    def t(*shape, on=True):
        return torch.randn(*shape, dtype=dtype, requires_grad=not frozen) if on else None

    has_b, has_c, has_u = biases
    x = torch.randn(3, 5, d_in, dtype=dtype, requires_grad=True)
    return x, t(d_out, d_in), t(d_out, on=has_b), t(r, d_in), t(r, on=has_c), t(d_out, r), t(d_out, on=has_u)


def _reference(x, weight, bias, down_w, down_b, up_w, up_b):
    """The unmerged site, as autograd sees it: P(x) + U (D x + c) + u."""
    return F.linear(x, weight, bias) + F.linear(F.linear(x, down_w, down_b), up_w, up_b)


@pytest.mark.parametrize("biases", BIASES)
def test_gradients_pass_gradcheck(biases):
    assert torch.autograd.gradcheck(merged_linear, _inputs(biases))


@pytest.mark.parametrize("biases", BIASES)
def test_equals_the_unmerged_site_with_every_gradient(biases):
    inputs = _inputs(biases, torch.float32)
    used = [t for t in inputs if t is not None]
    grad_out = torch.randn(5, 3, 7).transpose(0, 1)  # a non-contiguous incoming gradient
    got, want = merged_linear(*inputs), _reference(*inputs)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    for g, w in zip(torch.autograd.grad(got, used, grad_out), torch.autograd.grad(want, used, grad_out)):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5)


def test_a_zero_update_leaves_exactly_the_frozen_projection():
    """U = 0, u = 0 (a new zero-init adapter, a new LoRA B): bit for bit P(x), gradient of x included."""
    x, weight, bias, down_w, down_b, up_w, up_b = _inputs((True, True, True), torch.float32, d_in=64, d_out=48)
    with torch.no_grad():
        up_w.zero_()
        up_b.zero_()
    out = merged_linear(x, weight.detach(), bias.detach(), down_w, down_b, up_w, up_b)
    plain = F.linear(x, weight.detach(), bias.detach())
    assert torch.equal(out, plain)
    grad_out = torch.randn_like(out)
    assert torch.equal(torch.autograd.grad(out, x, grad_out)[0], torch.autograd.grad(plain, x, grad_out)[0])


def test_only_the_inputs_that_need_gradients_get_them():
    x, weight, bias, down_w, down_b, up_w, up_b = _inputs((True, True, True), torch.float32, frozen=True)
    down_w.requires_grad_(True)
    merged_linear(x, weight, bias, down_w, down_b, up_w, up_b).sum().backward()
    assert x.grad is not None and down_w.grad is not None
    assert all(t.grad is None for t in (weight, bias, down_b, up_w, up_b))


def test_autocast_computes_in_its_dtype_and_returns_gradients_in_the_inputs_dtypes():
    """Under CPU autocast (bf16) the output is bf16 as F.linear's would be, every gradient comes back in its
    input's dtype (fp32), and both are close to the unmerged site under the same autocast."""
    inputs = _inputs((True, True, True), torch.float32)
    used = [t for t in inputs if t is not None]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got, want = merged_linear(*inputs), _reference(*inputs)
    assert got.dtype == want.dtype == torch.bfloat16
    grads = torch.autograd.grad(got.float().sum(), used)
    assert [g.dtype for g in grads] == [torch.float32] * len(used)
    for g, w in zip(grads, torch.autograd.grad(want.float().sum(), used)):
        torch.testing.assert_close(g, w, rtol=0.05, atol=0.5)
    torch.testing.assert_close(got, want, rtol=0.05, atol=0.2)
