"""MobileNetV3-Large/Small with fused inference: torchvision's architecture, module tree and
state_dict, torchvision's behaviour in train mode, fused ops in eval mode.

Modes
-----
* ``train()``: torchvision's own forward over the plain modules (BatchNorm batch statistics,
  running-stat updates, dropout, autograd) — bit-for-bit torchvision.
* ``eval()``: the *fused path*, when it applies, BatchNorm folded everywhere:
    stem conv + BN + act -> ``torch.ops.mbv3.conv_bn_act`` (reads NCHW images in place); expand / project / last 1x1 convs + BN + activation (+ residual)
    -> ``torch.ops.mbv3.pwconv_bn_act``; depthwise conv + BN + activation ->
    ``torch.ops.mbv3.dwconv_bn_act``; squeeze-excitation -> ``torch.ops.mbv3.se_scale``, whose
    [N, C] scale the project GEMM applies while reading its input (``in_scale``): a bneck is
    three or four op calls; global pool + classifier (Linear, Hardswish, Linear) ->
    ``torch.ops.mbv3.classifier_head``.  The whole network runs channels_last (the input
    is converted once); the logits are the same values for NCHW and channels_last inputs.
    An eager forward makes all of these calls inside one ``torch.ops.mbv3.mobilenet_v3`` (on
    the CPU a C++ loop over the same ops: bit-identical, no Python per layer); under
    torch.compile / torch.export the graph holds one node per fused op instead.
  The fused path applies when all of these hold, and otherwise eval falls back to torchvision's
  forward over the plain modules (still correct, just unfused):
    - parameters and input on CPU (float32/bfloat16) or CUDA (float32/float16/bfloat16), input
      dtype and device equal to the parameters', no autocast active for that device -- except
      ``torch.autocast("cpu", dtype=torch.bfloat16)`` around a float32 model: then the model is
      folded a second time in bfloat16 (its own cache, refreshed like the first), the input
      (float32 or bfloat16) is cast to bfloat16 and the logits are bfloat16, as torchvision's
      under the same autocast;
    - no autograd needed: ``torch.is_grad_enabled()`` is False (``torch.no_grad()`` /
      ``torch.inference_mode()``), or neither the input nor any parameter requires grad.  The
      fused ops have no backward, so an eval forward that autograd would record (the default
      ``model.eval(); model(x)`` with trainable parameters) runs unfused — wrap inference in
      ``torch.no_grad()`` or call ``model.requires_grad_(False)`` to get the fused path;
    - every norm layer is ``nn.BatchNorm2d`` with running statistics or torchvision's
      ``FrozenBatchNorm2d`` and no BatchNorm/Dropout submodule was switched back to train mode;
    - no forward hook or pre-hook is registered on a submodule (or globally): the fused path
      calls no submodule, so hooks would not fire (feature extraction by hooks stays correct);
    - not under torch.fx symbolic tracing (torchvision's ``create_feature_extractor``): the
      tracer sees torchvision's forward.
  float64 and CPU float16 models therefore run unfused (the CPU kernels are float32 and bfloat16).
  bfloat16 (``model.bfloat16()`` or autocast): weights folded in float64, rounded to bfloat16
  once (round-to-nearest-even); activations bfloat16 between ops; every sum in float32.

Folded-weight cache
-------------------
Folding is done once (in float64, cast back) and kept in ``self._plan``, together with the
list of every source tensor (conv weights, BN weight/bias/running stats, SE and classifier
parameters).  Each eager eval forward compares, in C, each source's version counter, data
pointer, dtype and device with those recorded at folding time; any difference refolds before
running.  That covers in-place edits
(``with torch.no_grad(): p.add_(1)``, optimizer steps), running-stat updates by train-mode
forwards (seen through ``num_batches_tracked``, the only BN buffer whose version they bump),
``load_state_dict`` (in-place copy, or ``assign=True``), ``.to()/.cuda()/.half()`` (also on a
submodule) and ``p.data = t``.  ``_apply`` (``.to`` & co.) and ``load_state_dict`` also drop
the cache explicitly, and ``eval()`` refolds eagerly so that ``torch.compile`` finds a cache.
Not detected (call ``model.invalidate_fused_cache()``): writes through ``p.data`` (they bypass
the version counter) and replacing a submodule or a Parameter object inside a submodule.

The eager call
--------------
``model(x)`` first tries ``_C._mobilenet_v3_call``: every rule above (and the module call's
own: no hook on the model, no ``Module.compile()``) checked in one C call, then
``mbv3::mobilenet_v3``.  Where any rule is not plainly met it returns None and the call goes the
ordinary way (``nn.Module.__call__``, ``forward``), which refolds, runs unfused or raises.  Right
after a forward the model's Python objects are cold, and the same checks in Python cost ~0.2 ms
per call.  Hook dicts are rescanned only when a hook handle was made since the last scan (every
``register_*hook`` makes one); a hook put into a module's hook dict by hand, without a handle,
is not seen until then.

Tracing
-------
Under ``torch.compile`` / ``torch.export`` the cache check is skipped (it is not traceable):
the graph uses the folded weights as of tracing, so after changing weights of a compiled model
run one eager eval forward or ``model.invalidate_fused_cache()`` + ``model.eval()`` and
recompile.  ``torch.export`` of an eval model always exports the fused (inference-only) graph,
whatever the grad mode; ``torch.compile`` applies the same rule as eager.
"""
import contextlib
import warnings
from operator import attrgetter
from typing import Any, Callable, List, Optional

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle
from torchvision.models import mobilenetv3 as _tv
from torchvision.models._utils import _ovewrite_named_param
from torchvision.ops.misc import Conv2dNormActivation, FrozenBatchNorm2d, SqueezeExcitation

