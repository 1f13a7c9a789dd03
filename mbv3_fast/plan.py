"""The fused network as typed records, defined once.

``mbv3_fast.model`` folds a torchvision-layout MobileNetV3 into one :class:`Net` (BatchNorm
folded, weights packed in the layouts the kernels read).  Everything that runs the fused network
reads that record:

* :func:`run` — the one Python walk over it, one ``torch.ops.mbv3`` call per layer: the traced /
  exported graph, the fake and CUDA kernels of ``mbv3::mobilenet_v3``, the profiler (through its
  ``label`` callback) and the per-op eager path;
* :func:`encode` — the ``(weights, spec)`` that ``mbv3::mobilenet_v3`` takes: a mechanical
  encoding of the records (tensors become indices into ``weights``, an absent record becomes -1
  in each of its fields), which ``csrc/mobilenet_v3/mobilenet_v3_op.cpp`` parses into the same
  records (its structs mirror these classes field for field) and walks in C++;
* :func:`decode` — the inverse, for the fake and CUDA kernels.

The dtype is a field of :class:`Net`, so that another precision adds kernels and records, not
walks.  Activations are :class:`Act` codes end to end (the op schemas take their names).
"""
import contextlib
import dataclasses
import enum
import typing
from typing import Callable, ContextManager, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

SPEC_VERSION = 2
_OP = "mobilenet_v3"


class Act(enum.IntEnum):
    """Activation codes, the same as the C++ ``mbv3::Act``."""
    NONE = 0
    RELU = 1
    HARDSWISH = 2

    @property
    def op_name(self) -> str:
        """The name the op schemas take ("none", "relu", "hardswish")."""
        return self.name.lower()


# Net.dtype <-> its code in the spec (the C++ loop runs float32 and bfloat16).
DTYPE_CODES = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}

# Blocks whose expanded activation (the whole batch's) is at least this large run expand + depthwise as
# one op (mbv3::expand_dwconv_bn_act: the expanded tensor never leaves L2); smaller ones as two
# ops, whose GEMM also splits columns over threads (README, "expand + depthwise fusion").
FUSE_EXPAND_MIN_BYTES = 640 * 1024


