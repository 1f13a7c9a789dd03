"""mbv3_fast.model: parity with torchvision (eval fused / train plain), state_dict compatibility,
cache freshness, conversion, weights loading, torch.compile / torch.export."""
import contextlib
import copy
import functools
import gc
import time
import urllib.error
import weakref
import zlib

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models import mobilenetv3 as tvm
from torchvision.ops.misc import FrozenBatchNorm2d

import mbv3_fast
from mbv3_fast import (MobileNetV3Large, MobileNetV3Small, from_torchvision, mobilenet_v3_large,
                       mobilenet_v3_small)
from mbv3_fast import model as model_module
from mbv3_fast.model import FastMobileNetV3
from mbv3_fast.testing import realistic
from tolerance import max_abs_err

ARCHS = {"large": (tvm.mobilenet_v3_large, MobileNetV3Large, mobilenet_v3_large),
         "small": (tvm.mobilenet_v3_small, MobileNetV3Small, mobilenet_v3_small)}
CONFIGS = {
    "default": {},
    "w075": {"width_mult": 0.75},
    "reduced": {"reduced_tail": True},
    "dilated": {"dilated": True},
    "cls10": {"num_classes": 10},
}
ALL = [(a, c) for a in ARCHS for c in CONFIGS]
FORMATS = {"nchw": torch.contiguous_format, "cl": torch.channels_last}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # The machine is small and shared: oversubscribed OpenMP threads spin-wait for ms per op.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@functools.lru_cache(maxsize=None)
def _tv_state(arch: str, cfg: str):
    tv = realistic(ARCHS[arch][0](**CONFIGS[cfg]), seed=zlib.crc32(f"{arch}-{cfg}".encode()) % 1000)
    return {k: v.clone() for k, v in tv.state_dict().items()}


def _pair(arch: str, cfg: str):
    """(torchvision model, ours) in eval mode with the same realistic weights."""
    tv = ARCHS[arch][0](**CONFIGS[cfg])
    tv.load_state_dict(_tv_state(arch, cfg))
    ours = ARCHS[arch][1](**CONFIGS[cfg])
    ours.load_state_dict(_tv_state(arch, cfg))
    return tv.eval(), ours.eval()


def _assert_logits(ours: torch.Tensor, ref: torch.Tensor, what=""):
    assert ours.shape == ref.shape and ours.dtype == ref.dtype
    err = (ours - ref).abs().max().item()
    scale = ref.abs().max().item()
    assert err <= 1e-4 * scale, f"{what}: max|d| {err:.3e} > 1e-4 * {scale:.3e}"
    assert torch.equal(ours.argmax(1), ref.argmax(1)), f"{what}: top-1 differs"


_SPIES = weakref.WeakKeyDictionary()  # model -> its _spy_fused list
_real_fast_call = model_module._mobilenet_v3_call


def _counting_fast_call(model, x):
    y = _real_fast_call(model, x)
    if y is not None and model in _SPIES:
        _SPIES[model].append(1)
    return y


@pytest.fixture(autouse=True)
def _count_fast_calls(monkeypatch):
    """The eager fast call (FastMobileNetV3.__call__) runs the fused path too: _spy_fused counts it."""
    monkeypatch.setattr(model_module, "_mobilenet_v3_call", _counting_fast_call)


def _spy_fused(model):
    """Count how often the fused path runs (the fast call's or forward's)."""
    calls = _SPIES[model] = []
    orig = model._forward_fused

    def spy(x, plan, **kw):
        calls.append(1)
        return orig(x, plan, **kw)

    model._forward_fused = spy
    return calls


# ------------------------------------------------------------------------------------------------
# eval parity
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("arch,cfg", ALL)
def test_eval_parity_every_isa(cpu_isa, arch, cfg, fmt):
    tv, ours = _pair(arch, cfg)
    calls = _spy_fused(ours)
    x = torch.randn(2, 3, 32, 32).contiguous(memory_format=FORMATS[fmt])
    with torch.no_grad():
        ref = tv(x)
        out = ours(x)
    assert calls, ours.fused_status
    _assert_logits(out, ref, f"{arch}/{cfg}/{fmt}/{cpu_isa}")


