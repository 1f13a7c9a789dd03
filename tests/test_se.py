"""mbv3::se / mbv3::se_scale on the CPU: every path (ISA), layout and shape against float64,
in float32 and in bfloat16 (the "bfloat16" section).

Reference: torchvision's SqueezeExcitation(C, S, scale_activation=nn.Hardsigmoid) in float64;
tolerance: tests/tolerance.py (vs the same module in float32).  Weights are drawn so that the
h-sigmoid pre-activation lands below -3, above +3 and in between (asserted on the reference),
and x has per-channel offsets so its pooled mean, not just the biases, drives the scale.
"""
import copy
import itertools
import math

import pytest
import torch
from torch import nn
from torchvision.ops import SqueezeExcitation

import mbv3_fast
import neon_harness
from mbv3_fast.isa import cpu_fc_dot_products
from mbv3_fast.ops import pack_pw_weight_panels
from mbv3_fast.testing import VARIANTS, se_layers
from tolerance import assert_within_rule, bf16_values


pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py


def make_case(n, c, s, h, w, channels_last=False):
    """x [n, c, h, w] and a float32 SqueezeExcitation with MobileNetV3's activations."""
    x = torch.randn(n, c, h, w) * 0.5 + torch.randn(n, c, 1, 1) * 1.5
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    m = SqueezeExcitation(c, s, scale_activation=nn.Hardsigmoid).eval()
    with torch.no_grad():
        m.fc1.weight.normal_(0, 1 / math.sqrt(c))       # w1 . mean ~ N(0, 1.5^2)
        m.fc1.bias.normal_(0, 0.5)
        m.fc2.weight.normal_(0, 0.7 / math.sqrt(s))
        # x's share of the pre-activation, u = w2 . h, kept within +-1.5 (rescaling w2), and
        # b2 spread over [-8, 8]: whatever x is, channels with |b2| > 4.5 saturate (low and
        # high) and those with |b2| < 1.5 stay linear, where x moves the scale by up to 1/4.
        u = m.fc2(m.activation(m.fc1(m.avgpool(x)))) - m.fc2.bias[:, None, None]
        if u.numel() and u.abs().max() > 1.5:
            m.fc2.weight.mul_(1.5 / u.abs().max())
        b2 = torch.linspace(-8, 8, c)[torch.randperm(c)] if c >= 5 else torch.randn(c)
        m.fc2.bias.copy_(b2)
    return x, m


def params(m):
    return (m.fc1.weight.detach(), m.fc1.bias.detach(), m.fc2.weight.detach(), m.fc2.bias.detach())


def reference(x, m, dtype):
    """(se output, [N, C] scale, [N, C] h-sigmoid pre-activation) of torchvision's module."""
    md = copy.deepcopy(m).to(dtype)
    xd = x.to(dtype)
    with torch.no_grad():
        pre = md.fc2(md.activation(md.fc1(md.avgpool(xd))))
        return md(xd), md.scale_activation(pre).flatten(1), pre.flatten(1)


def assert_three_regions(pre64):
    assert (pre64 < -3).any() and (pre64 > 3).any() and (pre64.abs() < 3).any(), \
        "h-sigmoid pre-activation does not cover both saturations and the linear region"


def check(x, m, what, weights=None):
    w = weights if weights is not None else params(m)
    ours = torch.ops.mbv3.se(x, *w)
    ours_scale = torch.ops.mbv3.se_scale(x, *w)
    ref64, scale64, pre64 = reference(x, m, torch.float64)
    ref32, scale32, _ = reference(x, m, torch.float32)
    assert_within_rule(ours, ref32, ref64, what)
    assert_within_rule(ours_scale, scale32, scale64, what + " (scale)")
    if x.shape[0] * x.shape[1] >= 5 and x.shape[1] >= 5:
        assert_three_regions(pre64)
    cl_in = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    assert ours.is_contiguous(memory_format=torch.channels_last if cl_in else torch.contiguous_format)
    # se is exactly x times the scale se_scale reports.
    assert torch.equal(ours, x * ours_scale[:, :, None, None]), what
    return ours


# -- MobileNetV3's own SE layers, enumerated by torchvision ------------------------------------
MBV3_SE = sorted({cfg for v in VARIANTS for cfg in se_layers(v)})


@pytest.mark.parametrize("channels_last", [True, False], ids=["nhwc", "nchw"])
@pytest.mark.parametrize("cfg", MBV3_SE, ids=lambda c: "C{}_S{}_{}x{}".format(*c))
def test_mobilenet_v3_layers(cfg, channels_last, cpu_isa):
    c, s, h, w = cfg
    x, m = make_case(1, c, s, h, w, channels_last)
    check(x, m, f"{cpu_isa} C{c} S{s} {h}x{w}")


def test_mobilenet_v3_large_batch(cpu_isa):
    for c, s, h, w in sorted(set(se_layers("large"))):
        for channels_last in (True, False):
            x, m = make_case(9, c, s, h, w, channels_last)  # sample blocks of 8 + 1 (4 + 4 + 1 widened)
            check(x, m, f"{cpu_isa} N9 C{c} S{s} {h}x{w}")


