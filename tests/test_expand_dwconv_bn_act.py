"""mbv3::expand_dwconv_bn_act on the CPU: the band-fused expand 1x1 conv + depthwise conv.

Two references: the float64 unfused chain (conv1x1 -> BN -> act -> depthwise conv -> BN ->
act, tolerance rule of tests/tolerance.py), and the two ops it fuses (pwconv_bn_act then
dwconv_bn_act): the values must be equal bit for bit, on every ISA and thread count.

NEON: this op has no kernel of its own; it composes the pointwise and depthwise kernels, whose
NEON builds run under qemu in their own tests, and the band logic here is ISA-independent
(it runs on every x86 path the machine has).
"""
import itertools

import pytest
import torch
import torch.nn.functional as F

from mbv3_fast.isa import cpu_isa_reads_k_pairs
from mbv3_fast.ops import fold_bn, pack_pw_weight, pack_weight_k_pairs
from mbv3_fast.testing import expand_depthwise_layers
from layers import ACT_FN, random_bn
from tolerance import assert_within_rule, bf16_values

OP = torch.ops.mbv3.expand_dwconv_bn_act.default


pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py


class Case:
    def __init__(self, n, cin, ce, h, w, eact, k, stride, pad, dil, act, channels_last=True):
        self.x = torch.randn(n, cin, h, w)
        if channels_last:
            self.x = self.x.contiguous(memory_format=torch.channels_last)
        self.ew = torch.randn(ce, cin, 1, 1) * (1.0 / cin) ** 0.5
        self.ebn = random_bn(ce)
        self.dw = torch.randn(ce, 1, k, k) * (2.0 / (k * k)) ** 0.5
        self.dbn = random_bn(ce)
        self.args = (eact, stride, pad, dil, act)

    def reference(self, dtype):
        eact, stride, pad, dil, act = self.args

        def bn(y, m):
            return F.batch_norm(y, m.running_mean.to(dtype), m.running_var.to(dtype),
                                m.weight.to(dtype), m.bias.to(dtype), False, 0.0, m.eps)
        y = ACT_FN[eact](bn(F.conv2d(self.x.to(dtype), self.ew.to(dtype)), self.ebn))
        y = F.conv2d(y, self.dw.to(dtype), None, stride, pad, dil, groups=y.shape[1])
        return ACT_FN[act](bn(y, self.dbn))

    def folded(self):
        ew, eb = fold_bn(self.ew, self.ebn)
        dw, db = fold_bn(self.dw, self.dbn)
        return pack_pw_weight(ew), eb, dw, db

    def run(self, x=None):
        ew, eb, dw, db = self.folded()
        eact, stride, pad, dil, act = self.args
        return OP(self.x if x is None else x, ew, eb, eact, dw, db, stride, pad, dil, act)

    def two_ops(self):
        ew, eb, dw, db = self.folded()
        eact, stride, pad, dil, act = self.args
        y = torch.ops.mbv3.pwconv_bn_act(self.x, ew, eb, eact, None, None)
        return torch.ops.mbv3.dwconv_bn_act(y, dw, db, stride, pad, dil, act)


def check(case, what):
    ours = case.run()
    two = case.two_ops()
    assert torch.equal(ours, two), f"{what}: differs from pwconv_bn_act -> dwconv_bn_act"
    cl_in = case.x.is_contiguous(memory_format=torch.channels_last) and not case.x.is_contiguous()
    assert ours.is_contiguous(memory_format=torch.channels_last if cl_in else torch.contiguous_format), what
    assert_within_rule(ours, case.reference(torch.float32), case.reference(torch.float64), what)


# -- MobileNetV3's own blocks, enumerated by torchvision ---------------------------------------
MBV3_BLOCKS = sorted({cfg for v in ("large", "small", "large-dilated") for cfg in expand_depthwise_layers(v)})


