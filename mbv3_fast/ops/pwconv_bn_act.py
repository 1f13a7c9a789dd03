"""mbv3::pwconv_bn_act — 1x1 conv + folded BatchNorm + activation (+ residual, + SE input
scale) in one pass.

    y = act(conv1x1(x * in_scale[:, :, None, None], weight) + bias) + residual

Schema and CPU kernel: csrc/pwconv_bn_act/pwconv_bn_act_op.cpp.  CUDA kernel: mbv3_fast/kernels/pwconv_bn_act.py
(Triton).  Here: input checks shared by the fake and CUDA paths, the fake kernel, the CUDA
registration and the Python wrapper.

Weight layout: any [Cout, Cin, 1, 1] or [Cout, Cin] tensor works.  The CPU kernel reads the
weight K-major (row k = input channel k's Cout weights); a view of a [Cin, Cout] buffer
(``pack_weight``) is read in place, anything else is transposed on every call.
"""
from typing import Optional

import torch
from torch import nn

from mbv3_fast.ops._checks import check_activation, check_cpu_dtype, check_float, check_same_device
from mbv3_fast.ops._layout import output_memory_format
from mbv3_fast.ops.fold_bn import fold_bn

def check_inputs(x, weight, bias, activation, residual=None, in_scale=None):
    """Validate the op's arguments for the fake (meta) and CUDA (Triton) paths, with the C++
    kernel's messages.  Returns (Cout, activation code).  ValueError for bad dtypes, shapes and
    values; RuntimeError for tensors on different devices."""
    op = "pwconv_bn_act"
    check_float(x, "x", op)
    if x.dim() != 4:
        raise ValueError(f"{op}: x must be 4-D [N, Cin, H, W], got {x.dim()}-D")
    n, cin, h, w = x.shape
    check_float(weight, "weight", op, x.dtype)
    check_float(bias, "bias", op, x.dtype)
    if not (weight.dim() == 2 or (weight.dim() == 4 and weight.shape[2] == 1 and weight.shape[3] == 1)) \
            or weight.shape[1] != cin:
        raise ValueError(f"{op}: weight must be [Cout, Cin, 1, 1] or [Cout, Cin] with Cin = {cin} "
                         f"(x's channels), got {list(weight.shape)}")
    cout = weight.shape[0]
    if bias.dim() != 1 or bias.shape[0] != cout:
        raise ValueError(f"{op}: bias must be [Cout] with Cout = {cout}, got {list(bias.shape)}")
    act = check_activation(activation, op)
    others = dict(weight=weight, bias=bias)
    if residual is not None:
        check_float(residual, "residual", op, x.dtype)
        if list(residual.shape) != [n, cout, h, w]:
            raise ValueError(f"{op}: residual must be [N, Cout, H, W] = [{n}, {cout}, {h}, {w}], "
                             f"got {list(residual.shape)}")
        others["residual"] = residual
    if in_scale is not None:
        check_float(in_scale, "in_scale", op, x.dtype)
        if list(in_scale.shape) != [n, cin]:
            raise ValueError(f"{op}: in_scale must be [N, Cin] = [{n}, {cin}], "
                             f"got {list(in_scale.shape)}")
        others["in_scale"] = in_scale
    check_same_device(x, **others)
    return cout, act


@torch.library.register_fake("mbv3::pwconv_bn_act")
def _fake(x, weight, bias, activation, residual=None, in_scale=None):
    check_cpu_dtype(x)
    cout, _ = check_inputs(x, weight, bias, activation, residual, in_scale)
    return x.new_empty((x.shape[0], cout, x.shape[2], x.shape[3])).contiguous(
        memory_format=output_memory_format(x))


@torch.library.register_kernel("mbv3::pwconv_bn_act", "cuda")
def _cuda(x, weight, bias, activation, residual=None, in_scale=None):
    from mbv3_fast.kernels.pwconv_bn_act import pwconv_bn_act as triton_pwconv_bn_act
    return triton_pwconv_bn_act(x, weight, bias, activation, residual, in_scale)


def pack_weight(weight: torch.Tensor) -> torch.Tensor:
    """The layout to keep a (folded) 1x1 weight in: a [Cin, Cout] buffer viewed as
    [Cout, Cin, 1, 1] (stride(0) == 1), which the CPU kernel reads without any per-call packing."""
    w2 = weight.reshape(weight.shape[0], weight.shape[1])
    return w2.t().contiguous().t()[:, :, None, None]


def pwconv_bn_act(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None, *,
                  bn: Optional[nn.Module] = None, activation: str = "hardswish",
                  residual: Optional[torch.Tensor] = None,
                  in_scale: Optional[torch.Tensor] = None) -> torch.Tensor:
    """1x1 conv + BatchNorm + activation (+ residual after the activation, + per-sample input
    channel scale ``in_scale`` [N, Cin]) as one op.

    Either pass the conv ``weight`` [Cout, Cin, 1, 1] together with ``bn`` (folded here, each
    call — cache ``fold_bn`` + ``pack_weight`` yourself on a hot path), or an already folded
    ``weight``/``bias``.
    """
    if bn is not None:
        weight, bias = fold_bn(weight, bn, bias)
    elif bias is None:
        bias = weight.new_zeros(weight.shape[0])
    return torch.ops.mbv3.pwconv_bn_act(x, weight, bias, activation, residual, in_scale)