# -- deliberately odd shapes --------------------------------------------------------------------
ODD = list(itertools.product([1, 5, 17], [1, 3], [(1, 1), (3, 2), (9, 9)], [0, 1, 4]))


@pytest.mark.parametrize("c,s,hw,n", ODD, ids=lambda v: str(v))
def test_odd_shapes(c, s, hw, n, cpu_isa):
    for channels_last in (False, True):
        x, m = make_case(n, c, s, *hw, channels_last)
        check(x, m, f"{cpu_isa} N{n} C{c} S{s} {hw}")


def test_many_pool_chunks(cpu_isa):
    # Small C over many pixels: the NHWC pool splits HW into several chunks of partial sums.
    for c, s, h, w in [(3, 2, 97, 101), (40, 10, 33, 35)]:
        for channels_last in (True, False):
            x, m = make_case(2, c, s, h, w, channels_last)
            check(x, m, f"{cpu_isa} C{c} {h}x{w}")


# -- layouts of x and of the weights -------------------------------------------------------------
def test_non_contiguous_inputs(cpu_isa):
    base = torch.randn(2, 40, 12, 10) * 0.5 + torch.randn(2, 40, 1, 1) * 1.5
    cl = base.contiguous(memory_format=torch.channels_last)
    for x in (base[:, 3:36, 1:-2, ::2], cl[:, 5:37], cl[..., 2:], base.transpose(2, 3)):
        assert not x.is_contiguous() and not x.is_contiguous(memory_format=torch.channels_last)
        _, m = make_case(1, x.shape[1], 8, 1, 1)
        check(x, m, f"{cpu_isa} strided {tuple(x.stride())}")


def test_weight_layouts(cpu_isa):
    """Weights as the model may hold them: 2-D, transposed views of a packed buffer (read in
    place by the vectorised-over-outputs path), strided slices (packed on the fly), expanded."""
    x, m = make_case(2, 37, 11, 6, 5, channels_last=True)
    w1, b1, w2, b2 = params(m)
    w1m, w2m = w1.flatten(1), w2.flatten(1)
    layouts = {
        "2-D": (w1m, b1, w2m, b2),
        "transposed views": (w1m.t().contiguous().t(), b1, w2m.t().contiguous().t(), b2),
        "4-D transposed views": (w1m.t().contiguous().t()[:, :, None, None], b1,
                                 w2m.t().contiguous().t()[:, :, None, None], b2),
        "strided slices": (torch.randn(11, 2, 37, 3)[:, 1, :, 1].copy_(w1m), torch.randn(22)[::2].copy_(b1),
                           torch.randn(37, 11, 2, 1, 1)[:, :, 0].copy_(w2), torch.randn(74)[1::2].copy_(b2)),
    }
    for name, weights in layouts.items():
        check(x, m, f"{cpu_isa} {name}", weights)
    # Stride-0 weights: w1's rows all equal (read by rows), w2's columns all equal (read by
    # outputs).
    row, col = torch.randn(1, 37) / 6, torch.randn(37, 1) * 0.3
    with torch.no_grad():
        m.fc1.weight.copy_(row.expand(11, 37)[:, :, None, None])
        m.fc2.weight.copy_(col.expand(37, 11)[:, :, None, None])
    check(x, m, f"{cpu_isa} expanded", (row.expand(11, 37), b1, col.expand(37, 11), b2))


PANEL_ROWS = (1, 5, 8, 16, 24, 64, 100)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_panels_match_by_output_bitwise(dtype, cpu_isa_bf16):
    """FC weights packed in panels of P outputs (pack_pw_weight_panels): each output is summed in
    the order the transposed ([in, out]) layout sums it, so both give the same bits, for any P
    (and P = S or C: one panel) on every path, at 1 and 2 threads; float32 is also held to the
    rule against float64.  With S = 1 the "by output" w1 ([1, C], strides (1, 1)) is also one
    contiguous row, which the binding reads as a dot product (four accumulators, another
    order): there the panel layouts are held to each other's bits instead."""
    before = torch.get_num_threads()
    try:
        for n, c, s, hw, cl in [(1, 960, 240, 7, True), (1, 672, 168, 14, True), (3, 17, 7, 5, False),
                                (1, 33, 1, 1, True), (5, 72, 24, 3, True), (2, 1, 1, 1, False)]:
            x, m = make_case(n, c, s, hw, hw, cl)
            x = x.to(dtype)
            w1, b1, w2, b2 = params(m)
            w1, w2 = w1.reshape(s, c).to(dtype), w2.reshape(c, s).to(dtype)
            by_output = (w1.t().contiguous().t(), b1, w2.t().contiguous().t(), b2)
            first = None
            for t in (1, 2):
                torch.set_num_threads(t)
                want = torch.ops.mbv3.se(x, *by_output), torch.ops.mbv3.se_scale(x, *by_output)
                first = first or want
                assert all(torch.equal(a, b) for a, b in zip(want, first)), f"{t} threads"
                ref = want if s > 1 else None
                for rows in PANEL_ROWS + (s, c):
                    packed = (pack_pw_weight_panels(w1, rows), b1, pack_pw_weight_panels(w2, rows), b2)
                    got = torch.ops.mbv3.se(x, *packed), torch.ops.mbv3.se_scale(x, *packed)
                    ref = ref or got
                    what = f"{cpu_isa_bf16} N{n} C{c} S{s} panels of {rows}, {t} threads"
                    assert torch.equal(got[0], ref[0]) and torch.equal(got[1], ref[1]), what
            if dtype == torch.float32:
                torch.set_num_threads(1)
                check(x, m, f"{cpu_isa_bf16} C{c} S{s} panels of 64",
                      (pack_pw_weight_panels(w1, 64), b1, pack_pw_weight_panels(w2, 64), b2))
    finally:
        torch.set_num_threads(before)


