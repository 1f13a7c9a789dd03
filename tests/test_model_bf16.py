"""mbv3_fast.model in bfloat16 on the CPU: ``model.bfloat16()`` and ``torch.autocast("cpu",
dtype=torch.bfloat16)`` run the fused path, and are at least as accurate as torchvision's own bf16.

The rule (issue #14): against a float64 forward of the same network on the same input values,
our logit error is at most 1.5x torchvision's own bf16 error (``.bfloat16()`` eager, or the
same autocast), plus bf16's resolution at the largest logit (2**-8 * max|ref|, which only matters
with few logits).  The error is the RMS over the logits, and the ratio ours / torchvision is
taken over several independent inputs (DRAWS): the median ratio must be within 1.5 and no two
draws beyond 3.  One draw is not enough: both errors are sums of ~60 layers of roundings, and
their ratio for one input is itself a wide random variable (measured on 12 inputs of one
model: 0.70-1.53 around a median of 0.94; over this file's cases, medians 0.6-1.4; one draw of
10 logits x 3 samples once gave 2.85).  It is the typical error, not one lucky input, that says
whether a computation is as accurate as another.  The one-call forward equals the per-op walk
bit for bit, as in float32.
"""
import copy
import statistics

import pytest
import torch

import mbv3_fast

from test_model import (ALL, ARCHS, CONFIGS, FORMATS, _count_fast_calls, _one_thread, _pair,  # noqa: F401 (autouse)
                        _spy_fused)
from tolerance import max_abs_err

BF16 = torch.bfloat16


def rms_err(a, ref):
    return 0.0 if a.numel() == 0 else (a.double() - ref.double()).square().mean().sqrt().item()


DRAWS = 5  # independent inputs per case (see the module docstring)


def _within(draws, what, factor=1.5, worst=3.0):
    """draws: (ours, torchvision's, float64 reference) per input.  The median of the ratios
    ours_err / (torchvision_err + floor) within `factor`, none beyond `worst`."""
    ratios = []
    for out, theirs, ref in draws:
        assert out.dtype == theirs.dtype and out.shape == theirs.shape, what
        assert torch.isfinite(out).all(), what
        ours_err, tv_err = rms_err(out, ref), rms_err(theirs, ref)
        floor = 2.0 ** -8 * (ref.abs().max().item() if ref.numel() else 0.0)
        ratios.append(ours_err / max(tv_err + floor / factor, 1e-30))
        print(f"[tol] {what}: rms ours={ours_err:.3e} torchvision={tv_err:.3e}, max ours="
              f"{max_abs_err(out, ref):.3e} torchvision={max_abs_err(theirs, ref):.3e}")
    median = statistics.median(ratios)
    print(f"[tol] {what}: ratios {' '.join(f'{r:.2f}' for r in ratios)} median={median:.2f}")
    # One draw may be an outlier (seen once: 11.5 for Small at 224x224, where the logits are
    # ~700 and torchvision's own error ranges 4-22 over inputs); two may not.
    second = sorted(ratios)[-2] if len(ratios) > 1 else ratios[0]
    assert median <= factor and second <= worst, f"{what}: ratios {ratios}"


def _input(n, h, w, fmt):
    return (torch.randn(n, 3, h, w) * 1.5 + 0.3).contiguous(memory_format=FORMATS[fmt])


CASES = [(a, c, f) for a, c in ALL for f in FORMATS]


@pytest.mark.parametrize("arch,cfg,fmt", CASES)
def test_bfloat16_model(arch, cfg, fmt, cpu_isa_bf16):
    cpu_isa = cpu_isa_bf16
    tv, ours = _pair(arch, cfg)
    ref_model = copy.deepcopy(tv).double()
    tv, ours = tv.bfloat16(), ours.bfloat16()
    assert ours.fused_status == "fused"
    calls = _spy_fused(ours)
    draws = []
    for _ in range(DRAWS):
        x = _input(3, 64, 48, fmt).to(BF16)
        with torch.no_grad():
            ref = ref_model(x.double())
            theirs, out = tv(x), ours(x)
            per_op = ours._forward_fused(x, ours._fused_plan(), one_call=False)
        assert torch.equal(out, per_op)
        draws.append((out, theirs, ref))
    assert calls, ours.fused_status
    _within(draws, f"bf16 {arch}/{cfg}/{fmt}/{cpu_isa}")


@pytest.mark.parametrize("shape", [(1, 3, 224, 224), (1, 3, 33, 47), (3, 3, 17, 17), (2, 3, 1, 1)],
                         ids=["1x224", "33x47", "17x17", "1x1"])
@pytest.mark.parametrize("arch", ARCHS)
def test_bfloat16_sizes(arch, shape):
    tv, ours = _pair(arch, "default")
    ref_model = copy.deepcopy(tv).double()
    tv, ours = tv.bfloat16(), ours.bfloat16()
    calls = _spy_fused(ours)
    draws = []
    for _ in range(DRAWS):
        x = (torch.randn(shape) * 1.5 + 0.3).to(BF16)
        with torch.no_grad():
            draws.append((ours(x), tv(x), ref_model(x.double())))
    _within(draws, f"bf16 {arch} {shape}")
    assert calls


@pytest.mark.skipif("avx512_bf16" not in mbv3_fast.available_cpu_isas(),
                    reason="this CPU has no AVX512_BF16: no other 1x1 layout to switch to")