from torch.fx import _symbolic_trace as _fx_trace

from mbv3_fast._C import _cpu_isa_index, _mobilenet_v3_call, _mobilenet_v3_guard, _tensor_state
from mbv3_fast.isa import cpu_head_panel_rows, cpu_isa_reads_k_pairs, cpu_pw_panel_cols
from mbv3_fast.ops.fold_bn import fold_bn
from mbv3_fast.ops.pwconv_bn_act import pack_weight as pack_pw_weight, pack_weight_k_pairs, pack_weight_panels
from mbv3_fast.ops.conv_bn_act import pack_weight as pack_conv_weight
from mbv3_fast import plan as _records
from mbv3_fast.plan import Act, Block, Conv, Depthwise, Head, Net, Pointwise, SE

__all__ = [
    "FastMobileNetV3",
    "MobileNetV3Large",
    "MobileNetV3Small",
    "mobilenet_v3_large",
    "mobilenet_v3_small",
    "from_torchvision",
    "fused_block_forward",
    "fused_stem_forward",
    "fused_head_forward",
]

_FUSED_DTYPES = {"cpu": (torch.float32, torch.bfloat16), "cuda": (torch.float32, torch.float16, torch.bfloat16)}
# Autocast dtypes the fused path runs for float32 models, per device: the model is folded a
# second time in that dtype (its own cached plan) and the input cast to it.
_AUTOCAST_DTYPES = {"cpu": (torch.bfloat16,)}
_ACTS = {nn.Hardswish: Act.HARDSWISH, nn.ReLU: Act.RELU}
_training = attrgetter("training")
# True under torch.fx symbolic tracing (we test is_compiling() first, so also the older
# is_fx_tracing(), which newer torch versions make log a warning, would do).
_is_fx_tracing = (getattr(_fx_trace, "is_fx_symbolic_tracing", None)
                  or getattr(_fx_trace, "_get_is_fx_tracing", None) or _fx_trace.is_fx_tracing)
_GLOBAL_HOOKS = (nn.modules.module._global_forward_hooks,
                 nn.modules.module._global_forward_pre_hooks)
_mobilenet_v3 = torch.ops.mbv3.mobilenet_v3.default
_module_call = nn.Module.__call__
# What FastMobileNetV3.__call__ skips besides the submodules' hooks: the model's own hooks (any
# kind) and the global backward ones.
_CALL_HOOKS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
_GLOBAL_BACKWARD_HOOKS = (nn.modules.module._global_backward_hooks,
                          nn.modules.module._global_backward_pre_hooks)


class _Unfusable(Exception):
    """The module tree is not one the fused path understands (reason in the message)."""


