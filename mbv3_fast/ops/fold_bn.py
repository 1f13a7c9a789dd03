"""Fold an eval-mode BatchNorm into the preceding conv's weight and bias."""
from typing import Optional, Tuple

import torch
from torch import nn


def fold_bn(conv_weight: torch.Tensor, bn: nn.Module,
            conv_bias: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """Return (weight, bias) with ``bn`` applied: ``bn(conv(x)) == conv'(x) + bias'``.

    Works for ``nn.BatchNorm2d`` and torchvision's ``FrozenBatchNorm2d`` (both keep
    weight/bias/running_mean/running_var and ``eps``; BatchNorm2d without affine has no
    weight/bias).  Folding is done in float64 and cast back, so it adds no error of its own
    beyond the final rounding.
    """
    if not hasattr(bn, "running_mean") or bn.running_mean is None:
        raise ValueError("fold_bn needs a BatchNorm with running statistics "
                         "(track_running_stats=True)")
    c_out = conv_weight.shape[0]
    if bn.running_mean.shape[0] != c_out:
        raise ValueError(f"fold_bn: BatchNorm has {bn.running_mean.shape[0]} channels, "
                         f"conv has {c_out} output channels")
    dtype = conv_weight.dtype
    mean = bn.running_mean.detach().double()
    var = bn.running_var.detach().double()
    gamma = bn.weight.detach().double() if getattr(bn, "weight", None) is not None else torch.ones_like(mean)
    beta = bn.bias.detach().double() if getattr(bn, "bias", None) is not None else torch.zeros_like(mean)
    scale = gamma / torch.sqrt(var + float(bn.eps))
    weight = conv_weight.detach().double() * scale.reshape(-1, *([1] * (conv_weight.dim() - 1)))
    b0 = conv_bias.detach().double() if conv_bias is not None else torch.zeros_like(mean)
    bias = (b0 - mean) * scale + beta
    return weight.to(dtype), bias.to(dtype)
