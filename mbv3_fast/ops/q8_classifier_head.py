"""mbv3::q8_classifier_head (int8, CPU): torchvision's quantized MobileNetV3 classifier in one op.

  pool (x's qparams) -> Linear(C, Hd) -> Hardswish (table: linear1's qparams to the Hardswish
  module's) -> Dropout (eval) -> Linear(Hd, K) -> dequantize:  float32 [N, K]
  x: the uint8 values of a quint8 [N, C, H, W] tensor (any layout).  linear2's input zero
  point is hidden_zero_point, the Hardswish module's.  The dequantize is (q - zp) * out_scale in
  float32, as torch.dequantize rounds.

Schema and CPU kernels: csrc/q8_classifier_head/ (its GEMV: csrc/q8_se/).  Here: the fake
kernel and ``head_args``, which builds the arguments from a converted model's modules.
"""
import torch

from mbv3_fast.quantization import params


@torch.library.register_fake("mbv3::q8_classifier_head")
def _fake_q8_classifier_head(x, x_zero_point, w1, bias_int1, bias_float1, multiplier1, out_qparams1, lut1,
                             hidden_zero_point, w2, bias_int2, bias_float2, multiplier2, out_qparams2, out_scale,
                             x_scale=None, onednn1=None, onednn2=None):
    torch._check(x.dim() == 4, lambda: f"q8_classifier_head: x must be 4-D [N, C, H, W], got {x.dim()}-D")
    torch._check(x.dtype == torch.uint8, lambda: f"q8_classifier_head: x must be uint8, got {x.dtype}")
    return x.new_empty((x.shape[0], w2.shape[0]), dtype=torch.float32)


def head_args(linear1, hardswish, linear2, x_scale: float, x_zero_point: int, engine: str, onednn: bool = False):
    """The arguments of q8_classifier_head after x, from converted quantized modules: linear1 and
    linear2 torch.ao.nn.quantized.Linear, hardswish torch.ao.nn.quantized.Hardswish.  ``onednn``:
    both layers in the Onednn requantization mode (the onednn engine's Linear, csrc/common/q8.h)."""
    lut1 = params.unary_lut(hardswish, linear1.scale, linear1.zero_point)
    w1, bi1, bf1, m1, oq1, _ = params.module_args(linear1, x_scale, engine, onednn=onednn)
    w2, bi2, bf2, m2, oq2, _ = params.module_args(linear2, hardswish.scale, engine, onednn=onednn)
    od = ((params.onednn_scales(x_scale, linear1.scale), params.onednn_scales(hardswish.scale, linear2.scale))
          if onednn else (None, None))
    return (int(x_zero_point), w1, bi1, bf1, m1, oq1, lut1, int(hardswish.zero_point), w2, bi2, bf2, m2, oq2,
            float(linear2.scale), float(x_scale)) + od


def q8_classifier_head(x: torch.Tensor, linear1, hardswish, linear2, engine: str) -> torch.Tensor:
    """The classifier's float32 logits [N, K] for a quint8 feature map x [N, C, H, W]."""
    return torch.ops.mbv3.q8_classifier_head(x.int_repr(), *head_args(linear1, hardswish, linear2, x.q_scale(),
                                                                      x.q_zero_point(), engine))
