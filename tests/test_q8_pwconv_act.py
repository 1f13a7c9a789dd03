"""mbv3::q8_pwconv_act on the CPU: every int8 path against PyTorch's quantized ops, bit for bit.

References: torch.ao.nn.quantized.Conv2d / intrinsic ConvReLU2d (1x1) under the 'fbgemm'
engine (per-channel symmetric weights: exact int32 sums, float bias) and 'qnnpack' (per-tensor
weights, int32 bias); hardswish by torch.ao.nn.quantized.functional; residual by
torch.ops.quantized.add and the SE scale by torch.ops.quantized.mul under the same engine.  The
arguments come from mbv3_fast.quantization.params (engine 'x86': fbgemm's rounding).

The 'x86' engine runs groups=1 convs on oneDNN on a CPU with AVX512-VNNI, whose requantization
adds the zero point in float before rounding: engine 'x86' here is that reference with our
Onednn requantization mode (params.requant_args(onednn=True), onednn_scales), bit for bit;
test_onednn_mode_ties makes ties on purpose so that the two modes really differ.
"""
import itertools

import pytest
import torch
import torch.ao.nn.intrinsic.quantized as nniq
import torch.ao.nn.quantized as nnq
import torch.ao.nn.quantized.functional as qF

import mbv3_fast
import neon_harness
from fresh_process import assert_pytest_passes
from mbv3_fast.ops.q8_pwconv_act import pack_weight, q8_pwconv_act
from mbv3_fast.quantization.model import x86_uses_onednn
from mbv3_fast.quantization.params import add_args, mul_args, onednn_scales, requant_args, unary_lut
from mbv3_fast.testing import pointwise_layers, se_layers
from layers import BEST_ISA, CPU_ISAS
from q8_reference import X_MAX

pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning"), pytest.mark.filterwarnings("ignore::DeprecationWarning")]

ENGINES = ("fbgemm", "qnnpack")
# 'x86' (oneDNN convs, our Onednn mode) where PyTorch runs oneDNN: a CPU with AVX512-VNNI.
ONEDNN = x86_uses_onednn()
ALL_ENGINES = ENGINES + (("x86",) if ONEDNN else ())
needs_onednn = pytest.mark.skipif(not ONEDNN, reason="PyTorch's x86 engine runs oneDNN convs only on AVX512-VNNI CPUs")
Q8_FAMILY = {"scalar": "scalar", "avx2": "avx2", "avx512": "avx512_vnni", "neon": "neon"}


def _qparams(t, lo_q=0, hi_q=255):
    """(scale, zero_point) spanning t's range over [lo_q, hi_q] (t's range always holds 0)."""
    lo, hi = min(float(t.min()), 0.0), max(float(t.max()), 0.0)
    scale = max(hi - lo, 1e-3) / (hi_q - lo_q)
    return scale, int(min(max(round(lo_q - lo / scale), 0), 255))


def _quint8(t):
    s, zp = _qparams(t, 0, X_MAX)  # X_MAX: 127 where PyTorch's fbgemm would saturate (q8_reference)
    return torch.quantize_per_tensor(t, s, zp, torch.quint8)


