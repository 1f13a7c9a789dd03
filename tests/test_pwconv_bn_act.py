"""mbv3::pwconv_bn_act on the CPU: every path (ISA), layout and shape against float64."""
import itertools
import subprocess

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import mbv3_fast
import neon_harness
from mbv3_fast.isa import cpu_isa_reads_k_pairs
from mbv3_fast.ops import fold_bn, pack_pw_weight, pack_pw_weight_panels, pack_weight_k_pairs, pwconv_bn_act
from mbv3_fast.testing import pointwise_layers
from layers import ACT_CODE, ACT_FN, BEST_ISA, random_bn
from tolerance import assert_within_rule, bf16_values



def make_case(n, cin, cout, h, w, channels_last=False, residual=False, in_scale=False):
    x = torch.randn(n, cin, h, w)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    conv_w = torch.randn(cout, cin, 1, 1) * (1.0 / max(cin, 1)) ** 0.5
    r = torch.randn(n, cout, h, w) if residual else None
    if r is not None and channels_last:
        r = r.contiguous(memory_format=torch.channels_last)
    s = torch.rand(n, cin) if in_scale else None  # hardsigmoid's range
    return x, conv_w, random_bn(cout), r, s


def reference(x, conv_w, bn, act, residual=None, in_scale=None, dtype=torch.float64):
    """(x * in_scale) -> conv2d 1x1 -> batch_norm(eval) -> act -> + residual, unfused, in dtype."""
    x = x.to(dtype)
    if in_scale is not None:
        x = x * in_scale.to(dtype)[:, :, None, None]
    y = F.conv2d(x, conv_w.to(dtype))
    y = F.batch_norm(y, bn.running_mean.to(dtype), bn.running_var.to(dtype), bn.weight.to(dtype),
                     bn.bias.to(dtype), False, 0.0, bn.eps)
    y = ACT_FN[act](y)
    return y if residual is None else y + residual.to(dtype)


def check(x, conv_w, bn, act, residual, in_scale, what, packed=False):
    w, b = fold_bn(conv_w, bn)
    if packed:
        w = pack_pw_weight(w)
    ours = torch.ops.mbv3.pwconv_bn_act(x, w, b, act, residual, in_scale)
    ref64 = reference(x, conv_w, bn, act, residual, in_scale)
    ref32 = reference(x, conv_w, bn, act, residual, in_scale, torch.float32)
    assert_within_rule(ours, ref32, ref64, what)
    cl_in = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    assert ours.is_contiguous(memory_format=torch.channels_last if cl_in else torch.contiguous_format)
    return ours


# -- MobileNetV3's own layers, enumerated by torchvision -------------------------------------
MBV3_LAYERS = sorted({cfg for v in ("large", "small") for cfg in pointwise_layers(v)})


def test_layer_enumeration():
    large = pointwise_layers("large")
    assert large[0] == (16, 16, 112, 112, "none", True)  # first block: no expand, projection
    assert large[-1] == (160, 960, 7, 7, "hardswish", False)  # last conv
    assert sum(r for *_, r in large) == 10 and len(large) == 30


@pytest.mark.parametrize("channels_last", [True, False], ids=["nhwc", "nchw"])
@pytest.mark.parametrize("cfg", MBV3_LAYERS, ids=lambda c: "{}to{}_{}x{}_{}_r{:d}".format(*c))
def test_mobilenet_v3_layers(cfg, channels_last, cpu_isa):
    cin, cout, h, w, act, res = cfg
    if cpu_isa not in (BEST_ISA, "avx512_bf16"):
        if not channels_last:
            pytest.skip("NCHW is converted before the kernel: tested on the best path only")
        h, w = min(h, 28), min(w, 28)  # full maps on the best path; the others get <= 28x28
    # The projection after an SE block reads its input scaled: exercise in_scale there.
    scale = act == "none" and cin > cout
    x, conv_w, bn, r, s = make_case(1, cin, cout, h, w, channels_last, res, scale)
    check(x, conv_w, bn, act, r, s, f"{cpu_isa} {cfg}", packed=channels_last)


# -- deliberately odd shapes ----------------------------------------------------------------
ODD = list(itertools.product([1, 3, 17, 33], [1, 3, 17, 33], [0, 1, 3]))
HW = [(1, 1), (2, 3), (7, 5), (13, 11)]


@pytest.mark.parametrize("cin,cout,n", ODD, ids=lambda v: str(v))
def test_odd_shapes(cin, cout, n, cpu_isa):
    for i, (h, w) in enumerate(HW):
        act = ("hardswish", "relu", "none")[(i + cin + cout) % 3]
        combos = ((False, False, False), (True, True, False), (True, False, True), (False, True, True))
        for cl, res, scale in combos[i % 2::2]:  # every combination over the maps
            x, conv_w, bn, r, s = make_case(n, cin, cout, h, w, cl, res, scale)
            check(x, conv_w, bn, act, r, s, f"{cpu_isa} N{n} {cin}->{cout} {h}x{w} {act} r{res} s{scale}",
                  packed=(i % 2 == 1))


@pytest.mark.parametrize("act", ["hardswish", "relu", "none"])
def test_wide_and_deep(act, cpu_isa):
    # Column tails of every width, several panels, row tails, K past the tile, SE scale with
    # several samples (the scaled weight is rebuilt per sample segment).
    for cin, cout, n, hw in ((200, 100, 2, (9, 7)), (96, 49, 3, (5, 5)), (64, 130, 2, (6, 7))):
        x, conv_w, bn, r, s = make_case(n, cin, cout, *hw, True, True, True)
        check(x, conv_w, bn, act, r, s, f"{cpu_isa} {cin}->{cout} {act}")


