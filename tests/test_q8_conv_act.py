"""mbv3::q8_conv_act (the int8 stem) and mbv3::q8_quantize on every int8 path, against PyTorch's
QuantStub (quantize_per_tensor), quantized Conv2d and quantized hardswish, bit for bit.  Engine
'x86' on a CPU with AVX512-VNNI runs the stem on oneDNN: the op's Onednn requantization mode
(q8.h), exact against it."""
import itertools
import math

import numpy as np
import pytest
import torch
import torch.ao.nn.intrinsic.quantized as nniq
import torch.ao.nn.quantized as nnq

import neon_harness
from fresh_process import assert_pytest_passes
from mbv3_fast.ops.q8_conv_act import pack_weight
from mbv3_fast.quantization.model import x86_uses_onednn
from mbv3_fast.quantization.params import onednn_scales, requant_args, unary_lut
from mbv3_fast.testing import VARIANTS, stem_layers
import mbv3_fast
from layers import BEST_ISA, CPU_ISAS
from q8_reference import X_MAX

# One thread (conftest): OpenMP regions stall on a busy 2-core machine; thread independence is
# tested on its own.
pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning"), pytest.mark.usefixtures("one_thread")]

STEMS = sorted({cfg for v in VARIANTS for cfg in stem_layers(v)})
ONEDNN = x86_uses_onednn()  # the x86 engine's convs on oneDNN: the Onednn mode


@pytest.fixture(autouse=True)
def _restore_engine():
    before = torch.backends.quantized.engine
    yield
    torch.backends.quantized.engine = before


def quantize_ref(x, scale, zp):
    return torch.quantize_per_tensor(x, scale, zp, torch.quint8).int_repr()