class Case:
    """One layer: random data, PyTorch's quantized result (ref, uint8) and our op's arguments."""

    def __init__(self, engine, n, cin, cout, h, w, act="none", residual=False, se=False, channels_last=False,
                 noncontig=False):
        torch.backends.quantized.engine = engine
        x_q = _quint8(torch.randn(n, cin, h, w) * 2 + 0.5)
        a_q, se_u8, mul = x_q, None, None
        if se:  # torchvision's SE: x * hardsigmoid(...) as quantized.mul with a quint8 scale (1/256, 0)
            scale_q = torch.quantize_per_tensor(torch.rand(n, cin, 1, 1), 1.0 / 256, 0, torch.quint8)
            ms, mzp = _qparams(x_q.dequantize() * scale_q.dequantize(), 0, X_MAX)
            a_q = torch.ops.quantized.mul(x_q, scale_q, ms, mzp)
            se_u8 = scale_q.int_repr().reshape(n, cin)
            mul = mul_args(x_q.q_scale(), x_q.q_zero_point(), 1.0 / 256, 0, ms, mzp)
        wf = torch.randn(cout, cin, 1, 1) / max(cin, 1) ** 0.5
        if engine == "qnnpack":
            qw = torch.quantize_per_tensor(wf, float(wf.abs().max()) / 127 + 1e-6, 0, torch.qint8)
            w_scales = qw.q_scale()
        else:
            sc = (wf.reshape(cout, -1).abs().amax(1) / 127 + 1e-6).double()
            self.qw_args = (wf, sc, torch.zeros(cout, dtype=torch.long), 0, torch.qint8)
            qw = torch.quantize_per_channel(*self.qw_args)
            w_scales = qw.q_per_channel_scales()
        bias = torch.randn(cout) * 0.5
        self.bias, self.engine = bias, engine
        yf = torch.nn.functional.conv2d(a_q.dequantize(), qw.dequantize(), bias)
        if act == "relu":
            yf = yf.relu()
        ys, yzp = _qparams(yf, 0, 255)
        conv = (nniq.ConvReLU2d if act == "relu" else nnq.Conv2d)(cin, cout, 1)
        conv.set_weight_bias(qw, bias)
        conv.scale, conv.zero_point = ys, yzp
        self.y_qparams = (ys, yzp)
        y_q = conv(a_q)
        lut = None
        if act == "hardswish":
            hs, hzp = _qparams(torch.nn.functional.hardswish(y_q.dequantize()))
            lut = unary_lut(lambda t: qF.hardswish(t, hs, hzp), ys, yzp)
            y_q = qF.hardswish(y_q, hs, hzp)
        r_u8, add = None, None
        if residual:
            r_q = _quint8(torch.randn(n, cout, h, w))
            os_, ozp = _qparams(y_q.dequantize() + r_q.dequantize())
            add = add_args(y_q.q_scale(), y_q.q_zero_point(), r_q.q_scale(), r_q.q_zero_point(), os_, ozp, engine)
            # The same layout on both sides, as in the model: mixed layouts take ATen's other,
            # non-vectorized add, which rounds some ties differently.
            fmt = torch.channels_last if y_q.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
            y_q = torch.ops.quantized.add(y_q, r_q.contiguous(memory_format=fmt), os_, ozp)
            r_u8 = r_q.int_repr()
        self.ref = y_q.int_repr()
        od = engine == "x86"  # PyTorch's oneDNN conv: our Onednn mode
        bi, bf, m, oq, _ = requant_args(a_q.q_scale(), w_scales, bias, ys, yzp, engine, relu=act == "relu", onednn=od)
        self.conv_in = a_q
        x = x_q.int_repr()
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
            r_u8 = None if r_u8 is None else r_u8.contiguous(memory_format=torch.channels_last)
        if noncontig:  # strided views: every other column of a wider map
            x = torch.stack([x, x], -1)[..., 0]
            r_u8 = None if r_u8 is None else torch.stack([r_u8, 255 - r_u8], -1)[..., 0]
            assert not x.is_contiguous() and not x.is_contiguous(memory_format=torch.channels_last)
        self.x, self.w = x, qw.int_repr()
        self.args = dict(x_zero_point=a_q.q_zero_point(), bias_int=bi, bias_float=bf, multiplier=m,
                         out_qparams=oq, lut=lut, residual=r_u8, add=add, se_scale=se_u8, mul=mul,
                         onednn=onednn_scales(a_q.q_scale(), ys) if od else None)

    def run(self, packed=False, x=None):
        w = pack_weight(self.w) if packed else self.w
        return q8_pwconv_act(self.x if x is None else x, weight=w, **self.args)

    def check(self, what, packed=False):
        ours = self.run(packed)
        assert ours.dtype == torch.uint8 and ours.shape == self.ref.shape, what
        cl = self.x.is_contiguous(memory_format=torch.channels_last) and not self.x.is_contiguous()
        assert ours.is_contiguous(memory_format=torch.channels_last if cl else torch.contiguous_format), what
        if not torch.equal(ours, self.ref):
            diff = (ours.int() - self.ref.int()).abs()
            raise AssertionError(f"{what}: {int((diff > 0).sum())} of {diff.numel()} differ, max {int(diff.max())}")
        return ours


def test_q8_family(cpu_isa):
    assert torch.ops.mbv3.q8_cpu_isa() == Q8_FAMILY[cpu_isa]


# -- MobileNetV3's own 1x1 layers (Large and Small), best path, batch 1, both engines --------
MBV3_LAYERS = sorted({cfg for v in ("large", "small") for cfg in pointwise_layers(v)})
# Projections that read an SE block's scaled output: (C, H, W) of every SE input.
SE_INPUTS = {(c, h, w) for v in ("large", "small") for c, _, h, w in se_layers(v)}


