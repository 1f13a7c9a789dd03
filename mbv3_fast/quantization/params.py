"""The int8 ops' arguments, built from PyTorch quantization parameters so that the kernels round
exactly as PyTorch's quantized CPU ops do (the formulas: csrc/common/q8.h; the argument order:
csrc/common/q8_args.h).

``engine`` is the quantized engine a model was converted for: ``"qnnpack"`` gives QNNPACK's
rounding (int32 bias, fixed-point add); ``"x86"``, ``"fbgemm"`` and ``"onednn"`` give fbgemm's
(float bias, float add), conv/linear layers unless ``onednn``.  Scales are rounded to float32
first, as the engines store them.

``onednn=True`` gives a conv/linear the Onednn requantization mode (q8.h): the rounding of the
layers PyTorch runs on oneDNN (the x86 engine's Conv2d with groups <= 100 on a VNNI CPU, every
conv and Linear under the onednn engine; model.py decides which): the raw float
bias, the weight's scale as multiplier, and ``onednn_scales(...)`` passed to the op.  The scales
are the float values oneDNN's kernels compute with: PyTorch hands ideep 1 / scale (double, then
float) and ideep hands oneDNN the float reciprocal of that (``_rr``); oneDNN's conv kernels (1x1,
KxK, depthwise) scale the sums by x's scale (so rounded), then by w's float scale, add the bias
and multiply by 1 / y_scale (the float reciprocal of ideep's y_scale).  Found by probing
PyTorch (tests/test_quantization.py: test_x86_engine_onednn_rule).
"""
import struct
from typing import Optional

import numpy as np
import torch

ENGINES = ("x86", "fbgemm", "onednn", "qnnpack")
_f32 = np.float32


def _check_engine(engine: str) -> str:
    if engine not in ENGINES:
        raise ValueError(f"mbv3_fast.quantization: engine must be one of {ENGINES}, got {engine!r}")
    return engine


def _rr(scale) -> np.float32:
    """A scale after PyTorch's 1 / scale (double, stored as float) and ideep's float 1 / that."""
    return _f32(1.0) / _f32(1.0 / float(scale))


def onednn_scales(x_scale: float, y_scale: float):
    """The Onednn mode's op argument [src_scale, inv_scale] (float32 values): x's scale and
    1 / y_scale as oneDNN's conv kernels compute with them."""
    dst = _f32(1.0) / _f32(1.0 / float(y_scale))  # the output scale oneDNN is given
    return [float(_rr(x_scale)), float(_f32(1.0) / dst)]


def requant_args(x_scale: float, w_scales, bias: Optional[torch.Tensor], y_scale: float, y_zero_point: int,
                 engine: str, relu: bool = False, lut: Optional[torch.Tensor] = None, onednn: bool = False):
    """(bias_int, bias_float, multiplier, out_qparams, lut) for a conv/linear layer with Cout
    output channels: ``w_scales`` holds one scale (per-tensor) or Cout (per-channel); ``bias`` is
    the float bias or None; ReLU fused clamps at the output zero point.  ``onednn``: the Onednn
    mode's arrays (pass ``onednn_scales(x_scale, y_scale)`` to the op with them)."""
    _check_engine(engine)
    if onednn and engine == "qnnpack":
        raise ValueError("mbv3_fast.quantization: the onednn requantization mode is not qnnpack's rounding")
    w = np.atleast_1d(np.asarray(torch.as_tensor(w_scales, dtype=torch.float64).numpy(), dtype=_f32))
    cout = w.shape[0] if bias is None else bias.shape[0]
    w = np.broadcast_to(w, (cout,))
    x_times_w = (_f32(x_scale) * w).astype(_f32)
    if engine == "qnnpack":  # generate_requantization_scales: (w_scale * x_scale) * (1 / y_scale)
        multiplier = (x_times_w * (_f32(1.0) / _f32(y_scale))).astype(_f32)
    else:  # fbgemm: (x_scale * w_scale) / y_scale
        multiplier = (x_times_w / _f32(y_scale)).astype(_f32)
    b = np.zeros(cout, dtype=_f32) if bias is None else bias.detach().float().cpu().numpy()
    if onednn:  # (acc * (x_scale * w_scale) + bias) * (1 / y_scale) + zp, then rne
        bias_int = torch.zeros(cout, dtype=torch.int32)
        bias_float = torch.from_numpy(b.astype(_f32).copy())
        multiplier = w.astype(_f32)
    elif engine == "qnnpack":
        # QNNPACK quantizes the bias to int32 with scale x_scale * w_scale in double (quant_utils::QuantizeBias).
        scales64 = np.broadcast_to(np.atleast_1d(torch.as_tensor(w_scales, dtype=torch.float64).numpy()), (cout,))
        bias_int = torch.quantize_per_channel(torch.from_numpy(b.copy()), torch.from_numpy(scales64 * float(x_scale)),
                                              torch.zeros(cout, dtype=torch.long), 0, torch.qint32).int_repr()
        bias_float = torch.zeros(cout, dtype=torch.float32)
    else:
        bias_int = torch.zeros(cout, dtype=torch.int32)
        bias_float = torch.from_numpy((b / x_times_w).astype(_f32))
    zp = int(y_zero_point)
    out_qparams = [zp, zp if relu else 0, 255]
    return bias_int.contiguous(), bias_float.contiguous(), torch.from_numpy(multiplier.copy()), out_qparams, lut


