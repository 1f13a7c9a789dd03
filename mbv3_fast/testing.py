"""Test and benchmark helpers shared by tests/ and bench/ (and usable in a user's own tests):

- MobileNetV3's layer configurations, enumerated from torchvision itself (never hand-copied):
  ``stem_layers``, ``depthwise_layers``, ``pointwise_layers``, ``expand_depthwise_layers``,
  ``se_layers``, ``head_layers``;
- ``realistic``: random weights with BatchNorm statistics taken from real batches, so that BN
  folding matters and logits are O(1) (torchvision's init gives ~1e-9).

Imports torchvision; ``import mbv3_fast`` does not import this module.
"""
from functools import lru_cache

import torch
from torch import nn
from torchvision.models import mobilenet_v3_large, mobilenet_v3_small
from torchvision.ops.misc import Conv2dNormActivation, FrozenBatchNorm2d, SqueezeExcitation

VARIANTS = {
    "large": lambda: mobilenet_v3_large(),
    "small": lambda: mobilenet_v3_small(),
    "large-dilated": lambda: mobilenet_v3_large(dilated=True),
    "small-dilated": lambda: mobilenet_v3_small(dilated=True),
    "large-reduced": lambda: mobilenet_v3_large(reduced_tail=True),
}
_ACT = {nn.Hardswish: "hardswish", nn.ReLU: "relu"}


def _run_hooked(model, kind, size):
    found = []

    def hook(mod, inp, out):
        found.append((mod, tuple(inp[0].shape)))

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, kind)]
    with torch.no_grad():
        model.eval()(torch.zeros(1, 3, size, size))
    for h in handles:
        h.remove()
    return found


@lru_cache(maxsize=None)
def depthwise_layers(variant: str, size: int = 224):
    """(C, H, W, k, stride, padding, dilation, activation) of every depthwise conv+BN+act."""
    out = []
    for block, shape in _run_hooked(VARIANTS[variant](), Conv2dNormActivation, size):
        conv = block[0]
        if conv.groups == 1 or conv.groups != conv.in_channels:
            continue
        act = _ACT[type(block[2])] if len(block) > 2 else "none"
        out.append((conv.in_channels, shape[2], shape[3], conv.kernel_size[0], conv.stride[0],
                    conv.padding[0], conv.dilation[0], act))
    return out


@lru_cache(maxsize=None)
def se_layers(variant: str, size: int = 224):
    """(C, S, H, W) of every squeeze-excitation block."""
    return [(se.fc1.in_channels, se.fc1.out_channels, shape[2], shape[3])
            for se, shape in _run_hooked(VARIANTS[variant](), SqueezeExcitation, size)]


@lru_cache(maxsize=None)
def pointwise_layers(variant: str, size: int = 224):
    """(Cin, Cout, H, W, activation, has_residual) of every 1x1 conv+BN(+act): the expand and
    project convs of each inverted residual block and the last conv.  has_residual: the block
    adds its input to the projection's output (stride 1, Cin == Cout of the block)."""
    from torchvision.models.mobilenetv3 import InvertedResidual
    model = VARIANTS[variant]()
    residual_ids = {id(m.block[-1]) for m in model.modules()
                    if isinstance(m, InvertedResidual) and m.use_res_connect}
    out = []
    for block, shape in _run_hooked(model, Conv2dNormActivation, size):
        conv = block[0]
        if conv.kernel_size != (1, 1) or conv.groups != 1:
            continue
        act = _ACT[type(block[2])] if len(block) > 2 else "none"
        out.append((conv.in_channels, conv.out_channels, shape[2], shape[3], act,
                    id(block) in residual_ids))
    return out


@lru_cache(maxsize=None)
def head_layers(variant: str, size: int = 224):
    """(C, H, W, hidden, classes, activation) of the classifier head: the last feature map
    (avgpool's input) and torchvision's Linear -> act -> Dropout -> Linear."""
    model = VARIANTS[variant]()
    shape = [s for m, s in _run_hooked(model, nn.AdaptiveAvgPool2d, size) if m is model.avgpool][0]
    fc1, act, _, fc2 = model.classifier
    return [(shape[1], shape[2], shape[3], fc1.out_features, fc2.out_features, _ACT[type(act)])]


@lru_cache(maxsize=None)
def expand_depthwise_layers(variant: str, size: int = 224):
    """(Cin, Ce, H, W, expand_act, k, stride, padding, dilation, act) of every inverted
    residual block with an expand conv: its expand 1x1 conv + BN + act and depthwise conv +
    BN + act, H x W the block's input."""
    from torchvision.models.mobilenetv3 import InvertedResidual
    model = VARIANTS[variant]()
    blocks = [b for b in model.modules() if isinstance(b, InvertedResidual) and b.block[0][0].groups == 1]
    out = []
    for blk, shape in _run_hooked(model, InvertedResidual, size):
        if not any(blk is b for b in blocks):
            continue
        expand, dw = blk.block[0], blk.block[1]
        conv = dw[0]
        out.append((expand[0].in_channels, expand[0].out_channels, shape[2], shape[3],
                    _ACT[type(expand[2])], conv.kernel_size[0], conv.stride[0], conv.padding[0],
                    conv.dilation[0], _ACT[type(dw[2])]))
    return out


@lru_cache(maxsize=None)
def stem_layers(variant: str, size: int = 224):
    """(Cin, Cout, H, W, k, stride, padding, activation) of every dense KxK (k > 1) conv+BN+act:
    in MobileNetV3 that is the stem alone (3 -> 16, 3x3, stride 2, hardswish)."""
    out = []
    for block, shape in _run_hooked(VARIANTS[variant](), Conv2dNormActivation, size):
        conv = block[0]
        if conv.groups != 1 or conv.kernel_size == (1, 1):
            continue
        act = _ACT[type(block[2])] if len(block) > 2 else "none"
        out.append((conv.in_channels, conv.out_channels, shape[2], shape[3], conv.kernel_size[0],
                    conv.stride[0], conv.padding[0], act))
    return out


def realistic(model: nn.Module, seed: int) -> nn.Module:
    """``model`` in eval mode with random weights, random BN affine parameters and BN running
    statistics from three random batches (never the default mean 0 / var 1)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm2d, FrozenBatchNorm2d)):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.2)
            elif isinstance(m, nn.Linear):  # torchvision's N(0, 0.01) gives ~1e-4 logits
                m.weight.normal_(0, 0.05, generator=g)
                m.bias.normal_(0, 0.1, generator=g)
        bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
        momenta = [m.momentum for m in bns]
        for m in bns:
            m.momentum = None  # cumulative average: the running stats become the batches' stats
        model.train()
        for _ in range(3):
            model(torch.randn(4, 3, 64, 64, generator=g) * 1.5 + 0.3)
        for m, mom in zip(bns, momenta):
            m.momentum = mom
    for m in bns:
        assert m.running_mean.abs().max() > 1e-3 and (m.running_var - 1).abs().max() > 1e-2
    return model.eval()
