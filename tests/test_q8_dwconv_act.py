"""mbv3::q8_dwconv_act: every int8 path against PyTorch's quantized depthwise conv, bit for bit.

References: the 'onednn' engine with per-channel weights (oneDNN's rounding: the op's Onednn
requantization mode, q8.h, which adds the zero point in float before rounding) and 'qnnpack'
with per-tensor weights (int32 bias).  fbgemm's own depthwise kernels (engine 'fbgemm', and 'x86'
above 100 groups; fbgemm's rounding) accumulate in int16 with saturation, so they are compared
only with small weights (test_x86_engine_small_weights).  Engine 'x86' on a CPU with AVX512-VNNI
runs oneDNN for <= 100 channels: the Onednn mode there.  Every case is also checked bit for bit
against the mode's formula computed here independently (exact sums in float64, then its float32
steps)."""
import itertools

import pytest
import torch
import torch.ao.nn.intrinsic.quantized as nniq
import torch.ao.nn.quantized as nnq

import mbv3_fast
from mbv3_fast.ops.q8_dwconv_act import pack_weight
from mbv3_fast.quantization.model import x86_uses_onednn
from mbv3_fast.quantization.params import onednn_scales, requant_args, unary_lut
from mbv3_fast.testing import VARIANTS, depthwise_layers
import neon_harness
from fresh_process import assert_pytest_passes
from layers import BEST_ISA, CPU_ISAS
import q8_reference

# One thread (conftest): OpenMP regions stall on a busy 2-core machine; thread independence is
# tested on its own.
pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning"), pytest.mark.usefixtures("one_thread")]

MBV3_LAYERS = sorted({cfg for v in VARIANTS for cfg in depthwise_layers(v)})
ONEDNN = x86_uses_onednn()
X86 = ["x86"] * ONEDNN  # the x86 engine's oneDNN depthwise (<= 100 channels): the Onednn mode


def _onednn(engine, m):
    """Whether PyTorch runs this depthwise conv on oneDNN (every one under the onednn engine)."""
    return engine == "onednn" or (engine == "x86" and m.groups <= 100 and ONEDNN)


@pytest.fixture(autouse=True)
def _restore_engine():
    before = torch.backends.quantized.engine
    yield
    torch.backends.quantized.engine = before


def make_case(n, c, h, w, k, stride, padding, dilation, act, engine, w_max=127, channels_last=False):
    """(quint8 x, reference module, hardswish table or None, y reference int values)."""
    torch.backends.quantized.engine = engine
    x_scale, x_zp = float(torch.empty(()).uniform_(0.01, 0.05)), int(torch.randint(0, 256, ()))
    x = torch._make_per_tensor_quantized_tensor(torch.randint(0, 256, (n, c, h, w), dtype=torch.uint8), x_scale, x_zp)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    wf = torch.randn(c, 1, k, k)
    if engine == "qnnpack":
        s = float(wf.abs().max()) / w_max
        qw = torch.quantize_per_tensor(wf, s, 0, torch.qint8)
    else:
        s = wf.abs().amax((1, 2, 3)) / w_max + 1e-4
        qw = torch.quantize_per_channel(wf, s.double(), torch.zeros(c, dtype=torch.long), 0, torch.qint8)
    bias = torch.randn(c) * 0.3
    cls = nniq.ConvReLU2d if act == "relu" else nnq.Conv2d
    m = cls(c, c, k, stride, padding, dilation, groups=c)
    m.set_weight_bias(qw, bias)
    # Output scale from the float result's spread: some values clamp, most do not.
    yf = torch.nn.functional.conv2d(x.dequantize(), qw.dequantize(), bias, stride, padding, dilation, c)
    m.scale = float(yf.std().clamp_min(1e-3)) * 5 / 255 if yf.numel() > 1 else 0.02
    m.zero_point = int(torch.randint(0, 256, ())) if act != "relu" else int(torch.randint(0, 64, ()))
    y = m(x)
    lut = None
    if act == "hardswish":
        hs_scale, hs_zp = m.scale * 0.7, int(torch.randint(0, 128, ()))
        fn = lambda q: torch.ao.nn.quantized.functional.hardswish(q, hs_scale, hs_zp)  # noqa: E731
        lut = unary_lut(fn, m.scale, m.zero_point)
        y = fn(y) if y.numel() else y  # PyTorch's quantized hardswish raises SIGFPE on empty tensors
    return x, m, lut, y.int_repr()


