"""The ``(weights, spec, fspec)`` of ``mbv3::q8_mobilenet_v3``: the int8 plan (model.py's
``_Plan``) as one tensor list, one int list and one float list, so that the whole forward is one
op call (csrc/q8_mobilenet_v3/q8_mobilenet_v3_op.cpp parses them into the same records and runs
the same ops in C++).

Records are written front to back; a tensor is its index in ``weights`` (-1: None, only for a
layer's optional lut), floats go to ``fspec`` in the same order::

    spec  = [SPEC_VERSION, n_blocks, x_zp, Layer stem, Block * n_blocks, last_x_zp, Layer last, Head]
    Layer = weight, bias_int, bias_float, multiplier, out_qparams (3 ints), lut, stride, padding,
            dilation, out_zp, onednn (0/1)          (fspec: out_scale, [the 2 onednn scales])
    Block = x_zp, has_expand (0/1), [Layer expand], dw_x_zp, Layer dw, has_se (0/1), [SE],
            mul length (-1: None), project_x_zp, Layer project, add length (-1: None)
                                                     (fspec: the mul, then the add values)
    SE    = w1, bias_int1, bias_float1, multiplier1, out_qparams1, w2, bias_int2, bias_float2,
            multiplier2, out_qparams2, lut, onednn1 (0/1), onednn2 (0/1)
                                                (fspec: x_scale, [onednn1's 2], [onednn2's 2])
    Head  = w1, bias_int1, bias_float1, multiplier1, out_qparams1, lut1, hidden_zp, w2, bias_int2,
            bias_float2, multiplier2, out_qparams2, onednn1 (0/1), onednn2 (0/1)
                                  (fspec: out_scale, x_scale, [onednn1's 2], [onednn2's 2])
    fspec = [x_scale, ...the records' floats..., logit_step]

onednn: a layer's requantization mode (csrc/common/q8.h): None for the Fbgemm mode, else the
Onednn mode's [src_scale, inv_scale].

:func:`decode` is the inverse, with the C++ parser's checks (the fake kernel runs the per-op walk
on its result).
"""
from typing import List, Optional, Sequence, Tuple

import torch

from mbv3_fast.quantization.model import _Block, _Layer, _Plan

SPEC_VERSION = 2
_OP = "q8_mobilenet_v3"
_QPARAMS = 3  # out_qparams: (zero point, clamp min, clamp max)


class _Writer:
    def __init__(self):
        self.weights: List[torch.Tensor] = []
        self.spec: List[int] = []
        self.fspec: List[float] = []

    def int(self, v):
        self.spec.append(int(v))

    def tensor(self, t: Optional[torch.Tensor]):
        if t is not None:
            self.weights.append(t)
        self.spec.append(-1 if t is None else len(self.weights) - 1)

    def qparams(self, v):
        if len(v) != _QPARAMS:
            raise ValueError(f"{_OP}: out_qparams must hold {_QPARAMS} ints, got {list(v)}")
        self.spec.extend(int(i) for i in v)

    def real(self, v):
        self.fspec.append(float(v))

    def mode(self, v: Optional[Sequence[float]]):
        self.spec.append(0 if v is None else 1)
        if v is not None:
            if len(v) != 2:
                raise ValueError(f"{_OP}: onednn must hold [src_scale, inv_scale], got {list(v)}")
            self.fspec.extend(float(f) for f in v)

    def reals(self, v: Optional[Sequence[float]]):
        self.spec.append(-1 if v is None else len(v))
        self.fspec.extend(float(f) for f in v or ())


def _put_layer(w: _Writer, l: _Layer):
    bias_int, bias_float, multiplier, out_qparams, lut = l.requant
    for t in (l.weight, bias_int, bias_float, multiplier):
        w.tensor(t)
    w.qparams(out_qparams)
    w.tensor(lut)
    for v in (l.stride, l.padding, l.dilation, l.out_zp):
        w.int(v)
    w.real(l.out_scale)
    w.mode(l.onednn)


def _put_se(w: _Writer, se: tuple):
    w1, bi1, bf1, m1, oq1, w2, bi2, bf2, m2, oq2, lut, x_scale, inv1, inv2 = se
    for t in (w1, bi1, bf1, m1):
        w.tensor(t)
    w.qparams(oq1)
    for t in (w2, bi2, bf2, m2):
        w.tensor(t)
    w.qparams(oq2)
    w.tensor(lut)
    w.real(x_scale)
    w.mode(inv1)
    w.mode(inv2)


