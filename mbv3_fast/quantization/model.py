"""torchvision's quantized MobileNetV3 on the fused int8 ops (torch.ops.mbv3.q8_*).

``from_torchvision_quantized(qmodel)`` reads a converted ``QuantizableMobileNetV3`` (Large or
Small, any width/tail/dilation torchvision builds) once: every layer's int8 weights, bias and
quantization parameters become the ops' arguments (``params.py``: the rounding of the engine the
model was converted for), weights packed for the kernels.  The forward then runs

    stem (QuantStub fused)  ->  per block: [expand 1x1] -> depthwise -> [SE] -> project 1x1
    (+ SE scale fused into the project's input, + residual add fused into its output)
    ->  last 1x1  ->  pool + classifier + DeQuantStub

with int8 activations (NHWC) between the ops, and returns float32 logits like the torchvision
model.  The forward is one ``mbv3::q8_mobilenet_v3`` call, which makes those op calls from C++
(the plan encoded once by spec.py, and converted once more into C++ vectors, so that a call
does not convert ~1450 Python values: ``_C._q8_mobilenet_v3_call``, which returns None and lets
the Python op call run under modes, tracing, autocast or autograd on x);
``model.one_call = False`` makes the op calls from Python (``run``), with the same values.  Eval
only: the module holds no trainable parameters.

Rounding per layer (csrc/common/q8.h's requantization modes): PyTorch's x86 engine packs a
Conv2d with groups <= 100 (symmetric weights) for oneDNN on Linux on a CPU with AVX512-VNNI
(``should_use_onednn_quant``), which rounds with the zero point added in float; those layers get
the Onednn mode, every other layer (larger depthwise, Linear, other engines) fbgemm's rounding.
PyTorch decides at prepack time; we decide at conversion (``onednn_convs``: None = this CPU).
The "onednn" engine runs every conv and Linear on oneDNN: all of them get the Onednn mode.
"""
import enum
import sys
from dataclasses import dataclass, field
from typing import List, Optional

import torch
from torch import nn
import torch.ao.nn.quantized as nnq

from mbv3_fast._C import _q8_mobilenet_v3_call, _q8_mobilenet_v3_pack

from mbv3_fast.quantization.params import ENGINES, add_args, module_args, mul_args, onednn_scales, unary_lut
from mbv3_fast.ops import q8_conv_act as _conv_ops
from mbv3_fast.ops import q8_pwconv_act as _pw_ops
from mbv3_fast.ops import q8_dwconv_act as _dw_ops
from mbv3_fast.ops import q8_se as _se_ops
from mbv3_fast.ops import q8_classifier_head as _head_ops


@dataclass
class _Layer:
    """A conv/linear layer as the q8 ops take it; out_scale/out_zp: its output's qparams (after
    the activation table, if any)."""
    weight: torch.Tensor
    requant: tuple  # (bias_int, bias_float, multiplier, out_qparams, lut)
    out_scale: float
    out_zp: int
    stride: int = 1
    padding: int = 0
    dilation: int = 1
    onednn: Optional[list] = None  # the Onednn requantization mode's scales (q8.h); None: Fbgemm


@dataclass
class _Block:
    x_zp: int
    expand: Optional[_Layer]
    dw_x_zp: int  # the depthwise input's zero point: the expand's output, or the block's input
    dw: _Layer
    se: Optional[tuple] = None  # q8_se's arguments after x and x_zero_point
    mul: Optional[list] = None
    project_x_zp: int = 0
    project: Optional[_Layer] = None
    add: Optional[list] = None


@dataclass
class _Plan:
    x_scale: float
    x_zp: int
    stem: _Layer
    blocks: List[_Block] = field(default_factory=list)
    last_x_zp: int = 0
    last: Optional[_Layer] = None
    head: Optional[tuple] = None
    logit_step: float = 0.0  # the classifier's output scale


def _pack(pack, weight):
    return pack(weight) if pack is not None else weight


def _packers(pack_weights: bool):
    """Each op's weight packing (its module's pack_weight, where it has one), or none."""
    mods = dict(conv=_conv_ops, dw=_dw_ops, pw=_pw_ops, se=_se_ops, head=_head_ops)
    return {k: getattr(m, "pack_weight", None) if pack_weights else None for k, m in mods.items()}


