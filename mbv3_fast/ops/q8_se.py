"""mbv3::q8_se (int8, CPU): the scale of torchvision's quantized SqueezeExcitation in one op.

  q8_se(x, ...) = lut[fc2(relu(fc1(adaptive_avg_pool2d(x, 1))))]   uint8 [N, C]
  x: the uint8 values of a quint8 [N, C, H, W] tensor (any layout); the pool keeps x's qparams
  and rounds as PyTorch's quantized adaptive_avg_pool2d does for the engine in force and x's
  layout (csrc/q8_se/q8_se.h); fc1 (w1 int8 [S, C]) requantized with out_qparams1 (lo = zp:
  the fused ReLU), fc2 (w2 int8 [C, S], input zero point out_qparams1[0]) with out_qparams2,
  then ``lut`` (hardsigmoid's table, params.unary_lut).  The 1x1 op multiplies x by it.

Schema and CPU kernels: csrc/q8_se/.  Here: the fake kernel and ``se_args``, which builds the
arguments from a converted model's modules.
"""
import torch
import torch.nn.functional as F

from mbv3_fast.quantization import params


def _check_fake(x, w1, w2):
    torch._check(x.dim() == 4, lambda: f"q8_se: x must be 4-D [N, C, H, W], got {x.dim()}-D")
    torch._check(x.dtype == torch.uint8, lambda: f"q8_se: x must be uint8, got {x.dtype}")
    torch._check(w1.dtype == torch.int8 and w2.dtype == torch.int8, lambda: "q8_se: w1, w2 must be int8")


@torch.library.register_fake("mbv3::q8_se")
def _fake_q8_se(x, x_zero_point, w1, bias_int1, bias_float1, multiplier1, out_qparams1, w2, bias_int2,
                bias_float2, multiplier2, out_qparams2, lut, x_scale=None, onednn1=None,
                onednn2=None):
    _check_fake(x, w1, w2)
    return x.new_empty((x.shape[0], x.shape[1]))


def se_args(fc1, fc2, x_scale: float, x_zero_point: int, engine: str, onednn: bool = False):
    """The arguments of q8_se after x: fc1 a quantized ConvReLU2d, fc2 a quantized Conv2d, the
    hardsigmoid PyTorch's quantized one (output qparams 1/256, 0).  ``onednn``: both convs with
    the Onednn rounding (the x86 engine's oneDNN convs, csrc/common/q8.h)."""
    a1 = params.module_args(fc1, x_scale, engine, onednn=onednn)[:5]
    a2 = params.module_args(fc2, fc1.scale, engine, onednn=onednn)[:5]
    lut = params.unary_lut(F.hardsigmoid, fc2.scale, fc2.zero_point)
    inv = ((params.module_onednn_scales(fc1, x_scale), params.module_onednn_scales(fc2, fc1.scale)) if onednn
           else (None, None))
    return (int(x_zero_point),) + a1 + a2 + (lut, float(x_scale)) + inv


def q8_se(x: torch.Tensor, fc1, fc2, engine: str, onednn: bool = False) -> torch.Tensor:
    """hardsigmoid(fc2(fc1(pool(x)))) of a quint8 tensor x as a quint8 [N, C] tensor (1/256, 0)."""
    out = torch.ops.mbv3.q8_se(x.int_repr(), *se_args(fc1, fc2, x.q_scale(), x.q_zero_point(), engine, onednn))
    return torch._make_per_tensor_quantized_tensor(out, 1.0 / 256, 0)
