"""Tests of the Triton kernels mbv3_fast.kernels.se / se_scale.

Without a CUDA device the kernels run in Triton's interpreter on CPU tensors (TRITON_INTERPRET
is set by tests/conftest.py before anything imports triton).  With CUDA the same cases run on the GPU, plus
every SE layer of MobileNetV3-Large (enumerated from torchvision).

Tolerance (tests/tolerance.py): max|ours - ref64| <= 2 * max|torch_same_dtype - ref64| + 1e-6,
ref64 = the plain torch ops (mean, linear, relu, linear, hardsigmoid, mul) in float64,
torch_same_dtype = the same ops in the working dtype (weights cast to it) on the same device.
"""
import importlib

import pytest
import torch
import torch.nn.functional as F
from tolerance import assert_within_rule

from mbv3_fast.kernels import se, se_scale

se_mod = importlib.import_module("mbv3_fast.kernels.se")

CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"
if not CUDA and not se_mod._INTERPRETED:
    raise RuntimeError("no CUDA and triton is not in interpreter mode: tests/conftest.py must "
                       "set TRITON_INTERPRET=1 before anything imports triton")
cuda_only = pytest.mark.skipif(not CUDA, reason="no CUDA device")

DTYPES = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}


def make_x(N, C, H, W, dtype, fmt, gen, amp=1.0):
    def rnd(*shape):  # dtype/device first: .to() would densify a non-contiguous view
        return (torch.randn(*shape, generator=gen) * amp).to(DEVICE, dtype)
    if fmt == "nchw":
        return rnd(N, C, H, W)
    if fmt == "cl":
        return rnd(N, C, H, W).to(memory_format=torch.channels_last)
    if fmt == "nc":
        return rnd(N, C, W, H).transpose(2, 3)
    raise AssertionError(fmt)


def make_params(C, S, dtype, w_dtype, gen, wshape="2d"):
    w1 = torch.randn(S, C, generator=gen) / max(C, 1) ** 0.5 * 2
    b1 = torch.randn(S, generator=gen) * 0.5
    w2 = torch.randn(C, S, generator=gen) / S ** 0.5 * 2
    b2 = torch.randn(C, generator=gen) * 3  # hardsigmoid: both saturations + the linear part
    if wshape == "4d":
        w1, w2 = w1[:, :, None, None], w2[:, :, None, None]
    elif wshape == "strided":  # non-contiguous views
        w1 = w1.t().contiguous().t()
        w2 = torch.cat([w2, w2], 1)[:, ::2]
    wd = dtype if w_dtype == "x" else torch.float32
    return [t.to(DEVICE, wd) for t in (w1, b1, w2, b2)]


def se_reference(x, w1, b1, w2, b2):
    w1 = w1.reshape(w1.shape[0], w1.shape[1])
    w2 = w2.reshape(w2.shape[0], w2.shape[1])
    p = x.mean((2, 3))
    h = F.relu(F.linear(p, w1, b1))
    s = F.hardsigmoid(F.linear(h, w2, b2))
    return x * s[:, :, None, None], s


def references(x, params, dtype):
    ref64 = se_reference(x.double(), *[t.double() for t in params])
    same = se_reference(x, *[t.to(dtype) for t in params])
    return same, ref64


def run_case(N, C, S, H, W, dt, fmt, w_dtype="f32", wshape="2d", seed=0, amp=1.0):
    gen = torch.Generator().manual_seed(seed)
    dtype = DTYPES[dt]
    x = make_x(N, C, H, W, dtype, fmt, gen, amp)
    params = make_params(C, S, dtype, w_dtype, gen, wshape)
    y = se(x, *params)
    s = se_scale(x, *params)
    (same_y, same_s), (ref_y, ref_s) = references(x, params, dtype)
    what = f"N{N} C{C} S{S} {H}x{W} {dt} {fmt} w={w_dtype}/{wshape}"
    assert y.dtype == dtype and s.dtype == dtype and s.shape == (N, C), what
    assert_within_rule(y, same_y, ref_y, "se " + what)
    assert_within_rule(s, same_s, ref_s, "se_scale " + what)
    if N > 0:  # project rule (mbv3_fast/ops/_layout.py); ambiguous C == 1 / 1x1 -> NCHW
        if fmt == "cl" and not x.is_contiguous():
            assert y.is_contiguous(memory_format=torch.channels_last), what
        else:
            assert y.is_contiguous(), what
        assert s.is_contiguous(), what
    return ref_s


