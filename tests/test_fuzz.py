"""Property-based fuzzing of every CPU op against the float64 reference (tolerance rule of
tests/tolerance.py): random shapes (channels 1-80, maps 1x1 to 40x40, batch 0-3), kernel size,
stride, padding, dilation, NCHW / channels_last / non-contiguous inputs, weights with odd
strides, every ISA this machine runs.

CI runs the `ci` profile (100 examples per op, derandomized); a deep run:
  python3 -m pytest tests/test_fuzz.py --hypothesis-profile=long
"""
import pytest
import torch

hypothesis = pytest.importorskip("hypothesis", reason="hypothesis is a test dependency (make deps)")
from hypothesis import given, strategies as st  # noqa: E402

import mbv3_fast  # noqa: E402
from test_nonfinite import OPS  # noqa: E402
from tolerance import assert_within_rule  # noqa: E402

ISAS = mbv3_fast.available_cpu_isas()
ACTS = ("none", "relu", "hardswish")
LAYOUTS = ("nchw", "channels_last", "strided")

pytestmark = pytest.mark.usefixtures("one_thread")


def _tensor(gen, shape, layout="nchw", scale=1.0):
    """Random float32 data of `shape` in a given memory layout: contiguous, channels_last (4-D),
    or a strided view into a larger buffer (every dimension stepped or offset)."""
    if layout == "strided":
        big = torch.randn(*[2 * s + 1 for s in shape], generator=gen) * scale
        return big[tuple(slice(1, 1 + 2 * s, 2) for s in shape)]
    t = torch.randn(*shape, generator=gen) * scale
    if layout == "channels_last" and t.dim() == 4:
        t = t.contiguous(memory_format=torch.channels_last)
    elif layout == "transposed" and t.dim() >= 2:  # [a, b, ...] stored as [b, a, ...]
        t = t.transpose(0, 1).contiguous().transpose(0, 1)
    return t


def _weight_layout(draw):
    return draw(st.sampled_from(("nchw", "strided", "transposed")))


def _check(op, d, isa, what):
    before = mbv3_fast.get_cpu_isa()
    mbv3_fast.set_cpu_isa(isa)
    try:
        got = op.ours(d)
    finally:
        mbv3_fast.set_cpu_isa(before)
    ref64 = op.ref(d)
    ref32 = op.ref(d, torch.float32)
    assert_within_rule(got.reshape(ref64.shape), ref32, ref64, what)


