"""mbv3::q8_dwconv_act (int8, CPU): depthwise conv over quint8 values + requantization (+ an
activation table), bit-identical to PyTorch's quantized depthwise conv (then hardswish).

Schema and kernels: csrc/q8_dwconv_act/.  Here: the fake kernel and a wrapper taking a PyTorch
quantized conv module."""
from typing import Optional

import torch

from mbv3_fast.ops._checks import conv_out_size
from mbv3_fast.quantization.params import module_args, module_onednn_scales


_PACK_MAGIC, _PACK_HEADER, _CHANNEL_PAD, _DOT_TILE = 0x5139, 32, 32, 32  # csrc/q8_dwconv_act/q8_dwconv_act.h


def pack_weight(weight: torch.Tensor) -> torch.Tensor:
    """The int8 depthwise weight [C, 1, k, k] (qweight.int_repr()) in the kernels' layout, once:
    an int16 [C, k, k, L] tensor (the shape carries C and k; the contents are a header, the
    taps-major rows padded to 32 channels, each channel's weight sum, then the vpdpbusd path's
    int8 weights).  Pass it in place of the plain weight; results are identical."""
    if weight.dtype != torch.int8 or weight.dim() != 4 or weight.shape[1] != 1 or weight.shape[2] != weight.shape[3]:
        raise ValueError(f"q8_dwconv_act.pack_weight: weight must be int8 [C, 1, k, k], got {weight.dtype} "
                         f"{tuple(weight.shape)}")
    c, k = weight.shape[0], weight.shape[2]
    cpad = (c + _CHANNEL_PAD - 1) // _CHANNEL_PAD * _CHANNEL_PAD
    w = weight.detach().cpu().reshape(c, k * k).to(torch.int16)
    body = torch.zeros(k * k + 1, cpad, dtype=torch.int16)
    body[:k * k, :c] = w.t()
    body[k * k, :c] = w.sum(1).to(torch.int16)  # |sum| <= 49 * 128 fits
    head = torch.zeros(_PACK_HEADER, dtype=torch.int16)
    head[:3] = torch.tensor([_PACK_MAGIC, c, k], dtype=torch.int16)
    flat = torch.cat([head, body.flatten(), _pack_dot(weight.detach().cpu(), cpad).view(torch.int16)])
    per = c * k * k
    out = torch.zeros((flat.numel() + per - 1) // per * per, dtype=torch.int16)
    out[:flat.numel()] = flat
    return out.reshape(c, k, k, -1)


def _pack_dot(weight: torch.Tensor, cpad: int) -> torch.Tensor:
    """q8_dw_pack_dot (csrc/q8_dwconv_act/q8_dwconv_act.h): per 32-channel tile t, column kw, row
    offset delta in [-3, k): byte [32g + 16L + 4j + q] = w[32t + 16L + 4g + j][delta + q][kw]."""
    c, k = weight.shape[0], weight.shape[2]
    wpad = torch.zeros(cpad, k + 6, k, dtype=torch.int8)  # kernel rows -3 .. k + 2
    wpad[:c, 3:3 + k] = weight[:, 0]
    t, kw, d, g, lane, j, q = (torch.arange(n).view([-1 if i == a else 1 for a in range(7)])
                               for i, n in enumerate((cpad // _DOT_TILE, k, k + 3, 4, 2, 4, 4)))
    return wpad[_DOT_TILE * t + 16 * lane + 4 * g + j, d + q, kw].flatten()


@torch.library.register_fake("mbv3::q8_dwconv_act")
def _fake(x, x_zero_point, weight, bias_int, bias_float, multiplier, out_qparams, lut, stride, padding, dilation=1,
          onednn=None):
    n, c, h, w = x.shape
    k = weight.shape[1] if weight.dtype == torch.int16 else weight.shape[-1]
    return x.new_empty((n, c, conv_out_size(h, k, stride, padding, dilation),
                        conv_out_size(w, k, stride, padding, dilation)), dtype=torch.uint8).contiguous(
        memory_format=torch.channels_last)


def q8_dwconv_act(x: torch.Tensor, conv, engine: str, lut: Optional[torch.Tensor] = None,
                  onednn: bool = False) -> torch.Tensor:
    """``conv``: a quantized depthwise ``torch.ao.nn.quantized.Conv2d`` (or ``ConvReLU2d``);
    ``x``: a quint8 tensor.  Returns the uint8 output values (channels_last), requantized to
    ``conv.scale`` / ``conv.zero_point``, then mapped through ``lut`` if given.  ``onednn``: the
    Onednn rounding (the x86 engine's oneDNN convs, csrc/common/q8.h)."""
    args = module_args(conv, x.q_scale(), engine, lut, onednn=onednn)
    return torch.ops.mbv3.q8_dwconv_act(x.int_repr(), x.q_zero_point(), *args, conv.stride[0], conv.padding[0],
                                        conv.dilation[0],
                                        onednn=module_onednn_scales(conv, x.q_scale()) if onednn else None)