ONEDNN_MAX_GROUPS = 100  # PyTorch's should_use_onednn_quant: groups <= 100


def x86_uses_onednn() -> bool:
    """Whether PyTorch's x86 engine packs this machine's convs for oneDNN: Linux and a CPU with
    AVX512-VNNI (cpuid, whatever mbv3_fast's CPU path in force)."""
    return sys.platform.startswith("linux") and bool(torch.ops.mbv3.q8_cpu_has_avx512_vnni())


class OnednnRule(enum.Enum):
    """Which of a plan's layers round as oneDNN (q8.h's Onednn mode); the rest round as fbgemm."""
    NONE = "none"  # fbgemm's rule everywhere (the fbgemm and qnnpack engines, x86 without VNNI)
    CONVS = "convs"  # the x86 engine's: Conv2d layers with groups <= 100 (PyTorch's prepack choice)
    ALL = "all"  # the onednn engine: every conv and Linear

    def applies(self, layer) -> bool:
        if self is OnednnRule.ALL:
            return True
        return self is OnednnRule.CONVS and isinstance(layer, nnq.Conv2d) and layer.groups <= ONEDNN_MAX_GROUPS


def _layer(conv, x_scale, x_zp, engine, rule, act=None, pack=None):
    """A quantized Conv2d/ConvReLU2d/Linear with input qparams (x_scale, x_zp) and an optional
    quantized Hardswish after it, rounded as ``rule`` (OnednnRule) says for it."""
    if not isinstance(conv, (nnq.Conv2d, nnq.Linear)):
        raise TypeError(f"mbv3_fast.quantization: expected a converted quantized conv/linear, got {type(conv).__name__} "
                        "(pass a model after torch.ao.quantization.convert)")
    onednn = rule.applies(conv)
    out_scale, out_zp = float(conv.scale), int(conv.zero_point)
    lut = None
    if act is not None:
        lut = unary_lut(act, out_scale, out_zp)
        out_scale, out_zp = float(act.scale), int(act.zero_point)
    w, *rq = module_args(conv, x_scale, engine, lut, onednn=onednn)
    kw = dict(onednn=onednn_scales(x_scale, conv.scale) if onednn else None)
    if isinstance(conv, nnq.Conv2d):
        kw.update(stride=conv.stride[0], padding=conv.padding[0], dilation=conv.dilation[0])
    return _Layer(_pack(pack, w), tuple(rq), out_scale, out_zp, **kw)


def _conv_norm_act(seq):
    """(conv, hardswish or None) of a converted Conv2dNormActivation; ReLU is fused into the conv."""
    conv = seq[0]
    act = next((m for m in list(seq)[1:] if isinstance(m, nnq.Hardswish)), None)
    others = [m for m in list(seq)[1:] if not isinstance(m, (nn.Identity, nnq.Hardswish))]
    if others:
        raise TypeError(f"mbv3_fast.quantization: unexpected {type(others[0]).__name__} after {type(conv).__name__}")
    return conv, act


def _hardsigmoid_table(x_scale, x_zp):
    every = torch._make_per_tensor_quantized_tensor(torch.arange(256, dtype=torch.uint8), float(x_scale), int(x_zp))
    out = torch.nn.functional.hardsigmoid(every)
    return out.int_repr().contiguous(), float(out.q_scale()), int(out.q_zero_point())


