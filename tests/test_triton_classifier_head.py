"""Tests of the Triton kernel mbv3_fast.kernels.classifier_head.

Without a CUDA device the kernels run in Triton's interpreter on CPU tensors (TRITON_INTERPRET
is set by tests/conftest.py before anything imports triton).  With CUDA the same cases run on
the GPU, plus MobileNetV3's heads (enumerated from torchvision) through torch.ops.

Tolerance (tests/tolerance.py): max|ours - ref64| <= 2 * max|torch_same_dtype - ref64| + 1e-6,
ref64 = mean -> linear -> act -> linear in float64, torch_same_dtype = the same ops in the
working dtype on the same device.
"""
import importlib

import pytest
import torch
import torch.nn.functional as F
from tolerance import assert_within_rule

from mbv3_fast.testing import head_layers

head_mod = importlib.import_module("mbv3_fast.kernels.classifier_head")

CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"
if not CUDA and not head_mod._INTERPRETED:
    raise RuntimeError("no CUDA and triton is not in interpreter mode: tests/conftest.py must "
                       "set TRITON_INTERPRET=1 before anything imports triton")
cuda_only = pytest.mark.skipif(not CUDA, reason="no CUDA device")

DTYPES = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}
ACTS = {"none": lambda t: t, "relu": F.relu, "hardswish": F.hardswish}


def reference(x, w1, b1, w2, b2, act):
    return F.linear(ACTS[act](F.linear(x.mean((2, 3)), w1, b1)), w2, b2)


def run_case(N, C, H, W, hidden, classes, dt, fmt, act="hardswish", w_dtype="f32", seed=0):
    gen = torch.Generator().manual_seed(seed)
    dtype = DTYPES[dt]
    x = torch.randn(N, C, H, W, generator=gen) + torch.randn(N, C, 1, 1, generator=gen)
    if fmt == "nc":
        x = torch.randn(N, C, W, H, generator=gen).transpose(2, 3)
    x = x.to(DEVICE, dtype)
    if fmt == "cl":
        x = x.contiguous(memory_format=torch.channels_last)
    wd = dtype if w_dtype == "x" else torch.float32
    params = [(torch.randn(*s, generator=gen) * f).to(DEVICE, wd) for s, f in (
        ((hidden, C), 2 / C ** 0.5), ((hidden,), 1.0), ((classes, hidden), 1 / hidden ** 0.5),
        ((classes,), 0.5))]
    y = head_mod.classifier_head(x, *params, act)
    ref64 = reference(x.double(), *[p.double() for p in params], act)
    same = reference(x, *[p.to(dtype) for p in params], act)
    what = f"N{N} C{C} {H}x{W} H{hidden} O{classes} {dt} {fmt} {act} w={w_dtype}"
    assert y.dtype == dtype and y.shape == (N, classes), what
    assert_within_rule(y, same, ref64, what)


@pytest.mark.parametrize("N,C,H,W,hidden,classes,dt,fmt,act", [
    (1, 17, 3, 2, 33, 5, "f32", "cl", "hardswish"),
    (3, 5, 1, 1, 7, 3, "f32", "nchw", "relu"),
    (2, 24, 5, 4, 16, 40, "bf16", "cl", "hardswish"),
    (1, 9, 7, 7, 20, 17, "f16", "nc", "none"),
    (0, 4, 2, 2, 3, 2, "f32", "cl", "hardswish"),
    (5, 1, 2, 3, 1, 1, "f16", "nchw", "hardswish"),
    (17, 8, 2, 2, 9, 6, "f32", "nchw", "hardswish"),  # two sample blocks
])
def test_cases(N, C, H, W, hidden, classes, dt, fmt, act):
    run_case(N, C, H, W, hidden, classes, dt, fmt, act, seed=N * 1000 + C)


@pytest.mark.parametrize("dt", list(DTYPES))
def test_weights_in_x_dtype(dt):
    run_case(2, 12, 3, 3, 10, 7, dt, "cl", w_dtype="x", seed=3)


def test_bad_input_raises():
    x = torch.randn(1, 8, 3, 3, device=DEVICE)
    with pytest.raises(ValueError, match=r"w1 must be \[hidden, C\]"):
        head_mod.classifier_head(x, torch.randn(4, 7, device=DEVICE), torch.randn(4, device=DEVICE),
                                 torch.randn(3, 4, device=DEVICE), torch.randn(3, device=DEVICE))


@cuda_only
@pytest.mark.parametrize("dt", list(DTYPES))
@pytest.mark.parametrize("batch", [1, 256])
def test_mobilenet_v3_heads_cuda(dt, batch):
    for c, h, w, hidden, classes, act in sorted(set(head_layers("large") + head_layers("small"))):
        run_case(batch, c, h, w, hidden, classes, dt, "cl", act, seed=c)
        x = torch.randn(batch, c, h, w, device="cuda", dtype=DTYPES[dt])
        params = [torch.randn(*s, device="cuda") for s in ((hidden, c), (hidden,), (classes, hidden), (classes,))]
        torch.testing.assert_close(torch.ops.mbv3.classifier_head(x, *params, act),
                                   head_mod.classifier_head(x, *params, act))