def run(x, m, lut, engine, xin=None):
    qw = m.weight()
    ws = qw.q_scale() if engine == "qnnpack" else qw.q_per_channel_scales()
    od = _onednn(engine, m)
    bi, bf, mult, oq, lut = requant_args(x.q_scale(), ws, m.bias(), m.scale, m.zero_point, engine,
                                         relu=isinstance(m, nniq.ConvReLU2d), lut=lut, onednn=od)
    xin = x.int_repr() if xin is None else xin
    return torch.ops.mbv3.q8_dwconv_act(xin, x.q_zero_point(), qw.int_repr(), bi, bf, mult, oq, lut, m.stride[0],
                                        m.padding[0], m.dilation[0],
                                        onednn_scales(x.q_scale(), m.scale) if od else None)


def formula_ref(x, m, lut, engine):
    """q8.h's requantization of the exact sums, in torch ops (float32 add, then mul, no fma)."""
    qw = m.weight()
    ws = qw.q_scale() if engine == "qnnpack" else qw.q_per_channel_scales()
    od = _onednn(engine, m)
    bi, bf, mult, oq, _ = requant_args(x.q_scale(), ws, m.bias(), m.scale, m.zero_point, engine,
                                       relu=isinstance(m, nniq.ConvReLU2d), onednn=od)
    acc = torch.nn.functional.conv2d(x.int_repr().double() - x.q_zero_point(), qw.int_repr().double(), None,
                                     m.stride, m.padding, m.dilation, x.shape[1])
    a = (acc.to(torch.int32) + bi.view(1, -1, 1, 1)).float()
    if od:  # the Onednn mode: the zero point added before rounding
        src, inv = (torch.tensor(s, dtype=torch.float32) for s in onednn_scales(x.q_scale(), m.scale))
        v = ((a * src) * mult.view(1, -1, 1, 1) + bf.view(1, -1, 1, 1)) * inv + torch.tensor(float(oq[0]))
        q = torch.round(v.clamp(oq[1], oq[2])).to(torch.uint8)
    else:
        v = ((a + bf.view(1, -1, 1, 1)) * mult.view(1, -1, 1, 1)).clamp(oq[1] - oq[0], oq[2] - oq[0])
        q = (torch.round(v).to(torch.int32) + oq[0]).to(torch.uint8)
    return lut[q.long()] if lut is not None else q


def check(n, c, h, w, k, s, p, d, act, engine, what, **kw):
    x, m, lut, ref = make_case(n, c, h, w, k, s, p, d, act, engine, **kw)
    ours = run(x, m, lut, engine)
    exact = formula_ref(x, m, lut, engine)
    assert torch.equal(ours, exact), f"{what}: {int((ours != exact).sum())} of {ours.numel()} differ from q8.h"
    assert ours.dtype == torch.uint8 and ours.is_contiguous(memory_format=torch.channels_last), what
    assert ours.shape == ref.shape, what
    # PyTorch itself is the exact result only where its int8 cannot clip pair sums (q8_reference:
    # CPUs without AVX512-VNNI clip under onednn / x86, rarely); the formula above always is.
    if q8_reference.torch_int8_exact(engine) and not torch.equal(ours, ref):
        bad = (ours.int() - ref.int()).abs()
        raise AssertionError(f"{what}: {int((bad > 0).sum())} of {bad.numel()} differ, max {int(bad.max())}")
    return x, m, lut, ours


def test_q8_path_is_the_one_forced(cpu_isa):
    expect = {"scalar": "scalar", "avx2": "avx2", "avx512": "avx512_vnni", "neon": "neon"}[cpu_isa]
    assert torch.ops.mbv3.q8_cpu_isa() in (expect, "avx2" if cpu_isa == "avx512" else expect)