@pytest.mark.parametrize("cfg", MBV3_BLOCKS, ids=lambda c: "Cin{}_Ce{}_{}x{}_{}_k{}s{}p{}d{}_{}".format(*c))
def test_mobilenet_v3_blocks(cfg, cpu_isa):
    check(Case(1, *cfg), f"{cpu_isa} {cfg}")


def test_mobilenet_v3_blocks_nchw_batch():
    for cfg in expand_depthwise_layers("large")[:4]:
        check(Case(2, *cfg, channels_last=False), f"N2 nchw {cfg}")


# -- deliberately odd shapes --------------------------------------------------------------------
# (inputs smaller than the dilated kernel are rejected: test_bad_inputs covers them)
ODD = [c for c in itertools.product([1, 3, 7], [1, 17, 33], [(1, 1), (2, 3), (7, 5), (13, 11)],
                                    [(3, 1, 1, 1), (5, 2, 2, 1), (3, 1, 2, 2), (7, 3, 3, 1), (3, 2, 0, 1)])
       if min(c[2]) + 2 * c[3][2] >= c[3][3] * (c[3][0] - 1) + 1]


@pytest.mark.parametrize("cin,ce,hw,kspd", ODD, ids=lambda v: str(v))
def test_odd_shapes(cin, ce, hw, kspd, cpu_isa):
    k, s, p, d = kspd
    for n, cl in ((1, True), (3, False), (0, True)):
        check(Case(n, cin, ce, *hw, "hardswish", k, s, p, d, "relu", cl), f"{cpu_isa} N{n} {cin}->{ce} {hw} {kspd}")


def test_bands_and_windows():
    """Maps tall enough for many bands per thread and wide enough for one-row windows (the
    window budget is 192 KB: 960 x 56 floats is 215 KB a row), every thread count."""
    for cfg in [(8, 960, 9, 56, "hardswish", 3, 1, 1, 1, "hardswish"),
                (4, 24, 97, 9, "relu", 5, 2, 2, 1, "relu"),
                (3, 40, 50, 50, "hardswish", 5, 1, 2, 1, "none")]:
        case = Case(2, *cfg)
        outs = []
        for t in (1, 2, 3):
            torch.set_num_threads(t)
            outs.append(case.run())
        for o in outs[1:]:
            assert torch.equal(o, outs[0]), f"thread count changed the result: {cfg}"
        check(case, f"3 threads {cfg}")


def test_non_contiguous_input():
    case = Case(2, 12, 20, 9, 8, "relu", 3, 1, 1, 1, "hardswish", channels_last=False)
    big = torch.randn(2, 24, 9, 16)
    x = big[:, ::2, :, ::2]
    case.x = x
    assert not x.is_contiguous() and not x.is_contiguous(memory_format=torch.channels_last)
    check(case, "strided x")


def test_every_output_is_written():
    torch.ops.mbv3._debug_poison_outputs(True)
    try:
        for cfg in [(16, 64, 20, 20, "relu", 3, 2, 1, 1, "relu"), (5, 17, 7, 5, "hardswish", 5, 1, 2, 1, "none")]:
            for cl in (True, False):
                check(Case(2, *cfg, channels_last=cl), f"poisoned {cfg} cl={cl}")
    finally:
        torch.ops.mbv3._debug_poison_outputs(False)


def test_opcheck():
    for n, cl in ((2, True), (1, False), (0, True)):
        case = Case(n, 6, 10, 7, 5, "hardswish", 3, 2, 1, 1, "relu", cl)
        ew, eb, dw, db = case.folded()
        torch.library.opcheck(OP, (case.x, ew, eb, "hardswish", dw, db, 2, 1, 1, "relu"))


def _args(**over):
    a = dict(x=torch.randn(1, 4, 6, 6), ew=torch.randn(8, 4, 1, 1), eb=torch.randn(8), eact="relu",
             w=torch.randn(8, 1, 3, 3), b=torch.randn(8), stride=1, padding=1, dilation=1, act="relu")
    a.update(over)
    return list(a.values())