def test_non_contiguous_inputs(cpu_isa):
    base = torch.randn(2, 40, 30, 26)
    cl = base.contiguous(memory_format=torch.channels_last)
    for x in (base[:, 3:36, 1:-2, ::2], cl[:, 5:37], cl[..., 2:], base.transpose(2, 3)):
        assert not x.is_contiguous() and not x.is_contiguous(memory_format=torch.channels_last)
        cin = x.shape[1]
        _, conv_w, bn, _, _ = make_case(1, cin, 24, 1, 1)
        r = torch.randn(2, 48, *x.shape[2:])[:, ::2]  # strided residual too
        s = torch.rand(2, 2 * cin)[:, ::2]            # and a strided in_scale
        check(x, conv_w, bn, "hardswish", r, s, f"{cpu_isa} strided {tuple(x.stride())}")
    # Weight and bias given as every supported layout / strided view.
    x, conv_w, bn, r, s = make_case(2, 24, 40, 9, 9, True, True, True)
    w, b = fold_bn(conv_w, bn)
    expected = torch.ops.mbv3.pwconv_bn_act(x, w, b, "relu", r, s)
    w_strided = torch.randn(40, 48, 1, 1)[:, ::2].copy_(w)
    b_strided = torch.randn(80)[::2].copy_(b)
    for wt in (w.reshape(40, 24), w_strided, pack_pw_weight(w), pack_pw_weight(w)[:, :, 0, 0],
               torch.randn(48, 40).t()[:, ::2, None, None].copy_(w)):
        got = torch.ops.mbv3.pwconv_bn_act(x, wt, b_strided, "relu", r, s)
        torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_residual_layout_may_differ_from_x(cpu_isa):
    x, conv_w, bn, r, s = make_case(2, 16, 24, 7, 9, channels_last=True, residual=True)
    check(x, conv_w, bn, "none", r.contiguous(), None, f"{cpu_isa} nhwc x, nchw residual")
    check(x.contiguous(), conv_w, bn, "none", r, None, f"{cpu_isa} nchw x, nhwc residual")


def test_every_output_element_written(cpu_isa):
    """Outputs come from poisoned (NaN-filled) buffers; a skipped element would stay NaN."""
    torch.ops.mbv3._debug_poison_outputs(True)
    try:
        for cin, cout, (h, w) in [(33, 17, (7, 5)), (17, 1, (1, 1)), (64, 100, (13, 11)),
                                  (130, 49, (6, 9))]:
            for channels_last in (True, False):
                x, conv_w, bn, r, s = make_case(2, cin, cout, h, w, channels_last, cin > 60, cout > 60)
                check(x, conv_w, bn, "relu", r, s, f"poisoned {cin}->{cout} {h}x{w}")
    finally:
        torch.ops.mbv3._debug_poison_outputs(False)


def test_threads_do_not_change_the_result():
    for n, cin, cout, hw in ((3, 72, 40, (29, 31)), (1, 960, 160, (7, 7)), (1, 160, 960, (7, 7)),
                             (2, 80, 200, (14, 14))):
        x, conv_w, bn, r, s = make_case(n, cin, cout, *hw, True, True, True)
        w, b = fold_bn(conv_w, bn)
        before = torch.get_num_threads()
        try:
            outs = []
            for t in (1, 2, 3):
                torch.set_num_threads(t)
                outs.append(torch.ops.mbv3.pwconv_bn_act(x, w, b, "hardswish", r, s))
        finally:
            torch.set_num_threads(before)
        for o in outs[1:]:
            assert torch.equal(o, outs[0])


# -- column tails of at most 8 (AVX-512: the last vector runs 256-bit) ---------------------------
# Cout = 16k + 1..8 (MobileNetV3: 24, 40, 72, 120, 184, 200); 9 and 16k + 0 run 16 lanes.
HALF_TAIL_COUTS = [1, 2, 3, 4, 5, 6, 7, 8, 9, 16, 24, 40, 72, 120, 184, 200]


def on_isa(isa, fn):
    before = mbv3_fast.get_cpu_isa()
    mbv3_fast.set_cpu_isa(isa)
    try:
        return fn()
    finally:
        mbv3_fast.set_cpu_isa(before)


@pytest.mark.parametrize("cout", HALF_TAIL_COUTS)
def test_column_tails_at_every_row_tile(cout, cpu_isa_bf16):
    """Every row-tile size (M = 1..13, 49, 196), short (bias first) and K-blocked sums, residual,
    SE scale through either copy (rows when HW <= Cout, else the padded weight copy), weights
    read in place and transposed: bit-identical to the scalar path, which computes every output
    with the same FMAs in the same order (no Half there), and within the tolerance rule over
    all the cases together (a case of 6 outputs is too few for PyTorch's own maximum error to
    be a fair bound: measured, 70 -> 6 at M = 4 passed 2 x 2.1e-7 + 1e-6 by 0.5%, bits equal
    to every other path's)."""
    ours, ref32, ref64 = [], [], []
    ks = [1, 3, 16, 70, 130]  # short sums (bias first), one vector of K, K-blocked
    cases = [(m, ks[(j + d) % 5]) for j, m in enumerate(list(range(1, 14)) + [49, 196]) for d in (0, 2)]
    for i, (m, cin) in enumerate(cases):
        act = ("hardswish", "relu", "none")[i % 3]
        res, scale, packed = i % 2 == 0, i % 4 < 2, i % 3 != 1
        x, conv_w, bn, r, s = make_case(1, cin, cout, 1, m, True, res, scale)
        what = f"{cpu_isa_bf16} {cin}->{cout} M{m} {act} r{res} s{scale}"
        w, b = fold_bn(conv_w, bn)
        w = pack_pw_weight(w) if packed else w
        y = torch.ops.mbv3.pwconv_bn_act(x, w, b, act, r, s)
        scalar = on_isa("scalar", lambda: torch.ops.mbv3.pwconv_bn_act(x, w, b, act, r, s))
        assert torch.equal(y, scalar), what
        ours.append(y.flatten())
        ref32.append(reference(x, conv_w, bn, act, r, s, torch.float32).flatten())
        ref64.append(reference(x, conv_w, bn, act, r, s).flatten())
    assert_within_rule(torch.cat(ours), torch.cat(ref32), torch.cat(ref64), f"{cpu_isa_bf16} Cout {cout}")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["float32", "bf16"])