@pytest.mark.parametrize("engine", ALL_ENGINES)
@pytest.mark.parametrize("cfg", MBV3_LAYERS, ids=lambda c: "{}to{}_{}x{}_{}_r{:d}".format(*c))
def test_mobilenet_v3_layers(cfg, engine):
    cin, cout, h, w, act, res = cfg
    mbv3_fast.set_cpu_isa(BEST_ISA)
    se = act == "none" and (cin, h, w) in SE_INPUTS
    Case(engine, 1, cin, cout, h, w, act, res, se, channels_last=True).check(f"{engine} {cfg}", packed=True)


# -- odd shapes on every path -----------------------------------------------------------------
ODD = [  # n, cin, cout, h, w, act, residual, se, channels_last, noncontig
    (1, 1, 1, 1, 1, "none", False, False, False, False),
    (3, 7, 17, 5, 3, "relu", True, False, True, False),
    (1, 17, 33, 1, 1, "hardswish", False, True, False, False),
    (3, 33, 7, 4, 9, "none", True, True, True, False),
    (1, 33, 65, 7, 7, "hardswish", True, False, False, True),
    (2, 40, 120, 6, 5, "relu", False, True, True, True),
    (1, 72, 40, 9, 11, "none", True, True, False, False),
]


@pytest.mark.parametrize("engine", ALL_ENGINES)
@pytest.mark.parametrize("case", ODD, ids=lambda c: "n{}_{}to{}_{}x{}_{}_r{:d}_se{:d}_cl{:d}_nc{:d}".format(*c))
def test_odd_shapes(case, engine, cpu_isa):
    n, cin, cout, h, w, act, res, se, cl, nc = case
    c = Case(engine, n, cin, cout, h, w, act, res, se, channels_last=cl, noncontig=nc)
    c.check(f"{cpu_isa} {engine} {case}")
    c.check(f"{cpu_isa} {engine} {case} packed", packed=True)


@pytest.mark.parametrize("packed", [False, True], ids=["plain", "packed"])
def test_batch_0(packed, cpu_isa):
    c = Case("fbgemm", 1, 16, 24, 5, 5, "relu", True, True)
    a = dict(c.args, residual=c.args["residual"][:0], se_scale=c.args["se_scale"][:0])
    for x in (c.x[:0], c.x[:0].contiguous(memory_format=torch.channels_last)):
        y = q8_pwconv_act(x, weight=pack_weight(c.w) if packed else c.w, **a)
        assert y.shape == (0, 24, 5, 5) and y.dtype == torch.uint8


def test_tile_edges(cpu_isa):
    """Column counts around the 8 / 16 / 64-column tiles (avx512: the last 16 columns of a tile
    8 or fewer, or more: 8, 24, 56, 72), K around the groups of 4, row tails (M = 13 rows: 2 tiles
    of 6 + 1)."""
    for i, (cout, cin) in enumerate(itertools.product((1, 8, 15, 16, 17, 24, 31, 33, 56, 64, 65, 72),
                                                      (1, 3, 4, 5, 7, 8, 9, 12, 13))):
        engine = ALL_ENGINES[i % len(ALL_ENGINES)]
        act, res, se = ("none", "relu", "hardswish")[i % 3], i % 4 == 1, i % 5 == 2
        Case(engine, 1, cin, cout, 1, 13, act, res, se, channels_last=True).check(
            f"{cpu_isa} {engine} Cin {cin} Cout {cout} {act} r{res:d} se{se:d}", packed=i % 2 == 0)


def test_rows_around_tile(cpu_isa):
    for m in range(1, 14):
        for engine in ("fbgemm",) + ALL_ENGINES[2:]:
            Case(engine, 1, 24, 72, 1, m, "relu", m % 2 == 0, m % 3 == 0).check(f"{cpu_isa} {engine} M {m}")


