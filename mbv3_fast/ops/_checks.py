"""What every op's fake (meta) kernel and CUDA (Triton) path share.

The argument checks themselves live in C++, once per op (csrc/<op>/<op>_op.cpp, helpers in
csrc/common/op_utils.h): the CPU kernel runs them, and ``torch.ops.mbv3._check_<op>`` (same
arguments as the op, returns a few ints) runs them on any device for the fake kernels and the
Triton path, so an error reads the same everywhere.  The fake kernels here are shape functions
that call it when sizes are concrete; under torch.compile's symbolic sizes the C++ check cannot
read sizes, and the fake kernel computes the output shape only (the kernel checks at run time).
"""
import torch

ACTIVATIONS = {"none": 0, "relu": 1, "hardswish": 2}  # codes shared with the kernels (mbv3::Act)


def sizes_known(*tensors) -> bool:
    """True when no tensor (None skipped) has a symbolic size."""
    return all(t is None or all(isinstance(s, int) for s in t.shape) for t in tensors)


def conv_out_size(size, k, stride, padding, dilation=1):
    """A conv's output size along one dim (the C++ conv_out_size); works on symbolic sizes."""
    return (size + 2 * padding - dilation * (k - 1) - 1) // stride + 1