@pytest.mark.parametrize("shape", [(1, 3, 224, 224), (3, 3, 160, 192)], ids=["1x224", "3x160x192"])
@pytest.mark.parametrize("arch,cfg", [("large", "default"), ("small", "default"),
                                      ("large", "dilated"), ("small", "w075")])
def test_eval_parity_full_size(arch, cfg, shape):
    tv, ours = _pair(arch, cfg)
    calls = _spy_fused(ours)
    x = torch.randn(shape) * 1.5 + 0.3
    with torch.no_grad():
        ref = tv(x)
        outs = [ours(x.contiguous(memory_format=fmt)) for fmt in FORMATS.values()]
    for out, fmt in zip(outs, FORMATS):
        _assert_logits(out, ref, f"{arch}/{cfg}/{shape}/{fmt}")
    assert torch.equal(outs[0], outs[1])  # the input is converted once: same computation
    assert len(calls) == 2


def _parity_on(device: str, arch: str, fmt: str, dtype: torch.dtype):
    """The fused forward on `device` in `dtype` against torchvision in float64: its max error at
    most 4x that of torchvision's own forward in `dtype`, + 1e-6 (the per-op rule is 2x; over a
    whole network rounding compounds through ~60 layers, and 24 float32 draws on the CPU gave
    ratios of 0.6-2.1); and the one-call forward (mbv3::mobilenet_v3) bit-equal to calling the
    ops one by one."""
    tv, ours = _pair(arch, "default")
    ref_model = copy.deepcopy(tv).to(device, torch.float64)
    tv, ours = tv.to(device, dtype), ours.to(device, dtype)
    x = (torch.randn(3, 3, 96, 80) * 1.5 + 0.3).to(device, dtype).contiguous(memory_format=FORMATS[fmt])
    calls = _spy_fused(ours)
    with torch.no_grad():
        ref = ref_model(x.to(torch.float64))  # the same rounded input
        theirs = tv(x)
        out = ours(x)
        assert len(calls) == 1, ours.fused_status  # the forward itself took the fused path
        per_op = ours._forward_fused(x, ours._fused_plan(), one_call=False)
    what = f"{arch}/{fmt}/{dtype}/{device}"
    assert out.dtype == dtype and torch.isfinite(out).all(), what
    ours_err, torch_err = max_abs_err(out, ref), max_abs_err(theirs, ref)
    print(f"[tol] {what}: ours={ours_err:.3e} torchvision={torch_err:.3e}")
    assert ours_err <= 4 * torch_err + 1e-6, f"{what}: {ours_err:.3e} > 4*{torch_err:.3e}+1e-6"
    assert torch.equal(out, per_op)


@pytest.mark.skipif(not torch.cuda.is_available(),
                    reason="no CUDA device (the CPU runs of _parity_on check the same walk; "
                           "bench/gpu_check.py runs this on a GPU)")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("arch", ARCHS)
def test_eval_parity_cuda(arch, fmt, dtype):
    _parity_on("cuda", arch, fmt, dtype)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("arch", ARCHS)
def test_eval_parity_float64_reference_cpu(arch, fmt):
    _parity_on("cpu", arch, fmt, torch.float32)


def test_eval_inference_mode_and_no_grad_params():
    tv, ours = _pair("small", "default")
    calls = _spy_fused(ours)
    x = torch.randn(1, 3, 48, 40)
    with torch.no_grad():
        ref = tv(x)
    with torch.inference_mode():
        _assert_logits(ours(x), ref, "inference_mode")
    ours.requires_grad_(False)  # grad mode on, but nothing to differentiate: fused
    _assert_logits(ours(x), ref, "requires_grad_(False)")
    assert len(calls) == 2


