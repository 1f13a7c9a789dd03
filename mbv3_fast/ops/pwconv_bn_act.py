"""mbv3::pwconv_bn_act — 1x1 conv + folded BatchNorm + activation (+ residual, + SE input
scale) in one pass.

    y = act(conv1x1(x * in_scale[:, :, None, None], weight) + bias) + residual

Schema and CPU kernel: csrc/pwconv_bn_act/pwconv_bn_act_op.cpp.  CUDA kernel: mbv3_fast/kernels/pwconv_bn_act.py
(Triton).  Here: the fake kernel (a shape function; the checks are the C++ op's), the CUDA
registration and the Python wrapper.

Weight layout: any [Cout, Cin, 1, 1] or [Cout, Cin] tensor works.  The CPU kernel reads the
weight K-major (row k = input channel k's Cout weights); a view of a [Cin, Cout] buffer
(``pack_weight``) is read in place, anything else is transposed on every call.  float32 on the
CPU also takes the weight packed in panels of P columns (``pack_weight_panels``), which every
path reads in place; with the path's own P (``mbv3_fast.isa.cpu_pw_panel_cols``) each register
tile then reads its weights as one stream.  bfloat16 on the CPU also takes the weight packed in
K pairs (``pack_weight_k_pairs``), which the AVX512_BF16 kernel (vdpbf16ps) reads in place; the
other paths unpack it on every call.
"""
from typing import Optional

import torch
from torch import nn

from mbv3_fast.ops._checks import sizes_known
from mbv3_fast.ops._layout import output_memory_format
from mbv3_fast.ops.fold_bn import fold_bn


def check_inputs(x, weight, bias, activation, residual=None, in_scale=None):
    """The C++ op's argument checks (mbv3::_check_pwconv_bn_act), for the fake and CUDA paths.
    Returns (Cout, activation code).  ValueError for bad dtypes, shapes and values; RuntimeError
    for tensors on different devices."""
    cout, act = torch.ops.mbv3._check_pwconv_bn_act(x, weight, bias, activation, residual, in_scale)
    return cout, act


@torch.library.register_fake("mbv3::pwconv_bn_act")
def _fake(x, weight, bias, activation, residual=None, in_scale=None):
    if sizes_known(x, weight, bias, residual, in_scale):
        check_inputs(x, weight, bias, activation, residual, in_scale)
    return x.new_empty((x.shape[0], bias.shape[0], x.shape[2], x.shape[3])).contiguous(
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


def pack_weight_panels(weight: torch.Tensor, cols: int) -> torch.Tensor:
    """A (folded) float32 1x1 weight [Cout, Cin(, 1, 1)] packed in panels of ``cols`` output
    channels, each K-major: [ceil(Cout / cols), Cin, cols] with
    packed[n // cols, k, n % cols] = weight[n, k], zero past Cout.  Pass the bias alongside: it
    gives Cout.  The same layout serves the FC weights of ``se`` / ``classifier_head`` ([out, in]
    in panels of ``cols`` outputs; their element type is x's)."""
    if cols < 1:
        raise ValueError(f"pack_weight_panels: cols must be >= 1, got {cols}")
    cout, cin = weight.shape[0], weight.shape[1]
    panels = (cout + cols - 1) // cols
    kmajor = weight.new_zeros((panels * cols, cin))
    kmajor[:cout] = weight.reshape(cout, cin)
    return kmajor.view(panels, cols, cin).transpose(1, 2).contiguous()


def pack_weight_k_pairs(weight: torch.Tensor) -> torch.Tensor:
    """A (folded) 1x1 weight [Cout, Cin(, 1, 1)] rounded to bfloat16 (nearest even) and packed
    for the bf16 dot-product kernels: [ceil(Cin / 2), Cout rounded up to 16, 2] with
    packed[k // 2, n, k % 2] = weight[n, k], zero elsewhere.  Pass the bias alongside: it gives
    Cout."""
    cout, cin = weight.shape[0], weight.shape[1]
    cols = (cout + 15) // 16 * 16
    kmajor = weight.new_zeros((cin + cin % 2, cols), dtype=torch.bfloat16)
    kmajor[:cin, :cout] = weight.reshape(cout, cin).t().to(torch.bfloat16)
    return kmajor.view(-1, 2, cols).transpose(1, 2).contiguous()


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