class _Plan:
    """Folded weights for one (device, dtype) and what they were folded from.

    ok      -- False when the fused path cannot run this model (``reason`` says why)
    net     -- the folded network (mbv3_fast.plan.Net), None unless ok
    net_weights, net_spec -- ``net`` encoded for ``mbv3::mobilenet_v3`` (one op call per forward)
    sources -- tuple of every tensor the plan was derived from (for the staleness check and
               the requires-grad test); state -- their (version, ptr, meta), recorded *before*
               folding, so a write during folding reads as stale at the next forward
    bns     -- (module, eps) of every folded norm layer: a changed eps also refolds
    untracked -- True when a source is an inference tensor (no version counter): then every
               forward refolds, since an in-place edit could not be seen
    train_mods -- BatchNorm/Dropout submodules whose train flag would change eval semantics
    hooks   -- the forward (pre-)hook dicts of every submodule and the global ones: the fused
               path runs no submodule, so any registered hook sends the forward unfused
    k_pairs -- CPU bf16 plans: 1x1 weights packed in K pairs, for the ISA in force when folded
               (None otherwise)
    panel_cols -- CPU float32 plans: the panel width the 1x1 weights are packed in (0: K-major),
               the one the ISA in force wanted when folded (None otherwise)
    head_panel_rows -- CPU float32 plans: the panel height the head's FC weights are packed in
               (0: [out, in] rows), the one the ISA in force wanted when folded (None otherwise)
    isa     -- CPU plans: the path in force when folded (_cpu_isa_index; None otherwise); any
               other path refolds, for the 1x1 layout it wants (K pairs must match the path;
               panels of any width are read right by every path, so for them it is speed)
    """

    def __init__(self, device, dtype, sources, state, train_mods, bns=(), k_pairs=None, panel_cols=None,
                 head_panel_rows=None):
        self.device = device
        self.dtype = dtype
        self.sources = tuple(sources)
        self.state = state
        self.untracked = any(t.is_inference() for t in self.sources)
        self.train_mods = tuple(train_mods)
        self.bns = tuple(bns)
        self.hooks = ()
        self.ok = False
        self.reason = ""
        self.net: Optional[Net] = None
        self.net_weights, self.net_spec = (), []
        self.k_pairs = k_pairs
        self.panel_cols = panel_cols
        self.head_panel_rows = head_panel_rows
        self.isa = _cpu_isa_index() if device.type == "cpu" else None
        # CPU plans with a folded head: _C._mobilenet_v3_guard's capsule (the eager fast call's
        # checks) and the tuples of dicts it borrows.
        self.guard = None
        self.guard_refs = ()

    def stale(self) -> bool:
        """Has a source changed since folding (needs no Python per tensor: one C call)?"""
        return (bool(_tensor_state(self.sources, self.state) & 1) or self.untracked
                or any(bn.eps != eps for bn, eps in self.bns) or self.layout_stale())

    def layout_stale(self) -> bool:
        """Was the plan packed for another CPU path (CPU plans only)?  No op call: it runs
        every forward."""
        return self.isa is not None and self.isa != _cpu_isa_index()


# ----------------------------------------------------------------------------------------------
# Folding
# ----------------------------------------------------------------------------------------------

def _act(act: Optional[nn.Module]) -> Act:
    if act is None:
        return Act.NONE
    code = _ACTS.get(type(act))
    if code is None:
        raise _Unfusable(f"unsupported activation {type(act).__name__}")
    return code


def _split_cna(m: nn.Module):
    """Conv2dNormActivation -> (conv, bn, activation or None)."""
    if not isinstance(m, Conv2dNormActivation) or not 2 <= len(m) <= 3:
        raise _Unfusable(f"expected Conv2dNormActivation(conv, norm[, act]), got {type(m).__name__}")
    conv, bn = m[0], m[1]
    act = m[2] if len(m) == 3 else None
    if type(conv) is not nn.Conv2d or conv.padding_mode != "zeros" or isinstance(conv.padding, str):
        raise _Unfusable("unsupported conv")
    if isinstance(bn, nn.modules.batchnorm._BatchNorm):
        if bn.running_mean is None or bn.running_var is None:
            raise _Unfusable("BatchNorm without running statistics")
    elif not isinstance(bn, FrozenBatchNorm2d):
        raise _Unfusable(f"unsupported norm layer {type(bn).__name__}")
    return conv, bn, act


def _bn_sources(conv, bn) -> List[Tensor]:
    # num_batches_tracked: a train-mode BatchNorm forward updates running_mean/var in place
    # *without* bumping their version counters (native_batch_norm's schema does not mark them
    # mutated), but it does `num_batches_tracked.add_(1)`, which bumps that one.
    ts = [conv.weight, conv.bias, getattr(bn, "weight", None), getattr(bn, "bias", None),
          bn.running_mean, bn.running_var, getattr(bn, "num_batches_tracked", None)]
    return [t for t in ts if t is not None]


def _square(v, what):
    if v[0] != v[1]:
        raise _Unfusable(f"non-square {what} {tuple(v)}")
    return int(v[0])