def test_panels_opcheck():
    for n, c, s, hw, rows in [(2, 17, 7, 3, 5), (1, 72, 24, 2, 64), (0, 8, 2, 3, 1)]:
        x, m = make_case(n, c, s, hw, hw, True)
        w1, b1, w2, b2 = params(m)
        args = (x, pack_pw_weight_panels(w1, rows), b1, pack_pw_weight_panels(w2, rows), b2)
        torch.library.opcheck(torch.ops.mbv3.se.default, args)
        torch.library.opcheck(torch.ops.mbv3.se_scale.default, args)


def test_threads_do_not_change_the_result():
    before = torch.get_num_threads()
    try:
        for n, c, s, h, w, cl in [(1, 960, 240, 7, 7, True), (4, 120, 32, 28, 28, True),
                                  (1, 672, 168, 14, 14, False), (3, 72, 24, 29, 31, False)]:
            x, m = make_case(n, c, s, h, w, cl)
            outs = []
            for t in (1, 2, 3):
                torch.set_num_threads(t)
                outs.append((torch.ops.mbv3.se(x, *params(m)), torch.ops.mbv3.se_scale(x, *params(m))))
            for o in outs[1:]:
                assert torch.equal(o[0], outs[0][0]) and torch.equal(o[1], outs[0][1])
            torch.set_num_threads(2)
            check(x, m, f"2 threads N{n} C{c} {h}x{w}")
    finally:
        torch.set_num_threads(before)


# -- torch integration ---------------------------------------------------------------------------
def test_opcheck():
    for n, c, s, h, w, cl in [(2, 17, 3, 9, 7, True), (1, 8, 2, 5, 5, False), (0, 4, 1, 3, 3, False)]:
        x, m = make_case(n, c, s, h, w, cl)
        for op in (torch.ops.mbv3.se.default, torch.ops.mbv3.se_scale.default):
            torch.library.opcheck(op, (x, *params(m)))


def test_wrapper_takes_a_torchvision_module():
    x, m = make_case(2, 24, 8, 7, 7, channels_last=True)
    ref64, _, _ = reference(x, m, torch.float64)
    ref32, _, _ = reference(x, m, torch.float32)
    assert_within_rule(mbv3_fast.ops.se(x, m), ref32, ref64, "wrapper")
    with pytest.raises(ValueError, match="scale_activation=nn.Hardsigmoid"):
        mbv3_fast.ops.se(x, SqueezeExcitation(24, 8))  # torchvision's default is Sigmoid


# -- NEON, under qemu ----------------------------------------------------------------------------
@neon_harness.requires_toolchain
@pytest.mark.parametrize("cpu", neon_harness.QEMU_CPUS)
def test_neon_under_qemu(cpu):
    cases = []
    for i, (c, s, (h, w), n) in enumerate([(5, 3, (3, 2), 2), (17, 1, (9, 9), 1), (20, 8, (5, 7), 2),
                                           (1, 1, (1, 1), 1), (33, 9, (4, 4), 1), (12, 5, (2, 3), 3),
                                           (9, 4, (3, 3), 6)]):
        for nhwc, t1, t2 in [(True, False, False), (False, True, True), (True, True, False),
                             (False, False, True)]:
            x, m = make_case(n, c, s, h, w, nhwc)
            cases.append((x, m, nhwc, t1, t2, 1 + i % 3))
    cf = neon_harness.CaseFile()
    for x, m, nhwc, t1, t2, chunk in cases:
        n, c, h, w = x.shape
        s = m.fc1.out_channels
        w1, b1, w2, b2 = (t.flatten(1) if t.dim() == 4 else t for t in params(m))
        cf.i64(n, c, s, h * w, int(nhwc), int(t1), int(t2), chunk)
        cf.floats(x.permute(0, 2, 3, 1) if nhwc else x)
        cf.floats(w1.t() if t1 else w1)
        cf.floats(b1)
        cf.floats(w2.t() if t2 else w2)
        cf.floats(b2)
        cf.count += 1
    flat = neon_harness.run("se", cf, cpu)
    off = 0
    for x, m, nhwc, t1, t2, chunk in cases:
        n, c, h, w = x.shape
        y = flat[off:off + x.numel()]
        off += x.numel()
        y = y.view(n, h, w, c).permute(0, 3, 1, 2) if nhwc else y.view(n, c, h, w)
        scale = flat[off:off + n * c].view(n, c)
        off += n * c
        ref64, scale64, _ = reference(x, m, torch.float64)
        ref32, scale32, _ = reference(x, m, torch.float32)
        what = f"neon {cpu} N{n} C{c} {h}x{w} nhwc={nhwc} t1={t1} t2={t2}"
        assert_within_rule(y, ref32, ref64, what)
        assert_within_rule(scale, scale32, scale64, what + " (scale)")
    assert off == flat.numel()


