"""Triton kernels of mbv3_fast (installed as ``mbv3_fast.kernels``).

Public ops (exact signatures of torch.ops.mbv3.*; each returns a new tensor):
  dwconv_bn_act(x, weight, bias, stride, padding, dilation, activation)
  conv_bn_act(x, weight, bias, stride, padding, activation)   (output always channels_last)
  pwconv_bn_act(x, weight, bias, activation, residual, in_scale)
  se(x, w1, b1, w2, b2)
  se_scale(x, w1, b1, w2, b2)
They run on CUDA tensors, or on CPU tensors when TRITON_INTERPRET=1 was set before triton was
imported. 
"""
from .dwconv_bn_act import dwconv_bn_act, wants_channels_last
from .conv_bn_act import conv_bn_act
from .pwconv_bn_act import pwconv_bn_act
from .se import se, se_scale

__all__ = ["dwconv_bn_act", "conv_bn_act", "pwconv_bn_act", "se", "se_scale", "wants_channels_last"]