class _Fold:
    """The fold-and-pack pass: module tree -> mbv3_fast.plan records, collecting what the
    records were derived from (sources, norm layers, train-flag modules) on the way."""

    def __init__(self, dtype, k_pairs=False, panel_cols=0, head_panel_rows=0, float_bias=False):
        self.dtype = dtype
        # CPU bf16 plans: biases rounded to bf16, then stored as float32 (the same values), the
        # dtype the kernels read; a bf16 bias would be widened into a new tensor on every call.
        self.float_bias = float_bias
        self.k_pairs = k_pairs  # 1x1 weights packed in K pairs (bf16 dot-product kernels)
        self.panel_cols = panel_cols  # > 0: float32 1x1 weights packed in panels this wide
        self.head_panel_rows = head_panel_rows  # > 0: float32 head FC weights in panels this high
        self.sources: List[Tensor] = []
        self.train_mods: List[nn.Module] = []
        self.bns: List[tuple] = []

    def _conv_bn(self, m: nn.Module):
        conv, bn, act = _split_cna(m)
        self.sources += _bn_sources(conv, bn)
        self.train_mods.append(bn)
        self.bns.append((bn, bn.eps))
        w, b = fold_bn(conv.weight, bn, conv.bias)
        return conv, w.to(self.dtype), self.bias(b), _act(act)

    def bias(self, b: Tensor) -> Tensor:
        """A bias in the plan's dtype, or its bf16 values as float32 (float_bias)."""
        b = b.to(self.dtype)
        return b.float() if self.float_bias else b

    def stem(self, m: nn.Module) -> Conv:
        """Dense conv; weight packed ([k, k, Cin, Cout] viewed as [Cout, Cin, k, k], read in
        place by the CPU kernel)."""
        conv, w, b, act = self._conv_bn(m)
        if conv.groups != 1 or _square(conv.dilation, "dilation") != 1:
            raise _Unfusable("grouped or dilated dense conv")
        if w.shape[-1] != w.shape[-2] or w.shape[-1] % 2 != 1 or w.shape[-1] > 7:
            raise _Unfusable(f"stem kernel {tuple(w.shape[-2:])}")
        w = pack_conv_weight(w.contiguous())
        return Conv(w, b, _square(conv.stride, "stride"), _square(conv.padding, "padding"), act)

    def pointwise(self, m: nn.Module, what: str) -> Pointwise:
        """1x1 conv; weight kept K-major (a [Cin, Cout] buffer viewed as [Cout, Cin, 1, 1]), the
        layout the GEMM reads without packing per call, in panels where the CPU path wants
        them, or in K pairs for the bf16 dot-product kernel."""
        conv, w, b, act = self._conv_bn(m)
        if (conv.groups != 1 or tuple(conv.kernel_size) != (1, 1) or tuple(conv.stride) != (1, 1)
                or tuple(conv.padding) != (0, 0)):
            raise _Unfusable(f"{what} conv is not a 1x1 stride-1 conv")
        if self.k_pairs:
            return Pointwise(pack_weight_k_pairs(w), b, act)
        if self.panel_cols:
            return Pointwise(pack_weight_panels(w, self.panel_cols), b, act)
        return Pointwise(pack_pw_weight(w), b, act)

    def depthwise(self, m: nn.Module) -> Depthwise:
        conv = _split_cna(m)[0]
        c = conv.in_channels
        if conv.groups != c or conv.out_channels != c:
            raise _Unfusable("expected a depthwise conv")
        k = _square(conv.kernel_size, "kernel")
        if k % 2 != 1 or k > 7:
            raise _Unfusable(f"depthwise kernel {k}")
        conv, w, b, act = self._conv_bn(m)
        # Stored as a view of a [k, k, C] buffer: the kernel's packed layout, no packing per call.
        w = w[:, 0].permute(1, 2, 0).contiguous().permute(2, 0, 1).unsqueeze(1)
        return Depthwise(w, b, _square(conv.stride, "stride"), _square(conv.padding, "padding"),
                         _square(conv.dilation, "dilation"), act)

    def se(self, se: nn.Module) -> SE:
        if (type(se) is not SqueezeExcitation or type(se.activation) is not nn.ReLU
                or type(se.scale_activation) is not nn.Hardsigmoid
                or not isinstance(se.avgpool, nn.AdaptiveAvgPool2d) or se.avgpool.output_size not in (1, (1, 1))
                or se.fc1.bias is None or se.fc2.bias is None):
            raise _Unfusable("unsupported squeeze-excitation layer")
        s, c = se.fc1.out_channels, se.fc1.in_channels
        self.sources += [se.fc1.weight, se.fc1.bias, se.fc2.weight, se.fc2.bias]
        # torchvision's [out, in] layout: the CPU kernel streams each weight row in order (one
        # dot product per output), the fastest way to read weights that come from DRAM.
        return SE(se.fc1.weight.detach().reshape(s, c).to(self.dtype).clone(),
                  self.bias(se.fc1.bias.detach()).clone(),
                  se.fc2.weight.detach().reshape(c, s).to(self.dtype).clone(),
                  self.bias(se.fc2.bias.detach()).clone())

    def block(self, blk: nn.Module) -> Block:
        if type(blk) is not _tv.InvertedResidual:
            raise _Unfusable(f"unsupported block {type(blk).__name__}")
        layers = list(blk.block)
        expand = None
        if len(layers) >= 2 and isinstance(layers[0], Conv2dNormActivation) and layers[0][0].groups == 1:
            expand = self.pointwise(layers.pop(0), "expand")
        dw = self.depthwise(layers.pop(0))
        se = self.se(layers.pop(0)) if len(layers) == 2 else None
        if len(layers) != 1:
            raise _Unfusable("unexpected inverted residual layout")
        project = self.pointwise(layers[0], "project")
        if project.act != Act.NONE:
            raise _Unfusable("project conv with an activation")
        fuse = -1 if expand is None else _records.fuse_expand_min_pixels(expand.bias.shape[0], self.dtype)
        return Block(expand, dw, se, project, bool(blk.use_res_connect), fuse)

    def head(self, classifier: nn.Module) -> Optional[Head]:
        c = classifier
        if (type(c) is nn.Sequential and len(c) == 4 and type(c[0]) is nn.Linear
                and type(c[1]) is nn.Hardswish and type(c[2]) is nn.Dropout and type(c[3]) is nn.Linear
                and c[0].bias is not None and c[3].bias is not None):
            self.sources += [c[0].weight, c[0].bias, c[3].weight, c[3].bias]
            self.train_mods.append(c[2])
            # .to: the live parameters themselves in their own dtype; a copy for an autocast plan
            # or packed in panels where the CPU path wants them.
            d, rows = self.dtype, self.head_panel_rows
            w1, w2 = c[0].weight.to(d), c[3].weight.to(d)
            if rows:
                w1, w2 = pack_weight_panels(w1, rows), pack_weight_panels(w2, rows)
            return Head(w1, self.bias(c[0].bias), w2, self.bias(c[3].bias), Act.HARDSWISH)
        # Anything else: called as a module (its parameters are used live, not cached).
        self.train_mods += list(c.modules())
        self.sources += list(c.parameters())
        return None

    def net(self, model: nn.Module) -> Net:
        if not isinstance(model.avgpool, nn.AdaptiveAvgPool2d) or model.avgpool.output_size not in (1, (1, 1)):
            raise _Unfusable("unsupported pooling")
        feats = list(model.features)
        if len(feats) < 3:
            raise _Unfusable("too few feature layers")
        return Net(self.dtype, self.stem(feats[0]), tuple(self.block(b) for b in feats[1:-1]),
                   self.pointwise(feats[-1], "last"), self.head(model.classifier))