def _neon_bf16_cases(nan_case=False):
    """bf16-valued cases for the bf16 kernels under qemu, and their case file.  nan_case: one
    more case with a NaN in sample 0's x."""
    cases = []
    for i, (c, s, (h, w), n) in enumerate([(5, 3, (3, 2), 2), (17, 1, (9, 9), 1), (20, 8, (5, 7), 2),
                                           (1, 1, (1, 1), 1), (33, 9, (4, 4), 1), (12, 5, (2, 3), 3),
                                           (9, 4, (3, 3), 6), (40, 10, (7, 7), 5)]):
        for nhwc, t1, t2 in [(True, False, False), (False, True, True), (True, True, False),
                             (False, False, True)]:
            x, m = make_case(n, c, s, h, w, nhwc)
            cases.append((bf16_values(x), bf16_valued_weights(m), nhwc, t1, t2, 1 + i % 3))
    if nan_case:
        x, m = make_case(2, 20, 8, 5, 7, True)
        x = bf16_values(x)
        x[0, 3, 2, 1] = float("nan")
        cases.append((x, bf16_valued_weights(m), True, False, False, 2))
    cf = neon_harness.CaseFile()
    for x, m, nhwc, t1, t2, chunk in cases:
        n, c, h, w = x.shape
        s = m.fc1.out_channels
        w1, b1, w2, b2 = (t.flatten(1) if t.dim() == 4 else t for t in params(m))
        w1, w2 = bf16_values(w1), bf16_values(w2)
        cf.i64(n, c, s, h * w, int(nhwc), int(t1), int(t2), chunk)
        cf.floats(x.permute(0, 2, 3, 1) if nhwc else x)
        cf.floats(w1.t() if t1 else w1)
        cf.floats(b1)
        cf.floats(w2.t() if t2 else w2)
        cf.floats(b2)
        cf.count += 1
    return cases, cf


def _neon_outputs(flat, cases):
    """Splits a harness's outputs into (y as NCHW, scale [N, C]) per case."""
    off, outs = 0, []
    for x, m, nhwc, t1, t2, chunk in cases:
        n, c, h, w = x.shape
        y = flat[off:off + x.numel()]
        off += x.numel()
        y = y.view(n, h, w, c).permute(0, 3, 1, 2) if nhwc else y.view(n, c, h, w)
        outs.append((y, flat[off:off + n * c].view(n, c)))
        off += n * c
    assert off == flat.numel()
    return outs


@neon_harness.requires_toolchain
@pytest.mark.parametrize("cpu", neon_harness.QEMU_CPUS)
def test_neon_bf16_under_qemu(cpu):
    """The bf16 kernels under qemu, on bf16 values: bitwise against the float32 kernels run on
    the same values (y = the float32 y rounded, the internal float32 scale the same), and the
    tolerance rule against PyTorch's bf16 module (bf16-valued weights: see bf16_valued_weights)."""
    cases, cf = _neon_bf16_cases()
    outs_bf = _neon_outputs(neon_harness.run("se", cf, cpu, bf16=True), cases)
    outs_f32 = _neon_outputs(neon_harness.run("se", cf, cpu), cases)
    for (x, m, nhwc, t1, t2, chunk), (y, scale), (y32, scale32) in zip(cases, outs_bf, outs_f32):
        n, c, h, w = x.shape
        what = f"neon bf16 {cpu} N{n} C{c} {h}x{w} nhwc={nhwc} t1={t1} t2={t2}"
        assert torch.equal(y, y32.to(BF).float()), what + ": y != float32 kernels' y rounded"
        assert torch.equal(scale, scale32), what + ": float32 scale differs"
        assert torch.equal(y, (x * scale[:, :, None, None]).to(BF).float()), what
        ref64, scale64, _ = reference(x.double(), m, torch.float64)
        refbf, scalebf, _ = reference(x.to(BF), m, BF)
        assert_within_rule(y.to(BF), refbf, ref64, what)
        assert_within_rule(scale.to(BF), scalebf, scale64, what + " (scale)")


