"""expand_dwconv_bn_act on CUDA: the pointwise and depthwise Triton kernels back to back.

Not yet a band-fused kernel (the CPU one is): the expanded tensor makes a round trip through
GPU memory.  Kept as its own entry point so the model calls one op on every device and a fused
Triton kernel can replace this file without touching callers.
"""
import torch

from mbv3_fast.ops.expand_dwconv_bn_act import check_inputs

from .dwconv_bn_act import dwconv_bn_act
from .pwconv_bn_act import pwconv_bn_act

__all__ = ["expand_dwconv_bn_act"]


def expand_dwconv_bn_act(x: torch.Tensor, ew, eb, expand_activation: str, weight, bias,
                         stride: int, padding: int, dilation: int, activation: str) -> torch.Tensor:
    check_inputs(x, ew, eb, expand_activation, weight, bias, stride, padding, dilation, activation)
    y = pwconv_bn_act(x, ew, eb, expand_activation, None, None)
    return dwconv_bn_act(y, weight, bias, stride, padding, dilation, activation)