def _block(blk, x_scale, x_zp, engine, packs, rule):
    layers = list(blk.block)
    i = 0
    expand = None
    if len(layers) >= 3 and layers[0][0].groups == 1 and layers[1][0].groups > 1:
        conv, act = _conv_norm_act(layers[0])
        expand = _layer(conv, x_scale, x_zp, engine, rule, act, packs["pw"])
        i = 1
    conv, act = _conv_norm_act(layers[i])
    src_scale, src_zp = (expand.out_scale, expand.out_zp) if expand else (x_scale, x_zp)
    dw = _layer(conv, src_scale, src_zp, engine, rule, act, packs["dw"])
    b = _Block(x_zp=x_zp, expand=expand, dw_x_zp=src_zp, dw=dw)
    i += 1
    p_scale, p_zp = dw.out_scale, dw.out_zp
    if type(layers[i]).__name__ == "QuantizableSqueezeExcitation":
        se = layers[i]
        fc1 = _layer(se.fc1, dw.out_scale, dw.out_zp, engine, rule, pack=packs["se"])
        fc2 = _layer(se.fc2, fc1.out_scale, fc1.out_zp, engine, rule, pack=packs["se"])
        lut, s_scale, s_zp = _hardsigmoid_table(fc2.out_scale, fc2.out_zp)
        b.se = (fc1.weight, *fc1.requant[:4], fc2.weight, *fc2.requant[:4], lut, dw.out_scale, fc1.onednn,
                fc2.onednn)
        p_scale, p_zp = float(se.skip_mul.scale), int(se.skip_mul.zero_point)
        b.mul = mul_args(dw.out_scale, dw.out_zp, s_scale, s_zp, p_scale, p_zp)
        i += 1
    conv, act = _conv_norm_act(layers[i])
    b.project_x_zp = p_zp
    b.project = _layer(conv, p_scale, p_zp, engine, rule, act, packs["pw"])
    if blk.use_res_connect:
        add = blk.skip_add
        b.add = add_args(b.project.out_scale, b.project.out_zp, x_scale, x_zp, float(add.scale), int(add.zero_point),
                         engine)
        out = (float(add.scale), int(add.zero_point))
    else:
        out = (b.project.out_scale, b.project.out_zp)
    return b, out


def _plan(qmodel, engine, packs, rule=OnednnRule.NONE):
    quant = qmodel.quant
    if not isinstance(quant, nnq.Quantize):
        raise TypeError("mbv3_fast.quantization: the model's QuantStub is not converted (call "
                        "torch.ao.quantization.convert first)")
    x_scale, x_zp = float(quant.scale), int(quant.zero_point)
    feats = list(qmodel.features)
    conv, act = _conv_norm_act(feats[0])
    stem = _layer(conv, x_scale, x_zp, engine, rule, act, packs["conv"])
    plan = _Plan(x_scale, x_zp, stem)
    scale, zp = stem.out_scale, stem.out_zp
    for blk in feats[1:-1]:
        b, (scale, zp) = _block(blk, scale, zp, engine, packs, rule)
        plan.blocks.append(b)
    conv, act = _conv_norm_act(feats[-1])
    plan.last_x_zp = zp
    plan.last = _layer(conv, scale, zp, engine, rule, act, packs["pw"])
    cls = list(qmodel.classifier)
    lin1, hs, lin2 = cls[0], cls[1], cls[3]
    if not (isinstance(lin1, nnq.Linear) and isinstance(hs, nnq.Hardswish) and isinstance(lin2, nnq.Linear)):
        raise TypeError("mbv3_fast.quantization: expected classifier Linear, Hardswish, Dropout, Linear")
    # The pool keeps its input's qparams.
    l1 = _layer(lin1, plan.last.out_scale, plan.last.out_zp, engine, rule, hs, packs["head"])
    l2 = _layer(lin2, l1.out_scale, l1.out_zp, engine, rule, pack=packs["head"])
    plan.head = (l1.weight, *l1.requant[:4], l1.requant[4], l1.out_zp, l2.weight, *l2.requant[:4], l2.out_scale,
                 plan.last.out_scale, l1.onednn, l2.onednn)
    plan.logit_step = l2.out_scale
    return plan