def test_row_tiles_change_no_bits(dtype, cpu_isa_bf16):
    """Row counts whose short rest is made up from the full tiles (RowTiles: 49 = 4 x 6 + 5 x 5 at
    6-row tiles, 25 = 3 x 7 + 4 x 1 ... at 8 and 12): every row equals the op on that row alone
    (one 1-row tile), bit for bit, in both kernels (bf16: the K-pair one where the path reads
    them); so no row is dropped, computed twice or summed in another order."""
    k_pairs = dtype == torch.bfloat16 and cpu_isa_reads_k_pairs()
    for i, m in enumerate((13, 25, 26, 37, 49, 50, 61, 73, 97, 196)):
        cin, cout = (16, 70, 160)[i % 3], (16, 40, 48, 64, 160, 200)[i % 6]
        x = torch.randn(1, cin, 1, m).to(dtype).contiguous(memory_format=torch.channels_last)
        w, b = torch.randn(cout, cin) / cin ** 0.5, torch.randn(cout)
        w = pack_weight_k_pairs(w) if k_pairs else pack_pw_weight(w.to(dtype))
        act = ("hardswish", "relu", "none")[i % 3]
        y = torch.ops.mbv3.pwconv_bn_act(x, w, b, act, None, None)
        alone = torch.cat([torch.ops.mbv3.pwconv_bn_act(x[..., j:j + 1], w, b, act, None, None)
                           for j in range(m)], dim=3)
        assert torch.equal(y.view(torch.int16 if dtype == torch.bfloat16 else torch.int32),
                           alone.view(torch.int16 if dtype == torch.bfloat16 else torch.int32)), \
            f"{cpu_isa_bf16} {dtype} {cin}->{cout} M{m}"


