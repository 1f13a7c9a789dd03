"""Tests of mbv3_fast.kernels.expand_dwconv_bn_act (the pointwise and depthwise Triton kernels
back to back) in Triton's interpreter on CPU tensors (tests/conftest.py sets TRITON_INTERPRET
when there is no CUDA), or on the GPU.  Reference: the unfused chain in float64; tolerance:
tests/tolerance.py against the same chain in the working dtype."""
import importlib

import pytest
import torch
import torch.nn.functional as F
from tolerance import assert_within_rule

from layers import ACT_FN

mod = importlib.import_module("mbv3_fast.kernels.expand_dwconv_bn_act")
CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"
DTYPES = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}


def chain(x, ew, eb, eact, dw, db, stride, pad, dil, act):
    y = ACT_FN[eact](F.conv2d(x, ew, eb))
    return ACT_FN[act](F.conv2d(y, dw, db, stride, pad, dil, groups=dw.shape[0]))


@pytest.mark.parametrize("n,cin,ce,h,w,k,s,p,d,dt,cl", [
    (1, 4, 8, 6, 5, 3, 1, 1, 1, "f32", True),
    (2, 3, 5, 5, 7, 5, 2, 2, 1, "f32", False),
    (1, 6, 16, 4, 4, 3, 2, 1, 1, "bf16", True),
    (1, 5, 9, 5, 5, 3, 1, 2, 2, "f16", False),
    (0, 4, 8, 3, 3, 3, 1, 1, 1, "f32", True),
])
def test_against_unfused_chain(n, cin, ce, h, w, k, s, p, d, dt, cl):
    gen = torch.Generator().manual_seed(n * 100 + cin * 10 + k)
    dtype = DTYPES[dt]
    x = torch.randn(n, cin, h, w, generator=gen).to(DEVICE, dtype)
    if cl:
        x = x.contiguous(memory_format=torch.channels_last)
    ew = (torch.randn(ce, cin, 1, 1, generator=gen) / cin ** 0.5).to(DEVICE, dtype)
    eb = torch.randn(ce, generator=gen).to(DEVICE, dtype)
    dw = (torch.randn(ce, 1, k, k, generator=gen) / k).to(DEVICE, dtype)
    db = torch.randn(ce, generator=gen).to(DEVICE, dtype)
    y = mod.expand_dwconv_bn_act(x, ew, eb, "hardswish", dw, db, s, p, d, "relu")
    ref64 = chain(x.double(), ew.double(), eb.double(), "hardswish", dw.double(), db.double(), s, p, d, "relu")
    same = chain(x, ew, eb, "hardswish", dw, db, s, p, d, "relu")
    assert_within_rule(y, same, ref64, f"N{n} {cin}->{ce} {h}x{w} k{k}s{s}p{p}d{d} {dt} cl={cl}")


def test_bad_input_raises():
    x = torch.randn(1, 4, 5, 5, device=DEVICE)
    with pytest.raises(ValueError, match="expand_bias must be"):
        mod.expand_dwconv_bn_act(x, torch.randn(8, 4, 1, 1, device=DEVICE), torch.randn(7, device=DEVICE),
                                 "relu", torch.randn(8, 1, 3, 3, device=DEVICE), torch.randn(8, device=DEVICE),
                                 1, 1, 1, "relu")