# -- q8_quantize ------------------------------------------------------------------------------
def special_values(n):
    """Half-way points of the scale, their float neighbours, and non-finite / huge values."""
    s = 0.0173
    half = (torch.randint(-300, 300, (n,)).float() + 0.5) * s
    nudged = torch.nextafter(half, torch.where(torch.rand(n) < 0.5, torch.tensor(math.inf), torch.tensor(-math.inf)))
    spec = torch.tensor([math.nan, -math.nan, math.inf, -math.inf, 1e30, -1e30, 3e9, -3e9, 1e38, -0.0, 0.0, 1e-40])
    v = torch.cat([half, nudged, spec.repeat(n // 12 + 1)[:n]])
    return v[torch.randperm(v.numel())], s


@pytest.mark.parametrize("n", [1, 5, 7, 8, 15, 16, 17, 33, 100, 1000])
def test_quantize_values(n, cpu_isa):
    v, s = special_values(n)
    for zp in (0, 117, 127, 128, 200, 255):  # NaN / inf give 255 below zp 128, 0 from 128 (int32 wrap)
        x = v.reshape(1, 1, 1, -1)
        assert torch.equal(torch.ops.mbv3.q8_quantize(x, s, zp), quantize_ref(x, s, zp)), f"{cpu_isa} n{n} zp{zp}"


def test_quantize_scales_and_layouts(cpu_isa):
    for i, scale in enumerate([0.1, 0.0186, 3.0 / 255, 0.0234567, 2.5, 1e-3]):
        x = torch.randn(2, 3, 17, 9) * 4
        zp = int(torch.randint(0, 256, ()))
        for view in (x, x.contiguous(memory_format=torch.channels_last), x[:, :, ::2], x.transpose(2, 3)):
            ours = torch.ops.mbv3.q8_quantize(view, scale, zp)
            assert torch.equal(ours, quantize_ref(view, scale, zp)), f"{cpu_isa} scale {scale}"
            cl = view.is_contiguous(memory_format=torch.channels_last) and not view.is_contiguous()
            assert ours.is_contiguous(memory_format=torch.channels_last if cl else torch.contiguous_format)


def test_quantize_random_scales():
    # 1 / scale in float32 is what ATen multiplies by; random scales probe the rounding of that.
    for _ in range(50):
        scale = float(np.float32(10 ** float(torch.empty(()).uniform_(-3, 0))))
        x = (torch.randint(-400, 400, (4096,)).float() + 0.5) * scale
        x = x.reshape(1, 4, 32, 32)
        assert torch.equal(torch.ops.mbv3.q8_quantize(x, scale, 128), quantize_ref(x, scale, 128)), scale


def test_quantize_bad_inputs():
    x = torch.randn(1, 3, 4, 4)
    for args, err, match in [((x.double(), 0.1, 0), ValueError, "float32"), ((x[0], 0.1, 0), ValueError, "4-D"),
                             ((x, 0.1, 256), ValueError, "zero_point"), ((x, 0.0, 0), ValueError, "scale"),
                             ((x, -1.0, 0), ValueError, "scale"), ((x, math.inf, 0), ValueError, "scale")]:
        with pytest.raises(err, match=match):
            torch.ops.mbv3.q8_quantize(*args)


# -- q8_conv_act --------------------------------------------------------------------------------
def make_case(n, cin, cout, h, w, k, stride, padding, act, engine, channels_last=False):
    """(float x, x_scale, x_zp, module, lut, reference int values of the whole stem)."""
    torch.backends.quantized.engine = engine
    x = torch.randn(n, cin, h, w) * 1.5
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x_scale, x_zp = float(torch.empty(()).uniform_(0.015, 0.04)), int(torch.randint(60, 200, ()))
    if X_MAX < 255:  # PyTorch's GEMM would saturate above X_MAX here (q8_reference)
        x_zp = int(torch.randint(30, 100, ()))
        x = x.clamp(max=(X_MAX - x_zp) * x_scale)
    wf = torch.randn(cout, cin, k, k)
    if engine == "qnnpack":
        qw = torch.quantize_per_tensor(wf, float(wf.abs().max()) / 127, 0, torch.qint8)
    else:
        s = wf.abs().amax((1, 2, 3)) / 127 + 1e-4
        qw = torch.quantize_per_channel(wf, s.double(), torch.zeros(cout, dtype=torch.long), 0, torch.qint8)
    bias = torch.randn(cout) * 0.3
    m = (nniq.ConvReLU2d if act == "relu" else nnq.Conv2d)(cin, cout, k, stride, padding)
    m.set_weight_bias(qw, bias)
    xq = torch.quantize_per_tensor(x, x_scale, x_zp, torch.quint8)
    yf = torch.nn.functional.conv2d(xq.dequantize(), qw.dequantize(), bias, stride, padding)
    m.scale = float(yf.std().clamp_min(1e-3)) * 5 / 255 if yf.numel() > 1 else 0.05
    m.zero_point = int(torch.randint(0, 256, ())) if act != "relu" else int(torch.randint(0, 64, ()))
    y = m(xq)
    lut = None
    if act == "hardswish":
        hs_scale, hs_zp = m.scale * 0.7, int(torch.randint(0, 128, ()))
        fn = lambda q: torch.ao.nn.quantized.functional.hardswish(q, hs_scale, hs_zp)  # noqa: E731
        lut = unary_lut(fn, m.scale, m.zero_point)
        y = fn(y) if y.numel() else y  # PyTorch's quantized hardswish raises SIGFPE on empty tensors
    return x, x_scale, x_zp, m, lut, y.int_repr()


def run(x, x_scale, x_zp, m, lut, engine):
    qw = m.weight()
    ws = qw.q_scale() if engine == "qnnpack" else qw.q_per_channel_scales()
    od = _od(engine)
    bi, bf, mult, oq, lut = requant_args(x_scale, ws, m.bias(), m.scale, m.zero_point, engine,
                                         relu=isinstance(m, nniq.ConvReLU2d), lut=lut, onednn=od)
    return torch.ops.mbv3.q8_conv_act(x, x_scale, x_zp, qw.int_repr(), bi, bf, mult, oq, lut, m.stride[0],
                                      m.padding[0], onednn_scales(x_scale, m.scale) if od else None)


def _od(engine):
    """Whether PyTorch runs the conv on oneDNN (the onednn engine; x86 on a VNNI CPU)."""
    return engine == "onednn" or (engine == "x86" and ONEDNN)


def formula_ref(xq, x_zp, m, lut, engine, x_scale, od=None):
    """q8.h's requantization of the exact sums, in torch ops (float32 add, then mul, no fma)."""
    qw = m.weight()
    ws = qw.q_scale() if engine == "qnnpack" else qw.q_per_channel_scales()
    od = _od(engine) if od is None else od
    bi, bf, mult, oq, _ = requant_args(x_scale, ws, m.bias(), m.scale, m.zero_point, engine,
                                       relu=isinstance(m, nniq.ConvReLU2d), onednn=od)
    acc = torch.nn.functional.conv2d(xq.double() - x_zp, qw.int_repr().double(), None, m.stride, m.padding)
    a = (acc.to(torch.int32) + bi.view(1, -1, 1, 1)).float()
    if od:  # the Onednn mode: the zero point added before rounding
        src, inv = (torch.tensor(s, dtype=torch.float32) for s in onednn_scales(x_scale, m.scale))
        v = ((a * src) * mult.view(1, -1, 1, 1) + bf.view(1, -1, 1, 1)) * inv + torch.tensor(float(oq[0]))
        q = torch.round(v.clamp(oq[1], oq[2])).to(torch.uint8)
    else:
        v = ((a + bf.view(1, -1, 1, 1)) * mult.view(1, -1, 1, 1)).clamp(oq[1] - oq[0], oq[2] - oq[0])
        q = (torch.round(v).to(torch.int32) + oq[0]).to(torch.uint8)
    return lut[q.long()] if lut is not None else q


def check(n, cin, cout, h, w, k, s, p, act, engine, what, channels_last=False):
    """Bit for bit against q8.h's formula, and against PyTorch: exactly for qnnpack, up to rare
    near-tie roundings for oneDNN (see tests/test_q8_dwconv_act.py) and the x86 engine."""
    x, xs, xz, m, lut, ref = make_case(n, cin, cout, h, w, k, s, p, act, engine, channels_last)
    exact = formula_ref(quantize_ref(x, xs, xz), xz, m, lut, engine, xs)
    for xin in (x, quantize_ref(x, xs, xz)):  # float (QuantStub fused) and already-quantized input
        ours = run(xin, xs, xz, m, lut, engine)
        assert ours.dtype == torch.uint8 and ours.is_contiguous(memory_format=torch.channels_last), what
        assert torch.equal(ours, exact), f"{what} {xin.dtype}: {int((ours != exact).sum())} differ from q8.h"
        if engine == "x86" and not ONEDNN:  # fbgemm's conv there
            ties = int((ours != ref).sum())
            assert ties <= max(2, ref.numel() // 5000), f"{what}: {engine} differs in {ties} of {ref.numel()}"
        elif not torch.equal(ours, ref):
            bad = (ours.int() - ref.int()).abs()
            raise AssertionError(f"{what} {xin.dtype}: {int((bad > 0).sum())} of {bad.numel()} differ")


@pytest.mark.parametrize("engine", ["onednn", "qnnpack", "x86"])
@pytest.mark.parametrize("cfg", STEMS, ids=lambda c: "{}to{}_{}x{}_k{}s{}p{}_{}".format(*c))
def test_stem_layers(cfg, engine, cpu_isa):
    cin, cout, h, w, k, s, p, act = cfg
    if cpu_isa != BEST_ISA:
        h, w = 37, 30
    check(1, cin, cout, h, w, k, s, p, act, engine, f"{cpu_isa} {engine} {cfg}", channels_last=False)


@pytest.mark.parametrize("cout", [1, 7, 16, 17, 33, 70])
def test_odd_shapes(cout, cpu_isa):
    for i, ((h, w), n, cin) in enumerate(itertools.product([(1, 1), (2, 3), (9, 6)], [0, 1, 3], [1, 3, 4])):
        k, s = [(3, 2), (3, 1), (5, 2), (1, 1)][(i + cout) % 4]
        p = [0, 1, 2][(i + cout) % 3] if k > 1 else 0
        if min(h, w) + 2 * p < k:
            p = k // 2
        act = ("hardswish", "relu", "none")[(i + cout) % 3]
        check(n, cin, cout, h, w, k, s, p, act, ("onednn", "qnnpack", "x86")[i % 3],
              f"{cpu_isa} N{n} {cin}to{cout} {h}x{w} k{k}s{s}p{p} {act}", channels_last=i % 2 == 1)


# The AVX-512 kernel's column blocks (8 output columns, the epilogue on 4 at a time) and their
# tails, every Cout block shape (16: 4 pixels per 64-byte store; else per pixel), both
# requantization modes, with and without the table, a 3x3 (unrolled) and a 5x5 conv.
@pytest.mark.parametrize("cout", [8, 16, 17, 33])
@pytest.mark.parametrize("act", ["hardswish", "relu", "none"])
def test_column_tails(cout, act, cpu_isa):
    for i, ow in enumerate(list(range(1, 18)) + [24, 31]):
        k, s = ((3, 2), (3, 1), (5, 2))[i % 3]
        w = (ow - 1) * s + k - 2 * (k // 2)  # padding k // 2: ow output columns
        engine = ("onednn", "qnnpack", "x86")[(i + cout) % 3]
        check(1 + 2 * (i % 2), (3, 4, (1, 5)[i % 2])[i % 3], cout, 2 + i % 3, w, k, s, k // 2, act, engine,
              f"{cpu_isa} {engine} Cout{cout} OW{ow} k{k}s{s} {act}", channels_last=i % 2 == 1)


needs_avx512 = pytest.mark.skipif("avx512" not in CPU_ISAS, reason="no AVX-512 on this CPU")


@needs_avx512
@pytest.mark.parametrize("engine", ["onednn", "qnnpack"])
@pytest.mark.parametrize("act", ["hardswish", "none"])
def test_nan_requantization_gives_lo(engine, act):
    """A NaN value (non-finite multiplier) gives lo on the AVX-512 paths: the per-pixel path's
    float max, the 4-pixel path's vminps(hi, NaN) = NaN -> INT32_MIN -> the packs (pinned so the
    two agree; the scalar path's cast of NaN is undefined)."""
    before = mbv3_fast.get_cpu_isa()
    mbv3_fast.set_cpu_isa("avx512")
    try:
        x, xs, xz, m, lut, _ = make_case(1, 3, 16, 9, 20, 3, 2, 1, act, engine)
        qw = m.weight()
        ws = qw.q_scale() if engine == "qnnpack" else qw.q_per_channel_scales()
        od = _od(engine)
        bi, bf, mult, oq, lut = requant_args(xs, ws, m.bias(), m.scale, m.zero_point, engine, lut=lut, onednn=od)
        mult[5] = math.nan
        y = torch.ops.mbv3.q8_conv_act(x, xs, xz, qw.int_repr(), bi, bf, mult, oq, lut, 2, 1,
                                       onednn_scales(xs, m.scale) if od else None)
        lo = int(lut[oq[1]]) if lut is not None else oq[1]
        assert torch.equal(y[:, 5], torch.full_like(y[:, 5], lo))
        mult[5] = 1.0
        y2 = torch.ops.mbv3.q8_conv_act(x, xs, xz, qw.int_repr(), bi, bf, mult, oq, lut, 2, 1,
                                        onednn_scales(xs, m.scale) if od else None)
        keep = [c for c in range(16) if c != 5]
        assert torch.equal(y[:, keep], y2[:, keep])
    finally:
        mbv3_fast.set_cpu_isa(before)


@needs_avx512
def test_avx512_without_vbmi():
    """The avx512_vnni kernel as on a CPU with VNNI but without AVX512_VBMI (Cascade Lake): the
    table per pixel by vpermi2w instead of on 4 pixels by vpermi2b.  MBV3_Q8_NO_VBMI is read once
    per process, so the tail, odd-shape, thread and NaN tests run again in a fresh one."""
    assert_pytest_passes(__file__, "(avx512 and (column_tails or odd_shapes or stem_layers)) or threads or nan_requant",
                         MBV3_Q8_NO_VBMI="1")


def test_non_finite_input_matches_quantstub(cpu_isa):
    x, xs, xz, m, lut, _ = make_case(1, 3, 16, 11, 10, 3, 2, 1, "hardswish", "onednn")
    x.view(-1)[torch.randperm(x.numel())[:40]] = torch.tensor([math.nan, math.inf, -math.inf, 1e30] * 10)
    ours_f = run(x, xs, xz, m, lut, "onednn")
    ours_q = run(quantize_ref(x, xs, xz), xs, xz, m, lut, "onednn")
    assert torch.equal(ours_f, ours_q)


@pytest.mark.parametrize("engine", ["onednn", "x86"])
@pytest.mark.parametrize("cl", [False, True], ids=["nchw", "channels_last"])
def test_threads_do_not_change_the_result(engine, cl):
    x, xs, xz, m, lut, ref = make_case(3, 3, 16, 37, 45, 3, 2, 1, "hardswish", engine, channels_last=cl)
    before = torch.get_num_threads()
    try:
        outs = []
        for t in (1, 2, 3):
            torch.set_num_threads(t)
            outs.append(run(x, xs, xz, m, lut, engine))
    finally:
        torch.set_num_threads(before)
    assert all(torch.equal(o, outs[0]) for o in outs) and torch.equal(outs[0], ref)


def _args(cin=3, cout=16, k=3, dtype=torch.float32):
    x = torch.randn(1, cin, 8, 8) if dtype == torch.float32 else torch.randint(0, 256, (1, cin, 8, 8),
                                                                             dtype=torch.uint8)
    w = torch.randint(-128, 128, (cout, cin, k, k), dtype=torch.int8)
    return [x, 0.02, 120, w, torch.zeros(cout, dtype=torch.int32), torch.zeros(cout), torch.full((cout,), 0.01),
            [5, 0, 255], None, 2, k // 2]


def test_opcheck():
    for dtype, lut in [(torch.float32, None), (torch.uint8, torch.randint(0, 256, (256,), dtype=torch.uint8))]:
        a = _args(dtype=dtype)
        a[8] = lut
        torch.library.opcheck(torch.ops.mbv3.q8_conv_act.default, tuple(a))
    a = _args()
    a[0] = a[0][:0]
    torch.library.opcheck(torch.ops.mbv3.q8_conv_act.default, tuple(a))
    for x in (torch.randn(2, 3, 5, 7), torch.randn(1, 4, 3, 3).contiguous(memory_format=torch.channels_last)):
        torch.library.opcheck(torch.ops.mbv3.q8_quantize.default, (x, 0.05, 17))


@pytest.mark.parametrize("i,value,match", [
    (0, torch.zeros(1, 3, 8, 8, dtype=torch.float64), "float32"),
    (0, torch.zeros(3, 8, 8), "4-D"),
    (0, torch.zeros(1, 4, 8, 8), "weight must be"),
    (1, 0.0, "scale"),
    (1, math.nan, "scale"),
    (2, 256, "x_zero_point"),
    (3, torch.zeros(16, 3, 3, 3), "int8"),
    (3, torch.zeros(16, 3, 4, 4, dtype=torch.int8), "odd"),
    (4, torch.zeros(15, dtype=torch.int32), "bias_int"),
    (5, torch.zeros(16, dtype=torch.int32), "bias_float"),
    (6, torch.zeros(17), "multiplier"),
    (7, [5, 0, 300], "out_qparams"),
    (8, torch.zeros(256), "lut"),
    (9, 0, "stride"),
    (10, -1, "padding"),
])
def test_bad_inputs(i, value, match):
    a = _args()
    a[i] = value
    with pytest.raises(ValueError, match=match):
        torch.ops.mbv3.q8_conv_act(*a)


def test_bad_kernel_vs_padding():
    a = _args(k=7)
    a[0] = a[0][:, :, :4, :4]
    a[10] = 1
    with pytest.raises(ValueError, match="smaller than"):
        torch.ops.mbv3.q8_conv_act(*a)


def run_packed(x, x_scale, x_zp, m, lut, engine):
    qw = m.weight()
    ws = qw.q_scale() if engine == "qnnpack" else qw.q_per_channel_scales()
    od = _od(engine)
    bi, bf, mult, oq, lut = requant_args(x_scale, ws, m.bias(), m.scale, m.zero_point, engine,
                                         relu=isinstance(m, nniq.ConvReLU2d), lut=lut, onednn=od)
    return torch.ops.mbv3.q8_conv_act(x, x_scale, x_zp, pack_weight(qw.int_repr()), bi, bf, mult, oq, lut,
                                      m.stride[0], m.padding[0], onednn_scales(x_scale, m.scale) if od else None)


# The packed weight (pack_weight) gives the plain weight's results bit for bit, on every path.
@pytest.mark.parametrize("cfg", STEMS, ids=lambda c: "{}to{}_{}x{}_k{}s{}p{}_{}".format(*c))
def test_packed_weight_matches_plain(cfg, cpu_isa):
    cin, cout, h, w, k, s, p, act = cfg
    if cpu_isa != BEST_ISA:
        h, w = 37, 30
    x, xs, xz, m, lut, ref = make_case(1, cin, cout, h, w, k, s, p, act, "qnnpack")
    for xin in (x, quantize_ref(x, xs, xz), x.contiguous(memory_format=torch.channels_last)):
        packed = run_packed(xin, xs, xz, m, lut, "qnnpack")
        assert torch.equal(packed, run(xin, xs, xz, m, lut, "qnnpack")) and torch.equal(packed, ref)


@pytest.mark.parametrize("cout", [1, 7, 17, 33])
def test_packed_weight_odd_shapes(cout, cpu_isa):
    for i, (cin, k, n) in enumerate(itertools.product([1, 3, 4, 5], [1, 3, 5], [0, 1, 2])):
        s, p = 1 + i % 2, k // 2
        x, xs, xz, m, lut, ref = make_case(n, cin, cout, 7, 6, k, s, p, ("relu", "none", "hardswish")[i % 3],
                                           ("onednn", "qnnpack")[i % 2])
        eng = ("onednn", "qnnpack")[i % 2]
        assert torch.equal(run_packed(x, xs, xz, m, lut, eng), run(x, xs, xz, m, lut, eng)), (cin, k, n)


def test_opcheck_packed():
    for dtype in (torch.float32, torch.uint8):
        a = _args(dtype=dtype)
        a[3] = pack_weight(a[3])
        assert a[3].dtype == torch.int32 and a[3].shape[:3] == (16, 3, 3)
        torch.library.opcheck(torch.ops.mbv3.q8_conv_act.default, tuple(a))


def test_bad_packed_weights():
    a = _args()
    good = pack_weight(a[3])
    bad = {
        "magic": good.clone().flatten().index_fill_(0, torch.tensor([0]), 7).view_as(good),
        "cin": pack_weight(torch.zeros(16, 4, 3, 3, dtype=torch.int8)),
        "cout": pack_weight(torch.zeros(17, 3, 3, 3, dtype=torch.int8))[:16],
        "short": good[..., :1].contiguous(),
        "strided": good.transpose(1, 2),
        "shape": good.reshape(16, 9, -1),
    }
    for what, w in bad.items():
        a[3] = w
        with pytest.raises(ValueError, match="pack|weight"):
            torch.ops.mbv3.q8_conv_act(*a)
    for w in (torch.zeros(16, 3, 3, 3), torch.zeros(16, 3, 3, 1, dtype=torch.int8)):
        with pytest.raises(ValueError, match="pack_weight"):
            pack_weight(w)


# -- NEON, for real, under qemu ----------------------------------------------------------------
NEON_CONVS = [  # n, cin, cout, h, w, k, stride, pad, act, engine, Onednn mode: the stem, odd shapes,
    # Cout around 16, OW around the SDOT path's 4-column step (OW 1, 2, 3, 4, 5, 7, 9, 10, 13, 15)
    (1, 3, 16, 33, 30, 3, 2, 1, "hardswish", "x86", False),
    (2, 3, 16, 9, 7, 3, 2, 1, "hardswish", "qnnpack", False),
    (1, 1, 1, 1, 1, 1, 1, 0, "none", "x86", False),
    (3, 5, 17, 6, 9, 3, 1, 1, "relu", "qnnpack", False),
    (1, 4, 33, 7, 7, 5, 2, 2, "none", "onednn", False),
    (1, 7, 15, 5, 11, 3, 2, 0, "hardswish", "x86", False),
    (1, 4, 16, 3, 4, 3, 1, 0, "none", "qnnpack", False),
    (1, 4, 8, 6, 10, 3, 1, 1, "hardswish", "onednn", True),
    (2, 1, 33, 7, 13, 5, 1, 2, "relu", "onednn", True),
    (1, 3, 17, 8, 14, 5, 2, 2, "none", "onednn", True),
    (1, 5, 8, 5, 6, 3, 2, 1, "hardswish", "x86", True),
]


def with_extremes(xq, m):
    """xq with bytes 0 and X_MAX (255; 127 where PyTorch's int8 saturates, q8_reference) and m's
    weight with -128 and 127 sprinkled in, output channel 0's weights all -128 and channel 1's
    all 127 (the SDOT path's x - 128 and 128 * sum w at their ends)."""
    xq = xq.clone()
    r = torch.rand(xq.shape)
    xq[r < 0.15] = 0
    xq[r > 0.85] = X_MAX  # 255 where PyTorch's GEMM cannot saturate (q8_reference)
    qw = m.weight()
    wi = qw.int_repr().clone()
    r = torch.rand(wi.shape)
    wi[r < 0.1] = -128
    wi[r > 0.9] = 127
    wi[0] = -128
    if wi.shape[0] > 1:
        wi[1] = 127
    if qw.qscheme() == torch.per_tensor_affine:
        qw = torch._make_per_tensor_quantized_tensor(wi, qw.q_scale(), 0)
    else:
        qw = torch._make_per_channel_quantized_tensor(wi, qw.q_per_channel_scales(), qw.q_per_channel_zero_points(), 0)
    m.set_weight_bias(qw, m.bias())
    return xq


@neon_harness.requires_toolchain
@pytest.mark.parametrize("cpu", neon_harness.QEMU_CPUS)
def test_neon_under_qemu(cpu):
    """The NEON stem conv (cortex-a53: the portable kernel; cortex-a76: the SDOT one) and
    quantizer under qemu, bit for bit against q8.h's formula (the conv, both requantization modes)
    and PyTorch's quantize_per_tensor (NaN, inf, huge values and ties included)."""
    f, expected = neon_harness.CaseFile(), []
    for n, cin, cout, h, w, k, s, p, act, engine, od in NEON_CONVS:
        x, xs, xz, m, lut, _ = make_case(n, cin, cout, h, w, k, s, p, act, engine)
        xq = with_extremes(quantize_ref(x, xs, xz), m)
        qw = m.weight()
        ws = qw.q_scale() if engine == "qnnpack" else qw.q_per_channel_scales()
        bi, bf, mult, oq, lut = requant_args(xs, ws, m.bias(), m.scale, m.zero_point, engine,
                                             relu=isinstance(m, nniq.ConvReLU2d), lut=lut, onednn=od)
        f.i64(0, n, cin, cout, h, w, k, s, p, xz, *oq, lut is not None, od)
        if od:
            f.floats(torch.tensor(onednn_scales(xs, m.scale)))
        f.i64(*xq.flatten().tolist())
        f.i64(*pack_weight(qw.int_repr()).flatten().tolist())
        f.i64(*bi.tolist())
        f.floats(bf)
        f.floats(mult)
        if lut is not None:
            f.i64(*lut.tolist())
        f.count += 1
        ref = formula_ref(xq, xz, m, lut, engine, xs, od=od)
        expected.append((ref.permute(0, 2, 3, 1).float(), f"conv {(n, cin, cout, h, w, k, s, p, act, engine, od)}"))
    for n in (1, 17, 100):
        v, s = special_values(n)
        for zp in (0, 128, 255):
            f.i64(1, v.numel(), zp)
            f.floats(1.0 / torch.tensor([s], dtype=torch.float32))  # the op's float32 1 / scale
            f.floats(v)
            f.count += 1
            q = quantize_ref(v, s, zp).float()
            expected.append((torch.cat([q, q]), f"quantize n{n} zp{zp}"))
    neon_harness.expect_exact(neon_harness.run("q8_conv_act", f, cpu), expected, f"neon {cpu}")
