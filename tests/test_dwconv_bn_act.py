"""mbv3::dwconv_bn_act on the CPU: every path (ISA), layout and shape against float64."""
import itertools
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

import mbv3_fast
import neon_harness
from mbv3_fast.ops import dwconv_bn_act, fold_bn
from mbv3_fast.testing import VARIANTS, depthwise_layers
from layers import ACT_CODE, ACT_FN, random_bn
from tolerance import assert_within_rule, bf16_values



def make_case(n, c, h, w, k, channels_last=False):
    x = torch.randn(n, c, h, w)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, torch.randn(c, 1, k, k) * (2.0 / k), random_bn(c)


def reference(x, conv_w, bn, stride, padding, dilation, act, dtype=torch.float64):
    """conv2d(groups=C) -> batch_norm(eval) -> activation, the unfused PyTorch path, in dtype."""
    c = x.shape[1]
    y = F.conv2d(x.to(dtype), conv_w.to(dtype), None, stride, padding, dilation, groups=c)
    y = F.batch_norm(y, bn.running_mean.to(dtype), bn.running_var.to(dtype), bn.weight.to(dtype),
                     bn.bias.to(dtype), False, 0.0, bn.eps)
    return ACT_FN[act](y)


def check(x, conv_w, bn, stride, padding, dilation, act, what):
    w, b = fold_bn(conv_w, bn)
    ours = torch.ops.mbv3.dwconv_bn_act(x, w, b, stride, padding, dilation, act)
    ref64 = reference(x, conv_w, bn, stride, padding, dilation, act)
    ref32 = reference(x, conv_w, bn, stride, padding, dilation, act, torch.float32)
    assert_within_rule(ours, ref32, ref64, what)
    cl_in = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    assert ours.is_contiguous(memory_format=torch.channels_last if cl_in else torch.contiguous_format)
    return ours


# -- MobileNetV3's own layers, enumerated by torchvision -------------------------------------
MBV3_LAYERS = sorted({cfg for v in VARIANTS for cfg in depthwise_layers(v)})


@pytest.mark.parametrize("channels_last", [True, False], ids=["nhwc", "nchw"])
@pytest.mark.parametrize("cfg", MBV3_LAYERS, ids=lambda c: "C{}_{}x{}_k{}s{}p{}d{}_{}".format(*c))
def test_mobilenet_v3_layers(cfg, channels_last, cpu_isa):
    c, h, w, k, s, p, d, act = cfg
    x, conv_w, bn = make_case(1, c, h, w, k, channels_last)
    check(x, conv_w, bn, s, p, d, act, f"{cpu_isa} {cfg}")


# -- deliberately odd shapes ----------------------------------------------------------------
ODD = list(itertools.product([1, 3, 7, 17, 33], [(1, 1), (2, 3), (7, 5), (13, 11)], [0, 1, 3]))
GEOMS = [(k, s, d) for k in (3, 5) for s in (1, 2) for d in (1, 2)]


@pytest.mark.parametrize("c,hw,n", ODD, ids=lambda v: str(v))
def test_odd_shapes(c, hw, n, cpu_isa):
    h, w = hw
    for i, (k, s, d) in enumerate(GEOMS):
        act = ("hardswish", "relu", "none")[(i + c) % 3]
        p = d * (k - 1) // 2  # "same" padding keeps every small map valid
        for channels_last in (False, True):
            x, conv_w, bn = make_case(n, c, h, w, k, channels_last)
            check(x, conv_w, bn, s, p, d, act, f"{cpu_isa} N{n} C{c} {h}x{w} k{k}s{s}d{d} {act}")