def weight_int8(qmod):
    """(int8 weight, scales) of a converted quantized conv/linear: one scale (per-tensor) or one
    per output channel.  The q8 kernels take symmetric weights, as torchvision's recipes make."""
    qw = qmod.weight()
    if qw.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
        scales, zps = qw.q_per_channel_scales(), qw.q_per_channel_zero_points()
    else:
        scales, zps = torch.tensor([qw.q_scale()], dtype=torch.float64), torch.tensor([qw.q_zero_point()])
    if (zps != 0).any():
        raise ValueError(f"mbv3_fast.quantization: {type(qmod).__name__} has asymmetric weights (zero points "
                         f"{zps.unique().tolist()}); the q8 kernels take symmetric int8 weights, as torchvision's "
                         "recipes (x86, fbgemm, qnnpack) produce")
    return qw.int_repr(), scales


def module_args(qmod, x_scale: float, engine: str, lut: Optional[torch.Tensor] = None, onednn: bool = False):
    """(weight, bias_int, bias_float, multiplier, out_qparams, lut) of a converted quantized
    Conv2d / Linear, or their ReLU fusions (ReLU becomes the clamp), whose input has scale
    ``x_scale``: the arguments every q8 conv/linear op takes after x and its zero point.
    ``onednn``: the Onednn mode's arrays (module_onednn_scales gives the op's argument)."""
    w, scales = weight_int8(qmod)
    relu = type(qmod).__name__ in ("ConvReLU2d", "LinearReLU")
    return (w,) + requant_args(x_scale, scales, qmod.bias(), qmod.scale, qmod.zero_point, engine, relu=relu, lut=lut,
                               onednn=onednn)


def module_onednn_scales(qmod, x_scale: float):
    """onednn_scales for a converted quantized Conv2d whose input has scale ``x_scale``."""
    return onednn_scales(x_scale, qmod.scale)


def unary_lut(fn, x_scale: float, x_zero_point: int) -> torch.Tensor:
    """The 256-entry table of a quantized elementwise op (hardswish, hardsigmoid, ...): PyTorch's
    own op applied to every input value, so the table is exact by construction.  ``fn`` maps a
    quint8 tensor to a quint8 tensor."""
    every = torch._make_per_tensor_quantized_tensor(torch.arange(256, dtype=torch.uint8), float(x_scale),
                                                    int(x_zero_point))
    return fn(every).int_repr().contiguous()


def _bits(f) -> int:
    return struct.unpack("<I", struct.pack("<f", float(f)))[0]


def add_args(a_scale: float, a_zero_point: int, b_scale: float, b_zero_point: int, y_scale: float,
             y_zero_point: int, engine: str):
    """The add list of q8.h: y = a + b quantized, rounded as the engine's quantized add."""
    _check_engine(engine)
    zp = int(y_zero_point)
    if engine != "qnnpack":
        sa, sb = _f32(a_scale), _f32(b_scale)
        return [0.0, float(sa), float(_f32(_f32(-a_zero_point) * sa)), float(sb), float(_f32(_f32(-b_zero_point) * sb)),
                float(_f32(1.0) / _f32(y_scale)), 0.0, 0.0, 0.0, 0.0, float(zp)]
    ao = _f32(_f32(a_scale) / _f32(y_scale))
    bo = _f32(_f32(b_scale) / _f32(y_scale))
    if not (2.0 ** -14 <= min(ao, bo) and max(ao, bo) < 2.0 ** 8):
        raise ValueError(f"qnnpack add: scale ratios {ao}, {bo} out of QNNPACK's range [2**-14, 2**8)")
    shift = 21 - ((_bits(max(ao, bo)) >> 23) - 127)
    a_mult = int(np.rint(_f32(ao * _f32(2.0 ** shift))))
    b_mult = int(np.rint(_f32(bo * _f32(2.0 ** shift))))
    zp_product = -(a_mult * int(a_zero_point) + b_mult * int(b_zero_point))
    zp_product = (zp_product + 2 ** 31) % 2 ** 32 - 2 ** 31  # QNNPACK computes it in uint32
    return [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, float(a_mult), float(b_mult), float(zp_product), float(shift), float(zp)]


def mul_args(a_scale: float, a_zero_point: int, b_scale: float, b_zero_point: int, y_scale: float, y_zero_point: int):
    """The mul list of q8.h: ATen's qmul (every engine), multiplier a_scale * b_scale * (1 / y_scale)."""
    multiplier = _f32(_f32(_f32(a_scale) * _f32(b_scale)) * _f32(_f32(1.0) / _f32(y_scale)))
    return [float(a_zero_point), float(b_zero_point), float(y_zero_point), float(multiplier)]