def _geometry(draw, h, w, k_choices=(1, 3, 5, 7)):
    """(k, stride, padding, dilation) valid for an h x w map."""
    k = draw(st.sampled_from(k_choices))
    d = draw(st.integers(1, 2)) if k > 1 else 1
    s = draw(st.integers(1, 3))
    span = d * (k - 1) + 1
    p_min = max(0, (span - min(h, w) + 1) // 2)
    p = draw(st.integers(p_min, max(p_min, span)))
    return k, s, p, d


common = dict(isa=st.sampled_from(ISAS), seed=st.integers(0, 2**31 - 1), a=st.sampled_from(ACTS),
              layout=st.sampled_from(LAYOUTS), n=st.integers(0, 3))


@given(data=st.data(), c=st.integers(1, 80), h=st.integers(1, 40), w=st.integers(1, 40), **common)
def test_fuzz_dwconv_bn_act(data, c, h, w, isa, seed, a, layout, n):
    gen = torch.Generator().manual_seed(seed)
    k, s, p, d = _geometry(data.draw, h, w)
    dd = dict(x=_tensor(gen, (n, c, h, w), layout),
              weight=_tensor(gen, (c, 1, k, k), data.draw(st.sampled_from(("nchw", "strided"))), 0.3),
              bias=_tensor(gen, (c,), "strided"), stride=s, padding=p, dilation=d, activation=a)
    _check(OPS["dwconv_bn_act"], dd, isa, f"dw {isa} {n}x{c}x{h}x{w} k{k} s{s} p{p} d{d} {a} {layout}")


@given(data=st.data(), cin=st.integers(1, 80), cout=st.integers(1, 80), h=st.integers(1, 40),
       w=st.integers(1, 40), res=st.booleans(), scale=st.booleans(), **common)
def test_fuzz_pwconv_bn_act(data, cin, cout, h, w, res, scale, isa, seed, a, layout, n):
    gen = torch.Generator().manual_seed(seed)
    wl = _weight_layout(data.draw)
    dd = dict(x=_tensor(gen, (n, cin, h, w), layout),
              weight=_tensor(gen, (cout, cin, 1, 1) if data.draw(st.booleans()) else (cout, cin), wl, cin ** -0.5),
              bias=_tensor(gen, (cout,)), activation=a,
              residual=_tensor(gen, (n, cout, h, w), data.draw(st.sampled_from(LAYOUTS))) if res else None,
              in_scale=_tensor(gen, (n, cin), data.draw(st.sampled_from(("nchw", "strided")))).abs() if scale else None)
    # Or the weight packed in panels of any width (every ISA reads any).
    panel = data.draw(st.sampled_from((0, 0, 1, 5, 8, 16, 24, 64)))
    op = OPS["pwconv_bn_act+panels"] if panel else OPS["pwconv_bn_act"]
    _check(op, dict(dd, panel_cols=panel), isa,
           f"pw {isa} {n}x{cin}->{cout} {h}x{w} w={wl} panels={panel} res={res} scale={scale} {a} {layout}")


@given(data=st.data(), cin=st.integers(1, 40), ce=st.integers(1, 80), h=st.integers(1, 40),
       w=st.integers(1, 40), a2=st.sampled_from(ACTS), **common)
def test_fuzz_expand_dwconv_bn_act(data, cin, ce, h, w, a2, isa, seed, a, layout, n):
    gen = torch.Generator().manual_seed(seed)
    k, s, p, d = _geometry(data.draw, h, w)
    dd = dict(x=_tensor(gen, (n, cin, h, w), layout),
              expand_weight=_tensor(gen, (ce, cin, 1, 1), _weight_layout(data.draw), cin ** -0.5),
              expand_bias=_tensor(gen, (ce,)), expand_activation=a,
              weight=_tensor(gen, (ce, 1, k, k), data.draw(st.sampled_from(("nchw", "strided"))), 0.3),
              bias=_tensor(gen, (ce,)), stride=s, padding=p, dilation=d, activation=a2)
    _check(OPS["expand_dwconv_bn_act"], dd, isa,
           f"expand {isa} {n}x{cin}->{ce} {h}x{w} k{k} s{s} p{p} d{d} {a}/{a2} {layout}")


@given(data=st.data(), c=st.integers(1, 80), sq=st.integers(1, 80), h=st.integers(1, 40),
       w=st.integers(1, 40), scale_only=st.booleans(), **common)
def test_fuzz_se(data, c, sq, h, w, scale_only, isa, seed, a, layout, n):
    gen = torch.Generator().manual_seed(seed)
    four_d = data.draw(st.booleans())
    dd = dict(x=_tensor(gen, (n, c, h, w), layout),
              w1=_tensor(gen, (sq, c, 1, 1) if four_d else (sq, c), _weight_layout(data.draw), c ** -0.5),
              b1=_tensor(gen, (sq,)),
              w2=_tensor(gen, (c, sq, 1, 1) if four_d else (c, sq), _weight_layout(data.draw), sq ** -0.5),
              b2=_tensor(gen, (c,)))
    # Or (se) both FC weights packed in panels of any height (every ISA reads any).
    panel = 0 if scale_only else data.draw(st.sampled_from((0, 0, 1, 5, 16, 64)))
    name = "se_scale" if scale_only else "se+panels" if panel else "se"
    _check(OPS[name], dict(dd, panel_rows=panel), isa, f"{name} {isa} {n}x{c} S{sq} {h}x{w} panels={panel} {layout}")


@given(data=st.data(), cin=st.integers(1, 8), cout=st.integers(1, 80), h=st.integers(1, 40),
       w=st.integers(1, 40), **common)
def test_fuzz_conv_bn_act(data, cin, cout, h, w, isa, seed, a, layout, n):
    gen = torch.Generator().manual_seed(seed)
    k = data.draw(st.sampled_from((1, 3, 5, 7)))
    s = data.draw(st.integers(1, 3))
    p_min = max(0, (k - min(h, w) + 1) // 2)
    p = data.draw(st.integers(p_min, max(p_min, k)))
    dd = dict(x=_tensor(gen, (n, cin, h, w), layout),
              weight=_tensor(gen, (cout, cin, k, k), _weight_layout(data.draw), (cin * k * k) ** -0.5),
              bias=_tensor(gen, (cout,)), stride=s, padding=p, activation=a)
    _check(OPS["conv_bn_act"], dd, isa, f"conv {isa} {n}x{cin}->{cout} {h}x{w} k{k} s{s} p{p} {a} {layout}")


@given(data=st.data(), c=st.integers(1, 80), hidden=st.integers(1, 80), classes=st.integers(1, 80),
       h=st.integers(1, 40), w=st.integers(1, 40), **common)
def test_fuzz_classifier_head(data, c, hidden, classes, h, w, isa, seed, a, layout, n):
    gen = torch.Generator().manual_seed(seed)
    dd = dict(x=_tensor(gen, (n, c, h, w), layout),
              w1=_tensor(gen, (hidden, c), _weight_layout(data.draw), c ** -0.5), b1=_tensor(gen, (hidden,)),
              w2=_tensor(gen, (classes, hidden), _weight_layout(data.draw), hidden ** -0.5),
              b2=_tensor(gen, (classes,)), activation=a)
    panel = data.draw(st.sampled_from((0, 0, 1, 5, 16, 64)))
    _check(OPS["classifier_head+panels" if panel else "classifier_head"], dict(dd, panel_rows=panel), isa,
           f"head {isa} {n}x{c} {hidden}->{classes} {h}x{w} panels={panel} {a} {layout}")