def _put_head(w: _Writer, head: tuple):
    w1, bi1, bf1, m1, oq1, lut1, hidden_zp, w2, bi2, bf2, m2, oq2, out_scale, x_scale, od1, od2 = head
    for t in (w1, bi1, bf1, m1):
        w.tensor(t)
    w.qparams(oq1)
    w.tensor(lut1)
    w.int(hidden_zp)
    for t in (w2, bi2, bf2, m2):
        w.tensor(t)
    w.qparams(oq2)
    w.real(out_scale)
    w.real(x_scale)
    w.mode(od1)
    w.mode(od2)


def encode(plan: _Plan) -> Tuple[List[torch.Tensor], List[int], List[float]]:
    """(weights, spec, fspec) for mbv3::q8_mobilenet_v3 (layout: the module docstring).  Lists
    (the op's argument parser converts a list of tensors faster than a tuple)."""
    w = _Writer()
    w.int(SPEC_VERSION)
    w.int(len(plan.blocks))
    w.real(plan.x_scale)
    w.int(plan.x_zp)
    _put_layer(w, plan.stem)
    for b in plan.blocks:
        w.int(b.x_zp)
        w.int(b.expand is not None)
        if b.expand is not None:
            _put_layer(w, b.expand)
        w.int(b.dw_x_zp)
        _put_layer(w, b.dw)
        w.int(b.se is not None)
        if b.se is not None:
            _put_se(w, b.se)
        w.reals(b.mul)
        w.int(b.project_x_zp)
        _put_layer(w, b.project)
        w.reals(b.add)
    w.int(plan.last_x_zp)
    _put_layer(w, plan.last)
    _put_head(w, plan.head)
    w.real(plan.logit_step)
    return w.weights, w.spec, w.fspec


class _Reader:
    """Reads spec and fspec front to back, with the checks (and messages) of the C++ parser."""

    def __init__(self, weights: Sequence[torch.Tensor], spec: Sequence[int], fspec: Sequence[float]):
        self.weights, self.spec, self.fspec = weights, [int(v) for v in spec], [float(v) for v in fspec]
        self.pos = self.fpos = 0

    def int(self, what: str) -> int:
        if self.pos >= len(self.spec):
            raise ValueError(f"{_OP}: spec ends early ({len(self.spec)} ints) where it should give {what}")
        self.pos += 1
        return self.spec[self.pos - 1]

    def tensor(self, what: str, optional: bool = False) -> Optional[torch.Tensor]:
        i = self.int(what)
        if optional and i == -1:
            return None
        if not 0 <= i < len(self.weights):
            raise ValueError(f"{_OP}: spec gives weights[{i}] as {what}, but weights holds {len(self.weights)} tensors")
        return self.weights[i]

    def flag(self, what: str) -> bool:
        v = self.int(what)
        if v not in (0, 1):
            raise ValueError(f"{_OP}: {what} must be 0 or 1, got {v}")
        return v == 1

    def qparams(self, what: str) -> List[int]:
        if len(self.spec) - self.pos < _QPARAMS:
            raise ValueError(f"{_OP}: spec ends early ({len(self.spec)} ints) where it should give {what}")
        self.pos += _QPARAMS
        return self.spec[self.pos - _QPARAMS:self.pos]

    def real(self, what: str) -> float:
        if self.fpos >= len(self.fspec):
            raise ValueError(f"{_OP}: fspec ends early ({len(self.fspec)} floats) where it should give {what}")
        self.fpos += 1
        return self.fspec[self.fpos - 1]

    def mode(self, what: str) -> Optional[List[float]]:
        if not self.flag(what):
            return None
        return [self.real(what), self.real(what)]

    def reals(self, what: str) -> Optional[List[float]]:
        n = self.int(what + " length")
        if n == -1:
            return None
        if n < 0:
            raise ValueError(f"{_OP}: {what} length must be -1 (None) or >= 0, got {n}")
        if n > len(self.fspec) - self.fpos:
            raise ValueError(f"{_OP}: fspec ends early ({len(self.fspec)} floats) where it should give the {n} "
                             f"floats of {what}")
        self.fpos += n
        return self.fspec[self.fpos - n:self.fpos]

    def done(self):
        if self.pos != len(self.spec):
            raise ValueError(f"{_OP}: spec has {len(self.spec) - self.pos} ints past its end")
        if self.fpos != len(self.fspec):
            raise ValueError(f"{_OP}: fspec has {len(self.fspec) - self.fpos} floats past its end")