def test_eval_with_grad_falls_back_and_differentiates():
    tv, ours = _pair("small", "default")
    calls = _spy_fused(ours)
    x = torch.randn(2, 3, 32, 32)
    xr, xo = x.clone().requires_grad_(), x.clone().requires_grad_()
    ref, out = tv(xr), ours(xo)  # grad enabled, params require grad: unfused
    assert not calls
    torch.testing.assert_close(out, ref, rtol=0, atol=0)
    ref.square().sum().backward()
    out.square().sum().backward()
    torch.testing.assert_close(xo.grad, xr.grad)
    for (n, p), q in zip(ours.named_parameters(), tv.parameters()):
        torch.testing.assert_close(p.grad, q.grad, msg=n)


# ------------------------------------------------------------------------------------------------
# train parity
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("arch,cfg", [("large", "default"), ("small", "dilated")])
def test_train_parity(arch, cfg):
    tv, ours = _pair(arch, cfg)
    tv.train()
    ours.train()
    x = torch.randn(3, 3, 64, 64)
    for step in range(2):
        torch.manual_seed(step)
        ref = tv(x)
        torch.manual_seed(step)
        out = ours(x)
        torch.testing.assert_close(out, ref, rtol=0, atol=0)
        ref.logsumexp(1).sum().backward()
        out.logsumexp(1).sum().backward()
    tv_sd = tv.state_dict()
    for k, v in ours.state_dict().items():  # running stats updated identically
        torch.testing.assert_close(v, tv_sd[k], rtol=0, atol=0, msg=k)
    for (n, p), q in zip(ours.named_parameters(), tv.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=0, atol=0, msg=n)
    # After training steps the next eval forward uses the updated statistics.
    tv.eval()
    ours.eval()
    with torch.no_grad():
        _assert_logits(ours(x), tv(x), "eval after train")


# ------------------------------------------------------------------------------------------------
# state_dict / conversion / builders
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("norm", ["bn", "frozen"])
@pytest.mark.parametrize("arch,cfg", ALL)
def test_state_dict_round_trip(arch, cfg, norm):
    kw = dict(CONFIGS[cfg])
    if norm == "frozen":
        kw["norm_layer"] = FrozenBatchNorm2d
    tv, ours = ARCHS[arch][0](**kw), ARCHS[arch][1](**kw)
    a, b = tv.state_dict(), ours.state_dict()
    assert list(a) == list(b)
    assert all(a[k].shape == b[k].shape and a[k].dtype == b[k].dtype for k in a)
    with torch.no_grad():
        for t in tv.parameters():
            t.normal_()
    ours.load_state_dict(tv.state_dict(), strict=True)
    tv2 = ARCHS[arch][0](**kw)
    tv2.load_state_dict(ours.state_dict(), strict=True)
    for k, v in tv2.state_dict().items():
        assert torch.equal(v, a[k] if k.endswith("num_batches_tracked") else tv.state_dict()[k])
    # The builders build the same thing.
    built = ARCHS[arch][2](**kw)
    assert type(built) is ARCHS[arch][1] and list(built.state_dict()) == list(a)


@pytest.mark.parametrize("arch", ARCHS)
def test_from_torchvision_frozen_bn(arch):
    tv = ARCHS[arch][0](norm_layer=FrozenBatchNorm2d)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in tv.modules():
            if isinstance(m, FrozenBatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.2)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.5)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) * 2 + 0.2)
            elif isinstance(m, nn.Linear):
                m.weight.normal_(0, 0.05, generator=g)
    tv.eval()
    ours = from_torchvision(tv)
    assert type(ours) is ARCHS[arch][1] and not ours.training
    assert ours.fused_status == "fused"
    calls = _spy_fused(ours)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        _assert_logits(ours(x), tv(x), "frozen bn")
    assert calls
    # Shares the modules: a change to the torchvision model is seen by ours.
    with torch.no_grad():
        tv.features[2].block[1][1].running_mean.add_(1.0)
        _assert_logits(ours(x), tv(x), "frozen bn after change")
    assert from_torchvision(ours) is ours
    with pytest.raises(TypeError):
        from_torchvision(torchvision.models.mobilenet_v2())


