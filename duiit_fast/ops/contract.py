"""The op contract every fused backend implements (docs/ops.md): the integer codes the kernels
take, the shapes of their outputs (the fake implementations torch.compile traces with), and the
autograd formula around a backend's forward/backward op pair.

    instance_norm_act(x, weight, bias, residual, act, slope, eps) -> (y, mean, rstd)
    instance_norm_act_backward(grad_y, x, mean, rstd, weight, bias, act, slope, need_weight_grads)
        -> (grad_x, grad_weight, grad_bias)
    loss(a, b, target, kind) -> 0-dim mean          kind: "lsgan" (b None) | "l1"
    loss_backward(grad_out, a, b, target, kind, need_grad_b) -> (grad_a, grad_b or empty)
"""
from __future__ import annotations

import torch

ACT_CODES = {"none": 0, "relu": 1, "leaky_relu": 2}   # csrc/ and kernels/ use the same numbers
LOSS_CODES = {"lsgan": 0, "l1": 1}


def fake_loss(a, b, target, kind):
    return a.new_empty(())


def fake_loss_backward(grad_out, a, b, target, kind, need_grad_b):
    grad_a = torch.empty_like(a, memory_format=torch.contiguous_format)
    return grad_a, (torch.empty_like(grad_a) if b is not None and need_grad_b else a.new_empty(0))


def register_instance_norm_autograd(forward_op, backward_op) -> None:
    def setup_context(ctx, inputs, output):
        x, weight, bias, residual, act, slope, eps = inputs
        _, mean, rstd = output
        ctx.save_for_backward(x, mean, rstd, weight, bias)
        ctx.act, ctx.slope, ctx.has_residual = act, slope, residual is not None

    def backward(ctx, grad_y, _grad_mean, _grad_rstd):
        # mean and rstd are saved statistics, not outputs anyone differentiates.
        x, mean, rstd, weight, bias = ctx.saved_tensors
        need_w = ctx.needs_input_grad[1] or ctx.needs_input_grad[2]
        grad_x, grad_w, grad_b = backward_op(grad_y, x, mean, rstd, weight, bias, ctx.act, ctx.slope, need_w)
        return (grad_x, grad_w if ctx.needs_input_grad[1] else None,
                grad_b if ctx.needs_input_grad[2] else None,
                grad_y if ctx.has_residual else None, None, None, None)

    forward_op.register_autograd(backward, setup_context=setup_context)


def register_loss_autograd(forward_op, backward_op) -> None:
    def setup_context(ctx, inputs, output):
        a, b, target, kind = inputs
        ctx.save_for_backward(a, b)
        ctx.target, ctx.kind = target, kind

    def backward(ctx, grad_out):
        a, b = ctx.saved_tensors
        need_b = b is not None and ctx.needs_input_grad[1]
        grad_a, grad_b = backward_op(grad_out, a, b, ctx.target, ctx.kind, need_b)
        return grad_a, (grad_b if need_b else None), None, None

    forward_op.register_autograd(backward, setup_context=setup_context)