@pytest.mark.parametrize("k", [1, 3, 5, 7])
@pytest.mark.parametrize("act", ["hardswish", "relu", "none"])
def test_every_kernel_size_and_padding(k, act, cpu_isa):
    # Generic path (k = 1, 7), specialised paths (3, 5); padding from none to wider than k.
    for s, d, p in itertools.product((1, 2, 3), (1, 2), (0, 1, k // 2 + 2)):
        x, conv_w, bn = make_case(2, 19, 17, 12, k, channels_last=(s + p) % 2 == 0)
        if min(17, 12) + 2 * p < d * (k - 1) + 1:
            continue
        check(x, conv_w, bn, s, p, d, act, f"{cpu_isa} k{k}s{s}d{d}p{p} {act}")


# Every row-edge block: a row's first block (padding on its left), its last (padding on its
# right, 1..3 columns wide), rows narrower than a block plus its padding (tested at run time),
# and paddings other than "same"; 24 and 40 channels are whole vectors on AVX2 and end in an
# 8-lane half vector on AVX-512, 67 ends in a masked tail (those keep the checked block).
EDGE_WIDTHS = list(range(1, 18)) + [28, 29]


@pytest.mark.parametrize("k,s", [(3, 1), (3, 2), (5, 1), (5, 2)])
def test_row_edge_blocks(k, s, cpu_isa):
    for w in EDGE_WIDTHS:
        for p in (k // 2, 0, k // 2 + 1):
            h = 2 + w % 3
            if min(h, w) + 2 * p < k:
                continue
            c = (24, 40, 67)[w % 3]
            act = ("hardswish", "relu", "none")[(w + p) % 3]
            x, conv_w, bn = make_case(1 + w % 2, c, h, w, k, channels_last=w % 4 != 3)
            check(x, conv_w, bn, s, p, 1, act, f"{cpu_isa} C{c} w{w} k{k}s{s}p{p} {act}")


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")], ids=["nan", "+inf", "-inf"])
def test_non_finite_input_row_edges(value, cpu_isa):
    # Non-finite inputs in the first and last two columns reach exactly the outputs they reach
    # in PyTorch, in the edge blocks of every geometry.
    c = 40
    for w, k, s in itertools.product((7, 13, 14, 15, 28, 29), (3, 5), (1, 2)):
        x, conv_w, bn = make_case(1, c, 6, w, k)
        for ch, hh, ww in ((0, 0, 0), (c - 1, 1, 1), (5, 2, w - 1), (33, 3, w - 2), (c // 2, 5, 0), (9, 4, w - 1)):
            x[0, ch, hh, ww] = value
        w_, b = fold_bn(conv_w, bn)
        ours = torch.ops.mbv3.dwconv_bn_act(x, w_, b, s, k // 2, 1, "none").double()
        ref = F.conv2d(x.double(), w_.double(), b.double(), s, k // 2, 1, c)
        assert torch.equal(ours.isnan(), ref.isnan()), (cpu_isa, w, k, s)
        assert torch.equal(ours.isposinf(), ref.isposinf()) and torch.equal(ours.isneginf(), ref.isneginf())
        finite = ref.isfinite()
        torch.testing.assert_close(ours[finite], ref[finite], rtol=1e-5, atol=1e-5)


def test_non_contiguous_inputs(cpu_isa):
    base = torch.randn(2, 40, 30, 26)
    cl = base.contiguous(memory_format=torch.channels_last)
    for x in (base[:, 3:36, 1:-2, ::2], cl[:, 5:37], cl[..., 2:], base.transpose(2, 3)):
        assert not x.is_contiguous() and not x.is_contiguous(memory_format=torch.channels_last)
        c = x.shape[1]
        conv_w, bn = torch.randn(c, 1, 3, 3), random_bn(c)
        check(x, conv_w, bn, 1, 1, 1, "hardswish", f"{cpu_isa} strided {tuple(x.stride())}")
    # Weight and bias given as strided views too.
    x, conv_w, bn = make_case(1, 24, 9, 9, 5)
    w, b = fold_bn(conv_w, bn)
    w_strided = torch.randn(24, 2, 5, 5)[:, :1].copy_(w)
    b_strided = torch.randn(48)[::2].copy_(b)
    got = torch.ops.mbv3.dwconv_bn_act(x, w_strided, b_strided, 2, 2, 1, "relu")
    torch.testing.assert_close(got, torch.ops.mbv3.dwconv_bn_act(x, w, b, 2, 2, 1, "relu"))


def test_prepacked_weight_view_is_equivalent(cpu_isa):
    """The model's layout ([k,k,C] buffer viewed as [C,1,k,k]) gives the same result."""
    x, conv_w, bn = make_case(2, 37, 11, 10, 5, channels_last=True)
    w, b = fold_bn(conv_w, bn)
    packed = w.permute(2, 3, 1, 0).contiguous().permute(3, 2, 0, 1)
    assert packed.shape == w.shape and packed.stride(0) == 1
    torch.testing.assert_close(torch.ops.mbv3.dwconv_bn_act(x, packed, b, 1, 2, 1, "hardswish"),
                               torch.ops.mbv3.dwconv_bn_act(x, w, b, 1, 2, 1, "hardswish"),
                               rtol=0, atol=0)


def test_every_output_element_written(cpu_isa):
    """Outputs come from poisoned (NaN-filled) buffers; a skipped element would stay NaN."""
    torch.ops.mbv3._debug_poison_outputs(True)
    try:
        for c, (h, w), k, s in [(33, (7, 5), 3, 2), (17, (1, 1), 5, 1), (64, (13, 11), 3, 1),
                                (130, (6, 9), 5, 2)]:
            for channels_last in (True, False):
                x, conv_w, bn = make_case(2, c, h, w, k, channels_last)
                check(x, conv_w, bn, s, k // 2, 1, "relu", f"poisoned C{c} {h}x{w}")
    finally:
        torch.ops.mbv3._debug_poison_outputs(False)


def test_threads_do_not_change_the_result():
    x, conv_w, bn = make_case(3, 72, 29, 31, 5, channels_last=True)
    w, b = fold_bn(conv_w, bn)
    before = torch.get_num_threads()
    try:
        outs = []
        for t in (1, 2, 3):
            torch.set_num_threads(t)
            outs.append(torch.ops.mbv3.dwconv_bn_act(x, w, b, 2, 2, 1, "hardswish"))
    finally:
        torch.set_num_threads(before)
    for o in outs[1:]:
        assert torch.equal(o, outs[0])


@pytest.mark.parametrize("c", [120, 184])
def test_bf16_threads_do_not_change_the_result(c):
    # Few rows: the op splits the channels into blocks of 64 across threads, so the masked
    # 24-channel tile starts at another channel than on one thread (120 = 96 + 24 vs 64 + 32 + 24).
    before = torch.get_num_threads()
    for n, hw, k, s in ((1, 7, 5, 1), (1, 14, 3, 1), (3, 29, 5, 2)):
        x, conv_w, bn = make_case(n, c, hw, hw, k, channels_last=True)
        w, b = fold_bn(conv_w, bn)
        try:
            outs = []
            for t in (1, 2, 3):
                torch.set_num_threads(t)
                outs.append(torch.ops.mbv3.dwconv_bn_act(x.to(BF16), w.to(BF16), b, s, k // 2, 1, "hardswish"))
        finally:
            torch.set_num_threads(before)
        for o in outs[1:]:
            assert torch.equal(o, outs[0]), (n, hw, k, s)


def test_opcheck():
    for n, c, h, w, k, s, cl in [(2, 17, 9, 7, 3, 1, True), (1, 8, 5, 5, 5, 2, False),
                                 (0, 4, 3, 3, 3, 1, False)]:
        x, conv_w, bn = make_case(n, c, h, w, k, cl)
        wt, b = fold_bn(conv_w, bn)
        torch.library.opcheck(torch.ops.mbv3.dwconv_bn_act.default,
                              (x, wt, b, s, k // 2, 1, "hardswish"))


def test_compile_and_export():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.w, self.b = fold_bn(torch.randn(16, 1, 3, 3), random_bn(16))

        def forward(self, x):
            return torch.ops.mbv3.dwconv_bn_act(x, self.w, self.b, 2, 1, 1, "hardswish") * 2

    m, x = M(), torch.randn(1, 16, 12, 12).contiguous(memory_format=torch.channels_last)
    expected = m(x)
    torch.testing.assert_close(torch.compile(m, fullgraph=True)(x), expected)
    ep = torch.export.export(m, (x,))
    assert any("dwconv_bn_act" in str(n.target) for n in ep.graph.nodes)
    torch.testing.assert_close(ep.module()(x), expected)


# -- errors ----------------------------------------------------------------------------------
def _args(**over):
    a = dict(x=torch.randn(1, 8, 6, 6), weight=torch.randn(8, 1, 3, 3), bias=torch.randn(8),
             stride=1, padding=1, dilation=1, activation="relu")
    a.update(over)
    return list(a.values())


@pytest.mark.parametrize("over,match", [
    (dict(x=torch.randn(1, 8, 6, 6).double()), "x must be float32"),
    (dict(x=torch.randint(0, 5, (1, 8, 6, 6))), "x must be float32"),
    (dict(x=torch.randn(1, 8, 6, 6).half()), "x must be float32"),
    (dict(x=torch.randn(8, 6, 6)), "4-D"),
    (dict(weight=torch.randn(8, 3, 3)), r"weight must be \[C, 1, k, k\]"),
    (dict(weight=torch.randn(7, 1, 3, 3)), r"weight must be \[C, 1, k, k\]"),
    (dict(weight=torch.randn(8, 1, 3, 5)), r"weight must be \[C, 1, k, k\]"),
    (dict(weight=torch.randn(8, 1, 4, 4)), "kernel size must be odd"),
    (dict(weight=torch.randn(8, 1, 9, 9), padding=4), "kernel size must be odd and <= 7"),
    (dict(bias=torch.randn(9)), r"bias must be \[C\]"),
    (dict(bias=torch.randn(8, 1)), r"bias must be \[C\]"),
    (dict(stride=0), "stride must be >= 1"),
    (dict(dilation=0), "dilation must be >= 1"),
    (dict(padding=-1), "padding must be >= 0"),
    (dict(activation="gelu"), "unknown activation 'gelu'"),
    (dict(x=torch.randn(1, 8, 2, 2), padding=0), "smaller than the dilated kernel"),
    (dict(weight=torch.randn(8, 1, 3, 3, device="meta")), "weight is on meta"),
])
def test_bad_inputs_raise_clear_errors(over, match):
    with pytest.raises((ValueError, RuntimeError), match=match):
        torch.ops.mbv3.dwconv_bn_act(*_args(**over))


def test_fake_kernel_checks_like_the_real_one():
    for over in (dict(bias=torch.randn(9)), dict(activation="gelu"), dict(stride=0)):
        args = [a.to("meta") if isinstance(a, torch.Tensor) else a for a in _args(**over)]
        with pytest.raises(ValueError):
            torch.ops.mbv3.dwconv_bn_act(*args)
    out = torch.ops.mbv3.dwconv_bn_act(*[a.to("meta") if isinstance(a, torch.Tensor) else a
                                         for a in _args(stride=2)])
    assert out.shape == (1, 8, 3, 3) and out.device.type == "meta"


# -- BatchNorm folding -------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["BatchNorm2d", "FrozenBatchNorm2d"])
def test_fold_bn_matches_the_module(kind):
    c = 24
    if kind == "BatchNorm2d":
        bn = random_bn(c, eps=1e-3)
    else:
        bn = FrozenBatchNorm2d(c)  # eps 1e-5, read from the module
        bn.running_mean.normal_(0, 0.5)
        bn.running_var.uniform_(0.2, 2.0)
        bn.weight.normal_(1, 0.3)
        bn.bias.normal_(0, 0.3)
    conv = nn.Conv2d(c, c, 3, padding=1, groups=c, bias=False).double()
    x = torch.randn(2, c, 8, 8, dtype=torch.float64)
    w, b = fold_bn(conv.weight, bn.double())
    expected = bn(conv(x))
    torch.testing.assert_close(F.conv2d(x, w, b, 1, 1, 1, c), expected, rtol=1e-12, atol=1e-12)


def test_fold_bn_rejects_mismatch():
    with pytest.raises(ValueError, match="channels"):
        fold_bn(torch.randn(8, 1, 3, 3), random_bn(9))


def test_python_wrapper_folds_bn():
    x, conv_w, bn = make_case(2, 12, 10, 10, 5, channels_last=True)
    got = dwconv_bn_act(x, conv_w, bn=bn, stride=2, activation="hardswish")
    assert_within_rule(got, reference(x, conv_w, bn, 2, 2, 1, "hardswish", torch.float32),
                       reference(x, conv_w, bn, 2, 2, 1, "hardswish"), "wrapper")


# -- ISA control -------------------------------------------------------------------------------
def test_isa_control():
    isas = mbv3_fast.available_cpu_isas()
    assert isas[0] == "scalar" and mbv3_fast.get_cpu_isa() in isas
    with pytest.raises(ValueError, match="unknown CPU ISA 'sse9'"):
        mbv3_fast.set_cpu_isa("sse9")
    missing = [i for i in ("avx2", "avx512", "avx512_bf16", "neon", "neon_bf16") if i not in isas]
    for name in missing:
        with pytest.raises(ValueError, match="not available"):
            mbv3_fast.set_cpu_isa(name)


@pytest.mark.parametrize("value", ["scalar", "auto"])
def test_isa_environment_variable(value):
    code = "import mbv3_fast; print(mbv3_fast.get_cpu_isa())"
    env = dict(os.environ, MBV3_FAST_CPU_ISA=value)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == (value if value != "auto" else mbv3_fast.available_cpu_isas()[-1])


# -- NEON, for real, under qemu ----------------------------------------------------------------
NEON_CASES = [  # (N, C, H, W, k, stride, pad, dil, act): tails, borders, both kernel families
    (1, 16, 9, 9, 3, 1, 1, 1, "relu"), (2, 7, 5, 6, 3, 2, 1, 1, "hardswish"),
    (1, 72, 8, 7, 5, 2, 2, 1, "relu"), (1, 5, 6, 6, 5, 1, 4, 2, "hardswish"),
    (1, 1, 1, 1, 3, 1, 1, 1, "none"), (1, 13, 7, 7, 7, 1, 3, 1, "hardswish"),
    (1, 130, 4, 3, 3, 1, 2, 2, "none"), (3, 3, 2, 3, 1, 1, 0, 1, "relu"),
]


@neon_harness.requires_toolchain
@pytest.mark.parametrize("cpu", neon_harness.QEMU_CPUS)
def test_neon_under_qemu(cpu):
    cases, expected = neon_harness.CaseFile(), []
    for n, c, h, w, k, s, p, d, act in NEON_CASES:
        x, conv_w, bn = make_case(n, c, h, w, k)
        wf, bf = fold_bn(conv_w, bn)
        oh, ow = (h + 2 * p - d * (k - 1) - 1) // s + 1, (w + 2 * p - d * (k - 1) - 1) // s + 1
        cases.i64(n, c, h, w, oh, ow, k, s, p, d, ACT_CODE[act])
        cases.floats(x.permute(0, 2, 3, 1))
        cases.floats(wf.reshape(c, k * k).t())
        cases.floats(bf)
        cases.count += 1
        expected.append(((n, oh, ow, c), reference(x, conv_w, bn, s, p, d, act),
                         reference(x, conv_w, bn, s, p, d, act, torch.float32), (n, c, h, w, k, s, act)))
    flat = neon_harness.run("dwconv_bn_act", cases, cpu)
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
    ("stride", -1, "stride must be >= 1, got -1"),
    ("stride", -2**33, "stride must be >= 1"),
    ("stride", 2**33, f"stride must be <= 65536, got {2**33}"),
    ("stride", 2**62, "stride must be <= 65536"),
    ("stride", 65537, "stride must be <= 65536"),
    ("dilation", 0, "dilation must be >= 1"),
    ("dilation", -5, "dilation must be >= 1"),
    ("dilation", 2**33, "dilation must be <= 65536"),
    ("padding", -1, "padding must be >= 0"),
    ("padding", -2**33, "padding must be >= 0"),
    ("padding", 2**33, "padding must be <= 65536"),
    ("padding", 2**62, "padding must be <= 65536"),
])
def test_int_arguments_out_of_range(device, name, value, match):
    args = dict(zip(["x", "weight", "bias", "stride", "padding", "dilation", "activation"], _args()))
    args[name] = value
    args = [a.to(device) if isinstance(a, torch.Tensor) else a for a in args.values()]
    with pytest.raises(ValueError, match=match):
        torch.ops.mbv3.dwconv_bn_act(*args)


def test_int_arguments_beyond_int64_raise():
    with pytest.raises((ValueError, RuntimeError, TypeError)):
        torch.ops.mbv3.dwconv_bn_act(*_args(stride=2**64))


def test_large_in_range_int_arguments_compute(cpu_isa):
    x, w, b = torch.randn(2, 8, 6, 5), torch.randn(8, 1, 3, 3), torch.randn(8)
    for stride, padding, dilation in ((65536, 1, 1), (1, 0, 2), (3, 5, 1), (65536, 0, 2)):
        got = torch.ops.mbv3.dwconv_bn_act(x, w, b, stride, padding, dilation, "none")
        ref = F.conv2d(x.double(), w.double(), b.double(), stride, padding, dilation, 8)
        torch.testing.assert_close(got.double(), ref, rtol=1e-5, atol=1e-5)


# -- bfloat16 ------------------------------------------------------------------------------------
BF16 = torch.bfloat16


def check_bf16(x, conv_w, bn, stride, padding, dilation, act, what, bias_dtype=torch.float32):
    """bf16 x and folded weight (bias float32 or bf16): the tolerance rule against PyTorch's own
    bf16 computation, and bit equality with the float32 kernel on the same values rounded once
    (the bf16 kernels widen, sum in float32 exactly as the float32 ones, and round on store)."""
    w, b = fold_bn(conv_w, bn)
    xb, wb, bb = x.to(BF16), w.to(BF16), b.to(bias_dtype)
    ours = torch.ops.mbv3.dwconv_bn_act(xb, wb, bb, stride, padding, dilation, act)
    assert ours.dtype == BF16
    ref64 = reference(bf16_values(x), conv_w, bn, stride, padding, dilation, act)
    ref_bf16 = reference(x, conv_w, bn, stride, padding, dilation, act, BF16)
    # The floor from the terms' magnitude (tolerance.py): 1-tap and small sums cancel.
    magnitude = F.conv2d(bf16_values(x).double().abs(), w.double().abs(), None, stride, padding, dilation,
                         groups=x.shape[1]) + b.double().abs()[:, None, None]
    assert_within_rule(ours, ref_bf16, ref64, what, magnitude)
    if mbv3_fast.get_cpu_isa() != "avx512_bf16":  # its 3x3 / 5x5 tiles sum pairs with vdpbf16ps
        f32 = torch.ops.mbv3.dwconv_bn_act(xb.float(), wb.float(), bb.float(), stride, padding, dilation, act)
        assert torch.equal(ours, f32.to(BF16)), what
    cl_in = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    assert ours.is_contiguous(memory_format=torch.channels_last if cl_in else torch.contiguous_format)


@pytest.mark.parametrize("cfg", MBV3_LAYERS, ids=lambda c: "C{}_{}x{}_k{}s{}p{}d{}_{}".format(*c))
def test_bf16_mobilenet_v3_layers(cfg, cpu_isa_bf16):
    cpu_isa = cpu_isa_bf16
    c, h, w, k, s, p, d, act = cfg
    x, conv_w, bn = make_case(1, c, h, w, k, channels_last=True)
    check_bf16(x, conv_w, bn, s, p, d, act, f"bf16 {cpu_isa} {cfg}")


@pytest.mark.parametrize("c,hw,n", ODD[::2], ids=lambda v: str(v))
def test_bf16_odd_shapes(c, hw, n, cpu_isa_bf16):
    cpu_isa = cpu_isa_bf16
    h, w = hw
    for i, (k, s, d) in enumerate(GEOMS + [(7, 1, 1), (1, 2, 1)]):
        act = ("hardswish", "relu", "none")[(i + c) % 3]
        p = d * (k - 1) // 2
        for channels_last in (False, True):
            x, conv_w, bn = make_case(n, c, h, w, k, channels_last)
            check_bf16(x, conv_w, bn, s, p, d, act, f"bf16 {cpu_isa} N{n} C{c} {h}x{w} k{k}s{s}d{d} {act}",
                       bias_dtype=(torch.float32, BF16)[i % 2])


def test_bf16_non_contiguous_input(cpu_isa_bf16):
    cpu_isa = cpu_isa_bf16
    x, conv_w, bn = make_case(3, 34, 11, 9, 3)
    check_bf16(x[:, ::2], conv_w[::2], _sub_bn(bn, slice(None, None, 2)), 2, 1, 1, "hardswish", "bf16 strided")


@pytest.mark.parametrize("c", [1, 7, 8, 9, 16, 17, 24, 31, 33, 48, 56, 60, 104, 120, 184, 200])
def test_bf16_channel_tiles(c, cpu_isa_bf16):
    cpu_isa = cpu_isa_bf16
    # avx512_bf16 takes 32-channel tiles (vdpbf16ps over kernel row pairs), then a masked 32-lane
    # one for 17..31 channels left (17, 24, 31, 56, 60, 120, 184) or a 16-channel one for 16 (16,
    # 48), and the widening kernel for the rest (< 16: 1, 7, 8, 33, 104, 200): every mix of them,
    # rows where one or both rows of a pair are padding (maps of 1 to 3 rows, padding 0 and
    # k // 2), checked and partial column blocks.
    for i, ((h, w), k, s) in enumerate(itertools.product([(1, 1), (2, 3), (3, 9), (9, 5), (13, 11)], (3, 5), (1, 2))):
        act = ("hardswish", "relu", "none")[(i + c) % 3]
        for p in (k // 2, i % 2 * (k // 2)):
            if h + 2 * p < k or w + 2 * p < k:
                continue
            x, conv_w, bn = make_case(2, c, h, w, k, channels_last=True)
            check_bf16(x, conv_w, bn, s, p, 1, act, f"bf16 {cpu_isa} C{c} {h}x{w} k{k}s{s}p{p} {act}")


@pytest.mark.parametrize("c", [16, 48, 72, 33])
def test_bf16_column_blocks(c, cpu_isa_bf16):
    cpu_isa = cpu_isa_bf16
    # avx512_bf16's column blocks: 8 columns for a 16-channel tile (16, 48), 6 for 32-channel
    # ones on 3x3 stride-1 rows of 28+ columns (48, 72), 4 otherwise (33, and 5x5 / stride 2),
    # then a checked block of 4 and one of 1..3: widths that end on each, blocks fully inside the
    # row (unchecked) and touching the padding.
    for i, (w, k, s) in enumerate(itertools.product([8, 14, 17, 28, 29, 30, 31, 33, 37], (3, 5), (1, 2))):
        act = ("hardswish", "relu", "none")[(i + c) % 3]
        p = (k // 2, 0)[i % 3 == 2]
        if w + 2 * p < k:
            continue
        x, conv_w, bn = make_case(1 + i % 2 * 2, c, 3 + i % 3, w, k, channels_last=i % 4 != 3)
        check_bf16(x, conv_w, bn, s, p, 1, act, f"bf16 {cpu_isa} C{c} w{w} k{k}s{s}p{p} {act}")


@pytest.mark.parametrize("c", [9, 24, 48, 72, 184, 200])
def test_bf16_3x3_pad1_row_edges(c, cpu_isa_bf16):
    cpu_isa = cpu_isa_bf16
    # avx512_bf16's 3x3 padding-1 rows: a first block that skips its left padding column at
    # compile time, interior blocks, a last block of every width 1..8 that skips the right
    # padding column (stride 1, odd widths at stride 2) or reads none (even widths at stride 2),
    # and rows narrower than one block (the run-time checked blocks).
    for w in range(1, 42):
        for s in (1, 2):
            act = ("hardswish", "relu", "none")[(w + s + c) % 3]
            x, conv_w, bn = make_case(1 + w % 2, c, 2 + w % 3, w, 3, channels_last=w % 5 != 4)
            check_bf16(x, conv_w, bn, s, 1, 1, act, f"bf16 {cpu_isa} C{c} w{w} s{s} {act}")


@pytest.mark.parametrize("c", [40, 48, 56])
@pytest.mark.parametrize("s", [1, 2])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")], ids=["nan", "+inf", "-inf"])
def test_bf16_non_finite_input_row_edges(value, s, c, cpu_isa_bf16):
    cpu_isa = cpu_isa_bf16
    # Non-finite values in the first and last two columns, in every kernel row of the edge
    # blocks (3x3: the row pair and the last row's column pairs; 5x5: two pairs along it).
    for w, k in itertools.product((13, 14, 15, 28, 29), (3, 5)):
        x, conv_w, bn = make_case(1, c, 6, w, k)
        for ch, hh, ww in ((0, 0, 0), (c - 1, 1, 1), (5, 2, w - 1), (33, 3, w - 2), (c // 2, 5, 0), (9, 4, w - 1)):
            x[0, ch, hh, ww] = value
        w_, b = fold_bn(conv_w, bn)
        ours = torch.ops.mbv3.dwconv_bn_act(x.to(BF16), w_.to(BF16), b, s, k // 2, 1, "none").double()
        ref = F.conv2d(bf16_values(x).double(), w_.to(BF16).double(), b.double(), s, k // 2, 1, c)
        assert torch.equal(ours.isnan(), ref.isnan()), (cpu_isa, w, k)
        assert torch.equal(ours.isposinf(), ref.isposinf()) and torch.equal(ours.isneginf(), ref.isneginf())


@pytest.mark.parametrize("w", [16, 28, 37])
@pytest.mark.parametrize("c", [16, 72])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")], ids=["nan", "+inf", "-inf"])
def test_bf16_non_finite_input_column_blocks(value, c, w, cpu_isa_bf16):
    cpu_isa = cpu_isa_bf16
    # Non-finite values in the 8- and 6-column blocks (first, inner, last, and the tail blocks).
    x, conv_w, bn = make_case(1, c, 5, w, 3)
    for ch, hh, ww in ((0, 0, 0), (c - 1, 2, 7), (5, 1, 8), (c // 2, 4, w - 1), (3, 2, w - 3), (9, 3, 13)):
        x[0, ch, hh, ww] = value
    w_, b = fold_bn(conv_w, bn)
    ours = torch.ops.mbv3.dwconv_bn_act(x.to(BF16), w_.to(BF16), b, 1, 1, 1, "relu").double()
    ref = ACT_FN["relu"](F.conv2d(bf16_values(x).double(), w_.to(BF16).double(), b.double(), 1, 1, 1, c))
    assert torch.equal(ours.isnan(), ref.isnan()), cpu_isa
    assert torch.equal(ours.isposinf(), ref.isposinf()) and torch.equal(ours.isneginf(), ref.isneginf())


@pytest.mark.parametrize("c", [56, 48, 40])
@pytest.mark.parametrize("k,s", [(3, 1), (5, 2)])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")], ids=["nan", "+inf", "-inf"])
def test_bf16_non_finite_input_channel_tiles(value, k, s, c, cpu_isa_bf16):
    cpu_isa = cpu_isa_bf16
    # A 32-channel tile, then a masked one of 24 (56), a 16-channel one (48) or an 8-channel
    # widening tail (40); a non-finite value in each, in both rows of a kernel row pair and in the
    # odd last row's.
    x, conv_w, bn = make_case(1, c, 9, 8, k)
    for ch, hh, ww in ((5, 0, 0), (31, 4, 7), (33, 4, 3), (c - 9, 5, 3), (c - 1, 8, 5), (12, 3, 4), (12, 4, 4)):
        x[0, ch, hh, ww] = value
    w, b = fold_bn(conv_w, bn)
    ours = torch.ops.mbv3.dwconv_bn_act(x.to(BF16), w.to(BF16), b, s, k // 2, 1, "hardswish").double()
    ref = ACT_FN["hardswish"](F.conv2d(bf16_values(x).double(), w.to(BF16).double(), b.double(), s, k // 2, 1, c))
    assert torch.equal(ours.isnan(), ref.isnan()), cpu_isa
    assert torch.equal(ours.isposinf(), ref.isposinf()) and torch.equal(ours.isneginf(), ref.isneginf())


def _sub_bn(bn, idx):
    sub = nn.BatchNorm2d(bn.num_features // 2, eps=bn.eps).eval()
    with torch.no_grad():
        for name in ("running_mean", "running_var", "weight", "bias"):
            getattr(sub, name).copy_(getattr(bn, name)[idx])
    return sub


def test_bf16_rounding_is_round_to_nearest_even(cpu_isa_bf16):
    cpu_isa = cpu_isa_bf16
    # k = 1, weight 1: y = round_bf16(x + b) computed in float32, every element, against
    # PyTorch's own float32 -> bfloat16 conversion, bit for bit (ties, tiny values, overflow to
    # inf; NaN stays NaN).  Channel counts cover every vector tail.  avx512_bf16 rounds with
    # vcvtneps2bf16, which flushes float32 denormals (|y| < 2**-126) to zero, as oneDNN's bf16
    # kernels under PyTorch do: there those outputs are +-0, everything else is bit for bit.
    flushes = cpu_isa == "avx512_bf16"
    for c in (1, 7, 8, 16, 17, 33, 64):
        x = (torch.randn(2, c, 5, 3) * torch.logspace(-40, 38, 30)[torch.randint(0, 30, (2, c, 5, 3))]).to(BF16)
        b = torch.randn(c) * 10.0 ** torch.randint(-38, 39, (c,)).float()
        b[0] = float("nan") if c > 1 else b[0]
        w = torch.ones(c, 1, 1, 1, dtype=BF16)
        got = torch.ops.mbv3.dwconv_bn_act(x, w, b, 1, 0, 1, "none")
        want32 = x.float() + b[None, :, None, None]
        want = want32.to(BF16)
        # NaN: any NaN (PyTorch's own scalar and vectorised conversions store different bits).
        nan = want.isnan()
        assert torch.equal(got.isnan(), nan), c
        exact = ~nan
        if flushes:
            denormal = (want32.abs() < 2.0 ** -126) & (want32 != 0)
            assert (got[denormal] == 0).all(), c
            exact &= ~denormal
        assert torch.equal(got.view(torch.int16)[exact], want.view(torch.int16)[exact]), c


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")], ids=["nan", "+inf", "-inf"])
@pytest.mark.parametrize("act", ["hardswish", "relu", "none"])
def test_bf16_non_finite_input(value, act, cpu_isa_bf16):
    cpu_isa = cpu_isa_bf16
    x, conv_w, bn = make_case(1, 19, 7, 6, 3)
    x[0, 3, 2, 4] = value
    x[0, 18, 0, 0] = value
    w, b = fold_bn(conv_w, bn)
    ours = torch.ops.mbv3.dwconv_bn_act(x.to(BF16), w.to(BF16), b, 1, 1, 1, act).double()
    ref = ACT_FN[act](F.conv2d(bf16_values(x).double(), w.to(BF16).double(), b.double(), 1, 1, 1, 19))
    assert torch.equal(ours.isnan(), ref.isnan())
    assert torch.equal(ours.isposinf(), ref.isposinf()) and torch.equal(ours.isneginf(), ref.isneginf())


def test_bf16_bad_dtypes_raise_clear_errors():
    x, w, b = torch.randn(1, 8, 5, 5, dtype=BF16), torch.randn(8, 1, 3, 3), torch.randn(8)
    with pytest.raises(ValueError, match=r"weight must have x's dtype \(bfloat16\), got float32"):
        torch.ops.mbv3.dwconv_bn_act(x, w, b, 1, 1, 1, "relu")
    with pytest.raises(ValueError, match="float32 or bfloat16 on the CPU, got Half"):
        torch.ops.mbv3.dwconv_bn_act(x.half(), w.half(), b, 1, 1, 1, "relu")


def test_bf16_opcheck():
    x, conv_w, bn = make_case(2, 9, 6, 5, 3, channels_last=True)
    w, b = fold_bn(conv_w, bn)
    torch.library.opcheck(torch.ops.mbv3.dwconv_bn_act.default, (x.to(BF16), w.to(BF16), b, 2, 1, 1, "hardswish"))


@neon_harness.requires_toolchain
def test_bf16_neon_under_qemu():
    cpu = neon_harness.QEMU_CPUS[-1]
    cases, expected = neon_harness.CaseFile(), []
    for n, c, h, w, k, s, p, d, act in NEON_CASES:
        x, conv_w, bn = make_case(n, c, h, w, k)
        wf, bf = fold_bn(conv_w, bn)
        xv, wv = bf16_values(x), bf16_values(wf)
        oh, ow = (h + 2 * p - d * (k - 1) - 1) // s + 1, (w + 2 * p - d * (k - 1) - 1) // s + 1
        cases.i64(n, c, h, w, oh, ow, k, s, p, d, ACT_CODE[act])
        cases.floats(xv.permute(0, 2, 3, 1))
        cases.floats(wv.reshape(c, k * k).t())
        cases.floats(bf)
        cases.count += 1
        expected.append(((n, oh, ow, c), reference(xv, conv_w, bn, s, p, d, act),
                         reference(x, conv_w, bn, s, p, d, act, BF16), (n, c, h, w, k, s, act)))
    flat = neon_harness.run("dwconv_bn_act", cases, cpu, bf16=True)
    offset = 0
    for shape, ref64, ref_bf16, what in expected:
        size = shape[0] * shape[1] * shape[2] * shape[3]
        got = flat[offset:offset + size].reshape(shape).permute(0, 3, 1, 2).to(BF16)
        offset += size
        assert_within_rule(got, ref_bf16, ref64, f"neon bf16 {cpu} {what}")
    assert offset == flat.numel()