def test_switching_isa_refolds_the_1x1_layout():
    """A bf16 plan keeps its 1x1 weights in the layout of the path in force when it folded (K
    pairs for avx512_bf16); switching to a path that reads the other layout refolds, and a
    stale layout never reaches the kernels.  float32 runs the same code under both."""
    tv, ours = _pair("small", "default")
    ours_bf16 = copy.deepcopy(ours).bfloat16()
    x = _input(2, 40, 40, "cl")
    before = mbv3_fast.get_cpu_isa()
    outs = []
    try:
        for isa in ("avx512_bf16", "avx512", "avx512_bf16"):
            mbv3_fast.set_cpu_isa(isa)
            with torch.no_grad():
                outs.append((ours(x), ours_bf16(x.to(BF16))))
            assert ours._fused_plan().k_pairs is None
            assert ours_bf16._fused_plan().k_pairs == (isa == "avx512_bf16")
    finally:
        mbv3_fast.set_cpu_isa(before)
    (f32_dot, bf_dot), (f32_wide, bf_wide), (f32_dot2, bf_dot2) = outs
    assert torch.equal(f32_dot, f32_wide) and torch.equal(f32_dot, f32_dot2)
    assert torch.equal(bf_dot, bf_dot2) and not torch.equal(bf_dot, bf_wide)


@pytest.mark.skipif("avx512_bf16" not in mbv3_fast.available_cpu_isas(),
                    reason="this CPU has no AVX512_BF16: the widening FC walks promise no batch invariance")
def test_bfloat16_sample_alone_equals_in_batch():
    """Where the SE and head FCs take bf16 dot products, a sample's logits are the same bits
    alone as inside a batch of 8 (fused and unfused expand + depthwise agree bit for bit, and
    the FCs sum every output in one order).  Seed 21 tripped the head before its horizontal sums
    shared one tree for every group size."""
    import torchvision
    before = mbv3_fast.get_cpu_isa()
    try:
        mbv3_fast.set_cpu_isa("avx512_bf16")
        torch.manual_seed(21)
        ours = mbv3_fast.from_torchvision(torchvision.models.mobilenet_v3_large().eval()).eval().bfloat16()
        x = torch.randn(8, 3, 224, 224).to(BF16)
        with torch.no_grad():
            whole = ours(x)
            for i in (0, 5):
                assert torch.equal(ours(x[i:i + 1]), whole[i:i + 1]), f"sample {i}"
    finally:
        mbv3_fast.set_cpu_isa(before)


def test_bfloat16_batch_0():
    tv, ours = _pair("small", "default")
    ours = ours.bfloat16()
    with torch.no_grad():
        out = ours(torch.randn(0, 3, 32, 32, dtype=BF16))
    assert out.shape == (0, 1000) and out.dtype == BF16


@pytest.mark.parametrize("arch,cfg", [("large", "default"), ("small", "default"), ("large", "dilated"),
                                      ("small", "w075"), ("large", "reduced"), ("small", "cls10")])
@pytest.mark.parametrize("fmt", FORMATS)
def test_autocast(arch, cfg, fmt):
    tv, ours = _pair(arch, cfg)
    ref_model = copy.deepcopy(tv).double()
    calls = _spy_fused(ours)
    draws = []
    for _ in range(DRAWS):
        x = _input(3, 64, 48, fmt)
        with torch.no_grad():
            ref = ref_model(x.double())
            with torch.autocast("cpu", dtype=BF16):
                theirs, out = tv(x), ours(x)
                out_bf16_in = ours(x.to(BF16))  # a bf16 input takes the same plan
        assert theirs.dtype == BF16
        assert torch.equal(out_bf16_in, out)  # the input is rounded once, as autocast's conv does
        draws.append((out, theirs, ref))
    assert len(calls) == 2 * DRAWS, ours.fused_status
    _within(draws, f"autocast {arch}/{cfg}/{fmt}")
    # Outside autocast the float32 plan runs again, unchanged.
    with torch.no_grad():
        assert ours(x).dtype == torch.float32


def test_autocast_cache_stays_fresh():
    tv, ours = _pair("small", "default")
    x = _input(2, 40, 40, "nchw")
    with torch.no_grad(), torch.autocast("cpu", dtype=BF16):
        before = ours(x)
        ours.features[2].block[0][0].weight.mul_(-1.0)  # in place: both plans are stale now
        tv.features[2].block[0][0].weight.mul_(-1.0)
        after = ours(x)
        expected = tv(x)
    assert not torch.equal(before, after)
    ref_model = copy.deepcopy(tv).double()
    with torch.no_grad():
        # One input: a stale plan would be off by far more than rounding (the weights' sign).
        _within([(after, expected, ref_model(x.double()))], "autocast after an in-place edit")
    ours.load_state_dict(tv.state_dict())
    with torch.no_grad(), torch.autocast("cpu", dtype=BF16):
        assert torch.equal(ours(x), after)


def test_autocast_other_dtype_or_grad_runs_unfused():
    tv, ours = _pair("small", "default")
    calls = _spy_fused(ours)
    x = _input(1, 32, 32, "nchw")
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.float16):
        torch.testing.assert_close(ours(x), tv(x), rtol=0, atol=0)  # no fused float16 on the CPU
    with torch.autocast("cpu", dtype=BF16):  # grad enabled, trainable parameters
        torch.testing.assert_close(ours(x), tv(x), rtol=0, atol=0)
    assert not calls


@pytest.mark.parametrize("value", [float("nan"), float("inf")], ids=["nan", "inf"])
def test_bfloat16_non_finite_pixel(value):
    tv, ours = _pair("small", "default")
    tv, ours = tv.bfloat16(), ours.bfloat16()
    x = torch.randn(2, 3, 48, 48, dtype=BF16)
    x[1, 1, 20, 7] = value
    with torch.no_grad():
        theirs, out = tv(x), ours(x)
    assert torch.equal(out.isnan(), theirs.isnan()) and torch.equal(out.isinf(), theirs.isinf())
    assert torch.isfinite(out[0]).all() and not torch.isfinite(out[1]).all()