def test_from_torchvision_other_configs():
    tv = tvm.mobilenet_v3_large(reduced_tail=True, num_classes=10)
    tv.load_state_dict(_tv_state("large", "reduced") | {
        k: v for k, v in tv.state_dict().items() if k.startswith("classifier.3")})
    tv.eval()
    ours = from_torchvision(tv)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        _assert_logits(ours(x), tv(x), "reduced/10 classes")
    assert from_torchvision(tv.train()).training


# ------------------------------------------------------------------------------------------------
# folded-weight cache freshness
# ------------------------------------------------------------------------------------------------

def test_cache_load_state_dict():
    tv, ours = _pair("large", "default")
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ours(x)
        tv.load_state_dict(_tv_state("large", "default") | {
            k: v * 1.1 for k, v in _tv_state("large", "default").items() if "running_var" in k})
        ours.load_state_dict(tv.state_dict())
        _assert_logits(ours(x), tv(x), "load_state_dict")
        new = {k: v.clone() * (0.9 if v.is_floating_point() else 1) for k, v in tv.state_dict().items()}
        tv.load_state_dict(new)
        ours.load_state_dict({k: v.clone() for k, v in new.items()}, assign=True)
        _assert_logits(ours(x), tv(x), "load_state_dict(assign=True)")


def test_cache_in_place_changes():
    tv, ours = _pair("small", "default")
    x = torch.randn(2, 3, 32, 32)
    mods_t, mods_o = dict(tv.named_modules()), dict(ours.named_modules())
    with torch.no_grad():
        _assert_logits(ours(x), tv(x), "before")
        for name, attr, fn in [
            ("features.4.block.1.1", "running_mean", lambda t: t.add_(0.3)),       # dw BN stat
            ("features.4.block.0.0", "weight", lambda t: t.mul_(1.2)),             # expand conv
            ("features.4.block.2.fc1", "bias", lambda t: t.sub_(0.5)),             # SE
            ("features.0.1", "bias", lambda t: t.add_(0.1)),                       # stem BN
            ("classifier.3", "weight", lambda t: t.mul_(-1)),                      # head
        ]:
            for mods in (mods_t, mods_o):
                fn(getattr(mods[name], attr))
            _assert_logits(ours(x), tv(x), f"{name}.{attr}")
        # `.data = ...` keeps the version but changes the storage.
        for mods in (mods_t, mods_o):
            p = mods["features.6.block.3.0"].weight
            p.data = p.data * 0.5
        _assert_logits(ours(x), tv(x), ".data assignment")
        # A BN switched back to train mode inside an eval model: unfused, batch statistics
        # (and running-stat updates, which the next fused forward must see).
        for mods in (mods_t, mods_o):
            mods["features.3.block.1.1"].train()
        torch.testing.assert_close(ours(x), tv(x))
        for mods in (mods_t, mods_o):
            mods["features.3.block.1.1"].eval()
        _assert_logits(ours(x), tv(x), "after a submodule train-mode forward")


def test_cache_dtype_device_changes():
    tv, ours = _pair("small", "default")
    x = torch.randn(2, 3, 32, 32)
    calls = _spy_fused(ours)
    with torch.no_grad():
        ours(x)
        assert len(calls) == 1
        # float64: no fused float64 kernels; the eval forward runs unfused (exact torchvision).
        ours.double()
        tv.double()
        assert ours.fused_status.startswith("unfused")
        torch.testing.assert_close(ours(x.double()), tv(x.double()), rtol=0, atol=0)
        assert len(calls) == 1
        ours.float()
        tv.float()
        assert ours.fused_status == "fused"
        _assert_logits(ours(x), tv(x), "back to float32")
        assert len(calls) == 2
        # .to() on a submodule changes the data pointers: detected too.
        ours.features[3].double().float()
        _assert_logits(ours(x), tv(x), "submodule .to")
        ours.to("meta")
        assert ours(x.to("meta")).shape == (2, 1000)