# Column counts of the avx512 row groups (one pack / permute / store for several rows): 4 rows of
# 9..16 columns (16: one 64-byte store), 4 rows of 8 or fewer joined in pairs (8: one 32-byte
# store), 2 rows of 17..24 (24: one 48-byte store), and the same as the last panel of a wider row
# (72, 80, 88: stored row by row; 65: 1 column); 2 rows of 33..40 or 49..56 columns (the last 8 or
# fewer joined: 33, 40, 56, 120 = 64 + 56); 48 and 64: no group.
GROUP_COUTS = (1, 7, 8, 9, 16, 17, 24, 33, 40, 48, 56, 64, 65, 72, 80, 88, 120)
# Rows: tails of the 8-row tiles of one column vector and of the 6-row ones, groups cut short.
GROUP_ROWS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 15, 16, 17, 21, 23, 27)


@pytest.mark.parametrize("cout", GROUP_COUTS)
def test_row_groups(cout, cpu_isa):
    """Every engine (both requantization modes, float and QNNPACK adds) x activation (plain,
    ReLU, hardswish's table) x residual for each column count, the rows varied; SE scale and
    K % 4 != 0 (the copied rows) on some."""
    for i, (engine, act, res) in enumerate(itertools.product(ALL_ENGINES, ("none", "relu", "hardswish"),
                                                             (False, True))):
        m = GROUP_ROWS[(i + cout) % len(GROUP_ROWS)]
        cin = (16, 24, 7, 64)[i % 4]
        h, w = (1, m) if i % 2 else (m, 1)
        Case(engine, 1, cin, cout, h, w, act, res, i % 3 == 0, channels_last=True).check(
            f"{cpu_isa} {engine} Cin {cin} Cout {cout} M {m} {act} r{res:d}", packed=i % 2 == 1)


def test_row_groups_threads():
    """The row groups under row and column splits (small maps at batch 1: columns split too)."""
    mbv3_fast.set_cpu_isa(BEST_ISA)
    before = torch.get_num_threads()
    try:
        for (cin, cout, h, w, act, res), engine in itertools.product(
                ((16, 16, 9, 13, "none", True), (24, 72, 5, 7, "relu", False), (64, 24, 7, 11, "none", True),
                 (40, 80, 3, 5, "hardswish", True), (24, 88, 1, 7, "relu", False), (16, 8, 11, 3, "hardswish", True),
                 (72, 40, 5, 5, "none", True), (40, 120, 3, 9, "relu", False)),
                ("fbgemm",) + ALL_ENGINES[2:]):
            c = Case(engine, 1, cin, cout, h, w, act, res, False, channels_last=True)
            for t in (1, 2, 3):
                torch.set_num_threads(t)
                assert torch.equal(c.run(packed=True), c.ref), (engine, cin, cout, h, w, t)
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("onednn", [False, True], ids=["fbgemm", "onednn"])
@pytest.mark.parametrize("lut", [False, True], ids=["plain", "lut"])
@pytest.mark.parametrize("exp_range", [(-5, -1), (-5, 7)], ids=["small", "overflowing"])
@pytest.mark.parametrize("cout", [72, 16, 24, 7])
def test_wide_multipliers(lut, exp_range, onednn, cout, cpu_isa):
    """Multipliers from 1e-5 up to 0.1 (float values far under 2^30: avx512 skips the float
    clamp) or up to 1e7 (values past int32: the clamp keeps the conversion in range), with
    0 < lo and hi < 255: every path against the scalar kernel (q8.h's functions)."""
    g = torch.Generator().manual_seed(1)
    cin = 40
    x = torch.randint(0, 256, (2, cin, 3, 5), dtype=torch.uint8, generator=g).contiguous(
        memory_format=torch.channels_last)
    w = torch.randint(-128, 128, (cout, cin), dtype=torch.int8, generator=g)
    lo, hi = exp_range
    args = dict(x_zero_point=100, weight=pack_weight(w),
                bias_int=torch.randint(-5000, 5000, (cout,), dtype=torch.int32, generator=g),
                bias_float=torch.randn(cout, generator=g) * 100,
                multiplier=10 ** (lo + (hi - lo) * torch.rand(cout, generator=g)), out_qparams=[120, 90, 230],
                lut=torch.randint(0, 256, (256,), dtype=torch.uint8, generator=g) if lut else None,
                onednn=[0.375, 0.75] if onednn else None)
    ours = q8_pwconv_act(x, **args)
    mbv3_fast.set_cpu_isa("scalar")
    ref = q8_pwconv_act(x, **args)
    assert torch.equal(ours, ref)
    for bound in (90, 230) if cout == 72 else ():  # both clamps reached, not everywhere (enough columns)
        assert 0 < int((ref == (args["lut"][bound] if lut else bound)).sum()) < ref.numel() // 2


