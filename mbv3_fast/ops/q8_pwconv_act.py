"""mbv3::q8_pwconv_act (int8): 1x1 conv on quint8 activations and qint8 weights, requantized
exactly as PyTorch's quantized conv (+ activation table, + residual add, + SE input scale).

    A = x                           (or q8_mul(x, se_scale) with se_scale and mul)
    y = requant(sum_k (A - x_zero_point) * w)   (+ lut)   (then q8_add(y, residual) with add)

onednn (optional, last): [src_scale, inv_scale], the Onednn requantization mode of csrc/common/q8.h.

Schema and CPU kernels: csrc/q8_pwconv_act/.  The numerics: csrc/common/q8.h; the arguments
come from mbv3_fast.quantization.params (requant_args, unary_lut, add_args, mul_args).

Weight: the plain int8 weight [Cout, Cin(, 1, 1)] (``qweight.int_repr()``, packed on every
call) or ``pack_weight``'s 1-D result, read in place (Cout is then bias_int's length).
"""
from typing import Optional, Sequence

import torch

from mbv3_fast.ops._layout import output_memory_format

COLS = 16  # packed columns: Cout rounded up to whole 16-lane vectors


@torch.library.register_fake("mbv3::q8_pwconv_act")
def _fake(x, x_zero_point, weight, bias_int, bias_float, multiplier, out_qparams, lut=None, residual=None, add=None,
          se_scale=None, mul=None, onednn=None):
    cout = bias_int.shape[0]
    return x.new_empty((x.shape[0], cout, x.shape[2], x.shape[3])).contiguous(
        memory_format=output_memory_format(x))


def pack_weight(weight: torch.Tensor) -> torch.Tensor:
    """An int8 1x1 weight [Cout, Cin(, 1, 1)] in the kernels' layout, as one 1-D int8 tensor:
    [ceil(Cin / 4), Cout rounded up to 16, 4] with packed[k // 4, n, k % 4] = weight[n, k] (zero
    padded), then the Cout rounded up to 16 int32 column sums sum_k weight[n, k] (bytes,
    little-endian).  Pass bias_int alongside: it gives Cout."""
    if weight.dtype != torch.int8:
        raise ValueError(f"q8_pwconv_act.pack_weight: weight must be int8, got {weight.dtype}")
    cout, cin = weight.shape[0], weight.shape[1]
    w = weight.reshape(cout, cin)
    cols, k4 = (cout + COLS - 1) // COLS * COLS, (cin + 3) // 4
    kmajor = torch.zeros((k4 * 4, cols), dtype=torch.int8)
    kmajor[:cin, :cout] = w.t()
    groups = kmajor.view(k4, 4, cols).transpose(1, 2).contiguous().view(-1)
    sums = torch.zeros(cols, dtype=torch.int32)
    sums[:cout] = w.to(torch.int32).sum(1)
    return torch.cat([groups, sums.view(torch.int8)])


def q8_pwconv_act(x: torch.Tensor, x_zero_point: int, weight: torch.Tensor, bias_int: torch.Tensor,
                  bias_float: torch.Tensor, multiplier: torch.Tensor, out_qparams: Sequence[int],
                  lut: Optional[torch.Tensor] = None, residual: Optional[torch.Tensor] = None,
                  add: Optional[Sequence[float]] = None, se_scale: Optional[torch.Tensor] = None,
                  mul: Optional[Sequence[float]] = None, onednn: Optional[Sequence[float]] = None) -> torch.Tensor:
    """The op (see the module docstring); x and residual uint8 [N, C, H, W], se_scale uint8 [N, Cin];
    ``onednn``: the Onednn rounding (params.onednn_scales, with requant_args(onednn=True))."""
    return torch.ops.mbv3.q8_pwconv_act(x, int(x_zero_point), weight, bias_int, bias_float, multiplier,
                                        list(out_qparams), lut, residual, None if add is None else list(add),
                                        se_scale, None if mul is None else list(mul),
                                        None if onednn is None else list(onednn))