@neon_harness.requires_toolchain
def test_neon_bf16_dot_products_under_qemu():
    """The FEAT_BF16 unit (se_neon_bf16.cpp) under qemu's max CPU: FC weights read by rows take
    BFDOT on inputs rounded to bf16, so the rule against PyTorch's bf16 module holds, not the
    widening kernels' bits; weights read by outputs (t1 and t2 both) still widen, bit for bit;
    a NaN in x makes its sample's scale NaN and leaves the other sample's finite."""
    cases, cf = _neon_bf16_cases(nan_case=True)
    cpu = neon_harness.QEMU_BF16_CPU
    outs_dot = _neon_outputs(neon_harness.run("se", cf, cpu, mode="bf16_dot"), cases)
    outs_wide = _neon_outputs(neon_harness.run("se", cf, cpu, bf16=True), cases)
    rows_differ = 0
    for (x, m, nhwc, t1, t2, chunk), (y, scale), (_, scale_wide) in zip(cases, outs_dot, outs_wide):
        n, c, h, w = x.shape
        what = f"neon bf16_dot N{n} C{c} {h}x{w} nhwc={nhwc} t1={t1} t2={t2}"
        if x.isnan().any():
            assert scale[0].isnan().all() and y[0].isnan().all(), what + ": NaN lost"
            assert scale[1].isfinite().all(), what + ": NaN leaked into another sample"
            continue
        assert torch.equal(y, (x * scale[:, :, None, None]).to(BF).float()), what
        if t1 and t2:
            assert torch.equal(scale, scale_wide), what + ": weights by outputs must widen"
        else:
            rows_differ += int(not torch.equal(scale, scale_wide))
        ref64, scale64, _ = reference(x.double(), m, torch.float64)
        refbf, scalebf, _ = reference(x.to(BF), m, BF)
        assert_within_rule(y.to(BF), refbf, ref64, what)
        assert_within_rule(scale.to(BF), scalebf, scale64, what + " (scale)")
    assert rows_differ > 0, "no case took the BFDOT rows: every scale equals the widening kernels'"


# -- errors --------------------------------------------------------------------------------------
def _args(**over):
    a = dict(x=torch.randn(1, 8, 6, 6), w1=torch.randn(2, 8, 1, 1), b1=torch.randn(2),
             w2=torch.randn(8, 2, 1, 1), b2=torch.randn(8))
    a.update(over)
    return list(a.values())


@pytest.mark.parametrize("op", ["se", "se_scale"])
@pytest.mark.parametrize("over,exc,match", [
    (dict(x=torch.randn(1, 8, 6, 6).double()), ValueError, "x must be float32"),
    (dict(x=torch.randn(1, 8, 6, 6).half()), ValueError, "x must be float32"),
    (dict(x=torch.randint(0, 5, (1, 8, 6, 6))), ValueError, "x must be float32"),
    (dict(w1=torch.randn(2, 8).double()), ValueError, "w1 must be float32"),
    (dict(b2=torch.randn(8).half()), ValueError, "b2 must be float32"),
    (dict(x=torch.randn(8, 6, 6)), ValueError, "x must be 4-D"),
    (dict(x=torch.randn(1, 8, 0, 6)), ValueError, "C, H, W >= 1"),
    (dict(w1=torch.randn(2, 7, 1, 1)), ValueError, r"w1 must be \[S, C\] or \[S, C, 1, 1\] with C = 8"),
    (dict(w1=torch.randn(2, 8, 3, 3)), ValueError, r"w1 must be \[S, C\]"),
    (dict(w1=torch.randn(16)), ValueError, r"w1 must be \[S, C\]"),
    (dict(w1=torch.randn(0, 8), b1=torch.randn(0)), ValueError, "S >= 1"),
    (dict(b1=torch.randn(3)), ValueError, r"b1 must be \[S\] with S = 2"),
    (dict(b1=torch.randn(2, 1)), ValueError, r"b1 must be \[S\]"),
    (dict(w2=torch.randn(8, 3, 1, 1)), ValueError, r"w2 must be \[C, S\] .* with C = 8, S = 2"),
    (dict(w2=torch.randn(2, 8, 1, 1)), ValueError, r"w2 must be \[C, S\]"),
    (dict(b2=torch.randn(7)), ValueError, r"b2 must be \[C\] with C = 8"),
    (dict(w2=torch.randn(8, 2, device="meta")), RuntimeError, "w2 is on meta"),
    # packed in panels ([ceil(out / P), in, P], contiguous, x's dtype)
    (dict(w1=torch.randn(2, 8, 1)[:1]), ValueError, r"w1 packed in panels of P outputs must be a contiguous "
                                                    r"\[ceil\(S / P\), C, P\] .*C = 8, S = 2\), got \[1, 8, 1\]"),
    (dict(w1=torch.randn(1, 7, 2)), ValueError, r"\[ceil\(S / P\), C, P\] .*got \[1, 7, 2\]"),
    (dict(w1=torch.randn(1, 2, 8).transpose(1, 2)), ValueError, r"\[ceil\(S / P\), C, P\].*\(not contiguous\)"),
    (dict(w1=torch.randn(1, 8, 0)), ValueError, r"w1 packed in panels .* with P >= 1"),
    (dict(w1=torch.randn(1, 8, 2), b1=torch.randn(2, 1)), ValueError, r"b1 must be \[S\] with S >= 1"),
    (dict(w2=torch.randn(3, 2, 4)), ValueError, r"w2 packed in panels of P outputs must be a contiguous "
                                                r"\[ceil\(C / P\), S, P\] .*S = 2, C = 8\)"),
    (dict(w1=torch.randn(1, 8, 2).to(torch.bfloat16)), ValueError, "w1 must be float32"),
    (dict(x=torch.randn(1, 8, 6, 6, device="meta"), w1=torch.randn(1, 8, 2, device="meta"),
          b1=torch.randn(2, device="meta"), w2=torch.randn(8, 2, device="meta"), b2=torch.randn(8, device="meta")),
     ValueError, "w1 packed in panels \\(3-D\\) is read on the CPU only"),
])
def test_bad_inputs_raise_clear_errors(op, over, exc, match):
    with pytest.raises(exc, match=match):
        getattr(torch.ops.mbv3, op)(*_args(**over))