def _build_plan(model: "FastMobileNetV3", dtype: Optional[torch.dtype] = None) -> _Plan:
    """Fold every BN of ``model`` (a torchvision-layout MobileNetV3) into a _Plan, in the
    parameters' dtype or in ``dtype`` (autocast: the float32 parameters folded, then rounded)."""
    p0 = next(model.features.parameters(), None)
    device = p0.device if p0 is not None else torch.device("cpu")
    param_dtype = p0.dtype if p0 is not None else torch.float32
    dtype = dtype or param_dtype
    # Every tensor's state is recorded before anything is read: a write that lands while we fold
    # then shows as stale at the next forward instead of being taken as folded.
    everything = tuple(model.parameters()) + tuple(model.buffers())
    state = bytearray(24 * len(everything))
    _tensor_state(everything, state)
    slot = {id(t): i for i, t in enumerate(everything)}
    # CPU bf16: the 1x1 layout of the path in force (None: no choice to make, never layout-stale).
    k_pairs = cpu_isa_reads_k_pairs() if (device.type, dtype) == ("cpu", torch.bfloat16) else None
    cpu_f32 = (device.type, dtype) == ("cpu", torch.float32)
    panel_cols = cpu_pw_panel_cols() if cpu_f32 else None
    head_rows = cpu_head_panel_rows() if cpu_f32 else None
    fold = _Fold(dtype, bool(k_pairs), panel_cols or 0, head_rows or 0,
                 float_bias=(device.type, dtype) == ("cpu", torch.bfloat16))
    # Folding ignores autocast (only CPU and CUDA have one: the meta device's plans fold as is).
    no_autocast = (torch.autocast(device.type, enabled=False) if device.type in ("cpu", "cuda")
                   else contextlib.nullcontext())
    with torch.inference_mode(False), torch.no_grad(), no_autocast:
        try:
            if dtype not in _FUSED_DTYPES.get(device.type, ()):
                raise _Unfusable(f"no fused kernels for {dtype} on {device.type}")
            net = fold.net(model)
            if any(t.device != device or (t.dtype != param_dtype and t.is_floating_point())
                   for t in fold.sources):
                raise _Unfusable("parameters on mixed devices or dtypes")
        except _Unfusable as e:
            plan = _Plan(device, dtype, everything, state, [], k_pairs=k_pairs, panel_cols=panel_cols,
                         head_panel_rows=head_rows)
            plan.reason = str(e)
            return plan
    sources = tuple({id(t): t for t in fold.sources}.values())
    picked = bytearray(b"".join(bytes(state[24 * slot[id(t)]:24 * slot[id(t)] + 24]) for t in sources))
    plan = _Plan(device, dtype, sources, picked, fold.train_mods, fold.bns, k_pairs, panel_cols, head_rows)
    plan.net = net
    plan.net_weights, plan.net_spec = _records.encode(net)
    subs = [m for m in model.modules() if m is not model]
    plan.hooks = (_GLOBAL_HOOKS + tuple(m._forward_hooks for m in subs)
                  + tuple(m._forward_pre_hooks for m in subs))
    plan.ok = True
    if device.type == "cpu" and net.head is not None and not plan.untracked:
        _add_guard(model, plan)
    if plan.untracked:
        warnings.warn("mbv3_fast: some parameters are inference tensors (made under "
                      "torch.inference_mode), whose in-place edits cannot be detected, so every "
                      "forward refolds the weights (slow).  Create or load the model outside "
                      "inference_mode to get the cached fused path.", stacklevel=3)
    return plan


