"""mbv3::q8_conv_act (int8, CPU): the stem -- QuantStub (float input) + dense KxK conv +
requantization (+ an activation table), bit-identical to PyTorch's quantize_per_tensor, quantized
Conv2d (and hardswish); and mbv3::q8_quantize, quantize_per_tensor(..., quint8).int_repr().

Schemas and kernels: csrc/q8_conv_act/.  Here: the fake kernels and a wrapper taking a PyTorch
quantized conv module."""
from typing import Optional

import torch

from mbv3_fast.ops._checks import conv_out_size
from mbv3_fast.ops._layout import output_memory_format
from mbv3_fast.quantization.params import requant_args


@torch.library.register_fake("mbv3::q8_conv_act")
def _fake_conv(x, x_scale, x_zero_point, weight, bias_int, bias_float, multiplier, out_qparams, lut, stride,
               padding):
    n, _, h, w = x.shape
    k = weight.shape[-1]
    return x.new_empty((n, weight.shape[0], conv_out_size(h, k, stride, padding),
                        conv_out_size(w, k, stride, padding)), dtype=torch.uint8).contiguous(
        memory_format=torch.channels_last)


@torch.library.register_fake("mbv3::q8_quantize")
def _fake_quantize(x, scale, zero_point):
    return x.new_empty(x.shape, dtype=torch.uint8).contiguous(memory_format=output_memory_format(x))


def q8_conv_act(x: torch.Tensor, x_scale: float, x_zero_point: int, conv, engine: str,
                lut: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``conv``: a quantized ``torch.ao.nn.quantized.Conv2d`` (or ``ConvReLU2d``); ``x``: float32
    (quantized here with x_scale / x_zero_point) or its uint8 values.  Returns the uint8 output
    values (channels_last), mapped through ``lut`` if given."""
    qw = conv.weight()
    relu = type(conv).__name__ == "ConvReLU2d"
    w_scales = qw.q_per_channel_scales() if qw.qscheme() in (torch.per_channel_affine,
                                                              torch.per_channel_symmetric) else qw.q_scale()
    bias_int, bias_float, mult, out_qparams, lut = requant_args(x_scale, w_scales, conv.bias(), conv.scale,
                                                                conv.zero_point, engine, relu=relu, lut=lut)
    return torch.ops.mbv3.q8_conv_act(x, x_scale, x_zero_point, qw.int_repr(), bias_int, bias_float, mult,
                                      out_qparams, lut, conv.stride[0], conv.padding[0])