# -- bfloat16 ------------------------------------------------------------------------------------
# bf16 x (and y) with bf16 FC weights (the kernels stream them), float32 biases; everything inside
# (sums, means, hidden, scale) is float32, y rounded on store, se_scale's scale rounded once.
# Rule (tests/tolerance.py): PyTorch's unfused bf16 SqueezeExcitation (every parameter in bf16)
# against float64 on the same bf16 x values with the original float32 parameters.
BF = torch.bfloat16


def bf16_args(m, bias_dtype=torch.float32):
    w1, b1, w2, b2 = params(m)
    return (w1.to(BF), b1.to(bias_dtype), w2.to(BF), b2.to(bias_dtype))


def f32_same_path(xb):
    """xb's values as float32, in the layout that sends the float32 op down the bf16 op's path
    (dense NHWC / NCHW in place; anything else is made NCHW by both)."""
    dense = xb.is_contiguous() or xb.is_contiguous(memory_format=torch.channels_last)
    return xb.float() if dense else xb.contiguous().float()


def check_bf16(xb, m, what, weights=None):
    """xb: bf16 x.  Tolerance rule for se and se_scale, output dtype / layout, and bitwise where
    the FCs widen their bf16 weights: the bf16 op equals the float32 op on the same bf16 values,
    rounded to bf16 (the same float32 arithmetic; only the final store rounds).  Where the path
    sums FC rows with bf16 dot products (cpu_fc_dot_products), the rule alone."""
    assert xb.dtype == BF
    w = weights if weights is not None else bf16_args(m)
    ours = torch.ops.mbv3.se(xb, *w)
    ours_scale = torch.ops.mbv3.se_scale(xb, *w)
    assert ours.dtype == BF and ours_scale.dtype == BF, what
    x64 = xb.double()
    ref64, scale64, _ = reference(x64, m, torch.float64)
    refbf, scalebf, _ = reference(xb, m, BF)
    assert_within_rule(ours, refbf, ref64, what + " bf16")
    assert_within_rule(ours_scale, scalebf, scale64, what + " bf16 (scale)")
    cl_in = xb.is_contiguous(memory_format=torch.channels_last) and not xb.is_contiguous()
    assert ours.is_contiguous(memory_format=torch.channels_last if cl_in else torch.contiguous_format)
    if not cpu_fc_dot_products():
        wf = tuple(t.float() for t in w)
        xf = f32_same_path(xb)
        assert torch.equal(ours, torch.ops.mbv3.se(xf, *wf).to(BF)), what + " bf16 != float32 op rounded"
        assert torch.equal(ours_scale, torch.ops.mbv3.se_scale(xf, *wf).to(BF)), what + " bf16 scale != float32 rounded"
    return ours


@pytest.mark.parametrize("channels_last", [True, False], ids=["nhwc", "nchw"])
@pytest.mark.parametrize("cfg", MBV3_SE, ids=lambda c: "C{}_S{}_{}x{}".format(*c))
def test_bf16_mobilenet_v3_layers(cfg, channels_last, cpu_isa_bf16):
    cpu_isa = cpu_isa_bf16
    c, s, h, w = cfg
    x, m = make_case(1, c, s, h, w, channels_last)
    check_bf16(x.to(BF), m, f"{cpu_isa} C{c} S{s} {h}x{w}")


def test_bf16_mobilenet_v3_large_batch(cpu_isa_bf16):
    cpu_isa = cpu_isa_bf16
    for c, s, h, w in sorted(set(se_layers("large"))):
        for channels_last in (True, False):
            x, m = make_case(9, c, s, h, w, channels_last)  # sample blocks of 8 + 1 (4 + 4 + 1 widened)
            check_bf16(x.to(BF), m, f"{cpu_isa} N9 C{c} S{s} {h}x{w}")


BF16_ODD = list(itertools.product([1, 7, 17, 33], [1, 4], [(1, 1), (3, 5), (9, 9)], [0, 1, 3]))


