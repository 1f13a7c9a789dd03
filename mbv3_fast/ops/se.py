"""mbv3::se / mbv3::se_scale — MobileNetV3's squeeze-excitation block in one op.

  se(x, w1, b1, w2, b2)       = x * hardsigmoid(w2 . relu(w1 . mean_hw(x) + b1) + b2)
  se_scale(x, w1, b1, w2, b2) = the [N, C] per-channel scale alone
  x [N, C, H, W]; w1 [S, C] or [S, C, 1, 1]; b1 [S]; w2 [C, S] or [C, S, 1, 1]; b2 [C].

Schemas and CPU kernels: csrc/se/se_op.cpp.  CUDA kernels: mbv3_fast/kernels/se.py (Triton).  Here: input
checks shared by the fake and CUDA paths, the fake kernels, the CUDA registrations and the
Python wrapper taking a torchvision ``SqueezeExcitation``.
"""
from typing import Tuple

import torch
from torch import nn

from mbv3_fast.ops._checks import check_cpu_dtype, check_float, check_same_device
from mbv3_fast.ops._layout import output_memory_format


def _matrix_shape(w: torch.Tensor):
    """(rows, cols) of a [rows, cols] or [rows, cols, 1, 1] weight, else None."""
    if w.dim() == 2 or (w.dim() == 4 and w.shape[2] == 1 and w.shape[3] == 1):
        return w.shape[0], w.shape[1]
    return None


def check_inputs(x, w1, b1, w2, b2, op: str = "se") -> Tuple[int, int, int, int, int]:
    """Validate arguments for the fake (meta) and CUDA (Triton) paths; return (N, C, H, W, S).
    Messages match the C++ kernel's."""
    check_float(x, "x", op)
    if x.dim() != 4:
        raise ValueError(f"{op}: x must be 4-D [N, C, H, W], got {x.dim()}-D")
    n, c, h, w = x.shape
    if c < 1 or h < 1 or w < 1:
        raise ValueError(f"{op}: x must have C, H, W >= 1, got {list(x.shape)}")
    for name, t in (("w1", w1), ("b1", b1), ("w2", w2), ("b2", b2)):
        check_float(t, name, op, x.dtype)
    check_same_device(x, w1=w1, b1=b1, w2=w2, b2=b2)
    m1 = _matrix_shape(w1)
    if m1 is None or m1[1] != c or m1[0] < 1:
        raise ValueError(f"{op}: w1 must be [S, C] or [S, C, 1, 1] with C = {c} (x's channels) "
                         f"and S >= 1, got {list(w1.shape)}")
    s = m1[0]
    if b1.dim() != 1 or b1.shape[0] != s:
        raise ValueError(f"{op}: b1 must be [S] with S = {s} (w1's rows), got {list(b1.shape)}")
    if _matrix_shape(w2) != (c, s):
        raise ValueError(f"{op}: w2 must be [C, S] or [C, S, 1, 1] with C = {c}, S = {s}, "
                         f"got {list(w2.shape)}")
    if b2.dim() != 1 or b2.shape[0] != c:
        raise ValueError(f"{op}: b2 must be [C] with C = {c}, got {list(b2.shape)}")
    return n, c, h, w, s


@torch.library.register_fake("mbv3::se")
def _fake_se(x, w1, b1, w2, b2):
    check_cpu_dtype(x)
    check_inputs(x, w1, b1, w2, b2, "se")
    return torch.empty_like(x, memory_format=output_memory_format(x))


@torch.library.register_fake("mbv3::se_scale")
def _fake_se_scale(x, w1, b1, w2, b2):
    check_cpu_dtype(x)
    n, c, _, _, _ = check_inputs(x, w1, b1, w2, b2, "se_scale")
    return x.new_empty((n, c))


@torch.library.register_kernel("mbv3::se", "cuda")
def _cuda_se(x, w1, b1, w2, b2):
    from mbv3_fast.kernels.se import se as triton_se
    return triton_se(x, w1, b1, w2, b2)


@torch.library.register_kernel("mbv3::se_scale", "cuda")
def _cuda_se_scale(x, w1, b1, w2, b2):
    from mbv3_fast.kernels.se import se_scale as triton_se_scale
    return triton_se_scale(x, w1, b1, w2, b2)


def se(x: torch.Tensor, se_module: nn.Module) -> torch.Tensor:
    """``se_module(x)`` for a torchvision ``SqueezeExcitation`` built the MobileNetV3 way
    (``activation=nn.ReLU``, ``scale_activation=nn.Hardsigmoid``), as one op.

    The module's own 1x1-conv weights are passed as they are (no copy).  Other activations
    are refused rather than silently computed as ReLU / hardsigmoid.
    """
    act = getattr(se_module, "activation", None)
    scale_act = getattr(se_module, "scale_activation", None)
    if not isinstance(act, nn.ReLU) or not isinstance(scale_act, nn.Hardsigmoid):
        raise ValueError("mbv3_fast.ops.se: the module must use activation=nn.ReLU and "
                         "scale_activation=nn.Hardsigmoid (MobileNetV3's SE), got "
                         f"{type(act).__name__} / {type(scale_act).__name__}")
    fc1, fc2 = se_module.fc1, se_module.fc2
    b1 = fc1.bias if fc1.bias is not None else fc1.weight.new_zeros(fc1.weight.shape[0])
    b2 = fc2.bias if fc2.bias is not None else fc2.weight.new_zeros(fc2.weight.shape[0])
    return torch.ops.mbv3.se(x, fc1.weight, b1, fc2.weight, b2)
