"""Tests of the Triton kernel mbv3_fast.kernels.dwconv_bn_act.

Without a CUDA device the kernel runs in Triton's interpreter on CPU tensors: TRITON_INTERPRET
must be set before triton is first imported; tests/conftest.py sets it.  With CUDA the same cases run on the GPU, plus every depthwise
layer of MobileNetV3-Large (enumerated from torchvision).

Tolerance (tests/tolerance.py): max|ours - ref64| <= 2 * max|torch_same_dtype - ref64| + 1e-6,
where ref64 = F.conv2d(groups=C) + bias + activation in float64 and torch_same_dtype is the same
torch computation in the working dtype on the same device (on CPU F.conv2d runs natively in
float16/bfloat16 in the torch versions we support).
"""
import importlib

import pytest
import torch
import torch.nn.functional as F
from tolerance import assert_within_rule

from mbv3_fast.kernels import dwconv_bn_act

dw_mod = importlib.import_module("mbv3_fast.kernels.dwconv_bn_act")

CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"
if not CUDA and not dw_mod._INTERPRETED:
    raise RuntimeError("no CUDA and triton is not in interpreter mode: tests/conftest.py must "
                       "set TRITON_INTERPRET=1 before anything imports triton")
cuda_only = pytest.mark.skipif(not CUDA, reason="no CUDA device")

ACTS = {"none": lambda v: v, "relu": F.relu, "hardswish": F.hardswish}
DTYPES = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}


def make_x(N, C, H, W, dtype, fmt, gen):
    """fmt: 'nchw' (contiguous), 'cl' (channels_last), 'nc' (non-contiguous, NCHW-like
    strides), 'clnc' (non-contiguous with channels_last-like strides)."""
    def rnd(*shape):  # dtype/device first: .to() would densify a non-contiguous view
        return torch.randn(*shape, generator=gen).to(DEVICE, dtype)
    if fmt == "nchw":
        x = rnd(N, C, H, W)
    elif fmt == "cl":
        x = rnd(N, C, H, W).to(memory_format=torch.channels_last)
    elif fmt == "nc":
        x = rnd(N, C, H, 2 * W + 1)[..., 1::2]
    elif fmt == "clnc":
        x = rnd(N, H, W, 2 * C).permute(0, 3, 1, 2)[:, ::2]
    else:
        raise AssertionError(fmt)
    if fmt in ("nc", "clnc") and N > 0:
        assert not x.is_contiguous() and not x.is_contiguous(memory_format=torch.channels_last)
    return x


def make_params(C, k, dtype, w_dtype, gen, weird_strides=False):
    if weird_strides:  # [C,1,k,k] view of a [k,k,C] buffer
        w = (torch.randn(k, k, C, generator=gen) / k).permute(2, 0, 1).unsqueeze(1)
    else:
        w = torch.randn(C, 1, k, k, generator=gen) / k
    b = torch.randn(C, generator=gen) * 0.5
    wd = dtype if w_dtype == "x" else torch.float32
    return w.to(DEVICE, wd), b.to(DEVICE, wd)


def reference(x, w, b, stride, padding, dilation, act, dtype):
    C = x.shape[1]
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        ref64 = ACTS[act](F.conv2d(x.double(), w.double(), b.double(), stride, padding, dilation, C))
        same = ACTS[act](F.conv2d(x, w.to(dtype), b.to(dtype), stride, padding, dilation, C))
    return same, ref64


def run_case(N, C, H, W, k, stride, dilation, padding, act, dt, fmt, w_dtype="f32",
             weird=False, seed=0):
    gen = torch.Generator().manual_seed(seed)
    dtype = DTYPES[dt]
    x = make_x(N, C, H, W, dtype, fmt, gen)
    w, b = make_params(C, k, dtype, w_dtype, gen, weird)
    y = dwconv_bn_act(x, w, b, stride, padding, dilation, act)
    same, ref64 = reference(x, w, b, stride, padding, dilation, act, dtype)
    what = f"N{N} C{C} {H}x{W} k{k} s{stride} d{dilation} p{padding} {act} {dt} {fmt} w={w_dtype}"
    assert y.dtype == dtype and y.device == x.device, what
    assert_within_rule(y, same, ref64, what)
    check_layout(x, y, fmt, what)
    return y


