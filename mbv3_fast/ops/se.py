"""mbv3::se / mbv3::se_scale — MobileNetV3's squeeze-excitation block in one op.

  se(x, w1, b1, w2, b2)       = x * hardsigmoid(w2 . relu(w1 . mean_hw(x) + b1) + b2)
  se_scale(x, w1, b1, w2, b2) = the [N, C] per-channel scale alone
  x [N, C, H, W]; w1 [S, C] or [S, C, 1, 1]; b1 [S]; w2 [C, S] or [C, S, 1, 1]; b2 [C].

Schemas and CPU kernels: csrc/se/se_op.cpp.  CUDA kernels: mbv3_fast/kernels/se.py (Triton).  Here: the
fake kernels (shape functions; the checks are the C++ op's), the CUDA registrations and the
Python wrapper taking a torchvision ``SqueezeExcitation``.
"""
from typing import Tuple

import torch
from torch import nn

from mbv3_fast.ops._checks import sizes_known
from mbv3_fast.ops._layout import output_memory_format


def check_inputs(x, w1, b1, w2, b2, op: str = "se") -> Tuple[int, int, int, int, int]:
    """The C++ op's argument checks (mbv3::_check_se), for the fake and CUDA paths; ``op`` ("se"
    or "se_scale") names the op in messages.  Returns (N, C, H, W, S)."""
    n, c, h, w, s = torch.ops.mbv3._check_se(x, w1, b1, w2, b2, op == "se_scale")
    return n, c, h, w, s


@torch.library.register_fake("mbv3::se")
def _fake_se(x, w1, b1, w2, b2):
    if sizes_known(x, w1, b1, w2, b2):
        check_inputs(x, w1, b1, w2, b2, "se")
    return torch.empty_like(x, memory_format=output_memory_format(x))


@torch.library.register_fake("mbv3::se_scale")
def _fake_se_scale(x, w1, b1, w2, b2):
    if sizes_known(x, w1, b1, w2, b2):
        check_inputs(x, w1, b1, w2, b2, "se_scale")
    return x.new_empty((x.shape[0], x.shape[1]))


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