_CS = [1, 5, 17, 72]
_SS = [1, 3, 24]
_HWS = [(1, 1), (3, 2), (9, 9)]
_NS = [1, 2, 0, 2, 1]
_FMTS = ["cl", "nchw", "cl", "nc"]
_DTS = ["f32", "bf16", "f16"]


def _core_cases():
    cases = []
    for i in range(20):
        H, W = _HWS[i % 3]
        cases.append((_NS[i % 5], _CS[i % 4], _SS[(i // 4) % 3], H, W, _DTS[i % 3], _FMTS[i % 4]))
    return cases


@pytest.mark.parametrize("N,C,S,H,W,dt,fmt", _core_cases())
def test_core_grid(N, C, S, H, W, dt, fmt):
    run_case(N, C, S, H, W, dt, fmt, seed=N * 100000 + C * 1000 + S * 10 + H)


@pytest.mark.parametrize("dt", list(DTYPES))
@pytest.mark.parametrize("fmt", ["nchw", "cl"])
@pytest.mark.parametrize("w_dtype", ["f32", "x"])
def test_dtypes_formats(dt, fmt, w_dtype):
    run_case(2, 17, 3, 3, 2, dt, fmt, w_dtype=w_dtype, seed=5)
    # C=24: channels_last runs with VEC = 8 (16-bit) / 4 (fp32) aligned vector accesses
    run_case(1, 24, 5, 2, 3, dt, fmt, w_dtype=w_dtype, seed=55)


@pytest.mark.parametrize("wshape", ["4d", "strided"])
def test_weight_shapes(wshape):
    run_case(2, 17, 3, 3, 3, "f32", "cl", wshape=wshape, seed=6)
    run_case(1, 5, 24, 2, 3, "bf16", "nchw", w_dtype="x", wshape=wshape, seed=7)


def test_hardsigmoid_regions():
    """Scale values at 0, at 1 and strictly between in one tensor."""
    ref_s = run_case(2, 72, 24, 3, 2, "f32", "cl", seed=8)
    assert (ref_s == 0).any() and (ref_s == 1).any() and ((ref_s > 0) & (ref_s < 1)).any()
    run_case(1, 72, 24, 3, 3, "bf16", "nchw", seed=9, amp=10.0)


# --- launch configurations: the GPU heuristic and tiny blocks (multi-part / tail paths) -------

_TINY_SPLIT = dict(BC=4, BHW=2, n_hs=3, NB=2, BS1=2, BCO=4, BS2=2, BPART=2, NB2=2, MBC=4,
                   MBHW=4, warps=4)
_TINY_BATCHED = dict(_TINY_SPLIT, n_hs=1)


@pytest.mark.parametrize("config", ["gpu132", "gpu1", "tiny_split", "tiny_batched"])
@pytest.mark.parametrize("fmt", ["nchw", "cl"])
def test_configs(monkeypatch, config, fmt):
    orig = se_mod._se_config
    if config.startswith("gpu"):
        sms = int(config[3:])
        monkeypatch.setattr(se_mod, "_se_config",
                            lambda N, C, S, HW, cl, _s, _i: orig(N, C, S, HW, cl, sms, False))
    else:
        cfg = _TINY_SPLIT if config == "tiny_split" else _TINY_BATCHED
        monkeypatch.setattr(se_mod, "_se_config", lambda *a: cfg)
    run_case(3, 9, 3, 3, 3, "f32", fmt, seed=11)
    run_case(3, 24, 5, 2, 5, "bf16", fmt, seed=12)


def test_gpu_config_shapes():
    for C, S, HW in [(72, 24, 784), (960, 240, 49), (1, 1, 1), (5, 3, 6)]:
        for cl in (True, False):
            for N in (1, 32, 256):
                cfg = se_mod._se_config(N, C, S, HW, cl, 132, False)
                for key in ("BC", "BHW", "BS1", "BCO", "BS2", "BPART", "MBC", "MBHW"):
                    assert cfg[key] & (cfg[key] - 1) == 0, (key, cfg)
                assert cfg["BC"] * cfg["BHW"] <= 4096 and cfg["BS1"] * cfg["BC"] <= 4096


# --- bad inputs -----------------------------------------------------------------------------

def _good(C=6, S=2):
    x = torch.randn(2, C, 3, 3, device=DEVICE)
    return [x, torch.randn(S, C, device=DEVICE), torch.randn(S, device=DEVICE),
            torch.randn(C, S, device=DEVICE), torch.randn(C, device=DEVICE)]


@pytest.mark.parametrize("op", [se, se_scale])
@pytest.mark.parametrize("idx,bad,match", [
    (0, lambda t: t.to(torch.int64), "x must be float32"),
    (0, lambda t: t.double(), "x must be float32"),
    (0, lambda t: t[0], "4-D"),
    (0, lambda t: t[:, :, :0], "H, W >= 1"),
    (1, lambda t: t[:, :5], "w1"),
    (1, lambda t: t[:0], "w1"),
    (1, lambda t: t[None], "w1"),
    (1, lambda t: t[:, :, None, None].expand(2, 6, 3, 3), "w1"),
    (1, lambda t: t.double(), "w1 must be float32"),
    (2, lambda t: t[:1], "b1"),
    (3, lambda t: t.t(), "w2"),
    (3, lambda t: t[:5], "w2"),
    (4, lambda t: t[:5], "b2"),
    (4, lambda t: t[:, None], "b2"),
    (4, lambda t: t.half(), "b2 must be float32"),
    (1, lambda t: t.to("meta"), "same device"),
    (4, lambda t: t.to("meta"), "same device"),
])
def test_bad_inputs(op, idx, bad, match):
    args = _good()
    args[idx] = bad(args[idx])
    with pytest.raises((ValueError, RuntimeError), match=match):
        op(*args)


@cuda_only
def test_cpu_cuda_mix():
    args = _good()
    args[3] = args[3].cpu()
    with pytest.raises(RuntimeError, match="same device"):
        se(*args)


# --- CUDA only: MobileNetV3-Large SE layers --------------------------------------------------

def mbv3_se_layers(variant):
    """Unique (C, S, H, W) of a MobileNetV3 variant's SE layers, enumerated from torchvision by
    mbv3_fast/testing.py."""
    pytest.importorskip("torchvision")
    from mbv3_fast.testing import se_layers
    return list(dict.fromkeys(se_layers(variant)))


@cuda_only
@pytest.mark.parametrize("dt", list(DTYPES))
@pytest.mark.parametrize("fmt", ["cl", "nchw"])
def test_mbv3_large_layers_cuda(dt, fmt):
    layers = mbv3_se_layers("large")
    assert len(layers) == 6
    for i, (C, S, H, W) in enumerate(layers):
        for N in (1, 8):
            run_case(N, C, S, H, W, dt, fmt, seed=200 + i)


@cuda_only
def test_mbv3_small_cuda():
    for i, (C, S, H, W) in enumerate(mbv3_se_layers("small")):
        run_case(4, C, S, H, W, "f16", "cl", seed=400 + i)


@cuda_only
def test_torch_ops_route_cuda():
    ops = getattr(torch.ops, "mbv3", None)
    if ops is None or not hasattr(ops, "se") or not hasattr(ops, "se_scale"):
        pytest.skip("torch.ops.mbv3.se / se_scale not registered")
    args = _good(C=72, S=24)
    args[0] = args[0].contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(ops.se(*args), se(*args), rtol=0, atol=0)
    torch.testing.assert_close(ops.se_scale(*args), se_scale(*args), rtol=0, atol=0)