def check_layout(x, y, fmt, what):
    """Project rule (mbv3_fast/ops/_layout.py): channels_last out iff x is channels_last-dense
    and not also NCHW-dense (ambiguous C == 1 / 1x1 inputs -> NCHW); otherwise contiguous."""
    if x.numel() == 0:
        return  # empty tensors: format flags are not meaningful
    if fmt == "cl" and not x.is_contiguous():
        assert y.is_contiguous(memory_format=torch.channels_last), what
    else:
        assert y.is_contiguous(), what


# --- the core grid: every k x stride x dilation x activation, other factors cycled -----------
_CS = [1, 7, 17, 33]
_HWS = [(7, 5), (1, 1), (9, 9), (6, 8), (5, 7)]
_NS = [1, 2, 2, 0, 1, 2]
_FMTS = ["nchw", "cl", "cl", "nc", "nchw", "clnc", "cl"]
_DTS = ["f32", "bf16", "f16"]


def _core_cases():
    cases = []
    i = 0
    for k in (3, 5):
        for s in (1, 2):
            for d in (1, 2):
                for act in ("hardswish", "relu", "none"):
                    H, W = _HWS[i % len(_HWS)]
                    same_pad = d * (k - 1) // 2
                    pad = [same_pad, same_pad + 1, 0][i % 3]
                    if (H + 2 * pad - d * (k - 1) - 1) < 0 or (W + 2 * pad - d * (k - 1) - 1) < 0:
                        pad = same_pad
                    cases.append((_NS[i % len(_NS)], _CS[i % len(_CS)], H, W, k, s, d, pad, act,
                                  _DTS[i % len(_DTS)], _FMTS[i % len(_FMTS)]))
                    i += 1
    return cases


@pytest.mark.parametrize("N,C,H,W,k,s,d,pad,act,dt,fmt", _core_cases())
def test_core_grid(N, C, H, W, k, s, d, pad, act, dt, fmt):
    run_case(N, C, H, W, k, s, d, pad, act, dt, fmt, seed=C * 1000 + k * 100 + s * 10 + d + len(act))


@pytest.mark.parametrize("dt", list(DTYPES))
@pytest.mark.parametrize("fmt", ["nchw", "cl"])
@pytest.mark.parametrize("w_dtype", ["f32", "x"])
def test_dtypes_formats(dt, fmt, w_dtype):
    # C=24: channels_last runs with VEC = 8 (16-bit) / 4 (fp32) aligned vector accesses
    run_case(2, 24, 7, 5, 3, 1, 1, 1, "hardswish", dt, fmt, w_dtype=w_dtype, seed=7)


