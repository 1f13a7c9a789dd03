"""mbv3::dwconv_bn_act — depthwise conv + folded BatchNorm + activation in one pass.

Schema and CPU kernel: csrc/dwconv_bn_act/dwconv_bn_act_op.cpp.  CUDA kernel: mbv3_fast/kernels/dwconv_bn_act.py
(Triton).  Here: input checks shared by the fake and CUDA paths, the fake kernel, the CUDA
registration and the Python wrapper.
"""
from typing import Optional

import torch
from torch import nn

from mbv3_fast.ops._checks import (check_activation, check_cpu_dtype, check_float, check_int_args,
                                    check_same_device)
from mbv3_fast.ops._layout import output_memory_format
from mbv3_fast.ops.fold_bn import fold_bn

def check_depthwise(op, c, h, w, weight, bias, stride, padding, dilation, c_name="C",
                    origin="x's channels"):
    """A depthwise conv's own arguments, shared with expand_dwconv_bn_act: weight [C, 1, k, k]
    with odd k <= 7, bias [C], stride / dilation >= 1, padding >= 0, an H x W input no smaller
    than the dilated kernel.  ``c_name`` / ``origin`` say in messages what C is and where it
    comes from.  Returns (k, OH, OW)."""
    if weight.dim() != 4 or weight.shape[0] != c or weight.shape[1] != 1 \
            or weight.shape[2] != weight.shape[3]:
        raise ValueError(f"{op}: weight must be [{c_name}, 1, k, k] with {c_name} = {c} ({origin}), "
                         f"got {list(weight.shape)}")
    k = weight.shape[2]
    if k % 2 != 1 or k > 7:
        raise ValueError(f"{op}: kernel size must be odd and <= 7, got {k}")
    if bias.dim() != 1 or bias.shape[0] != c:
        raise ValueError(f"{op}: bias must be [{c_name}] with {c_name} = {c}, got {list(bias.shape)}")
    check_int_args(op, stride=(stride, 1), dilation=(dilation, 1), padding=(padding, 0))
    if h < 1 or w < 1:
        raise ValueError(f"{op}: H and W must be >= 1, got {h}x{w}")
    span = dilation * (k - 1) + 1
    if h + 2 * padding < span or w + 2 * padding < span:
        raise ValueError(f"{op}: input {h}x{w} with padding {padding} is smaller than "
                         f"the dilated kernel {span}")
    return k, (h + 2 * padding - span) // stride + 1, (w + 2 * padding - span) // stride + 1


def check_inputs(x, weight, bias, stride, padding, dilation, activation):
    """Validate the op's arguments for the fake (meta) and CUDA (Triton) paths, with the C++
    kernel's messages.  Returns (k, OH, OW, activation code).  ValueError for bad dtypes,
    shapes and values; RuntimeError for tensors on different devices."""
    op = "dwconv_bn_act"
    check_float(x, "x", op)
    if x.dim() != 4:
        raise ValueError(f"{op}: x must be 4-D [N, C, H, W], got {x.dim()}-D")
    n, c, h, w = x.shape
    check_float(weight, "weight", op, x.dtype)
    check_float(bias, "bias", op, x.dtype)
    k, oh, ow = check_depthwise(op, c, h, w, weight, bias, stride, padding, dilation)
    act = check_activation(activation, op)
    check_same_device(x, weight=weight, bias=bias)
    return k, oh, ow, act


@torch.library.register_fake("mbv3::dwconv_bn_act")
def _fake(x, weight, bias, stride, padding, dilation, activation):
    check_cpu_dtype(x)
    _, oh, ow, _ = check_inputs(x, weight, bias, stride, padding, dilation, activation)
    return x.new_empty((x.shape[0], x.shape[1], oh, ow)).contiguous(
        memory_format=output_memory_format(x))


@torch.library.register_kernel("mbv3::dwconv_bn_act", "cuda")
def _cuda(x, weight, bias, stride, padding, dilation, activation):
    from mbv3_fast.kernels.dwconv_bn_act import dwconv_bn_act as triton_dwconv_bn_act
    return triton_dwconv_bn_act(x, weight, bias, stride, padding, dilation, activation)


def dwconv_bn_act(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None, *,
                  bn: Optional[nn.Module] = None, stride: int = 1, padding: Optional[int] = None,
                  dilation: int = 1, activation: str = "hardswish") -> torch.Tensor:
    """Depthwise conv (groups = C) + BatchNorm + activation as one op.

    Either pass the conv ``weight`` [C, 1, k, k] together with ``bn`` (folded here, each call —
    cache ``fold_bn`` yourself on a hot path, as the model does), or an already folded
    ``weight``/``bias``.  ``padding`` defaults to "same" for stride 1: dilation * (k - 1) // 2.
    """
    if bn is not None:
        weight, bias = fold_bn(weight, bn, bias)
    elif bias is None:
        bias = weight.new_zeros(weight.shape[0])
    if padding is None:
        padding = dilation * (weight.shape[-1] - 1) // 2
    return torch.ops.mbv3.dwconv_bn_act(x, weight, bias, stride, padding, dilation, activation)