@pytest.mark.parametrize("cout", [8, 24, 40, 200])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")], ids=["nan", "+inf", "-inf"])
@pytest.mark.parametrize("where", ["x", "w"])
def test_column_tail_non_finite(cout, value, where, cpu_isa_bf16):
    """A NaN/inf in x (one row) or in the weights (one column of the tail, one of a full
    vector) reaches exactly the outputs PyTorch's does, short and K-blocked sums."""
    for cin, m in ((3, 13), (70, 12), (130, 49)):
        x, conv_w, bn, r, s = make_case(2, cin, cout, 1, m, True, True, True)
        w, b = fold_bn(conv_w, bn)
        w = pack_pw_weight(w)
        if where == "x":
            x[1, cin // 2, 0, m - 1] = value
            x[0, cin - 1, 0, 0] = value
        else:
            w[cout - 1, cin - 1] = value  # the tail's last column, the last weight row
            w[cout // 2, 0] = value
        for act in ("hardswish", "relu", "none"):
            ours = torch.ops.mbv3.pwconv_bn_act(x, w, b, act, r, s).double()
            xs = x.double() * s.double()[:, :, None, None]
            ref = ACT_FN[act](F.conv2d(xs, w.double(), b.double())) + r.double()
            what = f"{cpu_isa_bf16} {cin}->{cout} M{m} {where}={value} {act}"
            assert torch.equal(ours.isnan(), ref.isnan()), what
            assert torch.equal(ours.isposinf(), ref.isposinf()), what
            assert torch.equal(ours.isneginf(), ref.isneginf()), what
            finite = ref.isfinite()
            assert finite.any(), what
            torch.testing.assert_close(ours[finite], ref[finite], rtol=1e-4, atol=1e-4, msg=what)


@pytest.mark.parametrize("optional", ["none", "residual", "in_scale", "both"])
def test_opcheck(optional):
    for n, cin, cout, h, w, cl in [(2, 17, 9, 7, 3, True), (1, 8, 33, 5, 5, False),
                                   (0, 4, 3, 3, 3, False)]:
        x, conv_w, bn, r, s = make_case(n, cin, cout, h, w, cl, optional in ("residual", "both"),
                                        optional in ("in_scale", "both"))
        wt, b = fold_bn(conv_w, bn)
        torch.library.opcheck(torch.ops.mbv3.pwconv_bn_act.default, (x, wt, b, "hardswish", r, s))


def test_compile_and_export():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            w, self.b = fold_bn(torch.randn(16, 24, 1, 1), random_bn(16))
            self.w = pack_pw_weight(w)

        def forward(self, x, s):
            return torch.ops.mbv3.pwconv_bn_act(x, self.w, self.b, "none", None, s) * 2

    m = M()
    x = torch.randn(2, 24, 6, 6).contiguous(memory_format=torch.channels_last)
    s = torch.rand(2, 24)
    expected = m(x, s)
    torch.testing.assert_close(torch.compile(m, fullgraph=True)(x, s), expected)
    ep = torch.export.export(m, (x, s))
    assert any("pwconv_bn_act" in str(n.target) for n in ep.graph.nodes)
    torch.testing.assert_close(ep.module()(x, s), expected)


# -- weights packed in panels (the model's float32 layout where the path wants it) -----------
def test_pack_weight_panels_layout():
    w = torch.randn(20, 9)
    for cols in (1, 7, 8, 20, 24):
        p = pack_pw_weight_panels(w[:, :, None, None], cols)
        assert p.shape == ((20 + cols - 1) // cols, 9, cols) and p.is_contiguous()
        for n, k in ((0, 0), (19, 8), (7, 3), (13, 5)):
            assert p[n // cols, k, n % cols] == w[n, k]
        assert (p.transpose(1, 2).reshape(-1, 9)[20:] == 0).all()  # the last panel's padding
    with pytest.raises(ValueError, match="cols must be >= 1"):
        pack_pw_weight_panels(w, 0)


# Panel widths: 1, odd, one vector, AVX2's (24 = 3 x 8), AVX-512's (64), wider than Cout.
PANELS = (1, 5, 8, 16, 24, 40, 64, 100)


@pytest.mark.parametrize("cin,cout,n,hw", [
    (17, 33, 1, (7, 5)), (1, 7, 3, (2, 3)), (33, 1, 1, (1, 1)), (96, 49, 2, (5, 5)), (40, 130, 0, (3, 3)),
    (112, 672, 1, (14, 14)), (480, 112, 1, (14, 14)), (960, 160, 1, (7, 7)), (160, 960, 1, (7, 7)),
    (72, 200, 1, (9, 9)),
    # The small-K tiles (AVX2: K = 16, 24, 40 in panels of 24), 1 to 3 vectors wide, row tails.
    (16, 64, 2, (9, 13)), (24, 72, 1, (7, 7)), (40, 120, 1, (6, 6)), (16, 16, 1, (5, 9)), (24, 8, 1, (5, 5)),
])
def test_panels_match_k_major_bitwise(cin, cout, n, hw, cpu_isa):
    """Any panel width, on every path, gives the K-major kernel's bits (the same sums in the same
    order), with residual and SE scale (both scale placements: rows for small maps, weight
    columns for large ones), non-finite values included; and within the rule of float64."""
    if cpu_isa != BEST_ISA and cin * cout * hw[0] * hw[1] > 2 ** 21:
        hw = (3, 4)  # the other paths: the layer's channels on a small map
    x, conv_w, bn, r, s = make_case(n, cin, cout, *hw, True, True, True)
    if x.numel():
        x[torch.randint(n, ())][torch.randint(cin, ())].view(-1)[0] = float("nan")  # one pixel's channel
    w, b = fold_bn(conv_w, bn)
    for res, scale in ((None, None), (r, s)):
        want = torch.ops.mbv3.pwconv_bn_act(x, pack_pw_weight(w), b, "hardswish", res, scale)
        for cols in PANELS + (cout,):
            got = torch.ops.mbv3.pwconv_bn_act(x, pack_pw_weight_panels(w, cols), b, "hardswish", res, scale)
            torch.testing.assert_close(got, want, rtol=0, atol=0, equal_nan=True,
                                       msg=f"{cpu_isa} {cin}->{cout} panels of {cols} r/s {res is not None}")
    if n and cpu_isa == BEST_ISA:
        x2 = torch.randn_like(x)
        check(x2, conv_w, bn, "hardswish", r, s, f"{cpu_isa} panels")  # K-major: against float64 ...
        got = torch.ops.mbv3.pwconv_bn_act(x2, pack_pw_weight_panels(w, 24), b, "hardswish", r, s)
        want = torch.ops.mbv3.pwconv_bn_act(x2, pack_pw_weight(w), b, "hardswish", r, s)
        assert torch.equal(got, want)  # ... and panels: the same bits


def test_panels_in_expand_dwconv_bitwise(cpu_isa):
    x = torch.randn(2, 24, 9, 11).contiguous(memory_format=torch.channels_last)
    ew, eb = torch.randn(72, 24) / 5, torch.randn(72)
    dw, db = torch.randn(72, 1, 3, 3), torch.randn(72)
    want = torch.ops.mbv3.expand_dwconv_bn_act(x, pack_pw_weight(ew), eb, "relu", dw, db, 2, 1, 1, "hardswish")
    for cols in (8, 24, 64):
        got = torch.ops.mbv3.expand_dwconv_bn_act(x, pack_pw_weight_panels(ew, cols), eb, "relu", dw, db, 2, 1, 1,
                                                  "hardswish")
        assert torch.equal(got, want), f"{cpu_isa} panels of {cols}"


def test_panels_opcheck():
    for n, cin, cout, h, w, cl in [(2, 17, 9, 7, 3, True), (1, 8, 33, 5, 5, False), (0, 4, 3, 3, 3, False)]:
        x, conv_w, bn, r, s = make_case(n, cin, cout, h, w, cl, True, True)
        wt, b = fold_bn(conv_w, bn)
        for cols in (1, 8, 24):
            torch.library.opcheck(torch.ops.mbv3.pwconv_bn_act.default,
                                  (x, pack_pw_weight_panels(wt, cols), b, "hardswish", r, s))


def test_panels_bad_inputs_raise_clear_errors():
    x, w, b = torch.randn(1, 9, 5, 5), torch.randn(20, 9), torch.randn(20)
    wp = pack_pw_weight_panels(w, 8)
    assert wp.shape == (3, 9, 8)
    shape_msg = r"packed in panels of P columns must be a contiguous \[ceil\(Cout / P\), Cin, P\]"
    for bad in (wp[:2], wp[:, :8], wp.transpose(0, 1).contiguous().transpose(0, 1), torch.randn(3, 9, 0),
                pack_pw_weight_panels(torch.randn(20, 8), 8)):
        with pytest.raises(ValueError, match=shape_msg):
            torch.ops.mbv3.pwconv_bn_act(x, bad, b, "relu")
    with pytest.raises(ValueError, match=r"Cout = 33 from bias"):
        torch.ops.mbv3.pwconv_bn_act(x, wp, torch.randn(33), "relu")  # 5 panels of 8, not 3
    with pytest.raises(ValueError, match=r"weight must have x's dtype \(bfloat16\), got float32"):
        torch.ops.mbv3.pwconv_bn_act(x.to(BF16), wp, b, "relu")
    with pytest.raises(ValueError, match=r"packed in panels of P columns must be"):
        torch.ops.mbv3.expand_dwconv_bn_act(x, wp[:2], b, "relu", torch.randn(20, 1, 3, 3), b, 1, 1, 1, "relu")


# -- errors ----------------------------------------------------------------------------------
def _args(**over):
    a = dict(x=torch.randn(2, 8, 6, 6), weight=torch.randn(5, 8, 1, 1), bias=torch.randn(5),
             activation="relu", residual=None, in_scale=None)
    a.update(over)
    return list(a.values())


@pytest.mark.parametrize("over,match", [
    (dict(x=torch.randn(2, 8, 6, 6).double()), "x must be float32"),
    (dict(x=torch.randint(0, 5, (2, 8, 6, 6))), "x must be float32"),
    (dict(x=torch.randn(2, 8, 6, 6).half()), "x must be float32"),
    (dict(x=torch.randn(8, 6, 6)), "4-D"),
    (dict(weight=torch.randn(5, 8, 1, 1, 1)), r"weight must be \[Cout, Cin, 1, 1\]"),
    (dict(weight=torch.randn(5, 7, 1, 1)), r"weight must be \[Cout, Cin, 1, 1\] or \[Cout, Cin\] with Cin = 8"),
    (dict(weight=torch.randn(5, 8, 3, 3)), r"weight must be \[Cout, Cin, 1, 1\]"),
    (dict(weight=torch.randn(5, 8, 1, 1).double()), "weight must be float32"),
    (dict(bias=torch.randn(6)), r"bias must be \[Cout\] with Cout = 5"),
    (dict(bias=torch.randn(5, 1)), r"bias must be \[Cout\]"),
    (dict(activation="gelu"), "unknown activation 'gelu'"),
    (dict(residual=torch.randn(2, 8, 6, 6)), r"residual must be \[N, Cout, H, W\] = \[2, 5, 6, 6\]"),
    (dict(residual=torch.randn(2, 5, 6)), r"residual must be \[N, Cout, H, W\]"),
    (dict(residual=torch.randn(2, 5, 6, 6).double()), "residual must be float32"),
    (dict(in_scale=torch.randn(1, 8)), r"in_scale must be \[N, Cin\] = \[2, 8\]"),
    (dict(in_scale=torch.randn(2, 8, 1, 1)), r"in_scale must be \[N, Cin\]"),
    (dict(in_scale=torch.randn(2, 8).half()), "in_scale must be float32"),
    (dict(weight=torch.randn(5, 8, 1, 1, device="meta")), "weight is on meta"),
    (dict(residual=torch.randn(2, 5, 6, 6, device="meta")), "residual is on meta"),
    (dict(in_scale=torch.randn(2, 8, device="meta")), "in_scale is on meta"),
])
def test_bad_inputs_raise_clear_errors(over, match):
    with pytest.raises((ValueError, RuntimeError), match=match):
        torch.ops.mbv3.pwconv_bn_act(*_args(**over))


def test_fake_kernel_checks_like_the_real_one():
    meta = lambda args: [a.to("meta") if isinstance(a, torch.Tensor) else a for a in args]  # noqa: E731
    for over in (dict(bias=torch.randn(9)), dict(activation="gelu"),
                 dict(residual=torch.randn(2, 4, 6, 6)), dict(in_scale=torch.randn(2, 7))):
        with pytest.raises(ValueError):
            torch.ops.mbv3.pwconv_bn_act(*meta(_args(**over)))
    out = torch.ops.mbv3.pwconv_bn_act(*meta(_args(
        x=torch.randn(2, 8, 6, 6).contiguous(memory_format=torch.channels_last),
        residual=torch.randn(2, 5, 6, 6), in_scale=torch.rand(2, 8))))
    assert out.shape == (2, 5, 6, 6) and out.device.type == "meta"
    assert out.is_contiguous(memory_format=torch.channels_last)


def test_python_wrapper_folds_bn():
    x, conv_w, bn, r, s = make_case(2, 12, 20, 10, 10, True, True, True)
    got = pwconv_bn_act(x, conv_w, bn=bn, activation="hardswish", residual=r, in_scale=s)
    assert_within_rule(got, reference(x, conv_w, bn, "hardswish", r, s, torch.float32),
                       reference(x, conv_w, bn, "hardswish", r, s), "wrapper")


# -- NEON, for real, under qemu ----------------------------------------------------------------
NEON_CASES = [  # (N, Cin, Cout, HW, act, residual, in_scale): row/column tails, panels, SE
    (1, 16, 16, 37, "none", True, False), (2, 7, 5, 6, "hardswish", False, True),
    (1, 72, 40, 23, "relu", False, False), (3, 33, 17, 5, "hardswish", True, True),
    (1, 1, 1, 1, "none", False, False), (1, 160, 61, 9, "hardswish", False, False),
    (2, 120, 26, 13, "none", True, True), (1, 3, 100, 11, "relu", True, False),
]


@neon_harness.requires_toolchain
@pytest.mark.parametrize("cpu", neon_harness.QEMU_CPUS)
def test_neon_under_qemu(cpu):
    cases, expected = neon_harness.CaseFile(), []
    for n, cin, cout, hw, act, res, scale in NEON_CASES:
        x, conv_w, bn, r, s = make_case(n, cin, cout, hw, 1, False, res, scale)
        wf, bf = fold_bn(conv_w, bn)
        cases.i64(n, cin, cout, hw, ACT_CODE[act], int(res), int(scale))
        cases.floats(x.permute(0, 2, 3, 1))
        cases.floats(wf.reshape(cout, cin).t())
        cases.floats(bf)
        if res:
            cases.floats(r.permute(0, 2, 3, 1))
        if scale:
            cases.floats(s)
        cases.count += 1
        expected.append(((n, hw, 1, cout), reference(x, conv_w, bn, act, r, s),
                         reference(x, conv_w, bn, act, r, s, torch.float32), (n, cin, cout, hw, act)))
    flat = neon_harness.run("pwconv_bn_act", cases, cpu)
    # The same weights packed in panels of 12 columns (pack_pw_weight_panels' layout): the same bits.
    assert torch.equal(neon_harness.run("pwconv_bn_act", cases, cpu, mode="panels"), flat)
    offset = 0
    for shape, ref64, ref32, what in expected:
        size = shape[0] * shape[1] * shape[2] * shape[3]
        got = flat[offset:offset + size].reshape(shape).permute(0, 3, 1, 2)
        offset += size
        assert_within_rule(got, ref32, ref64, f"neon {cpu} {what}")
    assert offset == flat.numel()


# -- bfloat16 ------------------------------------------------------------------------------------
BF16 = torch.bfloat16


LAYOUTS = ("plain", "kmajor", "pairs")  # [Cout, Cin, 1, 1]; pack_pw_weight; pack_weight_k_pairs


def bf16_weight(w, layout):
    wb = w.to(BF16)
    return {"plain": wb, "kmajor": pack_pw_weight(wb), "pairs": pack_weight_k_pairs(w)}[layout]


def terms_magnitude(x, w, b, in_scale=None, residual=None):
    """Per output, the float64 sum of the absolute terms it is summed from (the bf16 floor of
    tests/tolerance.py): |x * in_scale| . |w| + |b| (+ |residual|)."""
    xs = x.double() * (1 if in_scale is None else in_scale.double()[:, :, None, None])
    m = F.conv2d(xs.abs(), w.double().reshape(w.shape[0], -1, 1, 1).abs()) + b.double().abs()[:, None, None]
    return m if residual is None else m + residual.double().abs()


def check_bf16(x, conv_w, bn, act, residual, in_scale, what, layout="plain"):
    """bf16 x, residual and folded weight (bias and in_scale float32): the tolerance rule against
    PyTorch's own bf16 computation.  The widening kernels (every path but the dot-product
    kernel, which reads K pairs under avx512_bf16): also bit equality with the float32 kernel
    on the same values (rows scaled in float32 first, as they do) rounded once on store."""
    w, b = fold_bn(conv_w, bn)
    wb = w.to(BF16)
    xb = x.to(BF16)
    rb = None if residual is None else residual.to(BF16)
    ours = torch.ops.mbv3.pwconv_bn_act(xb, bf16_weight(w, layout), b, act, rb, in_scale)
    assert ours.dtype == BF16
    sb = None if in_scale is None else in_scale.to(BF16)
    ref64 = reference(bf16_values(x), conv_w, bn, act, residual if rb is None else rb.float(),
                      in_scale)
    ref_bf16 = reference(xb, conv_w, bn, act, rb, sb, BF16)
    magnitude = terms_magnitude(bf16_values(x), w, b, in_scale, None if rb is None else rb.float())
    assert_within_rule(ours, ref_bf16, ref64, f"{what} {layout}", magnitude)
    if not (layout == "pairs" and cpu_isa_reads_k_pairs()):
        xs = xb.float() if in_scale is None else xb.float() * in_scale[:, :, None, None]
        f32 = torch.ops.mbv3.pwconv_bn_act(xs, wb.float(), b, act, None if rb is None else rb.float())
        assert torch.equal(ours, f32.to(BF16)), what
    cl_in = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    assert ours.is_contiguous(memory_format=torch.channels_last if cl_in else torch.contiguous_format)


@pytest.mark.parametrize("cfg", MBV3_LAYERS, ids=lambda c: "{}to{}_{}x{}_{}_r{:d}".format(*c))
def test_bf16_mobilenet_v3_layers(cfg, cpu_isa_bf16):
    isa = cpu_isa_bf16
    cin, cout, h, w, act, res = cfg
    if isa not in (BEST_ISA, "avx512_bf16"):
        h, w = min(h, 28), min(w, 28)  # full maps on the best paths
    scale = act == "none" and cin > cout
    x, conv_w, bn, r, s = make_case(1, cin, cout, h, w, True, res, scale)
    # The layout the model keeps on this path.
    check_bf16(x, conv_w, bn, act, r, s, f"bf16 {isa} {cfg}", "pairs" if cpu_isa_reads_k_pairs() else "kmajor")


@pytest.mark.parametrize("cin,cout,n", ODD[::2], ids=lambda v: str(v))
def test_bf16_odd_shapes(cin, cout, n, cpu_isa_bf16):
    for i, (h, w) in enumerate(HW):
        act = ("hardswish", "relu", "none")[(i + cin + cout) % 3]
        combos = ((False, False, False), (True, True, False), (True, False, True), (False, True, True))
        for j, (cl, res, scale) in enumerate(combos[i % 2::2]):
            x, conv_w, bn, r, s = make_case(n, cin, cout, h, w, cl, res, scale)
            check_bf16(x, conv_w, bn, act, r, s, f"bf16 {cpu_isa_bf16} N{n} {cin}->{cout} {h}x{w} {act} r{res} s{scale}",
                       LAYOUTS[(i + j) % 3])


def test_bf16_k_pairs_at_every_tile_edge(cpu_isa_bf16):
    """The dot-product kernel's edges: odd and even K (the last pair half empty), column tails
    of every width around the 16-lane vectors and 4-vector panels, row tails of every tile
    height (rows 1..13, as M = H*W); with the other paths, the unpacking of K pairs."""
    for cin in (1, 2, 3, 7, 16, 17, 33, 64, 65):
        for cout in (1, 7, 8, 9, 15, 16, 17, 24, 33, 40, 48, 63, 64, 65, 72, 80, 97):
            rows = 1 + (cin * 7 + cout) % 13
            act = ("hardswish", "relu", "none")[(cin + cout) % 3]
            res, scale = (cin + cout) % 2 == 0, cout % 3 == 0
            x, conv_w, bn, r, s = make_case(1, cin, cout, 1, rows, True, res, scale)
            check_bf16(x, conv_w, bn, act, r, s, f"bf16 {cpu_isa_bf16} {cin}->{cout} M{rows}", "pairs")


def test_bf16_column_tail_bits_do_not_depend_on_the_width(cpu_isa_bf16):
    """A column tail of at most 8 runs on half-width vectors where the CPU has them (AVX512_BF16):
    each output must keep the bits it has when its columns sit in a full vector (the same weight
    with columns appended up to a multiple of 16), NaN and inf included."""
    for cout in (1, 7, 8, 9, 24, 25, 40, 72, 120, 200):
        wide = (cout + 15) // 16 * 16 + 16
        for cin in (1, 3, 16, 17, 65, 160):
            rows = (1 + (cin + cout) % 13, 49)[cout % 2]
            act = ("hardswish", "relu", "none")[(cin + cout) % 3]
            x = torch.randn(1, cin, 1, rows).to(memory_format=torch.channels_last)
            x[0, cin // 2, 0, rows // 2] = (float("nan"), float("inf"))[cin % 2]
            w, b = torch.randn(wide, cin) / cin ** 0.5, torch.randn(wide)
            r = torch.randn(1, wide, 1, rows).to(memory_format=torch.channels_last) if cin % 3 else None
            s = torch.rand(1, cin) if cin % 2 else None
            xb, wp = x.to(BF16), pack_weight_k_pairs(w)
            full = torch.ops.mbv3.pwconv_bn_act(xb, wp, b, act, None if r is None else r.to(BF16), s)
            part = torch.ops.mbv3.pwconv_bn_act(xb, pack_weight_k_pairs(w[:cout]), b[:cout], act,
                                                None if r is None else r[:, :cout].to(BF16), s)
            assert torch.equal(part.view(torch.int16), full[:, :cout].contiguous(
                memory_format=torch.channels_last).view(torch.int16)), f"{cpu_isa_bf16} {cin}->{cout} M{rows}"


def test_bf16_wide_deep_and_strided(cpu_isa_bf16):
    for layout in LAYOUTS:
        for cin, cout, n, hw in ((200, 100, 2, (9, 7)), (96, 49, 3, (5, 5)), (960, 160, 1, (7, 7))):
            x, conv_w, bn, r, s = make_case(n, cin, cout, *hw, True, True, True)
            check_bf16(x, conv_w, bn, "hardswish", r, s, f"bf16 {cpu_isa_bf16} {cin}->{cout}", layout)
        base = torch.randn(2, 40, 12, 10)
        x = base[:, 3:36, 1:-2, ::2]
        _, conv_w, bn, _, _ = make_case(1, x.shape[1], 24, 1, 1)
        check_bf16(x, conv_w, bn, "relu", torch.randn(2, 48, *x.shape[2:])[:, ::2], torch.rand(2, 66)[:, ::2],
                   f"bf16 {cpu_isa_bf16} strided", layout)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_bf16_threads_do_not_change_the_result(cpu_isa_bf16, layout):
    for n, cin, cout, hw in ((3, 72, 40, (29, 31)), (1, 960, 160, (7, 7)), (1, 33, 70, (9, 9))):
        x, conv_w, bn, r, s = make_case(n, cin, cout, *hw, True, True, True)
        w, b = fold_bn(conv_w, bn)
        args = (x.to(BF16), bf16_weight(w, layout), b, "hardswish", r.to(BF16), s)
        before = torch.get_num_threads()
        try:
            outs = []
            for t in (1, 2, 3):
                torch.set_num_threads(t)
                outs.append(torch.ops.mbv3.pwconv_bn_act(*args))
        finally:
            torch.set_num_threads(before)
        for o in outs[1:]:
            assert torch.equal(o, outs[0])


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")], ids=["nan", "+inf", "-inf"])
@pytest.mark.parametrize("act", ["hardswish", "relu", "none"])
@pytest.mark.parametrize("layout", ["kmajor", "pairs"])
def test_bf16_non_finite_input(value, act, layout, cpu_isa_bf16):
    x, conv_w, bn, r, s = make_case(2, 19, 21, 3, 4, True, True, True)
    x[1, 4, 2, 1] = value
    w, b = fold_bn(conv_w, bn)
    ours = torch.ops.mbv3.pwconv_bn_act(x.to(BF16), bf16_weight(w, layout), b, act, r.to(BF16), s).double()
    xs = bf16_values(x).double() * s.double()[:, :, None, None]
    ref = ACT_FN[act](F.conv2d(xs, w.to(BF16).double(), b.double())) + bf16_values(r).double()
    assert torch.equal(ours.isnan(), ref.isnan())
    assert torch.equal(ours.isposinf(), ref.isposinf()) and torch.equal(ours.isneginf(), ref.isneginf())


def test_bf16_bad_dtypes_raise_clear_errors():
    x, w, b = torch.randn(1, 8, 5, 5, dtype=BF16), torch.randn(4, 8), torch.randn(4)
    with pytest.raises(ValueError, match=r"weight must have x's dtype \(bfloat16\), got float32"):
        torch.ops.mbv3.pwconv_bn_act(x, w, b, "relu")
    with pytest.raises(ValueError, match=r"residual must have x's dtype \(bfloat16\), got float32"):
        torch.ops.mbv3.pwconv_bn_act(x, w.to(BF16), b, "relu", torch.randn(1, 4, 5, 5))
    with pytest.raises(ValueError, match="float32 or bfloat16 on the CPU, got Half"):
        torch.ops.mbv3.pwconv_bn_act(x.half(), w.half(), b, "relu")


def test_k_pairs_bad_inputs_raise_clear_errors():
    x, w, b = torch.randn(1, 9, 5, 5, dtype=BF16), torch.randn(20, 9), torch.randn(20)
    wp = pack_weight_k_pairs(w)
    assert wp.shape == (5, 32, 2) and wp.dtype == BF16
    with pytest.raises(ValueError, match=r"packed in panels of P columns must be"):  # float32 3-D: panels
        torch.ops.mbv3.pwconv_bn_act(x.float(), wp.float(), b, "relu")
    with pytest.raises(ValueError, match=r"\(3-D: packed in K pairs or panels, which only the CPU takes"):
        torch.ops.mbv3.pwconv_bn_act(x.to(device="meta"), wp.to(device="meta"), b.to(device="meta"), "relu")
    for bad in (wp[:4], wp[:, :16], wp.transpose(0, 1).contiguous().transpose(0, 1), torch.cat([wp, wp], 2)):
        with pytest.raises(ValueError, match=r"must be a contiguous \[ceil\(Cin / 2\), Cout rounded up to 16, 2\]"):
            torch.ops.mbv3.pwconv_bn_act(x, bad, b, "relu")
    with pytest.raises(ValueError, match=r"packed in K pairs must be .* Cout = 33 from bias"):
        torch.ops.mbv3.pwconv_bn_act(x, wp, torch.randn(33), "relu")  # 48 columns, not 32
    with pytest.raises(ValueError, match=r"bias must be 1-D"):
        torch.ops.mbv3.pwconv_bn_act(x, wp, b[None], "relu")


@pytest.mark.parametrize("optional", ["none", "both"])
def test_bf16_opcheck(optional):
    for n, cin, cout, h, w, cl in [(2, 17, 9, 7, 3, True), (0, 4, 3, 3, 3, False)]:
        x, conv_w, bn, r, s = make_case(n, cin, cout, h, w, cl, optional == "both", optional == "both")
        wt, b = fold_bn(conv_w, bn)
        for w in (wt.to(BF16), pack_weight_k_pairs(wt)):
            args = (x.to(BF16), w, b, "hardswish", None if r is None else r.to(BF16), s)
            torch.library.opcheck(torch.ops.mbv3.pwconv_bn_act.default, args)


def check_neon_bf16(neon_cases, cpu, mode):
    """neon_cases (NEON_CASES rows) through the NEON harness's bf16 kernel `mode` under qemu's
    `cpu`, each output against the tolerance rule."""
    cases, expected = neon_harness.CaseFile(), []
    for n, cin, cout, hw, act, res, scale in neon_cases:
        x, conv_w, bn, r, s = make_case(n, cin, cout, hw, 1, False, res, scale)
        wf, bf = fold_bn(conv_w, bn)
        xv, wv = bf16_values(x), bf16_values(wf)
        rv = None if r is None else bf16_values(r)
        cases.i64(n, cin, cout, hw, ACT_CODE[act], int(res), int(scale))
        cases.floats(xv.permute(0, 2, 3, 1))
        cases.floats(wv.reshape(cout, cin).t())
        cases.floats(bf)
        if res:
            cases.floats(rv.permute(0, 2, 3, 1))
        if scale:
            cases.floats(s)
        cases.count += 1
        sb = None if s is None else s.to(BF16)
        expected.append(((n, hw, 1, cout), reference(xv, conv_w, bn, act, rv, s),
                         reference(x, conv_w, bn, act, None if r is None else r.to(BF16), sb, BF16),
                         terms_magnitude(xv, wf, bf, s, rv), (n, cin, cout, hw, act)))
    flat = neon_harness.run("pwconv_bn_act", cases, cpu, mode=mode)
    offset = 0
    for shape, ref64, ref_bf16, magnitude, what in expected:
        size = shape[0] * shape[1] * shape[2] * shape[3]
        got = flat[offset:offset + size].reshape(shape).permute(0, 3, 1, 2).to(BF16)
        offset += size
        assert_within_rule(got, ref_bf16, ref64, f"neon {mode} {cpu} {what}", magnitude)
    assert offset == flat.numel()


@neon_harness.requires_toolchain
def test_bf16_neon_under_qemu():
    check_neon_bf16(NEON_CASES, neon_harness.QEMU_CPUS[-1], "bf16")


@neon_harness.requires_toolchain
def test_bf16_k_pairs_neon_bfdot_under_qemu():
    """The BFDOT kernel (neon_bf16) on K-pair weights, under qemu's max CPU (FEAT_BF16): the
    NEON cases plus odd K and column tails around the 4-lane vectors and 16-column panels."""
    extra = [(1, 3, 5, 7, "relu", False, False), (2, 17, 33, 3, "hardswish", True, True),
             (1, 65, 80, 13, "none", True, False), (1, 33, 20, 9, "hardswish", False, True)]
    check_neon_bf16(NEON_CASES + extra, neon_harness.QEMU_BF16_CPU, "k_pairs")
    # The kernel really is BFDOT: Cortex-A76 (no FEAT_BF16) faults on it.
    one = neon_harness.CaseFile()
    one.i64(1, 3, 5, 2, 0, 0, 0)
    for t in (torch.randn(2, 3), torch.randn(3, 5), torch.randn(5)):
        one.floats(bf16_values(t))
    one.count += 1
    with pytest.raises(subprocess.CalledProcessError):
        neon_harness.run("pwconv_bn_act", one, "cortex-a76", mode="k_pairs")


@neon_harness.requires_toolchain
def test_bf16_k_pairs_neon_bfdot_nonfinite_under_qemu():
    """Non-finite x through BFDOT, as float64 conv gives it: a NaN reaches exactly its pixel's
    outputs (in channel 0, so the pixel before it would show it if its odd K's last pair read
    past the row instead of a zero high half); an inf in that last channel gives +-inf by the
    weight's sign, and NaN where two infs of opposite sign meet."""
    n, cin, cout, hw = 2, 17, 20, 3
    x = bf16_values(torch.randn(n, cin, hw, hw))
    x[0, 0, 1, 2] = float("nan")
    x[1, cin - 1, 0, 0] = float("inf")
    x[1, cin - 1, 2, 1], x[1, 3, 2, 1] = float("inf"), float("-inf")
    w, b = bf16_values(torch.randn(cout, cin)), torch.randn(cout)
    cases = neon_harness.CaseFile()
    cases.i64(n, cin, cout, hw * hw, ACT_CODE["none"], 0, 0)  # HW: pixels per sample
    cases.floats(x.permute(0, 2, 3, 1))
    cases.floats(w.t())
    cases.floats(b)
    cases.count += 1
    got = neon_harness.run("pwconv_bn_act", cases, neon_harness.QEMU_BF16_CPU, mode="k_pairs")
    got = got.reshape(n, hw, hw, cout).permute(0, 3, 1, 2)
    ref = F.conv2d(x.double(), w.double()[:, :, None, None], b.double())
    assert ref.isnan().any() and ref.isinf().any()
    assert torch.equal(got.isnan(), ref.isnan()), "NaN positions differ"
    assert torch.equal(got.isinf(), ref.isinf()) and torch.equal(got[got.isinf()], ref[ref.isinf()].float())
    fin = ref.isfinite()
    assert got[fin].isfinite().all()