@pytest.mark.parametrize("engine", ["onednn", "qnnpack"] + X86)
@pytest.mark.parametrize("cfg", MBV3_LAYERS, ids=lambda c: "C{}_{}x{}_k{}s{}p{}d{}_{}".format(*c))
def test_mobilenet_v3_layers(cfg, engine, cpu_isa):
    c, h, w, k, s, p, d, act = cfg
    if cpu_isa != BEST_ISA:  # full size on the best path, a border-heavy crop on the others
        h, w = min(h, 9), min(w, 10)
    # x86 above 100 channels: fbgemm's depthwise, exact only without its int16 saturation.
    kw = dict(w_max=63) if engine == "x86" and c > 100 else {}
    check(1, c, h, w, k, s, p, d, act, engine, f"{cpu_isa} {engine} {cfg}", channels_last=True, **kw)


TILE_EDGE_C = [1, 7, 8, 15, 16, 17, 31, 32, 33, 47, 48, 63, 64, 65, 72, 97]
GEOMS = [(k, s, d) for k in (3, 5) for s in (1, 2) for d in (1, 2)]


@pytest.mark.parametrize("c", TILE_EDGE_C)
def test_odd_shapes(c, cpu_isa):
    for i, ((h, w), n) in enumerate(itertools.product([(1, 1), (2, 3), (7, 5), (6, 13)], [0, 1, 3])):
        k, s, d = GEOMS[(i + c) % len(GEOMS)]
        act = ("hardswish", "relu", "none")[(i + c) % 3]
        engine = (["onednn", "qnnpack"] + X86)[i % (2 + len(X86))]
        p = d * (k - 1) // 2
        check(n, c, h, w, k, s, p, d, act, engine, f"{cpu_isa} N{n} C{c} {h}x{w} k{k}s{s}d{d} {act} {engine}",
              channels_last=i % 3 == 0)