@pytest.mark.parametrize("over,exc,match", [
    (dict(x=torch.randn(1, 4, 6, 6).double()), ValueError, "x must be float32"),
    (dict(x=torch.randint(0, 3, (1, 4, 6, 6))), ValueError, "x must be float32"),
    (dict(x=torch.randn(4, 6, 6)), ValueError, "x must be 4-D"),
    (dict(ew=torch.randn(8, 5, 1, 1)), ValueError, r"expand_weight must be \[Ce, Cin, 1, 1\] .* Cin = 4"),
    (dict(ew=torch.randn(8, 4, 3, 3)), ValueError, r"expand_weight must be"),
    (dict(eb=torch.randn(7)), ValueError, r"expand_bias must be \[Ce\] with Ce = 8"),
    (dict(w=torch.randn(7, 1, 3, 3)), ValueError, r"weight must be \[Ce, 1, k, k\] with Ce = 8"),
    (dict(w=torch.randn(8, 1, 4, 4)), ValueError, "kernel size must be odd"),
    (dict(w=torch.randn(8, 1, 9, 9)), ValueError, "kernel size must be odd and <= 7"),
    (dict(b=torch.randn(9)), ValueError, r"bias must be \[Ce\] with Ce = 8"),
    (dict(stride=0), ValueError, "stride must be >= 1"),
    (dict(dilation=0), ValueError, "dilation must be >= 1"),
    (dict(padding=-1), ValueError, "padding must be >= 0"),
    (dict(eact="gelu"), ValueError, "unknown activation 'gelu'"),
    (dict(act="swish"), ValueError, "unknown activation 'swish'"),
    (dict(x=torch.randn(1, 4, 2, 2), w=torch.randn(8, 1, 7, 7), padding=0), ValueError,
     "smaller than the dilated kernel"),
    (dict(b=torch.randn(8, device="meta")), RuntimeError, "bias is on meta"),
])
def test_bad_inputs_raise_clear_errors(over, exc, match):
    with pytest.raises(exc, match=match):
        OP(*_args(**over))


# -- int arguments: range-checked (2**33 used to truncate to 0 in the binding: SIGFPE) ----------------
@pytest.mark.parametrize("device", ["cpu", "meta"])
@pytest.mark.parametrize("name,value,match", [
    ("stride", 0, "stride must be >= 1, got 0"),
    ("stride", -1, "stride must be >= 1"),
    ("stride", 2**33, f"stride must be <= 65536, got {2**33}"),
    ("dilation", 0, "dilation must be >= 1"),
    ("dilation", 2**33, "dilation must be <= 65536"),
    ("padding", -1, "padding must be >= 0"),
    ("padding", 2**33, "padding must be <= 65536"),
    ("padding", -2**33, "padding must be >= 0"),
])
def test_int_arguments_out_of_range(device, name, value, match):
    args = dict(zip(["x", "ew", "eb", "eact", "w", "b", "stride", "padding", "dilation", "act"], _args()))
    args[name] = value
    args = [a.to(device) if isinstance(a, torch.Tensor) else a for a in args.values()]
    with pytest.raises(ValueError, match=match):
        OP(*args)


def test_large_in_range_stride_computes(cpu_isa):
    x, ew, eb, w, b = (torch.randn(1, 4, 6, 6), torch.randn(8, 4, 1, 1), torch.randn(8),
                       torch.randn(8, 1, 3, 3), torch.randn(8))
    got = OP(x, ew, eb, "relu", w, b, 65536, 1, 1, "none")
    e = torch.relu(F.conv2d(x.double(), ew.double(), eb.double()))
    ref = F.conv2d(e, w.double(), b.double(), 65536, 1, 1, 8)
    torch.testing.assert_close(got.double(), ref, rtol=1e-5, atol=1e-5)


