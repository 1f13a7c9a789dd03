"""mbv3::mobilenet_v3 — a whole MobileNetV3 eval forward (stem, inverted residual blocks, last
1x1 conv, classifier head) as one op call.

    torch.ops.mbv3.mobilenet_v3(x, weights, spec) -> logits [N, classes]
                                                   (or the last conv's features, with no head)

No kernel of its own: it runs the fused ops layer after layer.  On the CPU that happens in C++
(csrc/mobilenet_v3/mobilenet_v3_op.cpp), which skips the Python and dispatcher work of ~50 op calls per
Large forward.  Measured (bench_model.py, fused vs fused_per_op, batch 1) that saves 0.04-0.15 ms
of a 3-5 ms forward: small, but never a loss.  The fake kernel and the CUDA kernel
walk the same spec here, calling ``torch.ops.mbv3.*`` per layer (Triton kernels on CUDA; on a
GPU, the launches are asynchronous, so that walk costs no device time).

``weights`` are the folded tensors; ``spec`` a flat list of ints naming them by index:

    [SPEC_VERSION, fuse_expand_min_bytes, n_blocks,
     stem:       w, b, stride, padding, act,
     per block:  ew, eb, eact, dw, db, stride, padding, dilation, dact,
                 se_w1, se_b1, se_w2, se_b2, pw, pb, residual,
     last conv:  w, b, act,
     head:       w1, b1, w2, b2, act]

Activations are codes (0 none, 1 relu, 2 hardswish).  -1 marks an absent expand conv, SE layer
or head (then the op returns the last conv's output).  A block's expand and depthwise convs run
as one ``expand_dwconv_bn_act`` when the expanded map (H * W * Ce * element size bytes) is at
least ``fuse_expand_min_bytes``.  ``build`` makes (weights, spec) from the model's folded plan.
"""
from typing import List, Optional, Sequence, Tuple

import torch

from mbv3_fast.ops._checks import ACTIVATIONS

SPEC_VERSION = 1
_OP = "mobilenet_v3"
_ACT_NAMES = {code: name for name, code in ACTIVATIONS.items()}


def build(stem: tuple, blocks: Sequence[tuple], last: tuple, head: Optional[tuple],
          fuse_expand_min_bytes: int) -> Tuple[Tuple[torch.Tensor, ...], List[int]]:
    """(weights, spec) from the folded plan entries of mbv3_fast.model._Plan
    (stem, blocks, last, head as documented there)."""
    weights: List[torch.Tensor] = []

    def ref(t: Optional[torch.Tensor]) -> int:
        if t is None:
            return -1
        weights.append(t)
        return len(weights) - 1

    sw, sb, sstride, spad, sact = stem
    spec = [SPEC_VERSION, int(fuse_expand_min_bytes), len(blocks),
            ref(sw), ref(sb), sstride, spad, ACTIVATIONS[sact]]
    for ew, eb, eact, _ce, dw, db, st, pd, dl, dact, se, pw, pb, _co, res in blocks:
        se = se if se is not None else (None, None, None, None)
        spec += [ref(ew), ref(eb), ACTIVATIONS[eact], ref(dw), ref(db), st, pd, dl, ACTIVATIONS[dact],
                 *(ref(t) for t in se), ref(pw), ref(pb), int(res)]
    lw, lb, lact, _ = last
    spec += [ref(lw), ref(lb), ACTIVATIONS[lact]]
    h = head if head is not None else (None, None, None, None)
    spec += [*(ref(t) for t in h), ACTIVATIONS["hardswish"]]
    return tuple(weights), spec


class _Reader:
    """Reads a spec front to back with the C++ reader's checks and messages."""

    def __init__(self, spec, n_weights: int):
        self.spec, self.n, self.pos = list(spec), n_weights, 0

    def next(self, what: str) -> int:
        if self.pos >= len(self.spec):
            raise ValueError(f"{_OP}: spec ends early ({len(self.spec)} ints) where it should give {what}")
        self.pos += 1
        return int(self.spec[self.pos - 1])

    def index(self, what: str, optional: bool = False) -> int:
        i = self.next(what)
        if optional and i == -1:
            return -1
        if not 0 <= i < self.n:
            raise ValueError(f"{_OP}: spec gives weights[{i}] as {what}, but weights holds {self.n} tensors")
        return i

    def act(self, what: str) -> str:
        code = self.next(what)
        if code not in _ACT_NAMES:
            raise ValueError(f"{_OP}: activation code must be 0 (none), 1 (relu) or 2 (hardswish), got {code}")
        return _ACT_NAMES[code]


