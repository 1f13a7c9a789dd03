"""mbv3::dwconv_bn_act — depthwise conv + folded BatchNorm + activation in one pass.

Schema and CPU kernel: csrc/dwconv_bn_act_op.cpp.  CUDA kernel: kernels/dwconv_bn_act.py
(Triton).  Here: input checks shared by the fake and CUDA paths, the fake kernel, the CUDA
registration and the Python wrapper.
"""
from typing import Optional

import torch
from torch import nn

from mbv3_fast.ops._layout import output_memory_format
from mbv3_fast.ops.fold_bn import fold_bn

ACTIVATIONS = ("hardswish", "relu", "none")


def check_inputs(x, weight, bias, stride, padding, dilation, activation, *,
                 dtypes=(torch.float32,)):
    """Validate arguments; return the output shape.  Messages match the C++ kernel's."""
    if x.dtype not in dtypes:
        raise ValueError(f"mbv3: x must be {' or '.join(map(str, dtypes))}, got {x.dtype}")
    if x.dim() != 4:
        raise ValueError(f"dwconv_bn_act: x must be 4-D [N, C, H, W], got {x.dim()}-D")
    for name, t in (("weight", weight), ("bias", bias)):
        if not t.dtype.is_floating_point:
            raise ValueError(f"mbv3: {name} must be floating point, got {t.dtype}")
        if t.device != x.device:
            raise RuntimeError(f"mbv3: {name} is on {t.device} but x is on {x.device}")
    n, c, h, w = x.shape
    if weight.dim() != 4 or weight.shape[0] != c or weight.shape[1] != 1 or weight.shape[2] != weight.shape[3]:
        raise ValueError(f"dwconv_bn_act: weight must be [C, 1, k, k] with C = {c} (x's channels), "
                         f"got {list(weight.shape)}")
    k = weight.shape[2]
    if k % 2 != 1 or k > 7:
        raise ValueError(f"dwconv_bn_act: kernel size must be odd and <= 7, got {k}")
    if bias.dim() != 1 or bias.shape[0] != c:
        raise ValueError(f"dwconv_bn_act: bias must be [C] with C = {c}, got {list(bias.shape)}")
    if stride < 1:
        raise ValueError(f"dwconv_bn_act: stride must be >= 1, got {stride}")
    if dilation < 1:
        raise ValueError(f"dwconv_bn_act: dilation must be >= 1, got {dilation}")
    if padding < 0:
        raise ValueError(f"dwconv_bn_act: padding must be >= 0, got {padding}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"dwconv_bn_act: unknown activation '{activation}', "
                         "expected 'hardswish', 'relu' or 'none'")
    if h < 1 or w < 1:
        raise ValueError(f"dwconv_bn_act: H and W must be >= 1, got {h}x{w}")
    span = dilation * (k - 1) + 1
    if h + 2 * padding < span or w + 2 * padding < span:
        raise ValueError(f"dwconv_bn_act: input {h}x{w} with padding {padding} is smaller than "
                         f"the dilated kernel {span}")
    oh = (h + 2 * padding - span) // stride + 1
    ow = (w + 2 * padding - span) // stride + 1
    return (n, c, oh, ow)


@torch.library.register_fake("mbv3::dwconv_bn_act")
def _fake(x, weight, bias, stride, padding, dilation, activation):
    shape = check_inputs(x, weight, bias, stride, padding, dilation, activation,
                         dtypes=(torch.float32, torch.float16, torch.bfloat16))
    return x.new_empty(shape).contiguous(memory_format=output_memory_format(x))


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