def bf16_valued_weights(m):
    """m with its two FC weights rounded to bf16 values (in place; biases stay float32).

    With few outputs the max error rests on one or two elements, and the rounding of the float32
    weights to bf16 (the caller's .to(), the same for ours and PyTorch's, netted against torch's
    own bias rounding) decides which max error is larger by chance (seen: 2.1x on N2 C5 3x2, one
    scale near the -3 saturation).  With bf16-valued weights ours is the float32 result rounded
    once, which no bf16 computation beats, so the rule measures the op.  The MobileNetV3 layer
    tests keep float32 weights."""
    with torch.no_grad():
        m.fc1.weight.copy_(bf16_values(m.fc1.weight))
        m.fc2.weight.copy_(bf16_values(m.fc2.weight))
    return m


@pytest.mark.parametrize("c,s,hw,n", BF16_ODD, ids=lambda v: str(v))
def test_bf16_odd_shapes(c, s, hw, n, cpu_isa_bf16):
    cpu_isa = cpu_isa_bf16
    for channels_last in (False, True):
        x, m = make_case(n, c, s, *hw, channels_last)
        bf16_valued_weights(m)
        xb = x.to(BF)
        assert xb.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        check_bf16(xb, m, f"{cpu_isa} N{n} C{c} S{s} {hw} cl={channels_last}")


def test_bf16_many_pool_chunks(cpu_isa_bf16):
    cpu_isa = cpu_isa_bf16
    for c, s, h, w in [(3, 2, 97, 101), (40, 10, 33, 35)]:
        for channels_last in (True, False):
            x, m = make_case(2, c, s, h, w, channels_last)
            check_bf16(x.to(BF), m, f"{cpu_isa} C{c} {h}x{w}")


def test_bf16_non_contiguous_inputs(cpu_isa_bf16):
    cpu_isa = cpu_isa_bf16
    base = (torch.randn(2, 40, 12, 10) * 0.5 + torch.randn(2, 40, 1, 1) * 1.5).to(BF)
    cl = base.contiguous(memory_format=torch.channels_last)
    for xb in (base[:, 3:36, 1:-2, ::2], cl[:, 5:37], cl[..., 2:], base.transpose(2, 3)):
        assert not xb.is_contiguous() and not xb.is_contiguous(memory_format=torch.channels_last)
        _, m = make_case(1, xb.shape[1], 8, 1, 1)
        check_bf16(xb, m, f"{cpu_isa} strided {tuple(xb.stride())}")


def test_bf16_weight_layouts(cpu_isa_bf16):
    """bf16 weights read by rows and by outputs (transposed views), packed strided slices, and
    bf16 biases (read as float32)."""
    cpu_isa = cpu_isa_bf16
    x, m = make_case(2, 37, 11, 6, 5, channels_last=True)
    xb = x.to(BF)
    w1, b1, w2, b2 = bf16_args(m)
    w1m, w2m = w1.flatten(1), w2.flatten(1)
    layouts = {
        "2-D": (w1m, b1, w2m, b2),
        "transposed views": (w1m.t().contiguous().t(), b1, w2m.t().contiguous().t(), b2),
        "strided slices": (torch.zeros(11, 2, 37, 3, dtype=BF)[:, 1, :, 1].copy_(w1m), b1,
                           torch.zeros(37, 11, 2, 1, 1, dtype=BF)[:, :, 0].copy_(w2), b2),
        "bf16 biases": bf16_args(m, BF),
    }
    for name, weights in layouts.items():
        ours = check_bf16(xb, m, f"{cpu_isa} {name}", weights)
        # Read by outputs, the weights are widened even where rows take dot products.
        if name != "bf16 biases" and not (name == "transposed views" and cpu_fc_dot_products()):
            assert torch.equal(ours, torch.ops.mbv3.se(xb, *bf16_args(m))), name


def test_bf16_samples_do_not_depend_on_the_batch(cpu_isa_fc_dots):
    """Where FC rows take dot products, each output is its own sample's sum in an order fixed by
    the shape, however many samples share a pass over the weights (1..8): a batch of 9 gives
    every sample the bits it gets in a batch of 1..8.  (The bf16 store hides most last-bit
    differences of the float32 sums, so this mainly catches samples mixed up between the two
    groups of 4; the one order is by construction: common/pool_fc_kernel.h.)"""
    for c, s, cl in [(33, 9, True), (72, 40, False)]:
        x, m = make_case(9, c, s, 3, 5, cl)
        xb, w = x.to(BF), bf16_args(m)
        whole, whole_scale = torch.ops.mbv3.se(xb, *w), torch.ops.mbv3.se_scale(xb, *w)
        for n in range(1, 9):
            part = xb[9 - n:]
            assert torch.equal(torch.ops.mbv3.se(part, *w), whole[9 - n:]), f"{cpu_isa_fc_dots} C{c} last {n} of 9"
            assert torch.equal(torch.ops.mbv3.se_scale(part, *w), whole_scale[9 - n:]), f"{cpu_isa_fc_dots} C{c} scale"