# -- bfloat16: equal to the two bf16 ops (the window holds bf16 rows, as pwconv_bn_act writes them)
BF16 = torch.bfloat16


def model_layout(ew):
    """The expand weight as the model keeps it on the path in force: K pairs where the path has
    the dot-product kernel (avx512_bf16), else [Ce, Cin, 1, 1] bf16."""
    return pack_weight_k_pairs(ew) if cpu_isa_reads_k_pairs() else ew.to(BF16)


def check_bf16(case, what):
    ew, eb, dw, db = case.folded()
    eact, stride, pad, dil, act = case.args
    xb, ewb, dwb = case.x.to(BF16), model_layout(ew), dw.to(BF16)
    ours = OP(xb, ewb, eb, eact, dwb, db, stride, pad, dil, act)
    assert ours.dtype == BF16
    y = torch.ops.mbv3.pwconv_bn_act(xb, ewb, eb, eact, None, None)
    assert torch.equal(ours, torch.ops.mbv3.dwconv_bn_act(y, dwb, db, stride, pad, dil, act)), what
    x64 = case.x
    case.x = bf16_values(x64)
    ref64 = case.reference(torch.float64)
    case.x = x64
    assert_within_rule(ours, case.reference(BF16), ref64, what)


@pytest.mark.parametrize("cfg", MBV3_BLOCKS, ids=lambda c: "Cin{}_Ce{}_{}x{}_{}_k{}s{}p{}d{}_{}".format(*c))
def test_bf16_mobilenet_v3_blocks(cfg, cpu_isa_bf16):
    cin, ce, h, w, eact, k, s, p, d, act = cfg
    check_bf16(Case(1, cin, ce, h, w, eact, k, s, p, d, act), f"bf16 {cpu_isa_bf16} {cfg}")


@pytest.mark.parametrize("cin,ce,hw,kspd", ODD[::3], ids=lambda v: str(v))
def test_bf16_odd_shapes(cin, ce, hw, kspd, cpu_isa_bf16):
    k, s, p, d = kspd
    for n, cl in ((1, True), (3, False)):
        check_bf16(Case(n, cin, ce, *hw, "relu", k, s, p, d, "hardswish", cl), f"bf16 {cpu_isa_bf16} {cin}->{ce} {hw}")


def test_bf16_bands_and_threads(cpu_isa_bf16):
    # Tall maps: several bands per thread and window moves; 1 and 2 threads bit-identical.
    case = Case(2, 24, 72, 57, 13, "relu", 5, 2, 2, 1, "hardswish")
    ew, eb, dw, db = case.folded()
    args = (case.x.to(BF16), model_layout(ew), eb, "relu", dw.to(BF16), db, 2, 2, 1, "hardswish")
    outs = []
    for t in (1, 2):
        torch.set_num_threads(t)
        outs.append(OP(*args))
    torch.set_num_threads(1)
    assert torch.equal(outs[0], outs[1])
    check_bf16(case, "bf16 bands")


def test_bf16_opcheck_and_errors():
    case = Case(2, 9, 20, 7, 6, "relu", 3, 2, 1, 1, "hardswish")
    ew, eb, dw, db = case.folded()
    for w in (ew.to(BF16), pack_weight_k_pairs(ew)):
        torch.library.opcheck(OP, (case.x.to(BF16), w, eb, "relu", dw.to(BF16), db, 2, 1, 1, "hardswish"))
    with pytest.raises(ValueError, match=r"expand_weight must have x's dtype \(bfloat16\), got float32"):
        OP(case.x.to(BF16), ew, eb, "relu", dw.to(BF16), db, 2, 1, 1, "hardswish")
    with pytest.raises(ValueError, match=r"weight must have x's dtype \(bfloat16\), got float32"):
        OP(case.x.to(BF16), ew.to(BF16), eb, "relu", dw, db, 2, 1, 1, "hardswish")
