"""mbv3::conv_bn_act — dense KxK conv + folded BatchNorm + activation in one pass, made for few
input channels (MobileNetV3's stem: 3 -> 16 channels, 3x3, stride 2, hardswish).

    y = act(conv2d(x, weight, stride=stride, padding=padding) + bias)

Schema and CPU kernel: csrc/conv_bn_act/conv_bn_act_op.cpp.  CUDA kernel: mbv3_fast/kernels/conv_bn_act.py (Triton).
Here: the fake kernel (a shape function; the checks are the C++ op's), the CUDA registration,
``pack_weight`` and the Python wrapper.

Layout: x may have any strides (NCHW images, channels_last, views) and is read in place.  The
output is ALWAYS channels_last (unlike the other ops, which keep x's layout): the stem takes an
NCHW image and feeds NHWC ops.  Dilation 1, groups 1.

Weight layout: any [Cout, Cin, k, k] tensor works.  The CPU kernel reads it as
[k][k][Cin][Cout] (output channels contiguous); a view of such a buffer (``pack_weight``) is
read in place, anything else is repacked on every call.
"""
from typing import Optional

import torch
from torch import nn

from mbv3_fast.ops._checks import conv_out_size, sizes_known
from mbv3_fast.ops.fold_bn import fold_bn


def check_inputs(x, weight, bias, stride, padding, activation):
    """The C++ op's argument checks (mbv3::_check_conv_bn_act), for the fake and CUDA paths.
    Returns (Cout, k, OH, OW, activation code).  ValueError for bad dtypes, shapes and values;
    RuntimeError for tensors on different devices."""
    cout, k, oh, ow, act = torch.ops.mbv3._check_conv_bn_act(x, weight, bias, stride, padding, activation)
    return cout, k, oh, ow, act


@torch.library.register_fake("mbv3::conv_bn_act")
def _fake(x, weight, bias, stride, padding, activation):
    if sizes_known(x, weight, bias):
        check_inputs(x, weight, bias, stride, padding, activation)
    k = weight.shape[-1]
    shape = (x.shape[0], weight.shape[0], conv_out_size(x.shape[2], k, stride, padding),
             conv_out_size(x.shape[3], k, stride, padding))
    # torch.empty(memory_format=...) gives channels_last strides even for ambiguous shapes
    # (Cout == 1, 1x1 maps), as the C++ op's at::empty does; .contiguous() would not.
    return torch.empty(shape, dtype=x.dtype, device=x.device, memory_format=torch.channels_last)


@torch.library.register_kernel("mbv3::conv_bn_act", "cuda")
def _cuda(x, weight, bias, stride, padding, activation):
    from mbv3_fast.kernels.conv_bn_act import conv_bn_act as triton_conv_bn_act
    return triton_conv_bn_act(x, weight, bias, stride, padding, activation)


def pack_weight(weight: torch.Tensor) -> torch.Tensor:
    """The layout to keep a (folded) stem weight in: a [k, k, Cin, Cout] buffer viewed as
    [Cout, Cin, k, k] (stride(0) == 1), which the CPU kernel reads without per-call packing."""
    return weight.permute(2, 3, 1, 0).contiguous().permute(3, 2, 0, 1)


def conv_bn_act(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None, *,
                bn: Optional[nn.Module] = None, stride: int = 1, padding: Optional[int] = None,
                activation: str = "hardswish") -> torch.Tensor:
    """Dense conv (groups 1, dilation 1) + BatchNorm + activation as one op; the result is
    channels_last whatever x's layout.

    Either pass the conv ``weight`` [Cout, Cin, k, k] together with ``bn`` (folded here, each
    call — cache ``fold_bn`` + ``pack_weight`` yourself on a hot path), or an already folded
    ``weight``/``bias``.  ``padding`` defaults to "same" for stride 1: (k - 1) // 2.
    """
    if bn is not None:
        weight, bias = fold_bn(weight, bn, bias)
    elif bias is None:
        bias = weight.new_zeros(weight.shape[0])
    if padding is None:
        padding = (weight.shape[-1] - 1) // 2
    return torch.ops.mbv3.conv_bn_act(x, weight, bias, stride, padding, activation)
