"""mbv3::classifier_head — MobileNetV3's classifier head in one op:

  classifier_head(x, w1, b1, w2, b2, activation) = w2 . act(w1 . mean_hw(x) + b1) + b2
  x [N, C, H, W] (any layout); w1 [hidden, C]; b1 [hidden]; w2 [classes, hidden];
  b2 [classes]  ->  [N, classes] logits.

torchvision's head is avgpool -> Linear -> Hardswish -> Dropout -> Linear; Dropout is the
identity in eval, so this is the whole eval head.  At batch 1 it is two matrix-vector
products over 10 MB of weights (Large): the CPU kernel splits the weight rows over threads so
each streams its own, and pools NHWC or NCHW maps in place.

Schema and CPU kernel: csrc/classifier_head/classifier_head_op.cpp.  CUDA kernel: mbv3_fast/kernels/classifier_head.py
(Triton).  Here: the fake kernel (a shape function; the checks are the C++ op's), the CUDA
registration and the Python wrapper taking torchvision's classifier module.
"""
from typing import Tuple

import torch
from torch import nn

from mbv3_fast.ops._checks import sizes_known


def check_inputs(x, w1, b1, w2, b2, activation) -> Tuple[int, int, int, int]:
    """The C++ op's argument checks (mbv3::_check_classifier_head), for the fake and CUDA paths.
    Returns (N, C, hidden, classes)."""
    n, c, hidden, classes = torch.ops.mbv3._check_classifier_head(x, w1, b1, w2, b2, activation)
    return n, c, hidden, classes


@torch.library.register_fake("mbv3::classifier_head")
def _fake(x, w1, b1, w2, b2, activation):
    if sizes_known(x, w1, b1, w2, b2):
        check_inputs(x, w1, b1, w2, b2, activation)
    return x.new_empty((x.shape[0], b2.shape[0]))  # b2: [classes] (w2 may be packed in panels)


@torch.library.register_kernel("mbv3::classifier_head", "cuda")
def _cuda(x, w1, b1, w2, b2, activation):
    from mbv3_fast.kernels.classifier_head import classifier_head as triton_classifier_head
    return triton_classifier_head(x, w1, b1, w2, b2, activation)


_ACT_MODULES = {nn.Hardswish: "hardswish", nn.ReLU: "relu"}


def classifier_head(x: torch.Tensor, classifier: nn.Module) -> torch.Tensor:
    """``classifier(mean_hw(x))`` in eval for torchvision's MobileNetV3 classifier
    (``Sequential(Linear, Hardswish, Dropout, Linear)``), as one op.  Other layouts are
    refused rather than silently computed differently; Dropout must be in eval mode."""
    c = classifier
    if not (type(c) is nn.Sequential and len(c) == 4 and type(c[0]) is nn.Linear
            and type(c[1]) in _ACT_MODULES and type(c[2]) is nn.Dropout
            and type(c[3]) is nn.Linear):
        raise ValueError("mbv3_fast.ops.classifier_head: expected torchvision's MobileNetV3 "
                         "classifier Sequential(Linear, Hardswish|ReLU, Dropout, Linear)")
    if c[2].training and c[2].p > 0:
        raise ValueError("mbv3_fast.ops.classifier_head: Dropout is in train mode")
    fc1, fc2 = c[0], c[3]
    b1 = fc1.bias if fc1.bias is not None else fc1.weight.new_zeros(fc1.out_features)
    b2 = fc2.bias if fc2.bias is not None else fc2.weight.new_zeros(fc2.out_features)
    return torch.ops.mbv3.classifier_head(x, fc1.weight, b1, fc2.weight, b2,
                                          _ACT_MODULES[type(c[1])])