def fuse_expand_min_pixels(expanded_channels: int, dtype: torch.dtype) -> int:
    """The one fusion rule: expand + depthwise run as one op when the block input has at least
    this many pixels over the batch (N * H * W), i.e. when the batch's expanded map is >=
    FUSE_EXPAND_MIN_BYTES."""
    per_pixel = max(1, expanded_channels * torch.empty((), dtype=dtype).element_size())
    return -(-FUSE_EXPAND_MIN_BYTES // per_pixel)


@dataclasses.dataclass(frozen=True)
class Conv:
    """Dense kxk conv + folded BN + activation (the stem), weight packed for mbv3::conv_bn_act."""
    weight: Tensor
    bias: Tensor
    stride: int
    padding: int
    act: Act


@dataclasses.dataclass(frozen=True)
class Pointwise:
    """1x1 conv + folded BN + activation for mbv3::pwconv_bn_act, weight K-major, or packed (in
    float32 panels or bf16 K pairs: Cout is then the bias's length)."""
    weight: Tensor
    bias: Tensor
    act: Act


@dataclasses.dataclass(frozen=True)
class Depthwise:
    """Depthwise kxk conv + folded BN + activation, weight tap-major for mbv3::dwconv_bn_act."""
    weight: Tensor
    bias: Tensor
    stride: int
    padding: int
    dilation: int
    act: Act


@dataclasses.dataclass(frozen=True)
class SE:
    """Squeeze-excitation FCs in torchvision's [out, in] layout (ReLU, hardsigmoid)."""
    w1: Tensor
    b1: Tensor
    w2: Tensor
    b2: Tensor


@dataclasses.dataclass(frozen=True)
class Block:
    """One inverted residual block.  ``fuse_min_pixels``: expand + depthwise run as one op when
    the block input has at least this many pixels over the batch, N * H * W (-1: never; see
    fuse_expand_min_pixels)."""
    expand: Optional[Pointwise]
    depthwise: Depthwise
    se: Optional[SE]
    project: Pointwise
    residual: bool
    fuse_min_pixels: int


@dataclasses.dataclass(frozen=True)
class Head:
    """Global mean + Linear + activation + Linear (torchvision's classifier, dropout = eval).
    Weights [out, in], or packed in panels for the CPU (out is then the bias's length)."""
    w1: Tensor
    b1: Tensor
    w2: Tensor
    b2: Tensor
    act: Act


@dataclasses.dataclass(frozen=True)
class Net:
    """The whole fused network.  ``head`` None: the model's classifier module runs on the
    pooled features (a classifier the fused head does not cover)."""
    dtype: torch.dtype
    stem: Conv
    blocks: Tuple[Block, ...]
    last: Pointwise
    head: Optional[Head]


# ----------------------------------------------------------------------------------------------
# The walk
# ----------------------------------------------------------------------------------------------

Label = Callable[[str], ContextManager]


def _no_label(name: str) -> ContextManager:
    return contextlib.nullcontext()


def run_stem(net: Net, x: Tensor) -> Tensor:
    s = net.stem
    return torch.ops.mbv3.conv_bn_act(x, s.weight, s.bias, s.stride, s.padding, s.act.op_name)


def run_block(b: Block, x: Tensor, name: str = "block", label: Label = _no_label) -> Tensor:
    """Expand (1x1 GEMM + BN + act) -> depthwise + BN + act -> SE scale -> project (1x1 GEMM +
    BN, the SE scale applied to its input rows, + residual); ``x`` channels_last."""
    ops = torch.ops.mbv3
    d, e = b.depthwise, b.expand
    dw = (d.weight, d.bias, d.stride, d.padding, d.dilation, d.act.op_name)
    if e is not None and 0 <= b.fuse_min_pixels <= x.shape[0] * x.shape[2] * x.shape[3]:
        with label(name + ".expand+depthwise"):
            h = ops.expand_dwconv_bn_act(x, e.weight, e.bias, e.act.op_name, *dw)
    else:
        h = x
        if e is not None:
            with label(name + ".expand"):
                h = ops.pwconv_bn_act(x, e.weight, e.bias, e.act.op_name, None, None)
        with label(name + ".depthwise"):
            h = ops.dwconv_bn_act(h, *dw)
    scale = None
    if b.se is not None:
        with label(name + ".se"):
            scale = ops.se_scale(h, b.se.w1, b.se.b1, b.se.w2, b.se.b2)
    p = b.project
    with label(name + ".project"):
        return ops.pwconv_bn_act(h, p.weight, p.bias, p.act.op_name, x if b.residual else None, scale)


def run_tail(net: Net, x: Tensor) -> Tensor:
    """Last 1x1 conv, then the head (or the last conv's features when the net has none)."""
    lc = net.last
    y = torch.ops.mbv3.pwconv_bn_act(x, lc.weight, lc.bias, lc.act.op_name, None, None)
    h = net.head
    return y if h is None else torch.ops.mbv3.classifier_head(y, h.w1, h.b1, h.w2, h.b2, h.act.op_name)


def run(net: Net, x: Tensor, label: Label = _no_label) -> Tensor:
    """The network, one op call per layer.  ``label(name)`` is entered around each call (the
    profiler passes torch.profiler.record_function; names "stem", "block{i}.depthwise", ...)."""
    with label("stem"):
        y = run_stem(net, x)
    for i, b in enumerate(net.blocks):
        y = run_block(b, y, f"block{i}", label)
    with label("head"):
        return run_tail(net, y)


# ----------------------------------------------------------------------------------------------
# The spec of mbv3::mobilenet_v3
# ----------------------------------------------------------------------------------------------

def _layout(cls) -> List[Tuple[str, object, bool]]:
    """A record class's fields as (name, kind, optional); kind: Tensor, Act, int or a record
    class."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        t = hints[f.name]
        args = [a for a in typing.get_args(t) if a is not type(None)]
        optional = typing.get_origin(t) is typing.Union and len(args) == 1
        t = args[0] if optional else t
        out.append((f.name, int if t is bool else t, optional))
    return out



def encode(net: Net) -> Tuple[Tuple[Tensor, ...], List[int]]:
    """(weights, spec) for mbv3::mobilenet_v3:

        [SPEC_VERSION, dtype code, n_blocks, stem, block * n_blocks, last, head]

    each record its fields in declaration order (an absent record: -1 in each field)."""
    weights: List[Tensor] = []
    spec = [SPEC_VERSION, DTYPE_CODES[net.dtype], len(net.blocks)]

    def put(cls, rec):
        for name, kind, _ in _layout(cls):
            v = None if rec is None else getattr(rec, name)
            if dataclasses.is_dataclass(kind):
                put(kind, v)
            elif rec is None:
                spec.append(-1)
            elif kind is Tensor:
                weights.append(v)
                spec.append(len(weights) - 1)
            else:
                spec.append(int(v))

    put(Conv, net.stem)
    for b in net.blocks:
        put(Block, b)
    put(Pointwise, net.last)
    put(Head, net.head)
    return tuple(weights), spec


class _Reader:
    def __init__(self, spec: Sequence[int], weights: Sequence[Tensor]):
        self.spec, self.weights, self.pos = [int(v) for v in spec], weights, 0

    def next(self, what: str) -> int:
        if self.pos >= len(self.spec):
            raise ValueError(f"{_OP}: spec ends early ({len(self.spec)} ints) where it should give {what}")
        self.pos += 1
        return self.spec[self.pos - 1]

    def record(self, cls, what: str, optional: bool):
        start, values, absent = self.pos, {}, []
        for name, kind, opt in _layout(cls):
            sub = f"{what} {name}"
            if dataclasses.is_dataclass(kind):
                values[name] = self.record(kind, sub, opt)
                continue
            v = self.next(sub)
            absent.append(v == -1)
            if kind is Tensor:
                if not (optional and v == -1) and not 0 <= v < len(self.weights):
                    raise ValueError(f"{_OP}: spec gives weights[{v}] as {sub}, but weights holds "
                                     f"{len(self.weights)} tensors")
                v = None if v == -1 else self.weights[v]
            elif kind is Act and not (optional and v == -1):
                if v not in Act._value2member_map_:
                    raise ValueError(f"{_OP}: activation code must be 0 (none), 1 (relu) or 2 "
                                     f"(hardswish), got {v} for {sub}")
                v = Act(v)
            values[name] = v
        if optional and any(absent):
            if not all(absent):
                raise ValueError(f"{_OP}: spec gives only some of the {what} fields "
                                 f"(ints {start}..{self.pos - 1})")
            return None
        return cls(**values)


def decode(weights: Sequence[Tensor], spec: Sequence[int]) -> Net:
    """The Net that encode() made (weights by reference), with the C++ parser's checks."""
    r = _Reader(spec, weights)
    version = r.next("the version")
    if version != SPEC_VERSION:
        raise ValueError(f"{_OP}: spec version {version}, this build reads {SPEC_VERSION}")
    code = r.next("the dtype code")
    dtype = {c: d for d, c in DTYPE_CODES.items()}.get(code)
    if dtype is None:
        raise ValueError(f"{_OP}: unknown dtype code {code}")
    n_blocks = r.next("the block count")
    if not 0 <= n_blocks <= len(r.spec):
        raise ValueError(f"{_OP}: bad block count {n_blocks}")
    stem = r.record(Conv, "stem", False)
    blocks = tuple(r.record(Block, f"block {i}", False) for i in range(n_blocks))
    last = r.record(Pointwise, "last conv", False)
    head = r.record(Head, "head", True)
    if r.pos != len(r.spec):
        raise ValueError(f"{_OP}: spec has {len(r.spec) - r.pos} ints past its end")
    return Net(dtype, stem, blocks, last, head)