@pytest.mark.parametrize("k", [1, 3, 5, 7])
def test_every_kernel_size_and_padding(k, cpu_isa):
    # k 1 and 7 take the generic path; padding from none to wider than the kernel.
    for i, (s, d, p) in enumerate(itertools.product((1, 2, 3), (1, 2), (0, 1, k // 2 + 2))):
        if min(9, 8) + 2 * p < d * (k - 1) + 1:
            continue
        engines = ["onednn", "qnnpack"] + X86
        check(2, 19, 9, 8, k, s, p, d, ("none", "relu", "hardswish")[i % 3], engines[i % len(engines)],
              f"{cpu_isa} k{k}s{s}d{d}p{p}")


def test_non_contiguous_inputs(cpu_isa):
    x, m, lut, ours = check(2, 40, 12, 10, 3, 1, 1, 1, "hardswish", "onednn", cpu_isa)
    base = x.int_repr()
    wide = torch.randint(0, 256, (2, 80, 12, 20), dtype=torch.uint8)
    wide[:, ::2, :, ::2] = base
    views = [wide[:, ::2, :, ::2], base.contiguous(memory_format=torch.channels_last),
             base.transpose(2, 3).contiguous().transpose(2, 3)]
    for v in views:
        assert torch.equal(v, base)
        assert torch.equal(run(x, m, lut, "onednn", xin=v), ours), f"{cpu_isa} strides {v.stride()}"


def test_x86_engine_small_weights():
    # fbgemm's depthwise kernels saturate int16 pair sums; with |w| <= 63 they are exact.
    for c, engine in [(120, "x86"), (72, "x86"), (240, "fbgemm")]:
        check(1, c, 14, 14, 5, 2, 2, 1, "relu", engine, f"{engine} C{c}", w_max=63)


@pytest.mark.parametrize("shape", [(2, 72, 28, 28), (1, 200, 7, 7)], ids=["rows", "channel_blocks"])
def test_threads_do_not_change_the_result(shape, cpu_isa):
    # Many rows: split by rows; few rows: split into 64-channel blocks.
    x, m, lut, ref = make_case(*shape, 3, 1, 1, 1, "hardswish", "qnnpack")
    before = torch.get_num_threads()
    try:
        outs = []
        for t in (1, 2):
            torch.set_num_threads(t)
            outs.append(run(x, m, lut, "qnnpack"))
    finally:
        torch.set_num_threads(before)
    assert torch.equal(outs[0], outs[1]) and torch.equal(outs[0], ref)


def _args(c=8, k=3):
    x = torch.randint(0, 256, (1, c, 6, 6), dtype=torch.uint8)
    w = torch.randint(-128, 128, (c, 1, k, k), dtype=torch.int8)
    return [x, 3, w, torch.zeros(c, dtype=torch.int32), torch.zeros(c), torch.full((c,), 0.01), [5, 0, 255],
            None, 1, 1, 1]


def test_opcheck():
    for c, k, with_lut in [(8, 3, False), (33, 5, True)]:
        a = _args(c, k)
        a[9] = k // 2
        if with_lut:
            a[7] = torch.randint(0, 256, (256,), dtype=torch.uint8)
        torch.library.opcheck(torch.ops.mbv3.q8_dwconv_act.default, tuple(a))
    a = _args()
    a[0] = a[0][:0]
    torch.library.opcheck(torch.ops.mbv3.q8_dwconv_act.default, tuple(a))


@pytest.mark.parametrize("i,value,match", [
    (0, torch.zeros(1, 8, 6, 6), "uint8"),
    (0, torch.zeros(8, 6, 6, dtype=torch.uint8), "4-D"),
    (1, 256, "x_zero_point"),
    (1, -1, "x_zero_point"),
    (2, torch.zeros(8, 1, 3, 3), "int8"),
    (2, torch.zeros(7, 1, 3, 3, dtype=torch.int8), "weight must be"),
    (2, torch.zeros(8, 1, 4, 4, dtype=torch.int8), "odd"),
    (2, torch.zeros(8, 1, 9, 9, dtype=torch.int8), "odd"),
    (3, torch.zeros(8), "bias_int"),
    (3, torch.zeros(7, dtype=torch.int32), "bias_int"),
    (4, torch.zeros(8, dtype=torch.float64), "bias_float"),
    (5, torch.zeros(9), "multiplier"),
    (6, [5, 6, 255], "out_qparams"),
    (6, [5, 0, 256], "out_qparams"),
    (6, [5, 0], "out_qparams"),
    (7, torch.zeros(255, dtype=torch.uint8), "lut"),
    (8, 0, "stride"),
    (9, -1, "padding"),
    (10, 0, "dilation"),
    (10, 4, "smaller than"),
])
def test_bad_inputs(i, value, match):
    a = _args()
    a[i] = value
    with pytest.raises(ValueError, match=match):
        torch.ops.mbv3.q8_dwconv_act(*a)


def test_bad_kernel_vs_padding():
    a = _args(k=5)
    a[0] = a[0][:, :, :3, :3]
    a[9] = 0
    with pytest.raises(ValueError, match="smaller than"):
        torch.ops.mbv3.q8_dwconv_act(*a)


# The packed weight (pack_weight) gives the plain weight's results bit for bit, on every path.
@pytest.mark.parametrize("cfg", MBV3_LAYERS[::2], ids=lambda c: "C{}_{}x{}_k{}s{}p{}d{}_{}".format(*c))
def test_packed_weight_matches_plain(cfg, cpu_isa):
    c, h, w, k, s, p, d, act = cfg
    if cpu_isa != BEST_ISA:
        h, w = min(h, 9), min(w, 10)
    engine = "qnnpack" if c % 2 else "onednn"
    x, m, lut, _ = check(1, c, h, w, k, s, p, d, act, engine, f"{cpu_isa} {cfg}", channels_last=True)
    plain = run(x, m, lut, engine)
    qw = m.weight()
    ws = qw.q_scale() if engine == "qnnpack" else qw.q_per_channel_scales()
    od = _onednn(engine, m)
    bi, bf, mult, oq, lut2 = requant_args(x.q_scale(), ws, m.bias(), m.scale, m.zero_point, engine,
                                          relu=isinstance(m, nniq.ConvReLU2d), lut=lut, onednn=od)
    packed = torch.ops.mbv3.q8_dwconv_act(x.int_repr(), x.q_zero_point(), pack_weight(qw.int_repr()), bi, bf, mult,
                                          oq, lut2, s, p, d, onednn_scales(x.q_scale(), m.scale) if od else None)
    assert torch.equal(packed, plain)


@pytest.mark.parametrize("c", [1, 17, 33, 65])
def test_packed_weight_odd_channels_and_extreme_weights(c, cpu_isa):
    for zp in (0, 255):
        a = _args(c, 5)
        a[1], a[9] = zp, 2
        a[2] = torch.full((c, 1, 5, 5), -128, dtype=torch.int8) if zp else a[2]
        a[3] = torch.randint(-1000, 1000, (c,), dtype=torch.int32)
        plain = torch.ops.mbv3.q8_dwconv_act(*a)
        a[2] = pack_weight(a[2])
        assert a[2].dtype == torch.int16 and a[2].shape[:3] == (c, 5, 5)
        assert torch.equal(torch.ops.mbv3.q8_dwconv_act(*a), plain)


def test_opcheck_packed():
    for c, k in [(8, 3), (33, 5)]:
        a = _args(c, k)
        a[9] = k // 2
        a[2] = pack_weight(a[2])
        torch.library.opcheck(torch.ops.mbv3.q8_dwconv_act.default, tuple(a))


def test_bad_packed_weights():
    a = _args()
    good = pack_weight(a[2])
    bad = {
        "magic": good.clone().flatten().index_fill_(0, torch.tensor([0]), 7).view_as(good),
        "channels": pack_weight(torch.zeros(9, 1, 3, 3, dtype=torch.int8))[:8],
        "short": good[..., :1],
        "strided": good.transpose(1, 2),
        "shape": good.reshape(8, 9, -1),
    }
    for what, w in bad.items():
        a[2] = w
        with pytest.raises(ValueError, match="pack|weight"):
            torch.ops.mbv3.q8_dwconv_act(*a)
    for w in (torch.zeros(8, 1, 3, 3), torch.zeros(8, 2, 3, 3, dtype=torch.int8)):
        with pytest.raises(ValueError, match="pack_weight"):
            pack_weight(w)


# avx512_vnni's vpdpbusd path (k 3/5, stride 1/2, dilation 1) works in bands of 1, 2 or 4 output
# rows over 4-row groups: output heights that leave partial bands, batches (a band never crosses
# an image), thread splits that start mid-image (rows) or split channels (few rows), 32-channel
# tile tails, no padding and padding wider than the kernel; C = 16 at stride 1 pairs neighbouring
# output pixels in one tile (odd widths leave a lone last pixel, width 1 a padded partner).
@pytest.mark.parametrize("k,s", [(3, 1), (3, 2), (5, 1), (5, 2)])
def test_vpdpbusd_bands_and_splits(k, s, cpu_isa):
    for i, (h, w, c, p) in enumerate([(1, 1, 33, k // 2), (5, 3, 17, k // 2), (9, 7, 65, 0), (13, 11, 40, k // 2),
                                      (6, 6, 96, k // 2 + 1), (11, 4, 31, 1), (7, 7, 16, k // 2), (5, 1, 16, k // 2),
                                      (10, 6, 16, 0), (12, 9, 16, k // 2 + 1), (3, 2, 16, k // 2)]):
        if h + 2 * p < k or w + 2 * p < k:
            continue
        engines = ["onednn", "qnnpack"] + X86
        act, engine = ("relu", "hardswish", "none")[i % 3], engines[i % len(engines)]
        x, m, lut, ours = check(2 if i % 2 else 1, c, h, w, k, s, p, 1, act, engine,
                                f"{cpu_isa} C{c} {h}x{w} k{k}s{s}p{p}", channels_last=True)
        before = torch.get_num_threads()
        try:
            torch.set_num_threads(2)
            two = run(x, m, lut, engine)
        finally:
            torch.set_num_threads(before)
        assert torch.equal(two, ours), f"{cpu_isa} C{c} {h}x{w} k{k}s{s}: 2 threads differ"


# The vpdpbusd path's column and channel steps: k 3 takes two output columns (pixel pairs at
# C = 16) per step, odd widths leave one; a tile of <= 8 channels (1, 7, 8, 33 = 32 + 1, 72 and
# 200 = 32 i + 8) fills 2 of its 4 groups; the table goes through vpermi2b on two rows at once
# (a band's odd last row is computed with its partner, not stored).  Both requantization modes
# (onednn, x86 <= 100 channels: Onednn; qnnpack: Fbgemm), batch 0/1/3, 1/2/3 threads.
TAIL_C = [1, 7, 8, 16, 17, 33, 40, 72, 120, 200]


@pytest.mark.parametrize("c", TAIL_C)
@pytest.mark.parametrize("k,s", [(3, 1), (5, 1), (5, 2)])
def test_vpdpbusd_column_steps_tails_and_table(c, k, s, cpu_isa):
    maps = [(1, 1), (3, 2), (5, 7), (6, 6), (9, 5), (2, 13)]
    engines = ["onednn", "qnnpack"] + X86 * (c <= 100)  # x86 above 100 channels: fbgemm's int16 sums
    for i, (h, w) in enumerate(maps):
        p = k // 2 if i % 3 else (k // 2 + 1 if h + w > 10 else k // 2)
        n = (1, 3, 0)[i % 3]
        act = ("hardswish", "relu", "hardswish", "none")[(i + c) % 4]
        engine = engines[(i + c + k) % len(engines)]
        what = f"{cpu_isa} N{n} C{c} {h}x{w} k{k}s{s}p{p} {act} {engine}"
        x, m, lut, ours = check(n, c, h, w, k, s, p, 1, act, engine, what, channels_last=i % 2 == 0)
        before = torch.get_num_threads()
        try:
            for t in (2, 3):
                torch.set_num_threads(t)
                assert torch.equal(run(x, m, lut, engine), ours), f"{what}: {t} threads differ"
        finally:
            torch.set_num_threads(before)


@pytest.mark.skipif("avx512" not in CPU_ISAS, reason="no AVX-512 on this CPU: the avx512_vnni kernels cannot run")
def test_avx512_without_vbmi():
    """The vpdpbusd path as on a CPU with VNNI but without AVX512_VBMI (Cascade Lake): the table
    by vpermt2w per 32 values instead of vpermi2b on two rows.  MBV3_Q8_NO_VBMI is read once per
    process, so the table, tail and band tests run again in a fresh one."""
    assert_pytest_passes(__file__, "avx512 and (column_steps or every_table_entry or bands_and_splits or mobilenet_v3_layers)",
                         MBV3_Q8_NO_VBMI="1")


@pytest.mark.parametrize("onednn", [False, True], ids=["fbgemm", "onednn"])
@pytest.mark.parametrize("k,s", [(3, 1), (3, 2), (5, 1)])
@pytest.mark.parametrize("mult", [1e-5, 1e4], ids=["small", "huge"])
def test_extreme_values(k, s, mult, onednn, cpu_isa):
    # Largest sums: x 0 or 255 (and x_zp at the other end) with weights -128 / 127, every tap.
    # Huge multipliers: values far past the int32 range before the clamp (kept there by the float
    # clamp; k3 s2 on AVX-512 takes the vpdpwssd tiles, the others the vpdpbusd path).
    for xv, wv, zp in [(255, -128, 0), (255, 127, 0), (0, -128, 255), (255, -128, 255)]:
        a = _args(40, k)
        a[0] = torch.full((2, 40, 7, 6), xv, dtype=torch.uint8)
        a[1], a[8], a[9] = zp, s, k // 2
        a[2] = torch.full((40, 1, k, k), wv, dtype=torch.int8)
        a[3] = torch.randint(-1000, 1000, (40,), dtype=torch.int32)
        a[5] = torch.full((40,), mult)
        acc = torch.nn.functional.conv2d(a[0].double() - zp, a[2].double(), None, s, k // 2, 1, 40)
        v = ((acc.to(torch.int32) + a[3].view(1, -1, 1, 1)).float() * a[5].view(1, -1, 1, 1))
        if onednn:  # src 0.5, inv 2: exact, so the same values with the zero point added first
            a.append([0.5, 2.0])
            v = (v * 0.5 * 2.0 + 5).clamp(0, 255)
            ref = torch.round(v).to(torch.uint8)
        else:
            ref = (torch.round(v.clamp(-5, 250)).to(torch.int32) + 5).to(torch.uint8)
        assert torch.equal(torch.ops.mbv3.q8_dwconv_act(*a), ref), f"x {xv} w {wv} zp {zp}"
        a[2] = pack_weight(a[2])
        assert torch.equal(torch.ops.mbv3.q8_dwconv_act(*a), ref), f"packed: x {xv} w {wv} zp {zp}"


@pytest.mark.parametrize("k,s", [(3, 1), (3, 2), (5, 1), (5, 2)])
def test_every_table_entry(k, s, cpu_isa):
    # Zero weights: channel c's output is lut[c] (bias c - 128, multiplier 1, zero point 128), so
    # all 256 entries go through every tile lane's lookup.
    a = _args(256, k)
    a[0] = torch.randint(0, 256, (1, 256, 9, 8), dtype=torch.uint8)
    a[2] = torch.zeros(256, 1, k, k, dtype=torch.int8)
    a[3] = torch.arange(256, dtype=torch.int32) - 128
    a[5], a[6] = torch.ones(256), [128, 0, 255]
    a[7] = torch.randint(0, 256, (256,), dtype=torch.uint8)
    a[8], a[9] = s, k // 2
    for w in (a[2], pack_weight(a[2])):
        a[2] = w
        y = torch.ops.mbv3.q8_dwconv_act(*a)
        assert torch.equal(y, a[7].view(1, -1, 1, 1).expand_as(y)), cpu_isa


# -- NEON, for real, under qemu ----------------------------------------------------------------
# Large's and Small's depthwise layers (and the segmentation variants' dilated ones) on reduced
# maps, then channel counts around the 16-channel step (8 and 72 end in its 8-channel half step,
# 7, 17 and 31 in shorter or longer tails) and the 32-channel weight padding, 1x1 and non-square
# maps, batches 1 and 3; both engines' bias forms (onednn: bias_float, qnnpack: bias_int), relu,
# the hardswish table and none; the work split by rows or by 64-channel blocks.
NEON_ODD = [(n, c, h, w) for n, c, (h, w) in itertools.product((1, 3), (1, 7, 8, 16, 17, 31, 33, 72),
                                                                ((1, 1), (2, 3), (7, 5), (6, 13)))]


def _neon_dw_raw(f, x, x_zp, w, bi, bf, mult, oq, lut, s, p, d, split, onednn=None):
    """One harness case from the op's arguments (x uint8 NCHW, w int8 [C, 1, k, k]); returns the
    reference: q8.h's formula on the exact sums (``onednn``: the Onednn mode's scales)."""
    n, c, h, wd = x.shape
    k = w.shape[2]
    packed = pack_weight(w)
    f.i64(n, c, h, wd, k, s, p, d, x_zp, *oq, lut is not None, split, packed.shape[3], onednn is not None)
    f.i64(*x.permute(0, 2, 3, 1).flatten().tolist())
    f.i64(*packed.flatten().tolist())
    f.i64(*bi.tolist())
    f.floats(bf)
    f.floats(mult)
    if onednn is not None:
        f.floats(torch.tensor(onednn))
    if lut is not None:
        f.i64(*lut.tolist())
    f.count += 1
    acc = torch.nn.functional.conv2d(x.double() - x_zp, w.double(), None, s, p, d, c)
    a = (acc.to(torch.int32) + bi.view(1, -1, 1, 1)).float()
    if onednn is not None:
        src, inv = (torch.tensor(v, dtype=torch.float32) for v in onednn)
        v = ((a * src) * mult.view(1, -1, 1, 1) + bf.view(1, -1, 1, 1)) * inv + torch.tensor(float(oq[0]))
        q = torch.round(v.clamp(oq[1], oq[2])).to(torch.uint8)
    else:
        v = ((a + bf.view(1, -1, 1, 1)) * mult.view(1, -1, 1, 1)).clamp(oq[1] - oq[0], oq[2] - oq[0])
        q = (torch.round(v).to(torch.int32) + oq[0]).to(torch.uint8)
    q = lut[q.long()] if lut is not None else q
    return q.permute(0, 2, 3, 1).float()


def _neon_dw_case(f, n, c, h, w, k, s, p, d, act, engine, split):
    x, m, lut, _ = make_case(n, c, h, w, k, s, p, d, act, engine)
    qw = m.weight()
    ws = qw.q_scale() if engine == "qnnpack" else qw.q_per_channel_scales()
    od = _onednn(engine, m)
    bi, bf, mult, oq, lut2 = requant_args(x.q_scale(), ws, m.bias(), m.scale, m.zero_point, engine,
                                          relu=isinstance(m, nniq.ConvReLU2d), lut=lut, onednn=od)
    got = _neon_dw_raw(f, x.int_repr(), x.q_zero_point(), qw.int_repr(), bi, bf, mult, oq, lut2, s, p, d, split,
                       onednn_scales(x.q_scale(), m.scale) if od else None)
    assert torch.equal(got, formula_ref(x, m, lut, engine).permute(0, 2, 3, 1).float())  # the same formula
    return got


@neon_harness.requires_toolchain
@pytest.mark.parametrize("cpu", neon_harness.QEMU_CPUS)
def test_neon_under_qemu(cpu):
    """The NEON depthwise kernel under qemu, bit for bit against q8.h's formula (formula_ref, the
    one the x86 paths above match PyTorch with)."""
    f, expected = neon_harness.CaseFile(), []
    cases = [(1, c, min(h, 9), min(w, 10), k, s, p, d, act) for c, h, w, k, s, p, d, act in MBV3_LAYERS]
    for i, (n, c, h, w) in enumerate(NEON_ODD):
        k, s, d = GEOMS[i % len(GEOMS)]
        cases.append((n, c, h, w, k, s, d * (k - 1) // 2, d, ("hardswish", "relu", "none")[i % 3]))
    # k 1 and 7: the generic kernel size path; padding none and wider than needed.
    cases += [(2, 19, 9, 8, 7, 1, 3, 1, "hardswish"), (1, 40, 9, 8, 7, 2, 6, 2, "none"), (1, 19, 5, 6, 1, 2, 0, 1, "relu"),
              (3, 24, 4, 3, 1, 1, 1, 1, "hardswish")]
    engines = ["onednn", "qnnpack"] + X86
    for i, case in enumerate(cases):
        engine = engines[i % len(engines)]
        expected.append((_neon_dw_case(f, *case, engine, (i // 2) % 2), f"{case} {engine} split {(i // 2) % 2}"))
    # The largest sums (x 0 or 255, x_zp at the other end, every weight -128 or 127; SDOT's x - 128
    # and its 128 * weight sum at their ends) and huge multipliers (clamped far past int32).
    for i, ((xv, wv, zp), mult, c) in enumerate(itertools.product([(255, -128, 0), (255, 127, 0), (0, -128, 255),
                                                                    (255, -128, 255)], (1e-5, 1e4), (16, 33))):
        k = 3 + 2 * (i % 2)
        x = torch.full((2, c, 7, 6), xv, dtype=torch.uint8)
        wq = torch.full((c, 1, k, k), wv, dtype=torch.int8)
        bi = torch.randint(-1000, 1000, (c,), dtype=torch.int32)
        expected.append((_neon_dw_raw(f, x, zp, wq, bi, torch.zeros(c), torch.full((c,), mult), (5, 0, 255), None,
                                      1, k // 2, 1, i % 2), f"extreme x {xv} w {wv} zp {zp} mult {mult} C{c}"))
    neon_harness.expect_exact(neon_harness.run("q8_dwconv_act", f, cpu), expected, f"neon {cpu}")
