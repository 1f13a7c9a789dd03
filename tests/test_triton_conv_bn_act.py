"""Tests of the Triton kernel mbv3_fast.kernels.conv_bn_act.

Without a CUDA device the kernel runs in Triton's interpreter on CPU tensors (tests/conftest.py
sets TRITON_INTERPRET=1 before triton is imported); shapes stay tiny there.  With CUDA the same
cases run on the GPU, plus MobileNetV3's stem at full size.

Tolerance (tests/tolerance.py): max|ours - ref64| <= 2 * max|torch_same_dtype - ref64| + 1e-6,
where ref64 = F.conv2d + bias + activation in float64 and torch_same_dtype is the same torch
computation in the working dtype on the same device.
"""
import importlib

import pytest
import torch
import torch.nn.functional as F
from tolerance import assert_within_rule

from mbv3_fast.kernels import conv_bn_act

conv_mod = importlib.import_module("mbv3_fast.kernels.conv_bn_act")

CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"
if not CUDA and not conv_mod._INTERPRETED:
    raise RuntimeError("no CUDA and triton is not in interpreter mode: tests/conftest.py must "
                       "set TRITON_INTERPRET=1 before anything imports triton")
cuda_only = pytest.mark.skipif(not CUDA, reason="no CUDA device")

ACTS = {"none": lambda v: v, "relu": F.relu, "hardswish": F.hardswish}
DTYPES = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}


def make_x(N, C, H, W, dtype, fmt, gen):
    """fmt: 'nchw', 'cl' (channels_last), 'nc' (non-contiguous view)."""
    def rnd(*shape):
        return torch.randn(*shape, generator=gen).to(DEVICE, dtype)
    if fmt == "nchw":
        return rnd(N, C, H, W)
    if fmt == "cl":
        return rnd(N, C, H, W).to(memory_format=torch.channels_last)
    if fmt == "nc":
        return rnd(N, C + 1, H, 2 * W + 1)[:, 1:, :, 1::2]
    raise AssertionError(fmt)


def make_params(Cin, Cout, k, dtype, w_dtype, gen, packed=False):
    w = torch.randn(Cout, Cin, k, k, generator=gen) / (k * Cin ** 0.5)
    if packed:  # [k,k,Cin,Cout] buffer viewed as [Cout,Cin,k,k] (the CPU op's packed layout)
        w = w.permute(2, 3, 1, 0).contiguous().permute(3, 2, 0, 1)
    b = torch.randn(Cout, generator=gen) * 0.5
    wd = dtype if w_dtype == "x" else torch.float32
    return w.to(DEVICE, wd), b.to(DEVICE, wd)


def reference(x, w, b, stride, padding, act, dtype):
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        ref64 = ACTS[act](F.conv2d(x.double(), w.double(), b.double(), stride, padding))
        same = ACTS[act](F.conv2d(x, w.to(dtype), b.to(dtype), stride, padding))
    return same, ref64


def run_case(N, Cin, Cout, H, W, k, stride, padding, act, dt, fmt, w_dtype="f32", packed=False,
             seed=0):
    gen = torch.Generator().manual_seed(seed)
    dtype = DTYPES[dt]
    x = make_x(N, Cin, H, W, dtype, fmt, gen)
    w, b = make_params(Cin, Cout, k, dtype, w_dtype, gen, packed)
    y = conv_bn_act(x, w, b, stride, padding, act)
    same, ref64 = reference(x, w, b, stride, padding, act, dtype)
    what = f"N{N} Cin{Cin} Cout{Cout} {H}x{W} k{k} s{stride} p{padding} {act} {dt} {fmt}"
    assert y.dtype == dtype and y.device == x.device, what
    assert_within_rule(y, same, ref64, what)
    n, c, oh, ow = y.shape
    assert y.stride() == (oh * ow * c, 1, ow * c, c), f"{what}: not channels_last {y.stride()}"
    return y


