"""NaN / +inf / -inf go through every CPU op as through PyTorch's reference: per op, per place
(input, weights, biases, residual, SE scale), per activation, per ISA (and NEON under qemu), the
positions of NaN, +inf and -inf in our output equal the float64 reference's, and the finite
values stay close to it.

The reference convolutions skip padded taps (padding adds no term), which is what PyTorch's
float32 CPU convolutions do on most shapes; PyTorch's float64 path (and some float32 shapes)
multiply the zero padding instead, so an inf or NaN weight there turns the border NaN: PyTorch
is not consistent with itself there, and we take the definition that does not depend on the
backend.  With finite weights both definitions agree.

OPS (below) is the one description of each op's arguments, kernel call and reference; the fuzz
and thread tests use it too.
"""
import math

import pytest
import torch
import torch.nn.functional as F

import mbv3_fast
import neon_harness
from mbv3_fast.ops import pack_pw_weight_panels
from layers import ACT_CODE, ACT_FN

ACTS = ("none", "relu", "hardswish")
VALUES = (float("nan"), float("inf"), float("-inf"))


# -- references (float64) ------------------------------------------------------------------------
def conv_ref(x, w, b, stride, padding, dilation=1, groups=1, dt=torch.float64):
    """conv2d (float64 by default) whose padded taps add nothing (not 0 * w: see the module doc)."""
    x, w, b = x.to(dt), w.to(dt), b.to(dt)
    n, c, h, wd = x.shape
    cout, cg, k, _ = w.shape
    oh = (h + 2 * padding - dilation * (k - 1) - 1) // stride + 1
    ow = (wd + 2 * padding - dilation * (k - 1) - 1) // stride + 1
    if not (torch.isfinite(w).all()):
        kw = dict(kernel_size=k, dilation=dilation, padding=padding, stride=stride)
        cols = F.unfold(x, **kw).view(n, groups, cg * k * k, oh * ow)
        inside = F.unfold(torch.ones(1, c, h, wd, dtype=x.dtype), **kw).view(1, groups, cg * k * k, oh * ow) > 0
        wv = w.reshape(groups, cout // groups, cg * k * k)
        prod = cols[:, :, None] * wv[None, :, :, :, None]
        prod = torch.where(inside[:, :, None], prod, torch.zeros((), dtype=x.dtype))
        y = prod.sum(3).reshape(n, cout, oh, ow)
    else:  # the same value, faster
        y = F.conv2d(x, w, None, stride, padding, dilation, groups)
    return y + b.view(1, -1, 1, 1)


def act(t, a):
    return ACT_FN[a](t)


def dw_ref(x, w, b, stride, padding, dilation, a, dt=torch.float64):
    return act(conv_ref(x, w, b, stride, padding, dilation, x.shape[1], dt), a)


def pw_ref(x, w, b, a, residual=None, in_scale=None, dt=torch.float64):
    x = x.to(dt)
    if in_scale is not None:
        x = x * in_scale.to(dt)[:, :, None, None]
    y = act(conv_ref(x, w.reshape(w.shape[0], w.shape[1], 1, 1), b, 1, 0, dt=dt), a)
    return y if residual is None else y + residual.to(dt)


def se_scale_ref(x, w1, b1, w2, b2, dt=torch.float64):
    m = x.to(dt).mean((2, 3))
    h = F.relu(m @ w1.to(dt).reshape(w1.shape[0], -1).t() + b1.to(dt))
    return F.hardsigmoid(h @ w2.to(dt).reshape(w2.shape[0], -1).t() + b2.to(dt))


def se_ref(x, w1, b1, w2, b2, dt=torch.float64):
    return x.to(dt) * se_scale_ref(x, w1, b1, w2, b2, dt)[:, :, None, None]


def head_ref(x, w1, b1, w2, b2, a, dt=torch.float64):
    m = x.to(dt).mean((2, 3))
    return act(m @ w1.to(dt).t() + b1.to(dt), a) @ w2.to(dt).t() + b2.to(dt)


# -- the ops: arguments, our call, reference -----------------------------------------------------
class Op:
    """make(rng, shape, a) -> dict of named tensors + non-tensor args; ours(d) / ref(d)."""

    def __init__(self, name, tensors, make, ours, ref, shapes):
        self.name, self.tensors, self.make, self.ours, self.ref, self.shapes = \
            name, tensors, make, ours, ref, shapes


def _rand(*shape):
    return torch.randn(*shape)


def _dw_make(shape, a):
    n, c, h, w, k, s, p, d = shape
    return dict(x=_rand(n, c, h, w), weight=_rand(c, 1, k, k) * 0.3, bias=_rand(c),
                stride=s, padding=p, dilation=d, activation=a)


def _pw_make(shape, a, res=False, scale=False):
    n, cin, cout, h, w = shape
    d = dict(x=_rand(n, cin, h, w), weight=_rand(cout, cin, 1, 1) / math.sqrt(cin), bias=_rand(cout),
             activation=a, residual=None, in_scale=None)
    if res:
        d["residual"] = _rand(n, cout, h, w)
    if scale:
        d["in_scale"] = torch.rand(n, cin)
    return d


def _expand_make(shape, a):
    n, cin, ce, h, w, k, s, p, d = shape
    return dict(x=_rand(n, cin, h, w), expand_weight=_rand(ce, cin, 1, 1) / math.sqrt(cin),
                expand_bias=_rand(ce), expand_activation=a, weight=_rand(ce, 1, k, k) * 0.3,
                bias=_rand(ce), stride=s, padding=p, dilation=d, activation=a)


def _se_make(shape, a=None):
    n, c, sq, h, w = shape
    return dict(x=_rand(n, c, h, w), w1=_rand(sq, c, 1, 1) / math.sqrt(c), b1=_rand(sq),
                w2=_rand(c, sq, 1, 1) / math.sqrt(sq), b2=_rand(c))


def _conv_make(shape, a):
    n, cin, cout, h, w, k, s, p = shape
    return dict(x=_rand(n, cin, h, w), weight=_rand(cout, cin, k, k) / math.sqrt(cin * k * k),
                bias=_rand(cout), stride=s, padding=p, activation=a)


def _head_make(shape, a):
    n, c, hidden, classes, h, w = shape
    return dict(x=_rand(n, c, h, w), w1=_rand(hidden, c) / math.sqrt(c), b1=_rand(hidden),
                w2=_rand(classes, hidden) / math.sqrt(hidden), b2=_rand(classes), activation=a)


M = torch.ops.mbv3
OPS = {
    "dwconv_bn_act": Op(
        "dwconv_bn_act", ("x", "weight", "bias"), _dw_make,
        lambda d: M.dwconv_bn_act(d["x"], d["weight"], d["bias"], d["stride"], d["padding"], d["dilation"], d["activation"]),
        lambda d, dt=torch.float64: dw_ref(d["x"], d["weight"], d["bias"], d["stride"], d["padding"], d["dilation"], d["activation"], dt),
        # N C H W k stride pad dil: tails, borders, both kernel families, 1x1 maps, non-square
        [(1, 17, 9, 8, 3, 1, 1, 1), (2, 7, 6, 5, 5, 2, 2, 1), (1, 33, 7, 7, 3, 2, 1, 1),
         (1, 9, 1, 1, 3, 1, 1, 1), (3, 5, 6, 6, 3, 1, 2, 2), (1, 72, 5, 4, 5, 1, 2, 1)]),
    "pwconv_bn_act": Op(
        "pwconv_bn_act", ("x", "weight", "bias"), _pw_make,
        lambda d: M.pwconv_bn_act(d["x"], d["weight"], d["bias"], d["activation"], d["residual"], d["in_scale"]),
        lambda d, dt=torch.float64: pw_ref(d["x"], d["weight"], d["bias"], d["activation"], d["residual"], d["in_scale"], dt),
        [(1, 17, 33, 5, 3), (2, 80, 7, 4, 4), (1, 1, 1, 1, 1), (3, 24, 72, 1, 1)]),
    "pwconv_bn_act+residual": Op(
        "pwconv_bn_act+residual", ("x", "weight", "bias", "residual"),
        lambda s, a: _pw_make(s, a, res=True), None, None, [(1, 17, 33, 5, 3), (3, 24, 24, 2, 2)]),
    "pwconv_bn_act+in_scale": Op(
        "pwconv_bn_act+in_scale", ("x", "weight", "bias", "in_scale"),
        lambda s, a: _pw_make(s, a, scale=True), None, None,
        [(1, 17, 33, 5, 3), (2, 40, 7, 6, 6), (3, 96, 576, 1, 1)]),
    # The weight packed in panels (the model's float32 layout on AVX2), of d["panel_cols"] or
    # 24 columns: AVX2's own width, a 16 + 8 split of each panel on AVX-512.
    "pwconv_bn_act+panels": Op(
        "pwconv_bn_act+panels", ("x", "weight", "bias", "residual", "in_scale"),
        lambda s, a: _pw_make(s, a, res=True, scale=True),
        lambda d: M.pwconv_bn_act(d["x"], pack_pw_weight_panels(d["weight"], d.get("panel_cols", 24)), d["bias"],
                                  d["activation"], d["residual"], d["in_scale"]),
        None, [(1, 17, 33, 5, 3), (2, 40, 50, 6, 6), (1, 96, 200, 1, 1)]),
    "expand_dwconv_bn_act": Op(
        "expand_dwconv_bn_act", ("x", "expand_weight", "expand_bias", "weight", "bias"), _expand_make,
        lambda d: M.expand_dwconv_bn_act(d["x"], d["expand_weight"], d["expand_bias"], d["expand_activation"],
                                         d["weight"], d["bias"], d["stride"], d["padding"], d["dilation"],
                                         d["activation"]),
        lambda d, dt=torch.float64: dw_ref(
            act(conv_ref(d["x"], d["expand_weight"], d["expand_bias"], 1, 0, dt=dt), d["expand_activation"]),
            d["weight"], d["bias"], d["stride"], d["padding"], d["dilation"], d["activation"], dt),
        [(1, 7, 17, 9, 8, 3, 1, 1, 1), (2, 16, 40, 6, 5, 5, 2, 2, 1), (1, 3, 9, 1, 1, 3, 1, 1, 1)]),
    "se": Op(
        "se", ("x", "w1", "b1", "w2", "b2"), _se_make,
        lambda d: M.se(d["x"], d["w1"], d["b1"], d["w2"], d["b2"]),
        lambda d, dt=torch.float64: se_ref(d["x"], d["w1"], d["b1"], d["w2"], d["b2"], dt),
        [(1, 17, 8, 5, 3), (2, 72, 24, 7, 7), (3, 1, 1, 1, 1)]),
    "se_scale": Op(
        "se_scale", ("x", "w1", "b1", "w2", "b2"), _se_make,
        lambda d: M.se_scale(d["x"], d["w1"], d["b1"], d["w2"], d["b2"]),
        lambda d, dt=torch.float64: se_scale_ref(d["x"], d["w1"], d["b1"], d["w2"], d["b2"], dt),
        [(1, 17, 8, 5, 3), (2, 72, 24, 7, 7)]),
    # FC weights packed in panels of d["panel_rows"] or 16 outputs (several panels and a
    # zero-padded tail at these shapes).
    "se+panels": Op(
        "se+panels", ("x", "w1", "b1", "w2", "b2"), _se_make,
        lambda d: M.se(d["x"], pack_pw_weight_panels(d["w1"], d.get("panel_rows", 16)), d["b1"],
                       pack_pw_weight_panels(d["w2"], d.get("panel_rows", 16)), d["b2"]),
        None, [(1, 17, 33, 5, 3), (2, 72, 24, 7, 7), (3, 1, 1, 1, 1)]),
    "conv_bn_act": Op(
        "conv_bn_act", ("x", "weight", "bias"), _conv_make,
        lambda d: M.conv_bn_act(d["x"], d["weight"], d["bias"], d["stride"], d["padding"], d["activation"]),
        lambda d, dt=torch.float64: act(conv_ref(d["x"], d["weight"], d["bias"], d["stride"], d["padding"], dt=dt), d["activation"]),
        # N Cin Cout H W k stride pad: the stem, odd channel counts, a 1x1 map
        [(1, 3, 16, 9, 8, 3, 2, 1), (2, 1, 17, 5, 6, 3, 1, 1), (1, 4, 7, 1, 1, 3, 1, 1), (1, 3, 33, 7, 7, 5, 2, 2)]),
    "classifier_head": Op(
        "classifier_head", ("x", "w1", "b1", "w2", "b2"), _head_make,
        lambda d: M.classifier_head(d["x"], d["w1"], d["b1"], d["w2"], d["b2"], d["activation"]),
        lambda d, dt=torch.float64: head_ref(d["x"], d["w1"], d["b1"], d["w2"], d["b2"], d["activation"], dt),
        # N C hidden classes H W
        [(1, 17, 33, 9, 3, 2), (3, 96, 40, 17, 1, 1), (2, 5, 7, 3, 7, 7)]),
    "classifier_head+panels": Op(
        "classifier_head+panels", ("x", "w1", "b1", "w2", "b2"), _head_make,
        lambda d: M.classifier_head(d["x"], pack_pw_weight_panels(d["w1"], d.get("panel_rows", 16)), d["b1"],
                                    pack_pw_weight_panels(d["w2"], d.get("panel_rows", 16)), d["b2"], d["activation"]),
        None, [(1, 17, 33, 9, 3, 2), (3, 96, 70, 17, 1, 1), (1, 40, 64, 130, 2, 2)]),
}
for _v in ("pwconv_bn_act+residual", "pwconv_bn_act+in_scale"):
    OPS[_v].ours, OPS[_v].ref = OPS["pwconv_bn_act"].ours, OPS["pwconv_bn_act"].ref
OPS["pwconv_bn_act+panels"].ref = OPS["pwconv_bn_act"].ref
OPS["se+panels"].ref = OPS["se"].ref
OPS["classifier_head+panels"].ref = OPS["classifier_head"].ref
HAS_ACT = {name: name not in ("se", "se_scale", "se+panels") for name in OPS}


def channels_last(d):
    """The same arguments with x (and the residual) channels_last."""
    d = dict(d)
    for k in ("x", "residual"):
        if d.get(k) is not None:
            d[k] = d[k].contiguous(memory_format=torch.channels_last)
    return d


def inject(t, value, gen, count=2, first_tap=False):
    """A copy of t with `value` at `count` random positions (and, for conv weights, at the first
    tap of a random output channel: the tap that reads the top-left padding)."""
    t = t.clone()
    flat = t.view(-1)
    for i in torch.randint(0, flat.numel(), (count,), generator=gen).tolist():
        flat[i] = value
    if first_tap and t.dim() == 4 and t.shape[2] > 1:
        c = int(torch.randint(0, t.shape[0], (1,), generator=gen))
        t[c, :, 0, 0] = value
    return t


def assert_same_nonfinite(got, ref, what):
    got = got.double()
    assert got.shape == ref.shape, f"{what}: shape {tuple(got.shape)} != {tuple(ref.shape)}"
    for f in (torch.isnan, torch.isposinf, torch.isneginf):
        bad = f(got) != f(ref)
        if bad.any():
            idx = bad.nonzero()[:4].tolist()
            raise AssertionError(f"{what}: {f.__name__} differs at {int(bad.sum())} of {got.numel()} "
                                 f"elements, e.g. {idx}: ours {got[bad][:4].tolist()} ref {ref[bad][:4].tolist()}")
    fin = torch.isfinite(ref)
    if fin.any():
        scale = max(1.0, ref[fin].abs().max().item())
        err = (got[fin] - ref[fin]).abs().max().item()
        assert err <= 1e-4 * scale, f"{what}: finite values off by {err:.3e} (scale {scale:.3g})"


def _cases(op_name, where, a):
    op = OPS[op_name]
    gen = torch.Generator().manual_seed(1234)
    for shape in op.shapes:
        base = op.make(shape, a)
        for value in VALUES:
            d = dict(base)
            d[where] = inject(d[where], value, gen, first_tap=where in ("weight",))
            yield shape, value, d


PLACES = [(name, where) for name, op in OPS.items() for where in op.tensors]


@pytest.mark.parametrize("op_name,where", PLACES, ids=[f"{n}-{w}" for n, w in PLACES])
@pytest.mark.parametrize("a", ACTS)
def test_nonfinite_like_reference(cpu_isa, op_name, where, a):
    if not HAS_ACT[op_name] and a != "none":
        pytest.skip("se / se_scale have fixed activations (ReLU, hardsigmoid): run once, as 'none'")
    op = OPS[op_name]
    for shape, value, d in _cases(op_name, where, a):
        ref = op.ref(d)
        for layout, dd in (("nchw", d), ("channels_last", channels_last(d))):
            got = op.ours(dd)
            assert_same_nonfinite(got.reshape(ref.shape), ref,
                                  f"{cpu_isa} {op_name} {where}={value} act={a} {shape} {layout}")


def test_nan_pixel_reaches_every_channel_through_se(cpu_isa):
    # The defect of issue #18: ReLU in FC1 turned the NaN mean into 0, leaving one NaN output.
    x = torch.randn(2, 24, 5, 5)
    x[0, 3, 2, 1] = float("nan")
    d = _se_make((2, 24, 8, 5, 5))
    y = M.se(x, d["w1"], d["b1"], d["w2"], d["b2"])
    assert torch.isnan(y[0]).all() and torch.isfinite(y[1]).all()


def test_activations_map_nonfinite_like_torch(cpu_isa):
    # Every activation on its own: a 1x1 depthwise conv with weight 1, bias 0 is the identity.
    v = torch.tensor([float("nan"), float("inf"), float("-inf"), -3.5, -0.5, 0.0, 2.0, 7.0] * 3)
    x = v.view(1, -1, 1, 1)
    c = x.shape[1]
    for a in ACTS:
        got = M.dwconv_bn_act(x, torch.ones(c, 1, 1, 1), torch.zeros(c), 1, 0, 1, a)
        assert_same_nonfinite(got, act(x.double(), a), f"{cpu_isa} {a}")


# -- the model, against torchvision --------------------------------------------------------------
@pytest.mark.parametrize("value", VALUES)
def test_model_nonfinite_pixel_like_torchvision(value):
    tv = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    ref_model = tv.models.mobilenet_v3_small().eval()
    ours = mbv3_fast.from_torchvision(ref_model)
    x = torch.randn(2, 3, 64, 64)
    x[0, 1, 10, 20] = value
    with torch.no_grad():
        ref = ref_model(x).double()
        got = ours(x)
    assert torch.isnan(ref[0]).all(), "torchvision itself should give NaN logits here"
    assert_same_nonfinite(got, ref, f"model pixel={value}")


# -- NEON under qemu -----------------------------------------------------------------------------
def _neon_cases(only):
    """{op: [(case file writer, output shape, view, reference, what)]} for the NEON harness of `only`."""
    gen = torch.Generator().manual_seed(99)
    out = {}
    rows = []
    for shape in (OPS["dwconv_bn_act"].shapes if only == "dwconv_bn_act" else []):
        for a in ACTS:
            for where in ("x", "weight", "bias"):
                for value in VALUES:
                    d = _dw_make(shape, a)
                    d[where] = inject(d[where], value, gen, first_tap=where == "weight")
                    n, c, h, w, k, s, p, dl = shape
                    ref = dw_ref(d["x"], d["weight"], d["bias"], s, p, dl, a)
                    oh, ow = ref.shape[2:]

                    def write(cf, d=d, n=n, c=c, h=h, w=w, oh=oh, ow=ow, k=k, s=s, p=p, dl=dl, a=a):
                        cf.i64(n, c, h, w, oh, ow, k, s, p, dl, ACT_CODE[a])
                        cf.floats(d["x"].permute(0, 2, 3, 1))
                        cf.floats(d["weight"].reshape(c, k * k).t())
                        cf.floats(d["bias"])
                    rows.append((write, (n, oh, ow, c), lambda t: t.permute(0, 3, 1, 2), ref, f"dw {shape} {a} {where}={value}"))
    out["dwconv_bn_act"] = rows
    rows = []
    for shape in ([(1, 17, 33, 5, 3), (2, 24, 7, 4, 4)] if only == "pwconv_bn_act" else []):
        for a in ACTS:
            for where in ("x", "weight", "bias", "residual", "in_scale"):
                for value in VALUES:
                    d = _pw_make(shape, a, res=where == "residual", scale=where == "in_scale")
                    d[where] = inject(d[where], value, gen)
                    ref = pw_ref(d["x"], d["weight"], d["bias"], a, d["residual"], d["in_scale"])
                    n, cin, cout, h, w = shape

                    def write(cf, d=d, n=n, cin=cin, cout=cout, hw=h * w, a=a):
                        cf.i64(n, cin, cout, hw, ACT_CODE[a], int(d["residual"] is not None), int(d["in_scale"] is not None))
                        cf.floats(d["x"].permute(0, 2, 3, 1))
                        cf.floats(d["weight"].reshape(cout, cin).t())
                        cf.floats(d["bias"])
                        if d["residual"] is not None:
                            cf.floats(d["residual"].permute(0, 2, 3, 1))
                        if d["in_scale"] is not None:
                            cf.floats(d["in_scale"])
                    rows.append((write, (n, h * w, 1, cout), lambda t: t.permute(0, 3, 1, 2), ref, f"pw {shape} {a} {where}={value}"))
    out["pwconv_bn_act"] = rows
    rows = []
    for shape in (OPS["se"].shapes if only == "se" else []):
        for where in ("x", "w1", "b1", "w2", "b2"):
            for value in VALUES:
                d = _se_make(shape)
                d[where] = inject(d[where], value, gen)
                n, c, sq, h, w = shape
                ref = torch.cat([OPS["se"].ref(d).permute(0, 2, 3, 1).reshape(-1), OPS["se_scale"].ref(d).reshape(-1)])

                def write(cf, d=d, n=n, c=c, sq=sq, hw=h * w):
                    cf.i64(n, c, sq, hw, 1, 0, 0, 7)
                    cf.floats(d["x"].permute(0, 2, 3, 1))
                    cf.floats(d["w1"].reshape(sq, c))
                    cf.floats(d["b1"])
                    cf.floats(d["w2"].reshape(c, sq))
                    cf.floats(d["b2"])
                rows.append((write, (ref.numel(),), lambda t: t, ref, f"se {shape} {where}={value}"))
    out["se"] = rows
    rows = []
    for shape in (OPS["conv_bn_act"].shapes if only == "conv_bn_act" else []):
        for a in ACTS:
            for where in ("x", "weight", "bias"):
                for value in VALUES:
                    d = _conv_make(shape, a)
                    d[where] = inject(d[where], value, gen, first_tap=where == "weight")
                    n, cin, cout, h, w, k, s, p = shape
                    ref = act(conv_ref(d["x"], d["weight"], d["bias"], s, p), a)
                    oh, ow = ref.shape[2:]

                    def write(cf, d=d, n=n, cin=cin, h=h, w=w, cout=cout, oh=oh, ow=ow, k=k, s=s, p=p, a=a):
                        x = d["x"].contiguous()
                        cf.i64(n, cin, h, w, cout, oh, ow, k, s, p, ACT_CODE[a], *x.stride(), x.numel())
                        cf.floats(x)
                        cf.floats(d["weight"].permute(2, 3, 1, 0))
                        cf.floats(d["bias"])
                    rows.append((write, (n, oh, ow, cout), lambda t: t.permute(0, 3, 1, 2), ref, f"conv {shape} {a} {where}={value}"))
    out["conv_bn_act"] = rows
    rows = []
    for shape in (OPS["classifier_head"].shapes if only == "classifier_head" else []):
        for a in ACTS:
            for where in ("x", "w1", "b1", "w2", "b2"):
                for value in VALUES:
                    d = _head_make(shape, a)
                    d[where] = inject(d[where], value, gen)
                    n, c, hidden, classes, h, w = shape
                    ref = OPS["classifier_head"].ref(d)

                    def write(cf, d=d, n=n, c=c, hidden=hidden, classes=classes, hw=h * w, a=a):
                        cf.i64(n, c, hw, 1, hidden, classes, ACT_CODE[a], 0, 0)
                        cf.floats(d["x"].permute(0, 2, 3, 1))
                        cf.floats(d["w1"])
                        cf.floats(d["b1"])
                        cf.floats(d["w2"])
                        cf.floats(d["b2"])
                    rows.append((write, (n, classes), lambda t: t, ref, f"head {shape} {a} {where}={value}"))
    out["classifier_head"] = rows
    return out


@neon_harness.requires_toolchain
@pytest.mark.parametrize("op", ["dwconv_bn_act", "pwconv_bn_act", "se", "conv_bn_act", "classifier_head"])
def test_neon_nonfinite_under_qemu(op):
    rows = _neon_cases(op)[op]
    cf = neon_harness.CaseFile()
    for write, *_ in rows:
        write(cf)
        cf.count += 1
    flat = neon_harness.run(op, cf, neon_harness.QEMU_CPUS[0])
    off = 0
    for _, shape, view, ref, what in rows:
        size = math.prod(shape)
        got = view(flat[off:off + size].reshape(shape))
        off += size
        assert_same_nonfinite(got.reshape(ref.shape), ref, f"neon {what}")
    assert off == flat.numel()