def test_hooks_and_fx_feature_extraction():
    from torchvision.models.feature_extraction import create_feature_extractor
    tv, ours = _pair("small", "default")
    calls = _spy_fused(ours)
    x = torch.randn(1, 3, 64, 64)
    seen = []
    handle = ours.features[4].register_forward_hook(lambda m, i, o: seen.append(o.shape))
    with torch.no_grad():
        torch.testing.assert_close(ours(x), tv(x))  # hook registered: unfused, hook fires
        assert seen and not calls
        handle.remove()
        _assert_logits(ours(x), tv(x), "hook removed")
        assert len(calls) == 1
        fx_ours = create_feature_extractor(ours, {"features.6": "f6", "classifier.3": "out"})
        fx_tv = create_feature_extractor(tv, {"features.6": "f6", "classifier.3": "out"})
        a, b = fx_ours(x), fx_tv(x)
    torch.testing.assert_close(a["f6"], b["f6"])
    torch.testing.assert_close(a["out"], b["out"])


def test_pickle_and_deepcopy_drop_cache():
    _, ours = _pair("small", "default")
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        ref = ours(x)
        dup = copy.deepcopy(ours)
        with torch.no_grad():
            ours.features[1].block[0][1].running_var.mul_(3)  # must not affect the copy
        torch.testing.assert_close(dup(x), ref)


# ------------------------------------------------------------------------------------------------
# the eager fast call (FastMobileNetV3.__call__: the rules checked in one C call)
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("arch", ARCHS)
def test_fast_call_is_the_fused_forward(arch, fmt, dtype):
    """The fast call runs (returns logits) and gives the bits of the one-call fused forward."""
    _, ours = _pair(arch, "default")
    ours.to(dtype)
    for n in (0, 1, 3):
        x = torch.randn(n, 3, 48, 40, dtype=dtype).contiguous(memory_format=FORMATS[fmt])
        with torch.no_grad():
            fast = _real_fast_call(ours, x)
            assert fast is not None, f"batch {n}: the fast call stepped aside"
            assert torch.equal(fast, ours._forward_fused(x, ours._fused_plan())), f"batch {n}"
            assert torch.equal(ours(x), fast)


def _global_hook(model):
    return nn.modules.module.register_module_forward_hook(lambda *a: None)


def _train_one_bn(model):
    model.features[2].block[0][1].train()


def _edit_weight(model):
    with torch.no_grad():
        model.features[4].block[0][0].weight.mul_(1.5)


def _swap_data(model):
    w = model.features[5].block[0][0].weight
    w.data = w.data * 0.5


def _change_eps(model):
    model.features[2].block[0][1].eps = 1e-2


# Each case: a change after a first fast call, after which the fast call must step aside (return
# None) and model(x) must still be torchvision's answer (the ordinary path decides).
_ASIDE = {
    "submodule hook": lambda m: m.features[3].register_forward_hook(lambda *a: None),
    "own pre-hook": lambda m: m.register_forward_pre_hook(lambda *a: None),
    "own backward hook": lambda m: m.register_full_backward_hook(lambda *a: None),
    "global hook": _global_hook,
    "BatchNorm in train mode": _train_one_bn,
    "model in train mode": lambda m: m.train(),
    "weight edited in place": _edit_weight,
    "p.data = t": _swap_data,
    "eps changed": _change_eps,
    "Module.compile()": lambda m: m.compile(),
}