def _get_layer(r: _Reader, what: str) -> _Layer:
    weight = r.tensor(what + " weight")
    requant = (r.tensor(what + " bias_int"), r.tensor(what + " bias_float"), r.tensor(what + " multiplier"),
               r.qparams(what + " out_qparams"), r.tensor(what + " lut", optional=True))
    stride, padding, dilation, out_zp = (r.int(what + " " + f) for f in ("stride", "padding", "dilation", "out_zp"))
    out_scale = r.real(what + " out_scale")
    return _Layer(weight, requant, out_scale, out_zp, stride, padding, dilation, r.mode(what + " onednn"))


def _get_se(r: _Reader, what: str) -> tuple:
    fc1 = [r.tensor(f"{what} {f}") for f in ("w1", "bias_int1", "bias_float1", "multiplier1")]
    oq1 = r.qparams(what + " out_qparams1")
    fc2 = [r.tensor(f"{what} {f}") for f in ("w2", "bias_int2", "bias_float2", "multiplier2")]
    oq2 = r.qparams(what + " out_qparams2")
    lut, x_scale = r.tensor(what + " lut"), r.real(what + " x_scale")
    return (*fc1, oq1, *fc2, oq2, lut, x_scale, r.mode(what + " onednn1"), r.mode(what + " onednn2"))


def _get_head(r: _Reader) -> tuple:
    fc1 = [r.tensor(f"head {f}") for f in ("w1", "bias_int1", "bias_float1", "multiplier1")]
    oq1 = r.qparams("head out_qparams1")
    lut1, hidden_zp = r.tensor("head lut1"), r.int("head hidden_zero_point")
    fc2 = [r.tensor(f"head {f}") for f in ("w2", "bias_int2", "bias_float2", "multiplier2")]
    oq2 = r.qparams("head out_qparams2")
    out_scale, x_scale = r.real("head out_scale"), r.real("head x_scale")
    return (*fc1, oq1, lut1, hidden_zp, *fc2, oq2, out_scale, x_scale, r.mode("head onednn1"), r.mode("head onednn2"))


def decode(weights: Sequence[torch.Tensor], spec: Sequence[int], fspec: Sequence[float]) -> _Plan:
    """The plan that ``encode`` wrote (tensors: the given ``weights``); ValueError on a bad spec."""
    r = _Reader(weights, spec, fspec)
    version = r.int("the version")
    if version != SPEC_VERSION:
        raise ValueError(f"{_OP}: spec version {version}, this build reads {SPEC_VERSION}")
    n_blocks = r.int("the block count")
    if not 0 <= n_blocks <= len(r.spec):
        raise ValueError(f"{_OP}: bad block count {n_blocks}")
    x_scale = r.real("x_scale")
    plan = _Plan(x_scale, r.int("x_zero_point"), _get_layer(r, "stem"))
    for i in range(n_blocks):
        w = f"block {i}"
        x_zp = r.int(w + " x_zero_point")
        expand = _get_layer(r, w + " expand") if r.flag(w + " has_expand") else None
        b = _Block(x_zp=x_zp, expand=expand, dw_x_zp=r.int(w + " depthwise x_zero_point"),
                   dw=_get_layer(r, w + " depthwise"))
        b.se = _get_se(r, w + " se") if r.flag(w + " has_se") else None
        b.mul = r.reals(w + " mul")
        b.project_x_zp = r.int(w + " project x_zero_point")
        b.project = _get_layer(r, w + " project")
        b.add = r.reals(w + " add")
        plan.blocks.append(b)
    plan.last_x_zp = r.int("last x_zero_point")
    plan.last = _get_layer(r, "last")
    plan.head = _get_head(r)
    plan.logit_step = r.real("logit_step")
    r.done()
    return plan