def test_bf16_threads_do_not_change_the_result():
    before = torch.get_num_threads()
    try:
        for n, c, s, h, w, cl in [(1, 960, 240, 7, 7, True), (4, 120, 32, 28, 28, True),
                                  (3, 72, 24, 29, 31, False)]:
            x, m = make_case(n, c, s, h, w, cl)
            xb = x.to(BF)
            outs = []
            for t in (1, 2, 3):
                torch.set_num_threads(t)
                outs.append((torch.ops.mbv3.se(xb, *bf16_args(m)), torch.ops.mbv3.se_scale(xb, *bf16_args(m))))
            for o in outs[1:]:
                assert torch.equal(o[0], outs[0][0]) and torch.equal(o[1], outs[0][1])
    finally:
        torch.set_num_threads(before)


def _nonfinite_pattern_matches(got, ref, what):
    got = got.double()
    for f in (torch.isnan, torch.isposinf, torch.isneginf):
        bad = f(got) != f(ref)
        assert not bad.any(), f"{what}: {f.__name__} differs at {int(bad.sum())} of {got.numel()} elements"


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")], ids=["nan", "inf", "-inf"])
def test_bf16_nonfinite_x_like_reference(value, cpu_isa_bf16):
    """Non-finite x: non-finite outputs exactly where PyTorch's float computation (float64, on the
    same bf16 values of x and the weights) has them."""
    cpu_isa = cpu_isa_bf16
    gen = torch.Generator().manual_seed(7)
    for n, c, s, h, w in [(3, 17, 5, 4, 3), (2, 40, 10, 7, 7), (1, 1, 1, 1, 1)]:
        x, m = make_case(n, c, s, h, w)
        flat = x.view(-1)
        flat[torch.randint(0, flat.numel(), (2,), generator=gen)] = value
        wb = bf16_args(m)
        mb = copy.deepcopy(m)
        with torch.no_grad():
            mb.fc1.weight.copy_(wb[0].float())
            mb.fc2.weight.copy_(wb[2].float())
        ref, scale_ref, _ = reference(x.to(BF).double(), mb, torch.float64)
        for cl in (False, True):
            xb = x.to(BF)
            if cl:
                xb = xb.contiguous(memory_format=torch.channels_last)
            what = f"{cpu_isa} N{n} C{c} {h}x{w} x={value} cl={cl}"
            _nonfinite_pattern_matches(torch.ops.mbv3.se(xb, *wb), ref, what)
            _nonfinite_pattern_matches(torch.ops.mbv3.se_scale(xb, *wb), scale_ref, what + " (scale)")


def test_bf16_opcheck():
    for n, c, s, h, w, cl in [(2, 17, 3, 9, 7, True), (1, 8, 2, 5, 5, False), (0, 4, 1, 3, 3, False)]:
        x, m = make_case(n, c, s, h, w, cl)
        for op in (torch.ops.mbv3.se.default, torch.ops.mbv3.se_scale.default):
            torch.library.opcheck(op, (x.to(BF), *bf16_args(m)))
            torch.library.opcheck(op, (x.to(BF), *bf16_args(m, BF)))


def test_bf16_wrapper_takes_a_bf16_module():
    x, m = make_case(2, 24, 8, 7, 7, channels_last=True)
    mb = copy.deepcopy(m).to(BF)  # bf16 weights and biases
    ours = mbv3_fast.ops.se(x.to(BF), mb)
    assert ours.dtype == BF
    assert torch.equal(ours, torch.ops.mbv3.se(x.to(BF), *bf16_args(m, BF)))


@pytest.mark.parametrize("op", ["se", "se_scale"])
@pytest.mark.parametrize("over,match", [
    (dict(x=torch.randn(1, 8, 6, 6).to(BF)), r"w1 must have x's dtype \(bfloat16\), got float32"),
    (dict(x=torch.randn(1, 8, 6, 6).to(BF), w1=torch.randn(2, 8, 1, 1).to(BF)),
     r"w2 must have x's dtype \(bfloat16\), got float32"),
    (dict(x=torch.randn(1, 8, 6, 6).half()), "x must be float32 or bfloat16 on the CPU"),
    (dict(w1=torch.randn(2, 8, 1, 1).to(BF)), "w1 must be float32, got BFloat16"),
    (dict(x=torch.randn(1, 8, 6, 6).to(BF), w1=torch.randn(2, 8, 1, 1).to(BF), w2=torch.randn(8, 2).to(BF),
          b1=torch.randn(2).half()), "b1 must be float32 or bfloat16"),
    (dict(x=torch.randn(1, 8, 6, 6).to(BF), w1=torch.randn(1, 8, 2), w2=torch.randn(8, 2).to(BF)),
     r"w1 packed in panels must have x's dtype \(bfloat16\), got float32"),
])
def test_bf16_bad_inputs_raise_clear_errors(op, over, match):
    with pytest.raises(ValueError, match=match):
        getattr(torch.ops.mbv3, op)(*_args(**over))