@pytest.mark.parametrize("case", _ASIDE)
def test_fast_call_steps_aside(case):
    tv, ours = _pair("small", "default")
    x = torch.randn(2, 3, 40, 40)
    with torch.no_grad():
        assert _real_fast_call(ours, x) is not None
        handle = _ASIDE[case](ours)
        try:
            assert _real_fast_call(ours, x) is None, case
            tv.load_state_dict(ours.state_dict())
            for a, b in zip(tv.modules(), ours.modules()):
                a.training = b.training
                if hasattr(b, "eps"):
                    a.eps = b.eps
            if case != "Module.compile()":  # (compiling would be slow; the step aside is the point)
                torch.manual_seed(0)  # (train mode: the same dropout masks)
                out = ours(x)
                torch.manual_seed(0)
                torch.testing.assert_close(out, tv(x), rtol=1e-4, atol=1e-4)
        finally:
            if hasattr(handle, "remove"):  # (a global hook left behind would send later tests aside)
                handle.remove()


def test_fast_call_hooks_rescanned_after_a_registration():
    """The hook dicts are rescanned only when a hook handle was made since the last scan: a hook
    added after fast calls fires, and the fast call comes back once it is removed."""
    _, ours = _pair("small", "default")
    x = torch.randn(1, 3, 40, 40)
    seen = []
    with torch.no_grad():
        for _ in range(2):
            assert _real_fast_call(ours, x) is not None
        handle = ours.features[6].register_forward_hook(lambda m, i, o: seen.append(1))
        ours(x)
        assert seen == [1]
        handle.remove()
        assert _real_fast_call(ours, x) is not None
        torch.zeros(1, requires_grad=True).register_hook(lambda g: g)  # an unrelated handle: a rescan
        assert _real_fast_call(ours, x) is not None


@pytest.mark.parametrize("case", ["grad", "x requires grad", "autocast", "dispatch mode", "function mode",
                                  "float64 x", "3-d x", "4 channels", "another ISA"])
