"""mbv3::conv_bn_act on the CPU: every path (ISA), layout and shape against float64; float32 and
bfloat16 (x and the folded weight bf16, bias float32 or bf16, the output bf16)."""
import itertools
import subprocess

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import mbv3_fast
import neon_harness
from mbv3_fast.ops import conv_bn_act, fold_bn, pack_conv_weight
from mbv3_fast.testing import VARIANTS, stem_layers
from layers import ACT_CODE, ACT_FN, random_bn
from tolerance import assert_within_rule, bf16_values


def make_case(n, cin, cout, h, w, k, layout="nchw", dtype=torch.float32):
    """layout: nchw (contiguous), nhwc (channels_last), or a non-contiguous view of either.
    dtype: x's (a bf16 view is a view of a bf16 buffer); the conv weight and BN stay float32."""
    if layout == "nchw":
        x = torch.randn(n, cin, h, w, dtype=dtype)
    elif layout == "nhwc":
        x = torch.randn(n, cin, h, w, dtype=dtype).contiguous(memory_format=torch.channels_last)
    elif layout == "nchw_view":  # every dim strided: a crop of a bigger NCHW tensor, every 2nd column
        x = torch.randn(n, cin + 2, h + 3, 2 * w + 1, dtype=dtype)[:, 1:cin + 1, 2:h + 2, 1::2]
    elif layout == "nhwc_view":  # channel slice of a channels_last tensor
        x = torch.randn(n, h, w, cin + 3, dtype=dtype).permute(0, 3, 1, 2)[:, 2:cin + 2]
    else:
        raise AssertionError(layout)
    return x, torch.randn(cout, cin, k, k) * (1.5 / (k * cin ** 0.5)), random_bn(cout)


def reference(x, conv_w, bn, stride, padding, act, dtype=torch.float64):
    """conv2d -> batch_norm(eval) -> activation, the unfused PyTorch path, in dtype."""
    y = F.conv2d(x.to(dtype), conv_w.to(dtype), None, stride, padding)
    y = F.batch_norm(y, bn.running_mean.to(dtype), bn.running_var.to(dtype), bn.weight.to(dtype),
                     bn.bias.to(dtype), False, 0.0, bn.eps)
    return ACT_FN[act](y)


def nhwc_strides(n, c, h, w):
    return (h * w * c, 1, w * c, c)


def check(x, conv_w, bn, stride, padding, act, what, weight=None):
    w, b = fold_bn(conv_w, bn)
    ours = torch.ops.mbv3.conv_bn_act(x, w if weight is None else weight, b, stride, padding, act)
    ref64 = reference(x, conv_w, bn, stride, padding, act)
    ref32 = reference(x, conv_w, bn, stride, padding, act, torch.float32)
    assert_within_rule(ours, ref32, ref64, what)
    # The output is always channels_last, whatever x's layout: check the strides themselves
    # (is_contiguous(channels_last) also holds for NCHW tensors with C == 1 or H == W == 1).
    assert ours.stride() == nhwc_strides(*ours.shape), f"{what}: strides {ours.stride()}"
    return ours


def valid(h, w, k, p):
    return h + 2 * p >= k and w + 2 * p >= k


# -- MobileNetV3's own stems, enumerated by torchvision ------------------------------------------
STEMS = sorted({cfg for v in VARIANTS for cfg in stem_layers(v)})


@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
@pytest.mark.parametrize("n", [1, 2])
@pytest.mark.parametrize("cfg", STEMS, ids=lambda c: "Cin{}_Cout{}_{}x{}_k{}s{}p{}_{}".format(*c))
def test_mobilenet_v3_stem(cfg, n, layout, cpu_isa):
    cin, cout, h, w, k, s, p, act = cfg
    x, conv_w, bn = make_case(n, cin, cout, h, w, k, layout)
    check(x, conv_w, bn, s, p, act, f"{cpu_isa} N{n} {layout} {cfg}")


def test_stem_is_what_the_model_uses():
    assert STEMS == [(3, 16, 224, 224, 3, 2, 1, "hardswish")]


# -- deliberately odd shapes ------------------------------------------------------------------------
LAYOUTS = ["nchw", "nhwc", "nchw_view", "nhwc_view"]