def _add_guard(model: nn.Module, plan: _Plan) -> None:
    """The plan's checks for the eager fast call (FastMobileNetV3.__call__), in C."""
    mode_dicts = tuple(m.__dict__ for m in plan.train_mods)
    eps_dicts = tuple(bn.__dict__ for bn, _ in plan.bns)
    eps = tuple(float(e) for _, e in plan.bns)
    hook_dicts = plan.hooks + _GLOBAL_BACKWARD_HOOKS + tuple(getattr(model, h) for h in _CALL_HOOKS)
    plan.guard_refs = (mode_dicts, eps_dicts, hook_dicts)  # borrowed by the capsule; the rest is copied in
    plan.guard = _mobilenet_v3_guard(plan.sources, plan.state, mode_dicts, eps_dicts, eps, hook_dicts,
                                     RemovableHandle, tuple(plan.net_weights), tuple(plan.net_spec),
                                     plan.dtype == torch.bfloat16, plan.net.stem.weight.shape[1], plan.isa)


def _after_load_state_dict(module, incompatible_keys):
    module.invalidate_fused_cache()
    if not module.training:
        module._fused_plan()


# ----------------------------------------------------------------------------------------------
# Model
# ----------------------------------------------------------------------------------------------

class FastMobileNetV3(_tv.MobileNetV3):
    """torchvision's ``MobileNetV3`` (same constructor, modules and state_dict) with a fused eval
    path; see the module docstring for when it applies and how its weight cache stays fresh."""

    def __init__(self, inverted_residual_setting: List[_tv.InvertedResidualConfig],
                 last_channel: int, num_classes: int = 1000,
                 block: Optional[Callable[..., nn.Module]] = None,
                 norm_layer: Optional[Callable[..., nn.Module]] = None,
                 dropout: float = 0.2, **kwargs: Any) -> None:
        super().__init__(inverted_residual_setting, last_channel, num_classes=num_classes,
                         block=block, norm_layer=norm_layer, dropout=dropout, **kwargs)
        self._init_fused()

    def _init_fused(self) -> None:
        self._plan: Optional[_Plan] = None
        self._autocast_plans = {}  # autocast dtype -> _Plan (folded on first use under autocast)
        self.register_load_state_dict_post_hook(_after_load_state_dict)

    # -- cache management ----------------------------------------------------------------------
    def invalidate_fused_cache(self) -> None:
        """Drop the folded weights; the next eval forward refolds."""
        self._plan = None
        self._autocast_plans = {}

    def _fused_plan(self) -> _Plan:
        plan = self._plan
        if plan is None or plan.stale():
            plan = self._plan = _build_plan(self)
        return plan

    @property
    def fused_status(self) -> str:
        """'fused' or why the eval forward runs unfused (for the current parameters)."""
        plan = self._fused_plan()
        return "fused" if plan.ok else f"unfused: {plan.reason}"

    def train(self, mode: bool = True):
        super().train(mode)
        if not mode and not torch.compiler.is_compiling():
            self._fused_plan()  # fold now, so torch.compile/export find the cache
        return self

    def _apply(self, fn, recurse=True):
        self._plan = None
        self._autocast_plans = {}
        out = super()._apply(fn, recurse)
        if not self.training:
            self._fused_plan()
        return out

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_plan"] = None  # derived data: not pickled, rebuilt on demand
        state["_autocast_plans"] = {}
        return state

    # -- forward -------------------------------------------------------------------------------
    def __call__(self, *args, **kwargs):
        # The eager fast call: the fused path's rules checked in one C call (the module call and
        # forward's checks in Python cost ~0.2 ms with the model's objects cold, as they are
        # after a forward); None sends the call the ordinary way, hooks and all.
        if len(args) == 1 and not kwargs and not torch.compiler.is_compiling():
            y = _mobilenet_v3_call(self, args[0])
            if y is not None:
                return y
        return _module_call(self, *args, **kwargs)

    def forward(self, x: Tensor) -> Tensor:
        if self.training:
            return super().forward(x)
        if torch.compiler.is_compiling():  # (make_fx under torch.export also sets is_fx_tracing)
            return self._forward_traced(x)
        if _is_fx_tracing():
            return super().forward(x)
        if not isinstance(x, Tensor):
            return super().forward(x)  # torchvision's own error (TypeError from conv2d)
        plan = self._plan
        if plan is None:
            plan = self._plan = _build_plan(self)
        flags = _tensor_state(plan.sources, plan.state)  # 1: stale, 2: a source requires grad
        if flags & 1 or plan.untracked or any(bn.eps != eps for bn, eps in plan.bns) or plan.layout_stale():
            plan = self._plan = _build_plan(self)
            flags = _tensor_state(plan.sources, plan.state)
        if plan.ok and torch.is_autocast_enabled(plan.device.type):
            plan, x = self._autocast_plan(plan, x)
            if plan is None:
                return super().forward(x)
        elif not self._fusable(x, plan):
            return super().forward(x)
        if (flags & 2 or x.requires_grad) and torch.is_grad_enabled():
            return super().forward(x)
        if any(map(_training, plan.train_mods)) or any(plan.hooks):
            return super().forward(x)
        return self._forward_fused(x, plan)

    @staticmethod
    def _fusable(x: Tensor, plan: _Plan, autocast_ok: bool = False) -> bool:
        # A wrong channel count goes to torchvision's forward too, for torchvision's exception.
        return (plan.ok and x.device == plan.device and x.dtype == plan.dtype and x.dim() == 4
                and x.shape[1] == plan.net.stem.weight.shape[1]
                and (autocast_ok or not torch.is_autocast_enabled(plan.device.type)))

    def _autocast_plan(self, plan: _Plan, x: Tensor):
        """Under autocast: (the plan folded in the autocast dtype, x cast to it), or (None, x)
        when the fused path does not run it (not a float32 model, another autocast dtype or
        device, an input autocast would not cast).  The result has the dtype torchvision's
        forward returns under the same autocast (its convs and Linears run in that dtype)."""
        device = plan.device.type
        dtype = torch.get_autocast_dtype(device)
        if (plan.dtype != torch.float32 or dtype not in _AUTOCAST_DTYPES.get(device, ())
                or not isinstance(x, Tensor) or x.dtype not in (torch.float32, dtype)):
            return None, x
        low = self._autocast_plans.get(dtype)
        if low is None or low.stale():
            low = self._autocast_plans[dtype] = _build_plan(self, dtype)
        xl = x.to(dtype)
        if not self._fusable(xl, low, autocast_ok=True):
            return None, x
        return low, xl

    def _forward_traced(self, x: Tensor) -> Tensor:
        """forward under torch.compile / torch.export: same rules, no cache check."""
        plan = self._plan
        if (plan is None or not self._fusable(x, plan) or any(m.training for m in plan.train_mods)
                or any(len(h) for h in plan.hooks)):
            return super().forward(x)
        if (not torch.compiler.is_exporting() and torch.is_grad_enabled()
                and (x.requires_grad or any(t.requires_grad for t in plan.sources))):
            return super().forward(x)
        # The graph keeps one node per fused op (readable exports; no per-call Python there).
        return self._forward_fused(x, plan, one_call=False)

    def _forward_fused(self, x: Tensor, plan: _Plan, one_call: bool = True,
                       label: Optional[_records.Label] = None) -> Tensor:
        """Channels_last throughout.  On the CPU, one mbv3::mobilenet_v3 call (a C++ loop over
        the same ops: no Python or dispatcher work per layer); else (traced graphs, or a
        profiler ``label`` callback) mbv3_fast.plan.run, one op call per layer."""
        if one_call and label is None:
            y = _mobilenet_v3(x, plan.net_weights, plan.net_spec)
        else:
            y = _records.run(plan.net, x, label or _records._no_label)
        return y if plan.net.head is not None else self.classifier(y.mean((2, 3)))


