"""mbv3::dwconv_bn_act — depthwise conv + folded BatchNorm + activation in one pass.

Schema and CPU kernel: csrc/dwconv_bn_act/dwconv_bn_act_op.cpp.  CUDA kernel: mbv3_fast/kernels/dwconv_bn_act.py
(Triton).  Here: the fake kernel (a shape function; the checks are the C++ op's), the CUDA
registration and the Python wrapper.
"""
from typing import Optional

import torch
from torch import nn

from mbv3_fast.ops._checks import conv_out_size, sizes_known
from mbv3_fast.ops._layout import output_memory_format
from mbv3_fast.ops.fold_bn import fold_bn


def check_inputs(x, weight, bias, stride, padding, dilation, activation):
    """The C++ op's argument checks (mbv3::_check_dwconv_bn_act), for the fake and CUDA paths.
    Returns (k, OH, OW, activation code).  ValueError for bad dtypes, shapes and values;
    RuntimeError for tensors on different devices."""
    k, oh, ow, act = torch.ops.mbv3._check_dwconv_bn_act(x, weight, bias, stride, padding, dilation,
                                                        activation)
    return k, oh, ow, act


@torch.library.register_fake("mbv3::dwconv_bn_act")
def _fake(x, weight, bias, stride, padding, dilation, activation):
    if sizes_known(x, weight, bias):
        check_inputs(x, weight, bias, stride, padding, dilation, activation)
    n, c, h, w = x.shape
    k = weight.shape[-1]
    return x.new_empty((n, c, conv_out_size(h, k, stride, padding, dilation),
                        conv_out_size(w, k, stride, padding, dilation))).contiguous(
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
