"""Tests of the Triton kernel mbv3_fast.kernels.pwconv_bn_act.

Without a CUDA device the kernel runs in Triton's interpreter on CPU tensors (TRITON_INTERPRET
is set by tests/conftest.py before anything imports triton).  With CUDA the same cases run on the GPU, plus
every pointwise layer of MobileNetV3-Large and the torch.ops route.
Tolerance: tests/tolerance.py against float64, PyTorch's own result in the same dtype as the bar.
"""
import importlib

import pytest
import torch
import torch.nn.functional as F
from mbv3_fast.testing import pointwise_layers
from tolerance import assert_within_rule


pw_mod = importlib.import_module("mbv3_fast.kernels.pwconv_bn_act")
pwconv_bn_act = pw_mod.pwconv_bn_act

CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"
if not CUDA and not pw_mod._INTERPRETED:
    raise RuntimeError("no CUDA and triton is not in interpreter mode: tests/conftest.py must "
                       "set TRITON_INTERPRET=1 before anything imports triton")
cuda_only = pytest.mark.skipif(not CUDA, reason="no CUDA device")

ACTS = {"none": lambda v: v, "relu": F.relu, "hardswish": F.hardswish}
DTYPES = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}


def make_x(N, C, H, W, dtype, fmt, gen):
    def rnd(*shape):
        return torch.randn(*shape, generator=gen).to(DEVICE, dtype)
    if fmt == "nchw":
        return rnd(N, C, H, W)
    if fmt == "cl":
        return rnd(N, C, H, W).to(memory_format=torch.channels_last)
    if fmt == "nc":
        return rnd(N, C, H, 2 * W + 1)[..., 1::2]
    if fmt == "clnc":
        return rnd(N, H, W, 2 * C).permute(0, 3, 1, 2)[:, ::2]
    raise AssertionError(fmt)


def reference(x, w, b, act, r, s, dtype):
    def run(dt):
        xx = x.to(dt)
        if s is not None:
            xx = xx * s.to(dt)[:, :, None, None]
        y = ACTS[act](F.conv2d(xx, w.to(dt).reshape(w.shape[0], -1, 1, 1), b.to(dt)))
        return y if r is None else y + r.to(dt)
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        return run(dtype), run(torch.float64)


def run_case(N, Cin, Cout, H, W, act, dt, fmt, res=False, scale=False, w_dtype="x", packed=False,
             seed=0):
    gen = torch.Generator().manual_seed(seed)
    dtype = DTYPES[dt]
    wd = dtype if w_dtype == "x" else torch.float32
    x = make_x(N, Cin, H, W, dtype, fmt, gen)
    w = (torch.randn(Cout, Cin, generator=gen) / max(Cin, 1) ** 0.5)
    if packed:
        w = w.t().contiguous().t()
    w = w.to(DEVICE, wd)[:, :, None, None]
    b = (torch.randn(Cout, generator=gen) * 0.5).to(DEVICE, wd)
    r = make_x(N, Cout, H, W, dtype, fmt, gen) if res else None
    s = torch.rand(N, Cin, generator=gen).to(DEVICE, dtype) if scale else None
    y = pwconv_bn_act(x, w, b, act, r, s)
    same, ref64 = reference(x, w, b, act, r, s, dtype)
    what = f"N{N} {Cin}->{Cout} {H}x{W} {act} {dt} {fmt} r{res} s{scale}"
    assert y.dtype == dtype and y.device == x.device, what
    assert_within_rule(y, same, ref64, what)
    if x.numel() and fmt == "cl" and not x.is_contiguous():
        assert y.is_contiguous(memory_format=torch.channels_last), what
    elif x.numel():
        assert y.is_contiguous(), what
    return y


CASES = [  # (N, Cin, Cout, H, W, act, fmt, res, scale)
    (1, 16, 16, 7, 5, "none", "cl", True, False),
    (2, 17, 33, 3, 5, "hardswish", "nchw", False, True),
    (1, 3, 1, 1, 1, "relu", "cl", True, True),
    (3, 33, 17, 4, 3, "hardswish", "nc", True, True),
    (0, 8, 5, 3, 3, "relu", "cl", False, False),
    (2, 40, 24, 6, 6, "none", "clnc", True, False),
    (1, 72, 40, 5, 7, "relu", "cl", False, True),
]


@pytest.mark.parametrize("dt", list(DTYPES))
@pytest.mark.parametrize("case", CASES, ids=lambda c: "N{}_{}to{}_{}x{}_{}_{}_r{:d}s{:d}".format(*c))
def test_cases(case, dt):
    run_case(*case[:5], case[5], dt, case[6], res=case[7], scale=case[8])


@pytest.mark.parametrize("dt", list(DTYPES))
def test_fp32_params_with_low_precision_x_and_packed_weight(dt):
    run_case(2, 24, 20, 5, 5, "hardswish", dt, "cl", True, True, w_dtype="f32", packed=True)


def test_bad_inputs():
    x = torch.randn(1, 8, 4, 4, device=DEVICE)
    w, b = torch.randn(5, 8, 1, 1, device=DEVICE), torch.randn(5, device=DEVICE)
    with pytest.raises(ValueError, match=r"bias must be \[Cout\]"):
        pwconv_bn_act(x, w, b[:4], "relu")
    with pytest.raises(ValueError, match=r"in_scale must be \[N, Cin\]"):
        pwconv_bn_act(x, w, b, "relu", None, torch.rand(1, 7, device=DEVICE))
    with pytest.raises(ValueError, match="unknown activation"):
        pwconv_bn_act(x, w, b, "gelu")


@cuda_only
@pytest.mark.parametrize("dt", list(DTYPES))
@pytest.mark.parametrize("fmt", ["cl", "nchw"])
def test_mbv3_large_layers_cuda(dt, fmt):
    for cin, cout, h, w, act, res in pointwise_layers("large"):
        run_case(2, cin, cout, h, w, act, dt, fmt, res=res, scale=act == "none")


@cuda_only
def test_torch_op_routes_cuda():
    import mbv3_fast  # noqa: F401
    x = torch.randn(2, 24, 7, 7, device="cuda").contiguous(memory_format=torch.channels_last)
    w, b = torch.randn(40, 24, 1, 1, device="cuda"), torch.randn(40, device="cuda")
    s = torch.rand(2, 24, device="cuda")
    torch.testing.assert_close(torch.ops.mbv3.pwconv_bn_act(x, w, b, "relu", None, s),
                               pwconv_bn_act(x, w, b, "relu", None, s))
