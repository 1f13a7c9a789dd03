"""mbv3::expand_dwconv_bn_act — an inverted residual block's expand 1x1 conv (+ BN + act) and
depthwise conv (+ BN + act) as one op:

  expand_dwconv_bn_act(x, expand_weight, expand_bias, expand_activation,
                       weight, bias, stride, padding, dilation, activation)
    = dwconv_bn_act(pwconv_bn_act(x, expand_weight, expand_bias, expand_activation),
                    weight, bias, stride, padding, dilation, activation)

The CPU kernel (csrc/expand_dwconv_bn_act/expand_dwconv_bn_act_op.cpp) runs bands of output rows, expanding only
the input rows each band needs into a per-thread window that stays in L2, so the expanded
tensor (the block's largest) is never written to memory; values are bit for bit those of the
two ops.  On CUDA the two Triton kernels run back to back (no band fusion there yet).
Here: the fake kernel (a shape function; the checks are the C++ op's), the CUDA registration.
"""
import torch

from mbv3_fast.ops._checks import conv_out_size, sizes_known
from mbv3_fast.ops._layout import output_memory_format


def check_inputs(x, ew, eb, expand_activation, weight, bias, stride, padding, dilation, activation):
    """The C++ op's argument checks (mbv3::_check_expand_dwconv_bn_act); returns (Ce, OH, OW)."""
    ce, oh, ow = torch.ops.mbv3._check_expand_dwconv_bn_act(x, ew, eb, expand_activation, weight, bias,
                                                           stride, padding, dilation, activation)
    return ce, oh, ow


@torch.library.register_fake("mbv3::expand_dwconv_bn_act")
def _fake(x, ew, eb, expand_activation, weight, bias, stride, padding, dilation, activation):
    if sizes_known(x, ew, eb, weight, bias):
        check_inputs(x, ew, eb, expand_activation, weight, bias, stride, padding, dilation, activation)
    n, _, h, w = x.shape
    k = weight.shape[-1]
    return x.new_empty((n, eb.shape[0], conv_out_size(h, k, stride, padding, dilation),
                        conv_out_size(w, k, stride, padding, dilation))).contiguous(
        memory_format=output_memory_format(x))


@torch.library.register_kernel("mbv3::expand_dwconv_bn_act", "cuda")
def _cuda(x, ew, eb, expand_activation, weight, bias, stride, padding, dilation, activation):
    from mbv3_fast.kernels.expand_dwconv_bn_act import expand_dwconv_bn_act
    return expand_dwconv_bn_act(x, ew, eb, expand_activation, weight, bias, stride, padding,
                                dilation, activation)
