"""The model under conditions a drop-in replacement must survive: a weight
cache that must never go stale (writes during folding, inference tensors, eps), bad inputs
answered as torchvision answers them, copies and pickles, threads, and memory over long runs."""
import copy
import io
import pickle
import threading
import warnings

import pytest
import torch
from torch import nn
from torchvision.models import mobilenetv3 as tvm

import mbv3_fast
from mbv3_fast import model as fm
from mbv3_fast.testing import realistic


def _pair(arch="small", **kw):
    tv = realistic(getattr(tvm, f"mobilenet_v3_{arch}")(**kw), seed=0)
    ours = mbv3_fast.from_torchvision(copy.deepcopy(tv)).eval()
    assert ours.fused_status == "fused"
    return tv, ours


def _close(out, ref):
    assert out.shape == ref.shape and out.dtype == ref.dtype
    torch.testing.assert_close(out, ref, rtol=1e-3, atol=1e-3 * max(1.0, ref.abs().max().item()))


# --------------------------------------------------------------------------------------------
# the folded-weight cache
# --------------------------------------------------------------------------------------------

def test_write_during_folding_is_seen(monkeypatch):
    """A write to an already folded tensor while the plan is being built (another thread's
    load_state_dict, say) must make the plan stale, not be recorded as folded."""
    tv, ours = _pair()
    ours.invalidate_fused_cache()
    calls = []
    real = fm.fold_bn

    def fold_and_write(*args, **kw):
        calls.append(1)
        if len(calls) == 3:  # the stem is folded by now
            ours.features[0][0].weight.mul_(1.5)
        return real(*args, **kw)

    monkeypatch.setattr(fm, "fold_bn", fold_and_write)
    x = torch.randn(1, 3, 48, 48)
    with torch.no_grad():
        ours(x)
        monkeypatch.setattr(fm, "fold_bn", real)
        out = ours(x)
        tv.features[0][0].weight.mul_(1.5)
        _close(out, tv(x))


def test_inference_tensors_edited_in_place():
    with torch.inference_mode():
        tv = realistic(tvm.mobilenet_v3_small(), seed=1)
        ours = mbv3_fast.from_torchvision(copy.deepcopy(tv)).eval()
        x = torch.randn(1, 3, 48, 48)
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            ours(x)
        assert any("inference tensors" in str(m.message) for m in w)
        ours.features[2].block[1][0].weight.mul_(-2)
        tv.features[2].block[1][0].weight.mul_(-2)
        _close(ours(x), tv(x))


def test_bn_eps_change_refolds():
    tv, ours = _pair()
    x = torch.randn(1, 3, 48, 48)
    with torch.no_grad():
        ours(x)
        for m in (tv, ours):
            m.features[1].block[0][1].eps = 0.5
        _close(ours(x), tv(x))


# --------------------------------------------------------------------------------------------
# bad input: the same exception type (or the same result) as torchvision
# --------------------------------------------------------------------------------------------

def _same_outcome(tv, ours, x):
    with torch.no_grad():
        try:
            ref = tv(x)
        except Exception as e:  # noqa: BLE001 (the type is what we compare)
            with pytest.raises(type(e)):
                ours(x)
            return
        out = ours(x)
    if ref.device.type == "meta":
        assert out.shape == ref.shape and out.device == ref.device
    else:
        _close(out, ref)


@pytest.mark.parametrize("case", ["1ch", "4ch", "float64", "meta", "3d", "list", "none", "int",
                                  "1x1", "7x9", "16x16", "31x31"])
def test_bad_input_like_torchvision(case):
    tv, ours = _pair()
    x = {"1ch": lambda: torch.randn(1, 1, 64, 64), "4ch": lambda: torch.randn(1, 4, 64, 64),
         "float64": lambda: torch.randn(1, 3, 64, 64, dtype=torch.float64),
         "meta": lambda: torch.randn(1, 3, 64, 64, device="meta"), "3d": lambda: torch.randn(3, 64, 64),
         "list": lambda: [torch.randn(1, 3, 64, 64)], "none": lambda: None,
         "int": lambda: torch.randint(0, 255, (1, 3, 64, 64), dtype=torch.uint8),
         "1x1": lambda: torch.randn(2, 3, 1, 1), "7x9": lambda: torch.randn(1, 3, 7, 9),
         "16x16": lambda: torch.randn(3, 3, 16, 16), "31x31": lambda: torch.randn(1, 3, 31, 31)}[case]()
    _same_outcome(tv, ours, x)


