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
Here: input checks shared by the fake and CUDA paths, the fake kernel, the CUDA registration.
"""
import torch

from mbv3_fast.ops._checks import check_activation, check_cpu_dtype, check_float, check_same_device
from mbv3_fast.ops.dwconv_bn_act import check_depthwise
from mbv3_fast.ops._layout import output_memory_format

def check_inputs(x, ew, eb, expand_activation, weight, bias, stride, padding, dilation, activation):
    """Validate the op's arguments (the C++ kernel's messages); returns (Ce, OH, OW)."""
    op = "expand_dwconv_bn_act"
    check_float(x, "x", op)
    if x.dim() != 4:
        raise ValueError(f"{op}: x must be 4-D [N, Cin, H, W], got {x.dim()}-D")
    n, cin, h, w = x.shape
    for name, t in (("expand_weight", ew), ("expand_bias", eb), ("weight", weight), ("bias", bias)):
        check_float(t, name, op, x.dtype)
    if not (ew.dim() == 2 or (ew.dim() == 4 and ew.shape[2] == 1 and ew.shape[3] == 1)) \
            or ew.shape[1] != cin or ew.shape[0] < 1:
        raise ValueError(f"{op}: expand_weight must be [Ce, Cin, 1, 1] or [Ce, Cin] with Cin = {cin} "
                         f"(x's channels), got {list(ew.shape)}")
    ce = ew.shape[0]
    if eb.dim() != 1 or eb.shape[0] != ce:
        raise ValueError(f"{op}: expand_bias must be [Ce] with Ce = {ce}, got {list(eb.shape)}")
    _, oh, ow = check_depthwise(op, ce, h, w, weight, bias, stride, padding, dilation, "Ce",
                                "expand_weight's rows")
    check_activation(expand_activation, op)
    check_activation(activation, op)
    check_same_device(x, expand_weight=ew, expand_bias=eb, weight=weight, bias=bias)
    return ce, oh, ow


@torch.library.register_fake("mbv3::expand_dwconv_bn_act")
def _fake(x, ew, eb, expand_activation, weight, bias, stride, padding, dilation, activation):
    check_cpu_dtype(x)
    ce, oh, ow = check_inputs(x, ew, eb, expand_activation, weight, bias, stride, padding,
                              dilation, activation)
    return x.new_empty((x.shape[0], ce, oh, ow)).contiguous(memory_format=output_memory_format(x))


@torch.library.register_kernel("mbv3::expand_dwconv_bn_act", "cuda")
def _cuda(x, ew, eb, expand_activation, weight, bias, stride, padding, dilation, activation):
    from mbv3_fast.kernels.expand_dwconv_bn_act import expand_dwconv_bn_act
    return expand_dwconv_bn_act(x, ew, eb, expand_activation, weight, bias, stride, padding,
                                dilation, activation)
