"""mbv3::q8_conv_act (int8, CPU): the stem -- QuantStub (float input) + dense KxK conv +
requantization (+ an activation table), bit-identical to PyTorch's quantize_per_tensor, quantized
Conv2d (and hardswish); and mbv3::q8_quantize, quantize_per_tensor(..., quint8).int_repr().

Schemas and kernels: csrc/q8_conv_act/.  Here: the fake kernels and a wrapper taking a PyTorch
quantized conv module."""
from typing import Optional

import torch

from mbv3_fast.ops._checks import conv_out_size
from mbv3_fast.ops._layout import output_memory_format
from mbv3_fast.quantization.params import module_args, module_onednn_scales


_PACK_MAGIC, _PACK_HEADER, _BLOCK = 0x51384356, 16, 16  # csrc/q8_conv_act/q8_conv_act.h


def pack_weight(weight: torch.Tensor) -> torch.Tensor:
    """The int8 conv weight [Cout, Cin, k, k] (qweight.int_repr()) in the kernels' layout, once: an
    int32 [Cout, k, k, L] tensor (the shape carries Cout and k; the contents are a header, each
    output channel's weight sum, and the weights as [Cout/16][k*k*Cin/4][16][4] int8 with Cin
    rounded up to 4).  Pass it in place of the plain weight; results are identical."""
    if weight.dtype != torch.int8 or weight.dim() != 4 or weight.shape[2] != weight.shape[3] or weight.shape[0] < 1:
        raise ValueError(f"q8_conv_act.pack_weight: weight must be int8 [Cout, Cin, k, k], got {weight.dtype} "
                         f"{tuple(weight.shape)}")
    cout, cin, k = weight.shape[0], weight.shape[1], weight.shape[2]
    cin4, cpad = (cin + 3) // 4 * 4, (cout + _BLOCK - 1) // _BLOCK * _BLOCK
    w = torch.zeros(cpad, cin4, k, k, dtype=torch.int8)
    w[:cout, :cin] = weight.detach().cpu()
    # [co block][kh][kw][group][co in block][ci in group]
    w = w.reshape(cpad // _BLOCK, _BLOCK, cin4 // 4, 4, k, k).permute(0, 4, 5, 2, 1, 3).contiguous()
    sums = torch.zeros(cpad, dtype=torch.int32)
    sums[:cout] = weight.detach().cpu().to(torch.int32).sum((1, 2, 3))
    head = torch.zeros(_PACK_HEADER, dtype=torch.int32)
    head[:4] = torch.tensor([_PACK_MAGIC, cout, cin, k], dtype=torch.int32)
    flat = torch.cat([head, sums, w.flatten().view(torch.int32)])
    per = cout * k * k
    out = torch.zeros((flat.numel() + per - 1) // per * per, dtype=torch.int32)
    out[:flat.numel()] = flat
    return out.reshape(cout, k, k, -1)


@torch.library.register_fake("mbv3::q8_conv_act")
def _fake_conv(x, x_scale, x_zero_point, weight, bias_int, bias_float, multiplier, out_qparams, lut, stride,
               padding, onednn=None):
    n, _, h, w = x.shape
    k = weight.shape[1] if weight.dtype == torch.int32 else weight.shape[-1]
    return x.new_empty((n, weight.shape[0], conv_out_size(h, k, stride, padding),
                        conv_out_size(w, k, stride, padding)), dtype=torch.uint8).contiguous(
        memory_format=torch.channels_last)


@torch.library.register_fake("mbv3::q8_quantize")
def _fake_quantize(x, scale, zero_point):
    return x.new_empty(x.shape, dtype=torch.uint8).contiguous(memory_format=output_memory_format(x))


def q8_conv_act(x: torch.Tensor, x_scale: float, x_zero_point: int, conv, engine: str,
                lut: Optional[torch.Tensor] = None, onednn: bool = False) -> torch.Tensor:
    """``conv``: a quantized ``torch.ao.nn.quantized.Conv2d`` (or ``ConvReLU2d``); ``x``: float32
    (quantized here with x_scale / x_zero_point) or its uint8 values.  Returns the uint8 output
    values (channels_last), mapped through ``lut`` if given.  ``onednn``: the Onednn rounding
    (the x86 engine's oneDNN convs, csrc/common/q8.h)."""
    args = module_args(conv, x_scale, engine, lut, onednn=onednn)
    return torch.ops.mbv3.q8_conv_act(x, x_scale, x_zero_point, *args, conv.stride[0], conv.padding[0],
                                      onednn=module_onednn_scales(conv, x_scale) if onednn else None)