@pytest.mark.parametrize("hw", [(1, 1), (2, 3), (7, 5), (13, 11)], ids=lambda v: f"{v[0]}x{v[1]}")
@pytest.mark.parametrize("cout", [1, 7, 16, 17, 33])
@pytest.mark.parametrize("cin", [1, 3, 4])
def test_odd_shapes(cin, cout, hw, cpu_isa):
    h, w = hw
    i = 0
    for k, s in itertools.product((1, 3, 5, 7), (1, 2, 3)):
        p = (k // 2 + i) % 4  # padding 0..3, cycled
        if not valid(h, w, k, p):
            p = k // 2 + (i % 2)
        n, layout, act = (0, 1, 3)[i % 3], LAYOUTS[i % 4], ("hardswish", "relu", "none")[i % 3]
        x, conv_w, bn = make_case(n, cin, cout, h, w, k, layout)
        check(x, conv_w, bn, s, p, act, f"{cpu_isa} N{n} Cin{cin} Cout{cout} {h}x{w} k{k}s{s}p{p} {layout} {act}")
        i += 1


@pytest.mark.parametrize("k", [1, 3, 5, 7])
@pytest.mark.parametrize("s", [1, 2, 3])
def test_wide_rows_every_padding(k, s, cpu_isa):
    # Rows wide enough for several interior tiles (14 pixels on AVX-512), the moved-back last
    # tile and both borders; every padding 0..3 and every layout (compile-time and run-time
    # column offsets).
    for p, layout in zip(range(4), LAYOUTS):
        for cin, cout, act in ((3, 16, "hardswish"), (4, 33, "relu"), (1, 7, "none")):
            x, conv_w, bn = make_case(2, cin, cout, 9, 61, k, layout)
            check(x, conv_w, bn, s, p, act, f"{cpu_isa} Cin{cin} Cout{cout} k{k}s{s}p{p} {layout} {act}")


@pytest.mark.parametrize("cout", [8, 24, 32, 40, 48, 64, 65])
def test_channel_tiles(cout, cpu_isa):
    """Cout over several vector groups (AVX2 / NEON tiles of 2 and 4 vectors, masked tails)."""
    x, conv_w, bn = make_case(1, 3, cout, 11, 37, 3)
    check(x, conv_w, bn, 2, 1, "hardswish", f"{cpu_isa} Cout{cout}")


def test_non_contiguous_inputs(cpu_isa):
    base = torch.randn(2, 6, 30, 34)
    cl = base.contiguous(memory_format=torch.channels_last)
    for x in (base[:, 1:4, 1:-2, ::2], cl[:, 2:5], cl[..., 3:], base[:, :3].transpose(2, 3),
              torch.randn(1, 3, 1, 1).expand(2, 3, 20, 31)):
        assert not x.is_contiguous() and not x.is_contiguous(memory_format=torch.channels_last)
        cin = x.shape[1]
        conv_w, bn = torch.randn(16, cin, 3, 3) * 0.3, random_bn(16)
        check(x, conv_w, bn, 2, 1, "hardswish", f"{cpu_isa} strided {tuple(x.stride())}")
    # Weight and bias given as strided views too.
    x, conv_w, bn = make_case(1, 3, 16, 19, 23, 5)
    w, b = fold_bn(conv_w, bn)
    w_strided = torch.randn(16, 6, 5, 5)[:, ::2].copy_(w)
    b_strided = torch.randn(32)[::2].copy_(b)
    got = torch.ops.mbv3.conv_bn_act(x, w_strided, b_strided, 2, 2, "relu")
    torch.testing.assert_close(got, torch.ops.mbv3.conv_bn_act(x, w, b, 2, 2, "relu"), rtol=0, atol=0)


def test_prepacked_weight_view_is_equivalent(cpu_isa):
    """pack_weight's layout ([k,k,Cin,Cout] buffer viewed as [Cout,Cin,k,k]) gives the same
    result, read in place."""
    x, conv_w, bn = make_case(2, 3, 16, 40, 36, 3)
    w, b = fold_bn(conv_w, bn)
    packed = pack_conv_weight(w)
    assert packed.shape == w.shape and packed.stride() == (1, 16, 3 * 3 * 16, 3 * 16)
    torch.testing.assert_close(torch.ops.mbv3.conv_bn_act(x, packed, b, 2, 1, "hardswish"),
                               torch.ops.mbv3.conv_bn_act(x, w, b, 2, 1, "hardswish"), rtol=0, atol=0)
    check(x, conv_w, bn, 2, 1, "hardswish", f"{cpu_isa} packed", weight=packed)


def test_every_output_element_written(cpu_isa):
    """Outputs come from poisoned (NaN-filled) buffers; a skipped element would stay NaN."""
    torch.ops.mbv3._debug_poison_outputs(True)
    try:
        for cin, cout, (h, w), k, s, p in [(3, 16, (7, 5), 3, 2, 1), (1, 17, (1, 1), 5, 1, 2),
                                           (4, 33, (13, 45), 3, 1, 1), (3, 7, (21, 50), 7, 3, 3),
                                           (3, 16, (30, 60), 3, 2, 0)]:
            for layout in LAYOUTS:
                x, conv_w, bn = make_case(2, cin, cout, h, w, k, layout)
                check(x, conv_w, bn, s, p, "relu", f"poisoned Cin{cin} Cout{cout} {h}x{w} {layout}")
    finally:
        torch.ops.mbv3._debug_poison_outputs(False)


def test_threads_do_not_change_the_result():
    x, conv_w, bn = make_case(3, 3, 16, 64, 58, 3)
    w, b = fold_bn(conv_w, bn)
    before = torch.get_num_threads()
    try:
        outs = []
        for t in (1, 2, 3):
            torch.set_num_threads(t)
            outs.append(torch.ops.mbv3.conv_bn_act(x, w, b, 2, 1, "hardswish"))
    finally:
        torch.set_num_threads(before)
    for o in outs[1:]:
        assert torch.equal(o, outs[0])


def test_opcheck():
    for n, cin, cout, h, w, k, s, layout in [(2, 3, 16, 9, 7, 3, 2, "nchw"), (1, 4, 8, 5, 5, 5, 1, "nhwc"),
                                             (0, 3, 4, 3, 3, 3, 1, "nchw"), (1, 1, 3, 1, 1, 1, 1, "nchw"),
                                             (2, 3, 1, 5, 4, 3, 1, "nhwc")]:
        x, conv_w, bn = make_case(n, cin, cout, h, w, k, layout)
        wt, b = fold_bn(conv_w, bn)
        torch.library.opcheck(torch.ops.mbv3.conv_bn_act.default, (x, wt, b, s, k // 2, "hardswish"))


def test_compile_and_export():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            w, self.b = fold_bn(torch.randn(16, 3, 3, 3), random_bn(16))
            self.w = pack_conv_weight(w)

        def forward(self, x):
            return torch.ops.mbv3.conv_bn_act(x, self.w, self.b, 2, 1, "hardswish") * 2

    m, x = M(), torch.randn(1, 3, 20, 22)
    expected = m(x)
    torch.testing.assert_close(torch.compile(m, fullgraph=True)(x), expected)
    ep = torch.export.export(m, (x,))
    assert any("conv_bn_act" in str(n.target) for n in ep.graph.nodes)
    torch.testing.assert_close(ep.module()(x), expected)


# -- errors ------------------------------------------------------------------------------------------
def _args(**over):
    a = dict(x=torch.randn(1, 3, 6, 6), weight=torch.randn(8, 3, 3, 3), bias=torch.randn(8),
             stride=1, padding=1, activation="relu")
    a.update(over)
    return list(a.values())


@pytest.mark.parametrize("over,match", [
    (dict(x=torch.randn(1, 3, 6, 6).double()), "x must be float32"),
    (dict(x=torch.randint(0, 5, (1, 3, 6, 6))), "x must be float32"),
    (dict(x=torch.randn(1, 3, 6, 6).half()), "x must be float32"),
    (dict(x=torch.randn(3, 6, 6)), "4-D"),
    (dict(weight=torch.randn(8, 3, 3)), r"weight must be \[Cout, Cin, k, k\]"),
    (dict(weight=torch.randn(8, 4, 3, 3)), r"weight must be \[Cout, Cin, k, k\] with Cin = 3"),
    (dict(weight=torch.randn(8, 3, 3, 5)), r"weight must be \[Cout, Cin, k, k\]"),
    (dict(weight=torch.randn(8, 3, 3, 3).double()), "weight must be float32"),
    (dict(weight=torch.randn(8, 3, 4, 4)), "kernel size must be odd"),
    (dict(weight=torch.randn(8, 3, 9, 9), padding=4), "kernel size must be odd and <= 7"),
    (dict(bias=torch.randn(9)), r"bias must be \[Cout\]"),
    (dict(bias=torch.randn(8, 1)), r"bias must be \[Cout\]"),
    (dict(stride=0), "stride must be >= 1"),
    (dict(padding=-1), "padding must be >= 0"),
    (dict(activation="gelu"), "unknown activation 'gelu'"),
    (dict(x=torch.randn(1, 3, 2, 2), padding=0), "smaller than the kernel"),
    (dict(weight=torch.randn(8, 3, 3, 3, device="meta")), "weight is on meta"),
])
def test_bad_inputs_raise_clear_errors(over, match):
    with pytest.raises((ValueError, RuntimeError), match=match):
        torch.ops.mbv3.conv_bn_act(*_args(**over))


def test_fake_kernel_checks_like_the_real_one():
    for over in (dict(bias=torch.randn(9)), dict(activation="gelu"), dict(stride=0),
                 dict(weight=torch.randn(8, 3, 4, 4))):
        args = [a.to("meta") if isinstance(a, torch.Tensor) else a for a in _args(**over)]
        with pytest.raises(ValueError):
            torch.ops.mbv3.conv_bn_act(*args)
    out = torch.ops.mbv3.conv_bn_act(*[a.to("meta") if isinstance(a, torch.Tensor) else a
                                       for a in _args(stride=2)])
    assert out.shape == (1, 8, 3, 3) and out.device.type == "meta"
    assert out.stride() == nhwc_strides(1, 8, 3, 3)
    # Ambiguous shapes (Cout == 1, 1x1 output) get channels_last strides too, like the real op.
    for shape_x, shape_w, pad in (((2, 3, 4, 5), (1, 3, 3, 3), 1), ((1, 3, 3, 3), (4, 3, 3, 3), 0)):
        args = (torch.randn(shape_x), torch.randn(shape_w), torch.randn(shape_w[0]), 1, pad, "relu")
        real = torch.ops.mbv3.conv_bn_act(*args)
        fake = torch.ops.mbv3.conv_bn_act(*[a.to("meta") if isinstance(a, torch.Tensor) else a for a in args])
        assert fake.stride() == real.stride() == nhwc_strides(*real.shape)


def test_python_wrapper_folds_bn():
    x, conv_w, bn = make_case(2, 3, 16, 10, 12, 3)
    got = conv_bn_act(x, conv_w, bn=bn, stride=2, activation="hardswish")
    assert_within_rule(got, reference(x, conv_w, bn, 2, 1, "hardswish", torch.float32),
                       reference(x, conv_w, bn, 2, 1, "hardswish"), "wrapper")
    assert got.stride() == nhwc_strides(*got.shape)


# -- NEON, for real, under qemu ----------------------------------------------------------------------
NEON_CASES = [  # (N, Cin, Cout, H, W, k, stride, pad, act, layout): tails, borders, tiles, views
    (1, 3, 16, 33, 40, 3, 2, 1, "hardswish", "nchw"), (2, 3, 16, 9, 37, 3, 1, 1, "relu", "nhwc"),
    (1, 4, 33, 7, 5, 5, 2, 2, "none", "nchw_view"), (1, 1, 7, 1, 1, 3, 1, 1, "hardswish", "nchw"),
    (1, 3, 17, 13, 50, 7, 3, 3, "relu", "nhwc_view"), (3, 3, 1, 2, 3, 1, 1, 0, "hardswish", "nchw"),
    (1, 3, 40, 6, 31, 3, 2, 0, "hardswish", "nchw"), (1, 2, 64, 5, 29, 3, 1, 1, "relu", "nhwc"),
]


@neon_harness.requires_toolchain
@pytest.mark.parametrize("cpu", neon_harness.QEMU_CPUS)
def test_neon_under_qemu(cpu):
    cases, expected = neon_harness.CaseFile(), []
    for n, cin, cout, h, w, k, s, p, act, layout in NEON_CASES:
        x, conv_w, bn = make_case(n, cin, cout, h, w, k, layout)
        wf, bf = fold_bn(conv_w, bn)
        oh, ow = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
        # x's whole storage goes over, read through x's own strides from its offset.
        base = x.as_strided((x.untyped_storage().nbytes() // 4,), (1,), 0)
        cases.i64(n, cin, h, w, cout, oh, ow, k, s, p, ACT_CODE[act], *x.stride(),
                  base.numel() - x.storage_offset())
        cases.floats(base[x.storage_offset():])
        cases.floats(wf.permute(2, 3, 1, 0))
        cases.floats(bf)
        cases.count += 1
        expected.append(((n, oh, ow, cout), reference(x, conv_w, bn, s, p, act),
                         reference(x, conv_w, bn, s, p, act, torch.float32), (n, cin, cout, h, w, k, s, act, layout)))
    flat = neon_harness.run("conv_bn_act", cases, cpu)
    offset = 0
    for shape, ref64, ref32, what in expected:
        size = shape[0] * shape[1] * shape[2] * shape[3]
        got = flat[offset:offset + size].reshape(shape).permute(0, 3, 1, 2)
        offset += size
        assert_within_rule(got, ref32, ref64, f"neon {cpu} {what}")
    assert offset == flat.numel()


# -- int arguments: range-checked (2**33 used to truncate to 0 in the binding: SIGFPE) ----------------
@pytest.mark.parametrize("device", ["cpu", "meta"])
@pytest.mark.parametrize("name,value,match", [
    ("stride", 0, "stride must be >= 1, got 0"),
    ("stride", -3, "stride must be >= 1, got -3"),
    ("stride", 2**33, f"stride must be <= 65536, got {2**33}"),
    ("stride", 2**62, "stride must be <= 65536"),
    ("padding", -1, "padding must be >= 0"),
    ("padding", -2**33, "padding must be >= 0"),
    ("padding", 2**33, "padding must be <= 65536"),
    ("padding", 65537, "padding must be <= 65536"),
])
def test_int_arguments_out_of_range(device, name, value, match):
    args = dict(zip(["x", "weight", "bias", "stride", "padding", "activation"], _args()))
    args[name] = value
    args = [a.to(device) if isinstance(a, torch.Tensor) else a for a in args.values()]
    with pytest.raises(ValueError, match=match):
        torch.ops.mbv3.conv_bn_act(*args)


def test_large_in_range_int_arguments_compute(cpu_isa):
    x, w, b = torch.randn(2, 3, 7, 6), torch.randn(8, 3, 3, 3), torch.randn(8)
    for stride, padding in ((65536, 1), (4, 3), (1, 0)):
        got = torch.ops.mbv3.conv_bn_act(x, w, b, stride, padding, "none")
        ref = F.conv2d(x.double(), w.double(), b.double(), stride, padding)
        torch.testing.assert_close(got.double(), ref, rtol=1e-5, atol=1e-5)


# == bfloat16 ========================================================================================
# x and the folded weight (fold_bn in float32, then rounded) are bf16, the bias float32 (or bf16):
# the kernel widens on load, sums in float32 and rounds once on store.  The tolerance rule's
# torch_same_dtype is PyTorch's unfused bf16 computation (bf16 conv, bf16 BatchNorm, bf16
# activation); ref64 the float64 one on the same bf16 input values with the float32 parameters.
BF16 = torch.bfloat16


def same_bits(a, b):
    """Bitwise equal bf16 tensors, NaNs compared by position only: the kernel stores every NaN as
    0x7FC0 (c10::BFloat16's scalar rounding), while PyTorch's tensor .to(bfloat16) stores 0xFFFF."""
    nan = torch.isnan(a)
    if not torch.equal(nan, torch.isnan(b)):
        return False
    bits = lambda t: t.contiguous().view(torch.int16)  # noqa: E731
    return torch.equal(bits(a)[~nan.contiguous()], bits(b)[~nan.contiguous()])


# The paths whose bf16 stem sums in another order than the float32 kernel: avx512_bf16's
# vdpbf16ps kernel (csrc/conv_bn_act/conv_bn_act_dp.h, every shape) and neon_bf16's BFDOT one
# (conv_bn_act_dp_neon.h).  They are held to the rule and, per element, to the float32 result
# within one bf16 rounding; the others are bitwise the float32 result rounded.
DP_ISAS = ("avx512_bf16", "neon_bf16")


def assert_float32_rounded(ours, f32, what):
    """ours (bf16) against the float32 op's result f32 on the same values: bitwise f32 rounded
    on the widening paths; on the dot-product path the same NaN / +inf / -inf positions and every
    finite output within 2**-8 |f32| (one rounding, from a sum in another order) + 2**-16 max|f32|
    (float32 sums of 27+ terms that cancel)."""
    if mbv3_fast.get_cpu_isa() not in DP_ISAS:
        assert same_bits(ours, f32.to(BF16)), f"{what}: not the float32 result rounded"
        return
    for f in (torch.isnan, torch.isposinf, torch.isneginf):
        assert torch.equal(f(ours), f(f32)), f"{what}: {f.__name__} differs from float32"
    fin = torch.isfinite(f32)
    o, r = ours.float()[fin], f32[fin]
    if r.numel():
        bound = 2.0 ** -8 * r.abs() + 2.0 ** -16 * r.abs().max()
        worst = ((o - r).abs() - bound).max().item()
        assert worst <= 0, f"{what}: an output is {worst:.3e} past one bf16 rounding of float32"


def check_bf16(x, conv_w, bn, stride, padding, act, what, bias_bf16=False, own_params=False):
    """own_params: the rule with the op's own bf16 parameters (see test_bf16_odd_shapes) instead
    of the float32 conv weight and BatchNorm."""
    assert x.dtype == BF16
    w, b = fold_bn(conv_w, bn)
    wb, bb = w.to(BF16), (b.to(BF16) if bias_bf16 else b)
    ours = torch.ops.mbv3.conv_bn_act(x, wb, bb, stride, padding, act)
    assert ours.dtype == BF16, f"{what}: dtype {ours.dtype}"
    assert ours.stride() == nhwc_strides(*ours.shape), f"{what}: strides {ours.stride()}"
    if not own_params:
        ref64 = reference(bf16_values(x), conv_w, bn, stride, padding, act)
        torch_bf16 = reference(x, conv_w, bn, stride, padding, act, BF16)
    else:
        ref64 = ACT_FN[act](F.conv2d(x.double(), wb.double(), bb.double(), stride, padding))
        torch_bf16 = ACT_FN[act](F.conv2d(x, wb, bb.to(BF16), stride, padding))
    assert_within_rule(ours, torch_bf16, ref64, what)
    # The strongest check: the same float32 sums as the float32 kernel on the same values, one
    # rounding -- bit for bit the float32 op's result rounded to bf16 (per element within one
    # rounding on the dot-product path).
    f32 = torch.ops.mbv3.conv_bn_act(x.float(), wb.float(), bb.float(), stride, padding, act)
    assert_float32_rounded(ours, f32, what)
    return ours


@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
@pytest.mark.parametrize("n", [1, 2])
@pytest.mark.parametrize("cfg", STEMS, ids=lambda c: "Cin{}_Cout{}_{}x{}_k{}s{}p{}_{}".format(*c))
def test_bf16_mobilenet_v3_stem(cfg, n, layout, cpu_isa_bf16):
    cpu_isa = cpu_isa_bf16
    cin, cout, h, w, k, s, p, act = cfg
    x, conv_w, bn = make_case(n, cin, cout, h, w, k, layout, BF16)
    check_bf16(x, conv_w, bn, s, p, act, f"bf16 {cpu_isa} N{n} {layout} {cfg}")


@pytest.mark.parametrize("hw", [(1, 1), (2, 3), (7, 5), (13, 11)], ids=lambda v: f"{v[0]}x{v[1]}")
@pytest.mark.parametrize("cout", [1, 7, 17, 33])
@pytest.mark.parametrize("cin", [1, 3, 7])
def test_bf16_odd_shapes(cin, cout, hw, cpu_isa_bf16):
    cpu_isa = cpu_isa_bf16
    # The rule here takes the op's own bf16 parameters (PyTorch's bf16 conv with the same folded
    # bf16 weight and bias; float64 on them): with few taps and few outputs (Cout 1, 1x1 and 2x3
    # maps) the maximum error against the float32 conv + BatchNorm is decided by how the folded
    # weight happens to round, and PyTorch's separately rounded conv weight and BN parameters
    # were up to 50x closer by chance (7 of 96 cases failed, the kernel's outputs each the
    # nearest bf16 of the exact result on its parameters).  The bitwise check is unchanged.
    h, w = hw
    i = 0
    for k, s in itertools.product((1, 3, 5, 7), (1, 2, 3)):
        p = (k // 2 + i) % 4  # padding 0..3, cycled
        if not valid(h, w, k, p):
            p = k // 2 + (i % 2)
        n, layout, act = (0, 1, 3)[i % 3], LAYOUTS[i % 4], ("hardswish", "relu", "none")[i % 3]
        x, conv_w, bn = make_case(n, cin, cout, h, w, k, layout, BF16)
        check_bf16(x, conv_w, bn, s, p, act,
                   f"bf16 {cpu_isa} N{n} Cin{cin} Cout{cout} {h}x{w} k{k}s{s}p{p} {layout} {act}", own_params=True)
        i += 1


@pytest.mark.parametrize("act", ["hardswish", "relu", "none"])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_bf16_every_activation_and_layout(act, layout, cpu_isa_bf16):
    cpu_isa = cpu_isa_bf16
    # Wide rows (several interior tiles, the moved-back last tile, both borders), stride 1 and 2
    # (compile-time column offsets for NCHW) and 3 (run-time), channel tails.
    for (cin, cout), (k, s, p) in itertools.product(((3, 16), (4, 33), (1, 7)), ((3, 2, 1), (3, 1, 1), (5, 3, 2))):
        x, conv_w, bn = make_case(2, cin, cout, 9, 61, k, layout, BF16)
        check_bf16(x, conv_w, bn, s, p, act, f"bf16 {cpu_isa} Cin{cin} Cout{cout} k{k}s{s}p{p} {layout} {act}")


@pytest.mark.parametrize("cout", [8, 24, 32, 40, 48, 64, 65])
def test_bf16_channel_tiles(cout, cpu_isa_bf16):
    cpu_isa = cpu_isa_bf16
    x, conv_w, bn = make_case(1, 3, cout, 11, 37, 3, dtype=BF16)
    check_bf16(x, conv_w, bn, 2, 1, "hardswish", f"bf16 {cpu_isa} Cout{cout}")


def test_bf16_non_contiguous_inputs(cpu_isa_bf16):
    cpu_isa = cpu_isa_bf16
    base = torch.randn(2, 6, 30, 34, dtype=BF16)
    cl = base.contiguous(memory_format=torch.channels_last)
    for x in (base[:, 1:4, 1:-2, ::2], cl[:, 2:5], cl[..., 3:], base[:, :3].transpose(2, 3),
              torch.randn(1, 3, 1, 1, dtype=BF16).expand(2, 3, 20, 31)):
        assert not x.is_contiguous() and not x.is_contiguous(memory_format=torch.channels_last)
        cin = x.shape[1]
        conv_w, bn = torch.randn(16, cin, 3, 3) * 0.3, random_bn(16)
        check_bf16(x, conv_w, bn, 2, 1, "hardswish", f"bf16 {cpu_isa} strided {tuple(x.stride())}")
    # Weight (a view of pack_weight's layout, and a strided slice) and bias as views too.
    x, conv_w, bn = make_case(1, 3, 16, 19, 23, 5, dtype=BF16)
    w, b = fold_bn(conv_w, bn)
    wb = w.to(BF16)
    expected = torch.ops.mbv3.conv_bn_act(x, wb, b, 2, 2, "relu")
    w_strided = torch.randn(16, 6, 5, 5, dtype=BF16)[:, ::2].copy_(wb)
    b_strided = torch.randn(32)[::2].copy_(b)
    for weight, bias in ((w_strided, b_strided), (pack_conv_weight(wb), b)):
        assert torch.equal(torch.ops.mbv3.conv_bn_act(x, weight, bias, 2, 2, "relu"), expected)


@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_bf16_bias(layout, cpu_isa_bf16):
    """A bf16 bias is read as float32 (widened exactly)."""
    cpu_isa = cpu_isa_bf16
    for cin, cout, h, w, k, s, p in ((3, 16, 33, 40, 3, 2, 1), (4, 17, 7, 9, 5, 1, 2)):
        x, conv_w, bn = make_case(2, cin, cout, h, w, k, layout, BF16)
        check_bf16(x, conv_w, bn, s, p, "hardswish", f"bf16 bias {cpu_isa} {layout} Cin{cin} Cout{cout}",
                   bias_bf16=True)


def test_bf16_is_the_float32_result_rounded(cpu_isa_bf16):
    """Bitwise: bf16 in, bf16 out == the float32 op on the same values, then .to(bfloat16) --
    over magnitudes from tiny to large (rounding ties, subnormal-range and saturated outputs);
    within one rounding per element on the dot-product path (assert_float32_rounded)."""
    cpu_isa = cpu_isa_bf16
    for scale in (1e-30, 1e-3, 1.0, 1e3, 1e30):
        for layout, act in zip(LAYOUTS, ("hardswish", "relu", "none", "hardswish")):
            x = make_case(2, 3, 17, 15, 47, 3, layout, BF16)[0] * scale
            w = (torch.randn(17, 3, 3, 3) * 0.3).to(BF16)
            b = torch.randn(17) * scale
            for s, p in ((2, 1), (1, 1), (3, 0)):
                ours = torch.ops.mbv3.conv_bn_act(x, w, b, s, p, act)
                f32 = torch.ops.mbv3.conv_bn_act(x.float(), w.float(), b, s, p, act)
                assert_float32_rounded(ours, f32, f"{cpu_isa} scale {scale} {layout} s{s}")


@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_bf16_threads_do_not_change_the_result(layout):
    # 23 output rows per sample: the threads' row ranges (and so the kernel's bands of widened
    # input rows, which start at a range's first row) begin mid-sample and mid-band.
    x, conv_w, bn = make_case(3, 3, 16, 45, 58, 3, layout, BF16)
    w, b = fold_bn(conv_w, bn)
    before = torch.get_num_threads()
    try:
        outs = []
        for t in (1, 2, 3):
            torch.set_num_threads(t)
            outs.append(torch.ops.mbv3.conv_bn_act(x, w.to(BF16), b, 2, 1, "hardswish"))
            f32 = torch.ops.mbv3.conv_bn_act(x.float(), w.to(BF16).float(), b, 2, 1, "hardswish")
            assert_float32_rounded(outs[-1], f32, f"{t} threads")
    finally:
        torch.set_num_threads(before)
    for o in outs[1:]:
        assert torch.equal(o, outs[0])


def test_bf16_every_output_element_written(cpu_isa_bf16):
    cpu_isa = cpu_isa_bf16
    torch.ops.mbv3._debug_poison_outputs(True)
    try:
        for cin, cout, (h, w), k, s, p in [(3, 16, (7, 5), 3, 2, 1), (1, 17, (1, 1), 5, 1, 2),
                                           (4, 33, (13, 45), 3, 1, 1), (3, 7, (21, 50), 7, 3, 3),
                                           (3, 16, (19, 259), 3, 2, 1), (2, 31, (10, 131), 3, 1, 0)]:
            for layout in LAYOUTS:
                x, conv_w, bn = make_case(2, cin, cout, h, w, k, layout, BF16)
                check_bf16(x, conv_w, bn, s, p, "relu", f"bf16 poisoned Cin{cin} Cout{cout} {h}x{w} {layout}")
    finally:
        torch.ops.mbv3._debug_poison_outputs(False)


@pytest.mark.parametrize("act", ["hardswish", "relu", "none"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")], ids=["nan", "posinf", "neginf"])
def test_bf16_nonfinite_like_reference(value, act, cpu_isa_bf16):
    """A NaN / +inf / -inf in x gives NaN / +-inf exactly where PyTorch's float32 computation
    (on the same bf16 values and the same bf16 weight) does, and bitwise the float32 op's
    result rounded (NaN as 0x7FC0)."""
    cpu_isa = cpu_isa_bf16
    gen = torch.Generator().manual_seed(7)
    for n, cin, cout, h, w, k, s, p in ((1, 3, 16, 13, 29, 3, 2, 1), (2, 4, 17, 9, 20, 5, 1, 2),
                                         (1, 1, 7, 6, 5, 3, 3, 1)):
        for layout in ("nchw", "nhwc", "nchw_view"):
            x, conv_w, bn = make_case(n, cin, cout, h, w, k, layout, BF16)
            x = x.clone(memory_format=torch.preserve_format) if layout != "nchw_view" else x
            flat_idx = torch.randint(0, x.numel(), (2,), generator=gen).tolist()
            for i in flat_idx:
                x[tuple(int(v) for v in torch.unravel_index(torch.tensor(i), x.shape))] = value
            x[0, 0, 0, 0] = value  # the corner: read next to the padding
            wf, b = fold_bn(conv_w, bn)
            wb = wf.to(BF16)
            ours = torch.ops.mbv3.conv_bn_act(x, wb, b, s, p, act)
            ref = ACT_FN[act](F.conv2d(x.float(), wb.float(), b, s, p))
            what = f"bf16 {cpu_isa} x={value} {act} {layout} Cin{cin} Cout{cout} k{k}s{s}p{p}"
            for f in (torch.isnan, torch.isposinf, torch.isneginf):
                bad = f(ours) != f(ref)
                assert not bad.any(), f"{what}: {f.__name__} differs at {int(bad.sum())} elements"
            assert not torch.isfinite(ref).all(), f"{what}: the case reaches no output"
            f32 = torch.ops.mbv3.conv_bn_act(x.float(), wb.float(), b, s, p, act)
            assert_float32_rounded(ours, f32, what)


# -- the edges of avx512_bf16's dot-product kernel (conv_bn_act_dp.h), on every path ---------------
# Tiles of 16 output pixels, chunks of 128, bands of 8 output rows; at stride 2 the pairs of
# adjacent taps read straight from the window, the odd taps paired separately (a last odd one
# with a zero half); channel groups of 16; 3-channel channels_last rows deinterleaved 32 pixels
# at a time.
@pytest.mark.parametrize("s,p", [(1, 0), (1, 1), (2, 0), (2, 1)], ids=lambda v: str(v))
@pytest.mark.parametrize("layout", LAYOUTS)
def test_bf16_pixel_tiles_and_bands(s, p, layout, cpu_isa_bf16):
    cpu_isa = cpu_isa_bf16
    for i, (ow, oh) in enumerate(((1, 1), (15, 8), (16, 9), (17, 7), (33, 17), (128, 3), (129, 2), (130, 1))):
        extra = i % s  # odd or even W / H for the same output size at stride 2
        h, w = (oh - 1) * s + 3 - 2 * p + extra, (ow - 1) * s + 3 - 2 * p + extra
        n = (0, 1, 3)[i % 3]
        x, conv_w, bn = make_case(n, 3, 16, h, w, 3, layout, BF16)
        check_bf16(x, conv_w, bn, s, p, "hardswish", f"bf16 {cpu_isa} N{n} {h}x{w} s{s}p{p} {layout}")


@pytest.mark.parametrize("cout", [1, 15, 16, 17, 32, 33])
@pytest.mark.parametrize("cin,k", [(1, 1), (1, 3), (2, 3), (3, 3), (3, 5), (4, 7), (3, 1), (7, 3)],
                         ids=lambda v: str(v))
def test_bf16_tap_pairs_and_channel_groups(cin, k, cout, cpu_isa_bf16):
    cpu_isa = cpu_isa_bf16
    for s, layout in ((1, "nchw"), (2, "nhwc"), (2, "nchw"), (3, "nhwc_view"), (2, "nchw_view")):
        x, conv_w, bn = make_case(2, cin, cout, 11, 37, k, layout, BF16)
        check_bf16(x, conv_w, bn, s, k // 2, "relu", f"bf16 {cpu_isa} Cin{cin} k{k} Cout{cout} s{s} {layout}")


@pytest.mark.parametrize("w", [1, 5, 31, 32, 33, 64, 65, 97, 224])
def test_bf16_channels_last_row_widths(w, cpu_isa_bf16):
    cpu_isa = cpu_isa_bf16
    for s, p in ((2, 1), (1, 1), (2, 0)):
        if w + 2 * p < 3:
            continue
        x, conv_w, bn = make_case(2, 3, 16, 5, w, 3, "nhwc", BF16)
        check_bf16(x, conv_w, bn, s, p, "hardswish", f"bf16 {cpu_isa} channels_last W{w} s{s}p{p}")


def test_bf16_large_strides(cpu_isa_bf16):
    """Strides far above k: the dot-product kernel's window would be mostly unread (65536 on a
    7x6 map), so those run the widening kernel; 4 and 9 still take the dot products."""
    cpu_isa = cpu_isa_bf16
    for s, p, layout in ((65536, 1, "nchw"), (65536, 0, "nhwc"), (4, 1, "nchw_view"), (9, 3, "nhwc")):
        x, conv_w, bn = make_case(2, 3, 17, 7, 6, 3, layout, BF16)
        check_bf16(x, conv_w, bn, s, p, "hardswish", f"bf16 {cpu_isa} s{s}p{p} {layout}")
    x, conv_w, bn = make_case(1, 3, 16, 40, 300, 3, "nchw", BF16)
    check_bf16(x, conv_w, bn, 9, 1, "relu", f"bf16 {cpu_isa} 40x300 s9")


@pytest.mark.parametrize("value", [float("nan"), float("inf")], ids=["nan", "inf"])
@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_bf16_nonfinite_at_every_position(value, layout, cpu_isa_bf16):
    """One non-finite input at a time, at every position: it reaches exactly the outputs whose
    taps read it (never through a pair's padding half, a border or a neighbouring tile)."""
    cpu_isa = cpu_isa_bf16
    op = torch.ops.mbv3.conv_bn_act
    for cin, (h, w), k, s, p in ((3, (5, 9), 3, 2, 1), (3, (6, 8), 3, 2, 0), (2, (4, 7), 3, 1, 1),
                                 (1, (3, 5), 5, 1, 2), (3, (4, 18), 3, 2, 1)):
        x0, conv_w, _ = make_case(1, cin, 16, h, w, k, layout, BF16)
        wb, b = conv_w.to(BF16), torch.randn(16)
        for idx in itertools.product(range(cin), range(h), range(w)):
            x = x0.clone(memory_format=torch.preserve_format)
            x[(0,) + idx] = value
            ours = op(x, wb, b, s, p, "none")
            ref = F.conv2d(x.float(), wb.float(), b, s, p)
            for f in (torch.isnan, torch.isposinf, torch.isneginf):
                assert torch.equal(f(ours), f(ref)), f"{cpu_isa} {value} at {idx} Cin{cin} {h}x{w} s{s}p{p} {layout}"


@pytest.mark.parametrize("over,match", [
    (dict(x=torch.randn(1, 3, 6, 6, dtype=BF16)), r"on the CPU, weight must have x's dtype \(bfloat16\), got float32"),
    (dict(x=torch.randn(1, 3, 6, 6, dtype=BF16), weight=torch.randn(8, 3, 3, 3).half()),
     "weight must be float32 or bfloat16"),
    (dict(x=torch.randn(1, 3, 6, 6).half(), weight=torch.randn(8, 3, 3, 3).half()),
     "x must be float32 or bfloat16 on the CPU, got Half"),
    (dict(x=torch.randn(1, 3, 6, 6).half()), "x must be float32 or bfloat16 on the CPU"),
    (dict(weight=torch.randn(8, 3, 3, 3, dtype=BF16)), "weight must be float32"),
    (dict(bias=torch.randn(8, dtype=BF16)), "bias must be float32"),
    (dict(x=torch.randn(1, 3, 6, 6, dtype=BF16), weight=torch.randn(8, 3, 3, 3, dtype=BF16),
          bias=torch.randn(8).half()), "bias must be float32 or bfloat16"),
])
def test_bf16_bad_inputs_raise_clear_errors(over, match):
    with pytest.raises(ValueError, match=match):
        torch.ops.mbv3.conv_bn_act(*_args(**over))


def test_bf16_opcheck():
    for n, cin, cout, h, w, k, s, layout, bias_bf16 in [(2, 3, 16, 9, 7, 3, 2, "nchw", False),
                                                        (1, 4, 8, 5, 5, 5, 1, "nhwc", True),
                                                        (0, 3, 4, 3, 3, 3, 1, "nchw", False),
                                                        (2, 3, 1, 5, 4, 3, 1, "nchw_view", False)]:
        x, conv_w, bn = make_case(n, cin, cout, h, w, k, layout, BF16)
        wt, b = fold_bn(conv_w, bn)
        torch.library.opcheck(torch.ops.mbv3.conv_bn_act.default,
                              (x, wt.to(BF16), b.to(BF16) if bias_bf16 else b, s, k // 2, "hardswish"))


def test_bf16_fake_kernel_dtype():
    args = (torch.randn(1, 3, 8, 8, dtype=BF16), torch.randn(4, 3, 3, 3, dtype=BF16), torch.randn(4), 2, 1, "relu")
    real = torch.ops.mbv3.conv_bn_act(*args)
    fake = torch.ops.mbv3.conv_bn_act(*[a.to("meta") if isinstance(a, torch.Tensor) else a for a in args])
    assert real.dtype == fake.dtype == BF16 and fake.stride() == real.stride()


@neon_harness.requires_toolchain
@pytest.mark.parametrize("cpu", neon_harness.QEMU_CPUS)
def test_neon_under_qemu_bf16(cpu):
    """The NEON bf16 kernel: within the rule, and bitwise the NEON float32 kernel's result on the
    same (bf16-valued) inputs, rounded."""
    cases, expected = neon_harness.CaseFile(), []
    for n, cin, cout, h, w, k, s, p, act, layout in NEON_CASES:
        x, conv_w, bn = make_case(n, cin, cout, h, w, k, layout, BF16)
        wf, bf = fold_bn(conv_w, bn)
        wb = wf.to(BF16)
        oh, ow = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
        # x's whole bf16 storage goes over (as float32 values, exact), read through x's strides.
        base = x.as_strided((x.untyped_storage().nbytes() // 2,), (1,), 0)
        cases.i64(n, cin, h, w, cout, oh, ow, k, s, p, ACT_CODE[act], *x.stride(),
                  base.numel() - x.storage_offset())
        cases.floats(base[x.storage_offset():].float())
        cases.floats(wb.float().permute(2, 3, 1, 0))
        cases.floats(bf)
        cases.count += 1
        expected.append(((n, oh, ow, cout), reference(bf16_values(x), conv_w, bn, s, p, act),
                         reference(x, conv_w, bn, s, p, act, BF16), (n, cin, cout, h, w, k, s, act, layout)))
    flat_bf16 = neon_harness.run("conv_bn_act", cases, cpu, bf16=True)
    flat_f32 = neon_harness.run("conv_bn_act", cases, cpu)
    assert same_bits(flat_bf16.to(BF16), flat_f32.to(BF16)), f"neon {cpu}: not the float32 result rounded"
    assert torch.equal(flat_bf16.to(BF16).float(), flat_bf16), "bf16 outputs widen exactly"
    offset = 0
    for shape, ref64, ref_bf16, what in expected:
        size = shape[0] * shape[1] * shape[2] * shape[3]
        got = flat_bf16[offset:offset + size].reshape(shape).permute(0, 3, 1, 2).to(BF16)
        offset += size
        assert_within_rule(got, ref_bf16, ref64, f"neon bf16 {cpu} {what}")
    assert offset == flat_bf16.numel()


# -- NEON FEAT_BF16: BFDOT (conv_bn_act_dp_neon.h), under qemu's max CPU ---------------------------
NEON_DOT_CASES = [  # (N, Cin, Cout, H, W, k, stride, pad, act, layout)
    (1, 3, 16, 224, 224, 3, 2, 1, "hardswish", "nchw"),  # the stem itself
    (3, 3, 16, 33, 40, 3, 2, 1, "hardswish", "nhwc"), (1, 1, 1, 1, 1, 3, 1, 1, "relu", "nchw"),
    (3, 7, 17, 9, 13, 3, 1, 1, "none", "nhwc_view"), (1, 3, 33, 14, 5, 5, 2, 2, "hardswish", "nchw_view"),
    (1, 7, 7, 6, 11, 5, 1, 2, "relu", "nchw"), (3, 1, 33, 5, 17, 5, 2, 1, "none", "nhwc"),
    (1, 3, 7, 1, 1, 5, 2, 2, "hardswish", "nhwc"), (1, 7, 1, 10, 3, 3, 2, 0, "relu", "nchw_view"),
    (3, 3, 17, 5, 261, 3, 2, 1, "hardswish", "nchw"),  # 131 pixels a row: two chunks of 128
    (1, 3, 16, 3, 131, 3, 1, 1, "relu", "nhwc"),
    (1, 3, 16, 9, 23, 3, 3, 1, "relu", "nhwc"),        # stride 3: every pair built
    (1, 3, 16, 7, 6, 3, 65536, 1, "none", "nchw"),     # past the window limit: the widening kernel
]


def _neon_bf16_case(cases, x, wb, b, k, s, p, act):
    """One case of bf16 values for the conv harness: x's whole storage (read through its strides),
    the bf16 weight as [k, k, Cin, Cout], the float32 bias.  Returns (N, OH, OW, Cout)."""
    n, cin, h, w = x.shape
    cout = wb.shape[0]
    oh, ow = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    base = x.as_strided((x.untyped_storage().nbytes() // 2,), (1,), 0)
    cases.i64(n, cin, h, w, cout, oh, ow, k, s, p, ACT_CODE[act], *x.stride(), base.numel() - x.storage_offset())
    cases.floats(base[x.storage_offset():].float())
    cases.floats(wb.float().permute(2, 3, 1, 0))
    cases.floats(b)
    cases.count += 1
    return n, oh, ow, cout


def _split_nchw(flat, shapes):
    """A harness's outputs, [N, OH, OW, Cout] per case, as NCHW views."""
    outs, offset = [], 0
    for n, oh, ow, cout in shapes:
        size = n * oh * ow * cout
        outs.append(flat[offset:offset + size].reshape(n, oh, ow, cout).permute(0, 3, 1, 2))
        offset += size
    assert offset == flat.numel(), f"{flat.numel() - offset} outputs past the expected ones"
    return outs


@neon_harness.requires_toolchain
def test_neon_bf16_dot_products_under_qemu():
    """The FEAT_BF16 unit (conv_bn_act_bf16_neon_bf16.cpp) under qemu's max CPU: tap pairs on
    BFDOT, held to the tolerance rule (the op's own bf16 parameters, as test_bf16_odd_shapes) and
    per element within one bf16 rounding of the float32 conv on the same values; a sample alone
    the same bits as in its batch; not the widening kernel's bits (some outputs differ), and
    really BFDOT (Cortex-A76, without FEAT_BF16, faults)."""
    cases, expected, samples = neon_harness.CaseFile(), [], []
    for n, cin, cout, h, w, k, s, p, act, layout in NEON_DOT_CASES:
        x, conv_w, bn = make_case(n, cin, cout, h, w, k, layout, BF16)
        wf, b = fold_bn(conv_w, bn)
        wb = wf.to(BF16)
        shape = _neon_bf16_case(cases, x, wb, b, k, s, p, act)
        ref64 = ACT_FN[act](F.conv2d(x.double(), wb.double(), b.double(), s, p))
        torch_bf16 = ACT_FN[act](F.conv2d(x, wb, b.to(BF16), s, p))
        f32 = ACT_FN[act](F.conv2d(x.float(), wb.float(), b, s, p))
        expected.append((shape, ref64, torch_bf16, f32, (n, cin, cout, h, w, k, s, p, act, layout)))
        samples += [(len(expected) - 1, i, (x[i:i + 1], wb, b, k, s, p, act)) for i in range(n if n > 1 else 0)]
    # Each sample of a batch alone too (after the batches): other row ranges and bands (the
    # harness splits the rows in two, mid-sample in a batch of 3), the same bits.
    alone = [(c, i, _neon_bf16_case(cases, *args)) for c, i, args in samples]
    shapes = [e[0] for e in expected] + [a[2] for a in alone]
    dot = _split_nchw(neon_harness.run("conv_bn_act", cases, neon_harness.QEMU_BF16_CPU, mode="bf16_dot"), shapes)
    wide = _split_nchw(neon_harness.run("conv_bn_act", cases, neon_harness.QEMU_BF16_CPU, bf16=True), shapes)
    for j, (c, i, _) in enumerate(alone):
        assert torch.equal(dot[len(expected) + j], dot[c][i:i + 1]), f"{expected[c][-1]}: sample {i} alone differs"
    differ = 0
    for got, got_wide, (shape, ref64, torch_bf16, f32, what) in zip(dot, wide, expected):
        what = f"neon bf16_dot {what}"
        assert torch.equal(got.to(BF16).float(), got), f"{what}: outputs are not bf16 values"
        assert_within_rule(got.to(BF16), torch_bf16, ref64, what)
        bound = 2.0 ** -8 * f32.abs() + 2.0 ** -16 * f32.abs().max()
        assert ((got - f32).abs() <= bound).all(), f"{what}: an output is past one bf16 rounding of float32"
        differ += int(not torch.equal(got, got_wide))
    assert differ > 0, "no case took BFDOT: every output equals the widening kernel's"
    # The last of NEON_DOT_CASES has its stride past the window limit: the widening kernel's bits.
    assert torch.equal(dot[len(expected) - 1], wide[len(expected) - 1])
    one = neon_harness.CaseFile()
    _neon_bf16_case(one, torch.randn(1, 3, 5, 5, dtype=BF16), torch.randn(4, 3, 3, 3, dtype=BF16), torch.randn(4),
                    3, 2, 1, "none")
    with pytest.raises(subprocess.CalledProcessError):
        neon_harness.run("conv_bn_act", one, "cortex-a76", mode="bf16_dot")


@neon_harness.requires_toolchain
def test_neon_bf16_dot_products_nonfinite_under_qemu():
    """Non-finite x through BFDOT, against PyTorch's conv on the same values: one NaN (or inf) at
    every position of sample 0 in turn reaches exactly the outputs whose taps read it, never
    sample 1, through a pair's zero high half, a padding tap or a neighbouring tile; +-inf keep
    their signs and give NaN where they meet."""
    cases, expected = neon_harness.CaseFile(), []
    # Stride 2 k3: direct pairs and an odd count of built taps (Cin 3: 9, last pair half zero);
    # stride 1: all taps built (Cin 1 k5: 25); stride 2 k5 Cin 1 (15 built, odd).
    for (cin, h, w, k, s, p), value in itertools.product(
            [(3, 5, 9, 3, 2, 1), (1, 4, 7, 5, 1, 2), (1, 6, 5, 5, 2, 1), (3, 4, 6, 3, 2, 0)],
            [float("nan"), float("inf")]):
        x0 = torch.randn(2, cin, h, w).to(BF16)
        wb, b = (torch.randn(5, cin, k, k) * 0.3).to(BF16), torch.randn(5)
        for idx in itertools.product(range(cin), range(h), range(w)):
            x = x0.clone()
            x[(0,) + idx] = value
            shape = _neon_bf16_case(cases, x, wb, b, k, s, p, "none")
            expected.append((shape, F.conv2d(x.double(), wb.double(), b.double(), s, p), (cin, h, w, k, s, p, idx)))
    x = torch.randn(2, 3, 7, 9).to(BF16)  # infs of both signs, meeting in some outputs
    inf = float("inf")
    x[0, 2, 3, 4], x[0, 1, 3, 5], x[1, 0, 0, 0], x[1, 2, 6, 8] = inf, -inf, -inf, inf
    wb, b = (torch.randn(17, 3, 3, 3) * 0.3).to(BF16), torch.randn(17)
    shape = _neon_bf16_case(cases, x, wb, b, 3, 2, 1, "none")
    expected.append((shape, F.conv2d(x.double(), wb.double(), b.double(), 2, 1), "infs"))
    outs = _split_nchw(neon_harness.run("conv_bn_act", cases, neon_harness.QEMU_BF16_CPU, mode="bf16_dot"),
                       [e[0] for e in expected])
    reached = 0
    for got, (shape, ref, what) in zip(outs, expected):
        reached += int(not ref.isfinite().all())  # (some positions no output reads: s2 p0 k3 W6)
        for f in (torch.isnan, torch.isposinf, torch.isneginf):
            assert torch.equal(f(got), f(ref)), f"neon bf16_dot {what}: {f.__name__} differs"
    assert reached > len(expected) * 3 // 4