@pytest.mark.parametrize("k,s,d,act,fmt", [
    (1, 1, 1, "relu", "cl"), (1, 2, 1, "hardswish", "nchw"), (1, 1, 2, "none", "nc"),
    (7, 1, 1, "hardswish", "cl"), (7, 2, 1, "relu", "nchw"), (7, 1, 2, "hardswish", "cl"),
])
def test_k1_k7(k, s, d, act, fmt):
    run_case(2, 6, 9, 9, k, s, d, d * (k - 1) // 2, act, "f32", fmt, seed=k * 10 + s)


@pytest.mark.parametrize("fmt", ["nchw", "cl"])
@pytest.mark.parametrize("dt", ["f32", "bf16"])
def test_weight_arbitrary_strides(fmt, dt):
    run_case(2, 17, 6, 6, 3, 1, 1, 1, "hardswish", dt, fmt, weird=True, seed=3)
    run_case(1, 17, 6, 6, 5, 2, 1, 2, "relu", dt, fmt, w_dtype="x", weird=True, seed=4)


def test_stride3_large_padding():
    run_case(1, 5, 8, 7, 3, 3, 1, 3, "hardswish", "f32", "cl", seed=5)
    run_case(2, 5, 1, 1, 3, 1, 1, 2, "relu", "f32", "nchw", seed=6)


def test_mostly_negative_and_large_values():
    """Hardswish in all three regions (< -3, [-3, 3], > 3) and relu clipping."""
    gen = torch.Generator().manual_seed(11)
    x = (torch.randn(2, 33, 6, 6, generator=gen) * 4).to(DEVICE).contiguous(
        memory_format=torch.channels_last)
    w = (torch.randn(33, 1, 3, 3, generator=gen)).to(DEVICE)
    b = torch.linspace(-6, 6, 33).to(DEVICE)
    for act in ("hardswish", "relu"):
        y = dwconv_bn_act(x, w, b, 1, 1, 1, act)
        same, ref64 = reference(x, w, b, 1, 1, 1, act, torch.float32)
        assert_within_rule(y, same, ref64, f"regions {act}")
    pre = F.conv2d(x.double(), w.double(), b.double(), 1, 1, 1, 33)
    assert (pre < -3).any() and (pre > 3).any() and ((pre.abs() < 3)).any()


# --- the GPU block-size heuristics and small blocks (multi-tile, tail) paths ------------------

@pytest.mark.parametrize("blocks", ["gpu132", "gpu8", "tiny"])
@pytest.mark.parametrize("fmt", ["nchw", "cl"])
def test_block_configs(monkeypatch, blocks, fmt):
    orig = dw_mod._dw_blocks
    if blocks == "tiny":
        monkeypatch.setattr(dw_mod, "_dw_blocks", lambda *a: (8, 4, 4))
    else:
        sms = int(blocks[3:])
        monkeypatch.setattr(dw_mod, "_dw_blocks",
                            lambda N, C, P, cl, _s, _i: orig(N, C, P, cl, sms, False))
    # tails in both the pixel and the channel block, several tiles per sample
    run_case(2, 9, 5, 5, 3, 1, 1, 1, "hardswish", "f32", fmt, seed=21)
    run_case(1, 24, 6, 5, 5, 2, 1, 2, "relu", "bf16", fmt, seed=22)


def test_gpu_heuristic_shapes():
    """Block choices for the MobileNetV3 shapes are powers of two and give sane grids."""
    for C, H, k, s in [(16, 112, 3, 1), (72, 56, 5, 2), (960, 7, 5, 1), (1, 1, 3, 1)]:
        P = ((H + 2 * (k // 2) - k) // s + 1) ** 2
        for cl in (True, False):
            for N in (1, 256):
                bp, bc, warps = dw_mod._dw_blocks(N, C, P, cl, 132, False)
                assert bp & (bp - 1) == 0 and bc & (bc - 1) == 0 and bp * bc <= 4096


def test_output_memory_format_rule():
    """Same rule as mbv3_fast/ops/_layout.py (used by the fake and C++ kernels)."""
    for shape in [(2, 7, 1, 1), (2, 1, 4, 4), (1, 7, 3, 1), (2, 7, 5, 5)]:
        nchw = torch.randn(shape)
        cl = nchw.to(memory_format=torch.channels_last)
        assert not dw_mod.wants_channels_last(nchw), shape
        expect = cl.is_contiguous(memory_format=torch.channels_last) and not cl.is_contiguous()
        assert dw_mod.wants_channels_last(cl) == expect, shape
    assert dw_mod.wants_channels_last(torch.randn(2, 7, 5, 5).to(memory_format=torch.channels_last))
    assert not dw_mod.wants_channels_last(torch.randn(2, 7, 1, 1).to(memory_format=torch.channels_last))
    assert not dw_mod.wants_channels_last(torch.randn(2, 5, 4, 6).transpose(2, 3))
    try:  # the project's own rule, when the package is importable
        from mbv3_fast.ops._layout import output_memory_format
    except Exception:  # pragma: no cover - kernels used without the C++ package
        return
    for shape in [(2, 7, 1, 1), (2, 1, 4, 4), (1, 7, 3, 1), (2, 7, 5, 5)]:
        for t in (torch.randn(shape), torch.randn(shape).to(memory_format=torch.channels_last)):
            assert dw_mod.wants_channels_last(t) == (output_memory_format(t) == torch.channels_last)


# --- bad inputs -----------------------------------------------------------------------------

def _good(C=4, k=3):
    x = torch.randn(1, C, 5, 5, device=DEVICE)
    w = torch.randn(C, 1, k, k, device=DEVICE)
    b = torch.randn(C, device=DEVICE)
    return x, w, b


@pytest.mark.parametrize("mutate,match", [
    (lambda x, w, b: (x.to(torch.int32), w, b, 1, 1, 1, "relu"), "x must be float32"),
    (lambda x, w, b: (x.double(), w, b, 1, 1, 1, "relu"), "x must be float32"),
    (lambda x, w, b: (x[0], w, b, 1, 1, 1, "relu"), "4-D"),
    (lambda x, w, b: (x, w[:, :, :, :2], b, 1, 1, 1, "relu"), r"\[C, 1, k, k\]"),
    (lambda x, w, b: (x, w.expand(4, 2, 3, 3), b, 1, 1, 1, "relu"), r"\[C, 1, k, k\]"),
    (lambda x, w, b: (x, torch.cat([w, w]), b, 1, 1, 1, "relu"), r"\[C, 1, k, k\]"),
    (lambda x, w, b: (x, w[..., :2, :2], b, 1, 1, 1, "relu"), "odd"),
    (lambda x, w, b: (x, torch.randn(4, 1, 9, 9, device=DEVICE), b, 1, 4, 1, "relu"), "<= 7"),
    (lambda x, w, b: (x, w, b[:3], 1, 1, 1, "relu"), "bias"),
    (lambda x, w, b: (x, w, b[:, None], 1, 1, 1, "relu"), "bias"),
    (lambda x, w, b: (x, w.double(), b, 1, 1, 1, "relu"), "weight must be float32"),
    (lambda x, w, b: (x.half(), w, b.to(torch.bfloat16), 1, 1, 1, "relu"), "bias must be float32"),
    (lambda x, w, b: (x, w, b, 0, 1, 1, "relu"), "stride"),
    (lambda x, w, b: (x, w, b, 1, 1, 0, "relu"), "dilation"),
    (lambda x, w, b: (x, w, b, 1, -1, 1, "relu"), "padding"),
    (lambda x, w, b: (x, w, b, 1.0, 1, 1, "relu"), "type 'int' for argument 'stride'"),
    (lambda x, w, b: (x, w, b, 1, 1, 1, "gelu"), "activation"),
    (lambda x, w, b: (x, w, b, 1, 1, 1, None), "activation"),
    (lambda x, w, b: (x[:, :, :1, :1], w, b, 1, 0, 1, "relu"), "smaller than the dilated kernel"),
    (lambda x, w, b: (x, w.to("meta"), b, 1, 1, 1, "relu"), "same device"),
    (lambda x, w, b: (x, w, b.to("meta"), 1, 1, 1, "relu"), "same device"),
])
def test_bad_inputs(mutate, match):
    args = mutate(*_good())
    with pytest.raises((ValueError, RuntimeError), match=match):
        dwconv_bn_act(*args)


@cuda_only
def test_cpu_cuda_mix():
    x, w, b = _good()
    with pytest.raises(RuntimeError, match="same device"):
        dwconv_bn_act(x, w.cpu(), b, 1, 1, 1, "relu")


# --- CUDA only: MobileNetV3-Large depthwise layers -------------------------------------------

def mbv3_dw_layers(variant):
    """Unique (C, H, W, k, stride, padding, dilation, act) of a MobileNetV3 variant's depthwise
    layers, enumerated from torchvision by mbv3_fast/testing.py."""
    pytest.importorskip("torchvision")
    from mbv3_fast.testing import depthwise_layers
    return list(dict.fromkeys(depthwise_layers(variant)))


@cuda_only
@pytest.mark.parametrize("dt", list(DTYPES))
@pytest.mark.parametrize("fmt", ["cl", "nchw"])
def test_mbv3_large_layers_cuda(dt, fmt):
    layers = mbv3_dw_layers("large")
    assert len(layers) == 12
    for i, (C, H, W, k, s, p, d, act) in enumerate(layers):
        run_case(2, C, H, W, k, s, d, p, act, dt, fmt, seed=100 + i)


@cuda_only
@pytest.mark.parametrize("variant", ["small", "large-dilated"])
def test_mbv3_other_variants_cuda(variant):
    for i, (C, H, W, k, s, p, d, act) in enumerate(mbv3_dw_layers(variant)):
        run_case(2, C, H, W, k, s, d, p, act, "f16", "cl", seed=300 + i)


@cuda_only
def test_torch_op_routes_cuda():
    op = getattr(getattr(torch.ops, "mbv3", None), "dwconv_bn_act", None)
    if op is None:
        pytest.skip("torch.ops.mbv3.dwconv_bn_act not registered")
    x, w, b = _good(C=24)
    x = x.contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(op(x, w, b, 1, 1, 1, "hardswish"),
                               dwconv_bn_act(x, w, b, 1, 1, 1, "hardswish"), rtol=0, atol=0)