def fused_stem_forward(plan: _Plan, x: Tensor) -> Tensor:
    """The fused path's stem (dense 3x3 conv, BN folded, + activation), reading the input in
    whatever layout it comes (NCHW images: no copy), writing channels_last."""
    return _records.run_stem(plan.net, x)


def fused_head_forward(plan: _Plan, x: Tensor, classifier: nn.Module) -> Tensor:
    """The fused path after the last block: last 1x1 conv + BN + act, then global mean +
    classifier as one op (``classifier`` is called, on the mean, when the plan has no head)."""
    y = _records.run_tail(plan.net, x)
    return y if plan.net.head is not None else classifier(y.mean((2, 3)))


def fused_block_forward(block: Block, x: Tensor, index: int = 0) -> Tensor:
    """One inverted residual block on the fused path: ``block`` is an entry of
    ``model._plan.net.blocks`` (mbv3_fast.plan.Block), ``x`` the channels_last block input."""
    return _records.run_block(block, x, f"block{index}")


class MobileNetV3Large(FastMobileNetV3):
    """MobileNetV3-Large, arguments as torchvision's ``mobilenet_v3_large``."""

    def __init__(self, num_classes: int = 1000, width_mult: float = 1.0, reduced_tail: bool = False,
                 dilated: bool = False, dropout: float = 0.2,
                 norm_layer: Optional[Callable[..., nn.Module]] = None) -> None:
        setting, last_channel = _tv._mobilenet_v3_conf(
            "mobilenet_v3_large", width_mult=width_mult, reduced_tail=reduced_tail, dilated=dilated)
        super().__init__(setting, last_channel, num_classes=num_classes, norm_layer=norm_layer,
                         dropout=dropout)