def test_large_batch():
    tv, ours = _pair()
    x = torch.randn(512, 3, 32, 32)
    with torch.no_grad():
        _close(ours(x), tv(x))


# --------------------------------------------------------------------------------------------
# copies and pickles
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("how", ["deepcopy", "pickle", "torch.save"])
def test_copy_then_forward(how):
    tv, ours = _pair()
    x = torch.randn(2, 3, 48, 48)
    with torch.no_grad():
        before = ours(x)
    if how == "deepcopy":
        other = copy.deepcopy(ours)
    elif how == "pickle":
        other = pickle.loads(pickle.dumps(ours))
    else:
        buf = io.BytesIO()
        torch.save(ours, buf)
        buf.seek(0)
        other = torch.load(buf, weights_only=False)
    assert other.fused_status == "fused"
    with torch.no_grad():
        assert torch.equal(other(x), before)
        other.features[0][0].weight.mul_(2)  # the copy is independent
        assert torch.equal(ours(x), before)


# --------------------------------------------------------------------------------------------
# threads and determinism
# --------------------------------------------------------------------------------------------

def _in_threads(fns):
    errors, out = [], [None] * len(fns)

    def call(i):
        try:
            out[i] = fns[i]()
        except Exception as e:  # noqa: BLE001 (reported below)
            errors.append(e)

    ts = [threading.Thread(target=call, args=(i,)) for i in range(len(fns))]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout=300)
    assert not errors, errors
    assert not any(t.is_alive() for t in ts), "a thread hangs"
    return out


def test_eight_threads_one_model_bitwise():
    _, ours = _pair("large")
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        ref = ours(x)

    def run():
        with torch.no_grad():
            return [ours(x) for _ in range(3)]

    for outs in _in_threads([run] * 8):
        assert all(torch.equal(o, ref) for o in outs)


def test_two_models_concurrently_and_load_state_dict():
    tv_a, a = _pair("small")
    tv_b, b = _pair("small")
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref_a, ref_b = a(x), b(x)
    state = copy.deepcopy(tv_b.state_dict())

    def run(m):
        with torch.no_grad():
            return [m(x) for _ in range(20)]

    def reload():  # b gets b's own weights back, repeatedly, while a runs
        for _ in range(20):
            b.load_state_dict(state)
        return None

    outs_a, outs_b, _ = _in_threads([lambda: run(a), lambda: run(b), reload])
    assert all(torch.equal(o, ref_a) for o in outs_a)  # no cross-talk
    assert all(torch.equal(o, ref_b) for o in outs_b)


def test_same_input_twice_bitwise():
    _, ours = _pair("large")
    x = torch.randn(3, 3, 96, 96)
    with torch.no_grad():
        assert torch.equal(ours(x), ours(x))


# --------------------------------------------------------------------------------------------
# memory
# --------------------------------------------------------------------------------------------

def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


@pytest.mark.skipif(not __import__("os").path.exists("/proc/self/statm"), reason="needs Linux /proc")
def test_rss_flat_over_long_runs():
    _, ours = _pair("small")
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        for _ in range(300):  # warm-up: allocator pools, OpenMP, first-touch pages
            ours(x)
        start = _rss_mb()
        for _ in range(3000):
            ours(x)
        steady = _rss_mb()
        sizes = list(range(64, 321, 32))
        for i in range(200):
            s = sizes[i % len(sizes)]
            ours(torch.randn(1, 3, s, s))
        cycled = _rss_mb()
        for i in range(200):
            s = sizes[i % len(sizes)]
            ours(torch.randn(1, 3, s, s))
        end = _rss_mb()
    assert steady - start < 16, (start, steady)
    assert end - cycled < 16, (cycled, end)