class QuantizedMobileNetV3(nn.Module):
    """An eval-only int8 MobileNetV3 built from a converted torchvision quantized model: the
    same logits, computed by the fused int8 ops.  Input: float32 [N, 3, H, W] (NCHW or
    channels_last); output: float32 [N, num_classes].  ``onednn_convs`` (x86 engine only):
    whether its Conv2d layers with groups <= 100 round as oneDNN (None: as PyTorch on this
    machine, ``x86_uses_onednn()``; False: fbgemm's rounding everywhere)."""

    def __init__(self, qmodel: nn.Module, engine: Optional[str] = None, pack_weights: bool = True,
                 onednn_convs: Optional[bool] = None):
        super().__init__()
        engine = engine or torch.backends.quantized.engine
        if engine not in ENGINES:
            raise ValueError(f"mbv3_fast.quantization: engine must be one of {ENGINES}, got {engine!r}")
        if onednn_convs and engine != "x86":
            raise ValueError(f"mbv3_fast.quantization: onednn_convs applies to the x86 engine, got {engine!r}")
        if onednn_convs is None:
            onednn_convs = engine == "x86" and x86_uses_onednn()
        self.engine = engine
        self.onednn_convs = bool(onednn_convs)
        rule = OnednnRule.ALL if engine == "onednn" else OnednnRule.CONVS if self.onednn_convs else OnednnRule.NONE
        self._plan = _plan(qmodel, engine, _packers(pack_weights), rule)
        from mbv3_fast.quantization.spec import encode  # spec.py reads this module's records
        self._spec = encode(self._plan)  # (weights, spec, fspec) of mbv3::q8_mobilenet_v3; the plan is fixed
        self._packed = None  # _spec as C++ vectors (_q8_mobilenet_v3_pack), made on the first call
        self._ops = None  # the op namespace (None: torch.ops.mbv3); the tests swap in references
        # True: the forward is one mbv3::q8_mobilenet_v3 call (the layer loop in C++); False: one
        # op call per layer from Python (run below; the same values).  Ignored when _ops is set.
        self.one_call = True
        self.eval()

    @property
    def logit_step(self) -> float:
        """The logits' quantization step (the classifier's output scale)."""
        return self._plan.logit_step

    def train(self, mode: bool = True):
        if mode:
            raise RuntimeError("QuantizedMobileNetV3 is inference only (eval mode)")
        return super().train(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.dtype != torch.float32 or x.dim() != 4 or x.shape[1] != 3:
            got = f"{x.dtype} {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"QuantizedMobileNetV3 expects a float32 [N, 3, H, W] input, got {got}")
        if self._ops is None and self.one_call:
            if not torch.compiler.is_compiling():
                if self._packed is None:
                    self._packed = _q8_mobilenet_v3_pack(*self._spec)
                y = _q8_mobilenet_v3_call(self._packed, x)
                if y is not None:
                    return y
            return torch.ops.mbv3.q8_mobilenet_v3(x, *self._spec)
        return run(self._plan, x, self._ops or torch.ops.mbv3)

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_packed"] = None  # a capsule: not picklable, remade on the first call
        return state


def run(p: _Plan, x: torch.Tensor, ops=None) -> torch.Tensor:
    """The plan's forward, one op call per layer on ``ops`` (default torch.ops.mbv3): the
    semantics of mbv3::q8_mobilenet_v3, which makes the same calls from C++."""
    ops = ops or torch.ops.mbv3
    s = p.stem
    q = ops.q8_conv_act(x, p.x_scale, p.x_zp, s.weight, *s.requant, s.stride, s.padding,
                        onednn=s.onednn)
    for b in p.blocks:
        inp = q
        if b.expand is not None:
            q = ops.q8_pwconv_act(q, b.x_zp, b.expand.weight, *b.expand.requant,
                                  onednn=b.expand.onednn)
        d = b.dw
        q = ops.q8_dwconv_act(q, b.dw_x_zp, d.weight, *d.requant, d.stride, d.padding, d.dilation,
                              onednn=d.onednn)
        se = ops.q8_se(q, d.out_zp, *b.se) if b.se is not None else None
        pr = b.project
        q = ops.q8_pwconv_act(q, b.project_x_zp, pr.weight, *pr.requant,
                              inp if b.add is not None else None, b.add, se, b.mul,
                              onednn=pr.onednn)
    last = p.last
    q = ops.q8_pwconv_act(q, p.last_x_zp, last.weight, *last.requant, onednn=last.onednn)
    return ops.q8_classifier_head(q, last.out_zp, *p.head)


def from_torchvision_quantized(qmodel: nn.Module, engine: Optional[str] = None,
                               onednn_convs: Optional[bool] = None) -> QuantizedMobileNetV3:
    """The int8 model for a converted torchvision ``QuantizableMobileNetV3`` (for example
    ``torchvision.models.quantization.mobilenet_v3_large(weights=..., quantize=True)``).
    ``engine``: the quantized engine it was converted under (default: the one in force,
    ``torch.backends.quantized.engine``); it decides the rounding (params.py).  ``onednn_convs``:
    see QuantizedMobileNetV3 (None: PyTorch's choice on this machine)."""
    name = type(qmodel).__name__
    if name != "QuantizableMobileNetV3":
        raise TypeError(f"from_torchvision_quantized: expected torchvision's QuantizableMobileNetV3, got {name}")
    return QuantizedMobileNetV3(qmodel, engine, onednn_convs=onednn_convs)