@pytest.mark.skipif("avx512" not in CPU_ISAS, reason="no AVX-512 on this CPU: the avx512_vnni kernels cannot run")
def test_avx512_without_vbmi():
    """The avx512_vnni kernels as on a CPU with VNNI but without AVX512_VBMI (Cascade Lake): the
    table by vpermi2w per 16 values instead of vpermi2b per 64.  MBV3_Q8_NO_VBMI is read once per
    process, so the tile-edge, row, row-group, multiplier and odd-shape tests run again in a fresh one."""
    assert_pytest_passes(__file__, "avx512 and (tile_edges or rows_around_tile or odd_shapes or row_groups or wide_multipliers)",
                         MBV3_Q8_NO_VBMI="1")


def test_pack_weight_layout():
    w = torch.randint(-128, 128, (17, 9, 1, 1), dtype=torch.int8)
    p = pack_weight(w)
    cols, k4 = 32, 3
    assert p.dtype == torch.int8 and p.dim() == 1 and p.numel() == (k4 * 4 + 4) * cols
    groups = p[:k4 * 4 * cols].view(k4, cols, 4)
    for n, k in itertools.product(range(17), range(9)):
        assert groups[k // 4, n, k % 4] == w[n, k, 0, 0]
    assert int(groups[:, 17:].abs().sum()) == 0 and int(groups[2, :, 1:].abs().sum()) == 0
    sums = p[k4 * 4 * cols:].view(torch.int32)
    assert torch.equal(sums[:17], w.reshape(17, 9).int().sum(1)) and int(sums[17:].abs().sum()) == 0


@needs_onednn
@pytest.mark.parametrize("relu", [False, True], ids=["plain", "relu"])
def test_onednn_mode_ties(relu, cpu_isa):
    """Power-of-two scales (x 2^-4, w 2^-5, y 2^-8) make every odd sum an exact .5 tie and an odd
    output zero point splits the two rules there: PyTorch's x86 engine (oneDNN) equals the Onednn
    mode bit for bit, and fbgemm's rule really differs on many outputs (so the test can fail)."""
    torch.backends.quantized.engine = "x86"
    g = torch.Generator().manual_seed(3)
    cin, cout, zp = 24, 40, 101
    x_q = torch._make_per_tensor_quantized_tensor(
        torch.randint(120, 137, (2, cin, 5, 7), dtype=torch.uint8, generator=g), 2.0 ** -4, 128)
    w_scales = torch.full((cout,), 2.0 ** -5, dtype=torch.float64)
    w_q = torch._make_per_channel_quantized_tensor(torch.randint(-2, 3, (cout, cin, 1, 1), dtype=torch.int8,
                                                                 generator=g), w_scales, torch.zeros(cout, dtype=torch.long), 0)
    bias = torch.randint(-4, 5, (cout,), generator=g).float() * 2.0 ** -9  # whole steps of x * w
    conv = (nniq.ConvReLU2d if relu else nnq.Conv2d)(cin, cout, 1)
    conv.set_weight_bias(w_q, bias)
    conv.scale, conv.zero_point = 2.0 ** -8, zp
    ref = conv(x_q).int_repr()
    x = x_q.int_repr().contiguous(memory_format=torch.channels_last)
    outs = {}
    for od in (False, True):
        bi, bf, m, oq, _ = requant_args(2.0 ** -4, w_scales, bias, 2.0 ** -8, zp, "x86", relu=relu, onednn=od)
        outs[od] = q8_pwconv_act(x, 128, pack_weight(w_q.int_repr()), bi, bf, m, oq,
                                 onednn=onednn_scales(2.0 ** -4, 2.0 ** -8) if od else None)
    assert torch.equal(outs[True], ref)
    assert int((outs[False] != ref).sum()) > ref.numel() // 10


def test_threads_bitwise():
    """Row and column splits (7x7 map at batch 1: columns split) give the same bits as one thread."""
    mbv3_fast.set_cpu_isa(BEST_ISA)
    before = torch.get_num_threads()
    try:
        for (n, cin, cout, h, w), engine in itertools.product(((1, 160, 960, 7, 7), (3, 24, 72, 28, 28)),
                                                              ("fbgemm",) + ALL_ENGINES[2:]):
            c = Case(engine, n, cin, cout, h, w, "hardswish", False, True, channels_last=True)
            torch.set_num_threads(1)
            one = c.run(packed=True)
            torch.set_num_threads(2)
            two = c.run(packed=True)
            assert torch.equal(one, two) and torch.equal(one, c.ref), engine
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("packed", [False, True], ids=["plain", "packed"])
def test_opcheck(packed):
    for c in (Case("fbgemm", 2, 12, 20, 3, 5, "hardswish", True, True, channels_last=True),
              Case("qnnpack", 1, 7, 9, 2, 3, "relu"), Case(ALL_ENGINES[-1], 1, 7, 9, 2, 3, "relu", True)):
        a = c.args
        w = pack_weight(c.w) if packed else c.w
        torch.library.opcheck(torch.ops.mbv3.q8_pwconv_act,
                              (c.x, a["x_zero_point"], w, a["bias_int"], a["bias_float"], a["multiplier"],
                               a["out_qparams"], a["lut"], a["residual"], a["add"], a["se_scale"], a["mul"],
                               a["onednn"]))


def test_bad_inputs():
    c = Case("fbgemm", 1, 8, 16, 2, 2, "none", True, True)
    good = dict(c.args, x=c.x, weight=c.w)

    def call(**kw):
        return q8_pwconv_act(**dict(good, **kw))

    assert torch.equal(call(), c.ref)
    bad = [
        (ValueError, "x must be uint8", dict(x=c.x.to(torch.int8))),
        (ValueError, "4-D", dict(x=c.x[0])),
        (ValueError, "x_zero_point", dict(x_zero_point=256)),
        (ValueError, "x_zero_point", dict(x_zero_point=-1)),
        (ValueError, "weight must be int8", dict(weight=c.w.float())),
        (ValueError, "Cin = 8", dict(weight=c.w[:, :4])),
        (ValueError, "packed", dict(weight=pack_weight(c.w)[:-1])),
        (ValueError, "bias_int", dict(bias_int=c.args["bias_int"][:3])),
        (ValueError, "multiplier", dict(multiplier=c.args["multiplier"].double())),
        (ValueError, "out_qparams", dict(out_qparams=[10, 20, 255])),
        (ValueError, "out_qparams", dict(out_qparams=[10, 0])),
        (ValueError, "lut", dict(lut=torch.zeros(255, dtype=torch.uint8))),
        (ValueError, "come together", dict(add=None)),
        (ValueError, "come together", dict(residual=None)),
        (ValueError, "come together", dict(mul=None)),
        (ValueError, "residual must be", dict(residual=c.args["residual"][:, :8])),
        (ValueError, "residual must be uint8", dict(residual=c.args["residual"].float())),
        (ValueError, "se_scale must be", dict(se_scale=c.args["se_scale"][:, :4])),
        (ValueError, "add must hold", dict(add=c.args["add"][:5])),
        (ValueError, "mul zero points", dict(mul=[300.0, 0.0, 0.0, 1.0])),
        (ValueError, "onednn scales must be positive", dict(onednn=[1.0, -1.0])),
        (ValueError, "onednn scales must be positive", dict(onednn=[float("inf"), 1.0])),
        (ValueError, "onednn scales must be positive", dict(onednn=[1.0, 0.1])),  # not a float32
        (ValueError, "onednn must be \\[src_scale, inv_scale\\]", dict(onednn=[1.0])),
    ]
    for exc, msg, kw in bad:
        with pytest.raises(exc, match=msg):
            call(**kw)
    if torch.cuda.is_available():
        with pytest.raises(RuntimeError):
            call(x=c.x.cuda())


# -- NEON, for real, under qemu ----------------------------------------------------------------
NEON_ODD = [  # n, cin, cout, h, w, act, residual, se, engine: odd shapes, SE with Cin > 256
    (1, 1, 1, 1, 1, "none", False, False, "fbgemm"),
    (3, 7, 17, 5, 3, "relu", True, False, "qnnpack"),
    (1, 17, 33, 1, 1, "hardswish", False, True, "fbgemm"),
    (3, 33, 7, 4, 9, "none", True, True, "qnnpack"),
    (1, 33, 65, 7, 7, "hardswish", True, False, "fbgemm"),
    (2, 40, 120, 6, 5, "relu", False, True, "qnnpack"),
    (1, 72, 40, 9, 11, "none", True, True, "fbgemm"),
    (1, 576, 96, 7, 7, "none", True, True, "fbgemm"),
    (1, 288, 48, 5, 5, "none", True, True, "qnnpack"),
] + [  # the Onednn mode (its PyTorch reference needs the x86 engine's oneDNN convs)
    (1, 7, 17, 5, 3, "relu", True, False, "x86"),
    (1, 33, 65, 7, 7, "hardswish", True, False, "x86"),
    (2, 40, 120, 6, 5, "none", False, True, "x86"),
    (1, 576, 96, 7, 7, "none", True, True, "x86"),
] * ONEDNN
# Tile edges: Cout around the 16-column tile, K around the groups of 4 and 16-byte rows, M around
# the 4-row tile (the harness also splits rows at an odd row and columns at 16, as threads do).
NEON_EDGES = [(1, cin, cout, 1, (1, 5, 9)[(i + i // 6) % 3], ("none", "relu", "hardswish")[i % 3], i % 4 == 1,
               i % 5 == 2, ALL_ENGINES[i % len(ALL_ENGINES)])
              for i, (cout, cin) in enumerate(itertools.product((1, 15, 16, 17, 33, 64), (1, 4, 5, 13, 16, 17)))]


def _neon_case_file(cases):
    """The cases for tests/neon/q8_pwconv_act_main.cpp and the op's scalar result for each
    (checked against PyTorch's and with plain and packed weights)."""
    f, expected = neon_harness.CaseFile(), []
    before = mbv3_fast.get_cpu_isa()
    mbv3_fast.set_cpu_isa("scalar")
    try:
        for n, cin, cout, h, w, act, res, se, engine in cases:
            c = Case(engine, n, cin, cout, h, w, act, res, se)
            what = f"{engine} {(n, cin, cout, h, w, act, res, se)}"
            plain, packed = c.check(what), c.check(what + " packed", packed=True)
            assert torch.equal(plain, packed), what
            a = c.args
            nhwc = lambda t: t.permute(0, 2, 3, 1).reshape(-1).tolist()  # noqa: E731
            od = a["onednn"] is not None
            f.i64(n, cin, cout, h * w, a["x_zero_point"], *a["out_qparams"], a["lut"] is not None, res, se, od)
            f.i64(*nhwc(c.x))
            f.i64(*pack_weight(c.w).tolist())
            f.i64(*a["bias_int"].tolist())
            f.floats(a["bias_float"])
            f.floats(a["multiplier"])
            if od:
                f.floats(torch.tensor(a["onednn"], dtype=torch.float32))
            if a["lut"] is not None:
                f.i64(*a["lut"].tolist())
            if res:
                ad = a["add"]
                f.i64(*nhwc(a["residual"]))
                f.i64(*(int(v) for v in (ad[0], ad[6], ad[7], ad[8], ad[9], ad[10])))
                f.floats(torch.tensor(ad[1:6], dtype=torch.float64))
            if se:
                f.i64(*a["se_scale"].reshape(-1).tolist())
                f.i64(*(int(v) for v in a["mul"][:3]))
                f.floats(torch.tensor(a["mul"][3:], dtype=torch.float64))
            f.count += 1
            expected.append((plain, what))
    finally:
        mbv3_fast.set_cpu_isa(before)
    return f, expected


@neon_harness.requires_toolchain
@pytest.mark.parametrize("cpu", (*neon_harness.QEMU_CPUS, "max"))
def test_neon_under_qemu(cpu):
    """The NEON kernel under qemu, bit for bit against the op's scalar kernel (itself equal to
    PyTorch's quantized ops): cortex-a53 runs the ARMv8.0 vmlal kernel, cortex-a76 and max SDOT."""
    f, expected = _neon_case_file(NEON_ODD + NEON_EDGES)
    flat = neon_harness.run("q8_pwconv_act", f, cpu)
    assert flat[0] == (0.0 if cpu == "cortex-a53" else 1.0), f"{cpu}: unexpected FEAT_DotProd report {flat[0]}"
    offset = 1
    for ref, what in expected:
        n, cout, h, w = ref.shape
        got = flat[offset:offset + ref.numel()].reshape(n, h, w, cout).permute(0, 3, 1, 2).to(torch.uint8)
        offset += ref.numel()
        if not torch.equal(got, ref):
            diff = (got.int() - ref.int()).abs()
            raise AssertionError(f"neon {cpu} {what}: {int((diff > 0).sum())} of {diff.numel()} differ, "
                                 f"max {int(diff.max())}")
    assert offset == flat.numel()