def test_fast_call_steps_aside_per_call(case):
    """Conditions of the call itself: the fast call returns None and the ordinary call decides."""
    from torch.overrides import TorchFunctionMode
    from torch.utils._python_dispatch import TorchDispatchMode

    class Dispatch(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            return func(*args, **(kwargs or {}))

    class Function(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            return func(*args, **(kwargs or {}))

    _, ours = _pair("small", "default")
    x = torch.randn(1, 3, 40, 40)
    if case == "x requires grad":
        ours.requires_grad_(False)  # only x asks for autograd
    ctx = {"grad": torch.enable_grad(), "x requires grad": torch.enable_grad(),
           "autocast": torch.autocast("cpu", dtype=torch.bfloat16),
           "dispatch mode": Dispatch(), "function mode": Function()}.get(case, torch.no_grad())
    x = {"x requires grad": x.clone().requires_grad_(), "float64 x": x.double(), "3-d x": x[0],
         "4 channels": torch.randn(1, 4, 40, 40)}.get(case, x)
    isas = [i for i in mbv3_fast.available_cpu_isas() if i != mbv3_fast.get_cpu_isa()]
    if case == "another ISA" and not isas:
        pytest.skip("one CPU path on this machine")
    with torch.no_grad():
        assert _real_fast_call(ours, torch.randn(1, 3, 40, 40)) is not None
    before = mbv3_fast.get_cpu_isa()
    try:
        if case == "another ISA":
            mbv3_fast.set_cpu_isa(isas[0])
        # Grad stays off but for the grad cases: the model's parameters require grad, so grad
        # mode alone would send the call aside and hide the condition under test.
        with contextlib.ExitStack() as stack:
            if case not in ("grad", "x requires grad"):
                stack.enter_context(torch.no_grad())
            stack.enter_context(ctx)
            assert _real_fast_call(ours, x) is None, case
    finally:
        mbv3_fast.set_cpu_isa(before)


def test_fast_call_survives_a_refold_in_another_thread():
    """The op runs without the GIL; another thread dropping the plan meanwhile (here by
    invalidating the cache, so the next call refolds) must not free the weights under it."""
    import threading
    _, ours = _pair("small", "default")
    x = torch.randn(2, 3, 40, 40)
    with torch.no_grad():
        ref = ours(x)
    outs, stop = [], threading.Event()

    def run():
        with torch.no_grad():
            while not stop.is_set():
                outs.append(ours(x))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for _ in range(50):
        ours.invalidate_fused_cache()
        time.sleep(0.002)
    stop.set()
    for t in threads:
        t.join()
    assert len(outs) > 2
    for out in outs:
        assert torch.equal(out, ref)


def test_fast_call_keeps_the_model_collectable():
    """The plan's guard borrows the Python objects it checks (the plan keeps them), so a model
    with a guard is freed like any other."""
    _, ours = _pair("small", "default")
    with torch.no_grad():
        ours(torch.randn(1, 3, 32, 32))
    assert ours._plan.guard is not None
    ref = weakref.ref(ours)
    del ours
    gc.collect()
    assert ref() is None


# ------------------------------------------------------------------------------------------------
# weights
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("arch", ARCHS)
def test_weights_by_name(arch, monkeypatch):
    enum = {"large": tvm.MobileNet_V3_Large_Weights, "small": tvm.MobileNet_V3_Small_Weights}[arch]
    sd = _tv_state(arch, "default")
    seen = []

    def fake_get_state_dict(self, *args, **kwargs):
        seen.append((self, kwargs.get("progress")))
        return sd

    monkeypatch.setattr(enum, "get_state_dict", fake_get_state_dict)
    builder = ARCHS[arch][2]
    for w in ("IMAGENET1K_V1", f"{enum.__name__}.IMAGENET1K_V1", enum.IMAGENET1K_V1, "DEFAULT"):
        model = builder(weights=w, progress=False)
        assert seen[-1][1] is False and seen[-1][0] in (enum.IMAGENET1K_V1, enum.DEFAULT)
        assert all(torch.equal(v, sd[k]) for k, v in model.state_dict().items())
    with pytest.raises(ValueError):
        builder(weights="IMAGENET1K_V9")
    with pytest.raises(ValueError):
        builder(weights="IMAGENET1K_V1", num_classes=10)

    def offline(self, *args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(enum, "get_state_dict", offline)
    with pytest.raises(RuntimeError, match=r"IMAGENET1K_V1.*no network.*state_dict"):
        builder(weights="IMAGENET1K_V1")


# ------------------------------------------------------------------------------------------------
# torch.compile / torch.export
# ------------------------------------------------------------------------------------------------

def _fused_ops_in(gm):
    return {str(n.target) for n in gm.graph.nodes if "mbv3" in str(n.target)}


def test_torch_compile_fullgraph():
    from torch._inductor.compile_fx import compile_fx
    tv, ours = _pair("small", "default")
    graphs = []

    def backend(gm, example_inputs):
        graphs.append(gm)
        return compile_fx(gm, example_inputs)

    torch._dynamo.reset()
    compiled = torch.compile(ours, backend=backend, fullgraph=True)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        _assert_logits(compiled(x), tv(x), "compile")
        x2 = torch.randn(1, 3, 64, 64)  # same shape and layout: no recompile
        _assert_logits(compiled(x2), tv(x2), "compile, second input")
    assert len(graphs) == 1 and any("dwconv_bn_act" in t for t in _fused_ops_in(graphs[0]))


def test_torch_export():
    tv, ours = _pair("small", "cls10")
    x = torch.randn(1, 3, 64, 64)
    ep = torch.export.export(ours, (x,))
    ops = _fused_ops_in(ep.graph_module)
    assert {"dwconv_bn_act", "se_scale", "pwconv_bn_act"} <= {t.split(".")[1] for t in ops if t.startswith("mbv3.")}, ops
    with torch.no_grad():
        _assert_logits(ep.module()(x), tv(x), "export")