class MobileNetV3Small(FastMobileNetV3):
    """MobileNetV3-Small, arguments as torchvision's ``mobilenet_v3_small``."""

    def __init__(self, num_classes: int = 1000, width_mult: float = 1.0, reduced_tail: bool = False,
                 dilated: bool = False, dropout: float = 0.2,
                 norm_layer: Optional[Callable[..., nn.Module]] = None) -> None:
        setting, last_channel = _tv._mobilenet_v3_conf(
            "mobilenet_v3_small", width_mult=width_mult, reduced_tail=reduced_tail, dilated=dilated)
        super().__init__(setting, last_channel, num_classes=num_classes, norm_layer=norm_layer,
                         dropout=dropout)


# ----------------------------------------------------------------------------------------------
# Builders and conversion
# ----------------------------------------------------------------------------------------------

def _resolve_weights(weights, enum_cls):
    if weights is None:
        return None
    if isinstance(weights, str):
        name = weights.split(".", 1)[1] if weights.startswith(enum_cls.__name__ + ".") else weights
        try:
            return enum_cls[name]
        except KeyError:
            raise ValueError(f"unknown weights '{weights}' for {enum_cls.__name__}; expected one of "
                             f"{', '.join(enum_cls.__members__)}") from None
    return enum_cls.verify(weights)


def _build(cls, enum_cls, weights, progress: bool, kwargs: dict) -> FastMobileNetV3:
    weights = _resolve_weights(weights, enum_cls)
    if weights is not None:
        _ovewrite_named_param(kwargs, "num_classes", len(weights.meta["categories"]))
    model = cls(**kwargs)
    if weights is not None:
        try:
            state_dict = weights.get_state_dict(progress=progress, check_hash=True)
        except Exception as e:  # offline: URLError, socket errors, ...
            raise RuntimeError(
                f"could not load pretrained weights {enum_cls.__name__}.{weights.name} from "
                f"{weights.url} (no network access?): {type(e).__name__}: {e}.  Download the file "
                f"elsewhere and pass its state_dict instead: model = {cls.__name__}(...); "
                f"model.load_state_dict(torch.load(path))") from e
        model.load_state_dict(state_dict)
    return model


def mobilenet_v3_large(*, weights=None, progress: bool = True, **kwargs: Any) -> MobileNetV3Large:
    """As ``torchvision.models.mobilenet_v3_large``; ``weights`` may be a
    ``MobileNet_V3_Large_Weights`` member or its name ("IMAGENET1K_V1", "DEFAULT",
    "MobileNet_V3_Large_Weights.IMAGENET1K_V2")."""
    return _build(MobileNetV3Large, _tv.MobileNet_V3_Large_Weights, weights, progress, kwargs)


def mobilenet_v3_small(*, weights=None, progress: bool = True, **kwargs: Any) -> MobileNetV3Small:
    """As ``torchvision.models.mobilenet_v3_small``; see :func:`mobilenet_v3_large`."""
    return _build(MobileNetV3Small, _tv.MobileNet_V3_Small_Weights, weights, progress, kwargs)


def from_torchvision(model: nn.Module) -> FastMobileNetV3:
    """Wrap a torchvision ``MobileNetV3`` (any configuration, BatchNorm2d or FrozenBatchNorm2d)
    as ours.  The result *shares* the modules and parameters of ``model`` (no copy; pass
    ``copy.deepcopy(model)`` for an independent one) and keeps its train/eval mode.  Returns a
    MobileNetV3Large / MobileNetV3Small when the block count says which, else FastMobileNetV3."""
    if isinstance(model, FastMobileNetV3):
        return model
    if type(model) is not _tv.MobileNetV3:
        raise TypeError(f"from_torchvision expects a torchvision.models.MobileNetV3, got "
                        f"{type(model).__module__}.{type(model).__name__}")
    n_blocks = len(model.features) - 2
    cls = {15: MobileNetV3Large, 11: MobileNetV3Small}.get(n_blocks, FastMobileNetV3)
    new = cls.__new__(cls)
    nn.Module.__init__(new)
    new.features, new.avgpool, new.classifier = model.features, model.avgpool, model.classifier
    new._init_fused()
    new.train(model.training)
    return new