_CASES = [  # N, Cin, Cout, H, W, k, s, p, act, dt, fmt
    (1, 3, 16, 9, 10, 3, 2, 1, "hardswish", "f32", "nchw"),
    (2, 3, 16, 7, 5, 3, 1, 1, "relu", "bf16", "cl"),
    (1, 1, 7, 6, 6, 5, 2, 2, "none", "f16", "nc"),
    (2, 4, 17, 5, 7, 1, 1, 0, "hardswish", "f32", "cl"),
    (1, 3, 33, 8, 9, 7, 3, 3, "relu", "f32", "nchw"),
    (0, 3, 16, 5, 5, 3, 2, 1, "hardswish", "f32", "nchw"),
    (1, 3, 1, 1, 1, 3, 1, 1, "hardswish", "bf16", "nchw"),
    (1, 4, 16, 2, 3, 3, 2, 1, "none", "f16", "cl"),
    (1, 3, 16, 13, 11, 3, 2, 2, "hardswish", "f32", "nc"),
]


@pytest.mark.parametrize("N,Cin,Cout,H,W,k,s,p,act,dt,fmt", _CASES)
def test_cases(N, Cin, Cout, H, W, k, s, p, act, dt, fmt):
    run_case(N, Cin, Cout, H, W, k, s, p, act, dt, fmt, seed=Cin * 100 + Cout + k)


@pytest.mark.parametrize("dt", list(DTYPES))
@pytest.mark.parametrize("w_dtype", ["f32", "x"])
def test_dtypes_and_packed_weight(dt, w_dtype):
    run_case(2, 3, 16, 7, 8, 3, 2, 1, "hardswish", dt, "nchw", w_dtype=w_dtype, packed=True, seed=7)


def test_agrees_with_the_cpu_op():
    op = getattr(getattr(torch.ops, "mbv3", None), "conv_bn_act", None)
    if op is None or CUDA:
        pytest.skip("compares the interpreter with the CPU op")
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(1, 3, 9, 11, generator=gen)
    w, b = torch.randn(16, 3, 3, 3, generator=gen), torch.randn(16, generator=gen)
    torch.testing.assert_close(conv_bn_act(x, w, b, 2, 1, "hardswish"), op(x, w, b, 2, 1, "hardswish"),
                               rtol=1e-5, atol=1e-5)


def _good():
    return (torch.randn(1, 3, 5, 5, device=DEVICE), torch.randn(4, 3, 3, 3, device=DEVICE),
            torch.randn(4, device=DEVICE))


@pytest.mark.parametrize("mutate,match", [
    (lambda x, w, b: (x.to(torch.int32), w, b, 1, 1, "relu"), "x must be float32"),
    (lambda x, w, b: (x[0], w, b, 1, 1, "relu"), "4-D"),
    (lambda x, w, b: (x, w[:, :2], b, 1, 1, "relu"), r"\[Cout, Cin, k, k\]"),
    (lambda x, w, b: (x, w[..., :2, :2], b, 1, 1, "relu"), "odd"),
    (lambda x, w, b: (x, torch.randn(4, 3, 9, 9, device=DEVICE), b, 1, 4, "relu"), "<= 7"),
    (lambda x, w, b: (x, w, b[:3], 1, 1, "relu"), "bias"),
    (lambda x, w, b: (x, w, b, 0, 1, "relu"), "stride"),
    (lambda x, w, b: (x, w, b, 1, -1, "relu"), "padding"),
    (lambda x, w, b: (x, w, b, 1.0, 1, "relu"), "type 'int' for argument 'stride'"),
    (lambda x, w, b: (x, w, b, 1, 1, "gelu"), "activation"),
    (lambda x, w, b: (x[:, :, :1, :1], w, b, 1, 0, "relu"), "smaller than the kernel"),
    (lambda x, w, b: (x, w.to("meta"), b, 1, 1, "relu"), "same device"),
])
def test_bad_inputs(mutate, match):
    with pytest.raises((ValueError, RuntimeError), match=match):
        conv_bn_act(*mutate(*_good()))


@cuda_only
@pytest.mark.parametrize("dt", list(DTYPES))
@pytest.mark.parametrize("fmt", ["nchw", "cl"])
def test_mbv3_stem_cuda(dt, fmt):
    from mbv3_fast.testing import stem_layers
    for cin, cout, h, w, k, s, p, act in stem_layers("large"):
        run_case(4, cin, cout, h, w, k, s, p, act, dt, fmt, seed=11)


@cuda_only
def test_torch_op_routes_cuda():
    x, w, b = _good()
    torch.testing.assert_close(torch.ops.mbv3.conv_bn_act(x, w, b, 2, 1, "hardswish"),
                               conv_bn_act(x, w, b, 2, 1, "hardswish"), rtol=0, atol=0)