def parse(spec, n_weights: int) -> dict:
    """The spec as a dict of layers (indices into weights, -1 where absent), checked as C++ does."""
    r = _Reader(spec, n_weights)
    version = r.next("the version")
    if version != SPEC_VERSION:
        raise ValueError(f"{_OP}: spec version {version}, this build reads {SPEC_VERSION}")
    fuse_min = r.next("the expand fusion threshold")
    n_blocks = r.next("the block count")
    if not 0 <= n_blocks <= len(r.spec):
        raise ValueError(f"{_OP}: bad block count {n_blocks}")
    net = dict(fuse_min=fuse_min, blocks=[])
    net["stem"] = (r.index("stem weight"), r.index("stem bias"), r.next("stem stride"),
                   r.next("stem padding"), r.act("stem activation"))
    for i in range(n_blocks):
        ew = r.index("expand weight", True)
        b = dict(ew=ew, eb=r.index("expand bias", ew < 0), eact=r.act("expand activation"),
                 dw=r.index("depthwise weight"), db=r.index("depthwise bias"),
                 stride=r.next("depthwise stride"), pad=r.next("depthwise padding"),
                 dil=r.next("depthwise dilation"), dact=r.act("depthwise activation"))
        w1 = r.index("SE w1", True)
        b["se"] = (w1, r.index("SE b1", w1 < 0), r.index("SE w2", w1 < 0), r.index("SE b2", w1 < 0))
        b.update(pw=r.index("project weight"), pb=r.index("project bias"), res=r.next("residual flag") != 0)
        if (b["ew"] < 0) != (b["eb"] < 0):
            raise ValueError(f"{_OP}: block {i} gives only one of expand weight/bias")
        if len({t < 0 for t in b["se"]}) != 1:
            raise ValueError(f"{_OP}: block {i} gives only some of the SE tensors")
        net["blocks"].append(b)
    net["last"] = (r.index("last conv weight"), r.index("last conv bias"), r.act("last conv activation"))
    w1 = r.index("head w1", True)
    net["head"] = (w1, r.index("head b1", w1 < 0), r.index("head w2", w1 < 0), r.index("head b2", w1 < 0))
    net["head_act"] = r.act("head activation")
    if len({t < 0 for t in net["head"]}) != 1:
        raise ValueError(f"{_OP}: spec gives only some of the head tensors")
    if r.pos != len(r.spec):
        raise ValueError(f"{_OP}: spec has {len(r.spec) - r.pos} ints past its end")
    return net


def run_spec(x: torch.Tensor, weights: Sequence[torch.Tensor], spec: Sequence[int]) -> torch.Tensor:
    """The op's semantics, one ``torch.ops.mbv3`` call per layer (the fake and CUDA kernels;
    the tests' reference for the C++ walk)."""
    net = parse(spec, len(weights))
    w = weights
    ops = torch.ops.mbv3
    sw, sb, sst, spd, sact = net["stem"]
    y = ops.conv_bn_act(x, w[sw], w[sb], sst, spd, sact)
    for b in net["blocks"]:
        inp = y
        dw = (w[b["dw"]], w[b["db"]], b["stride"], b["pad"], b["dil"], b["dact"])
        if b["ew"] < 0:
            h = ops.dwconv_bn_act(inp, *dw)
        else:
            e = w[b["ew"]]
            ce = e.shape[0] if e.dim() >= 1 else 0
            if inp.shape[2] * inp.shape[3] * ce * inp.element_size() >= net["fuse_min"]:
                h = ops.expand_dwconv_bn_act(inp, e, w[b["eb"]], b["eact"], *dw)
            else:
                h = ops.dwconv_bn_act(ops.pwconv_bn_act(inp, e, w[b["eb"]], b["eact"], None, None), *dw)
        se = b["se"]
        scale = None if se[0] < 0 else ops.se_scale(h, *(w[i] for i in se))
        y = ops.pwconv_bn_act(h, w[b["pw"]], w[b["pb"]], "none", inp if b["res"] else None, scale)
    lw, lb, lact = net["last"]
    y = ops.pwconv_bn_act(y, w[lw], w[lb], lact, None, None)
    if net["head"][0] < 0:
        return y
    return ops.classifier_head(y, *(w[i] for i in net["head"]), net["head_act"])


@torch.library.register_fake("mbv3::mobilenet_v3")
def _fake(x, weights, spec):
    return run_spec(x, weights, spec)


@torch.library.register_kernel("mbv3::mobilenet_v3", "cuda")
def _cuda(x, weights, spec):
    return run_spec(x, weights, spec)
