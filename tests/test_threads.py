"""Thread-count determinism: every CPU op gives bit-identical results with 1 and 2 threads, and
the same input twice gives the same bits.  Shapes are chosen so that the thread split differs:
2 threads cut the rows (and, for small maps, the columns) differently from 1.

Why this holds: each output element's sum runs over its terms in a fixed order (fixed K blocks
in the 1x1 GEMM, fixed pixel chunks and sample blocks in the pools and FCs) that depends on the
shape only, never on how the rows or columns are dealt out.  The one former exception, the SE
input scale of pwconv_bn_act ((x*s)*w or x*(w*s), picked per thread chunk), is now picked per
layer shape.
"""
import pytest
import torch

from test_nonfinite import OPS, channels_last

# (op, shape): per-op shapes where 1 and 2 threads split the work differently.
CASES = [
    ("dwconv_bn_act", (3, 72, 28, 28, 3, 1, 1, 1)), ("dwconv_bn_act", (1, 120, 14, 14, 5, 2, 2, 1)),
    ("dwconv_bn_act", (2, 33, 17, 9, 7, 3, 3, 1)),
    ("pwconv_bn_act", (3, 40, 120, 28, 28)), ("pwconv_bn_act", (1, 96, 576, 7, 7)),
    # Cout > rows: 2 threads split the columns only (each streams half the weights).
    ("pwconv_bn_act", (1, 112, 672, 14, 14)), ("pwconv_bn_act+in_scale", (1, 72, 200, 9, 9)),
    ("pwconv_bn_act+residual", (2, 40, 40, 14, 14)),
    # Weights in 24-column panels: 2 threads split the columns at vectors, so inside a panel
    # (112 = 56 + 56, 160 = 80 + 80).
    ("pwconv_bn_act+panels", (1, 112, 672, 14, 14)), ("pwconv_bn_act+panels", (1, 480, 112, 14, 14)),
    ("pwconv_bn_act+panels", (1, 160, 960, 7, 7)),
    # HW = 196 > Cout = 120, but half the rows (2 threads) <= 120: the old per-chunk choice flipped.
    ("pwconv_bn_act+in_scale", (1, 480, 120, 14, 14)), ("pwconv_bn_act+in_scale", (3, 120, 40, 28, 28)),
    ("pwconv_bn_act+in_scale", (4, 576, 96, 7, 7)), ("pwconv_bn_act+in_scale", (2, 72, 24, 20, 20)),
    ("expand_dwconv_bn_act", (2, 24, 72, 28, 28, 3, 1, 1, 1)), ("expand_dwconv_bn_act", (1, 40, 240, 14, 14, 5, 2, 2, 1)),
    ("se", (3, 72, 24, 28, 28)), ("se", (8, 576, 144, 7, 7)),
    ("se_scale", (5, 960, 240, 7, 7)),
    ("conv_bn_act", (3, 3, 16, 64, 64, 3, 2, 1)), ("conv_bn_act", (1, 3, 16, 224, 224, 3, 2, 1)),
    ("classifier_head", (5, 960, 1280, 1000, 7, 7)), ("classifier_head", (1, 576, 1024, 1000, 1, 1)),
]


def _run(fn, arg, threads):
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return fn(arg)
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("op_name,shape", CASES, ids=[f"{n}-{s}" for n, s in CASES])
def test_one_vs_two_threads_bitwise(cpu_isa, op_name, shape):
    op = OPS[op_name]
    a = "hardswish"
    d = op.make(shape, a)
    for layout, dd in (("nchw", d), ("channels_last", channels_last(d))):
        one = _run(op.ours, dd, 1)
        two = _run(op.ours, dd, 2)
        again = _run(op.ours, dd, 2)
        assert torch.equal(two, again), f"{cpu_isa} {op_name} {shape} {layout}: same input, different bits"
        diff = (one - two).abs().max().item() if one.numel() else 0.0
        assert torch.equal(one, two), f"{cpu_isa} {op_name} {shape} {layout}: 1 vs 2 threads differ by {diff:.3e}"


def test_model_one_vs_two_threads_bitwise(cpu_isa):
    tv = pytest.importorskip("torchvision")
    import mbv3_fast
    torch.manual_seed(0)
    model = mbv3_fast.from_torchvision(tv.models.mobilenet_v3_small().eval())
    for n in (1, 3):
        x = torch.randn(n, 3, 96, 96)
        with torch.no_grad():
            one = _run(model, x, 1)
            two = _run(model, x, 2)
        assert torch.equal(one, two), f"{cpu_isa} batch {n}: 1 vs 2 threads differ by {(one - two).abs().max():.3e}"


def _shuffled_tail(weights):
    """The weights with the last two tensors (the head's second weight and bias) swapped: a spec
    that fails at the last layer, after every other layer ran on the whole-network op's team."""
    w = list(weights)
    w[-1], w[-2] = w[-2], w[-1]
    return w


def test_model_team_error_and_concurrent_calls():
    """The one-call forward at 2 threads runs its layers on one team of threads (csrc/common/
    parallel.h).  A layer that raises at the end of the walk gives the layer's ValueError and
    leaves nothing behind: the next calls, also from two Python threads at once, give the 1-thread
    bits."""
    import threading

    tv = pytest.importorskip("torchvision")
    import mbv3_fast
    model = mbv3_fast.from_torchvision(tv.models.mobilenet_v3_small().eval())
    plan = model._fused_plan()
    op = torch.ops.mbv3.mobilenet_v3
    xs = [torch.randn(n, 3, 64, 80) for n in (1, 2, 3, 1)]
    ref = [_run(lambda x: op(x, plan.net_weights, plan.net_spec), x, 1) for x in xs]
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        for _ in range(3):
            with pytest.raises(ValueError):
                op(xs[0], _shuffled_tail(plan.net_weights), plan.net_spec)
            assert torch.equal(op(xs[0], plan.net_weights, plan.net_spec), ref[0])
        out = [None] * len(xs)

        def call(i):
            for _ in range(5):
                out[i] = op(xs[i], plan.net_weights, plan.net_spec)

        threads = [threading.Thread(target=call, args=(i,)) for i in range(len(xs))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not any(t.is_alive() for t in threads), "a forward did not return"
    finally:
        torch.set_num_threads(before)
    for i, (o, r) in enumerate(zip(out, ref)):
        assert torch.equal(o, r), f"input {i}: concurrent 2-thread forward differs from 1 thread"


def test_team_trace():
    """The team's loop trace (torch.ops.mbv3._set_team_trace / _team_trace, mbv3_fast.team_profile):
    off by default and cleared when switched; on, one row per loop whose leader-side times add up
    to no more than the call's wall time, every split loop with a worker time; the forward's bits
    unchanged."""
    import time

    tv = pytest.importorskip("torchvision")
    import mbv3_fast
    from mbv3_fast import team_profile
    torch.manual_seed(0)
    model = mbv3_fast.from_torchvision(tv.models.mobilenet_v3_small().eval())
    x = torch.randn(2, 3, 96, 96)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with torch.no_grad():
            ref = model(x)
            assert torch.ops.mbv3._team_trace().shape == (0, 6), "the trace must be off by default"
            torch.ops.mbv3._set_team_trace(True)
            try:
                t0 = time.perf_counter()
                out = model(x)
                wall_us = (time.perf_counter() - t0) * 1e6
                t = torch.ops.mbv3._team_trace()
            finally:
                torch.ops.mbv3._set_team_trace(False)
            assert torch.equal(out, ref)
            assert torch.ops.mbv3._team_trace().shape == (0, 6), "switching the trace must clear it"
            model(x)
            assert torch.ops.mbv3._team_trace().shape == (0, 6), "a forward with the trace off recorded"
            traces = team_profile.trace(model, x, iters=2)
    finally:
        torch.set_num_threads(before)
    assert t.dtype == torch.float64 and t.shape[1] == 6 and t.shape[0] > 10, t.shape
    assert torch.isfinite(t).all() and (t >= 0).all()
    loops, tail = t[:-1], t[-1]
    assert tail[0] == 0 and tail[1] == 0 and (loops[:, 0] >= 1).all(), "units: a loop's, 0 for the tail row"
    split = loops[loops[:, 1] == 2]
    assert split.shape[0] > 0 and (loops[:, 1] <= 2).all()
    assert (split[:, 4] > 0).all(), "a split loop without a worker time"
    assert (loops[loops[:, 1] == 1][:, 4] == 0).all(), "a loop run by the leader alone has a worker time"
    leader_side = float(t[:, 2].sum() + t[:, 3].sum() + t[:, 5].sum())
    assert 0 < leader_side <= wall_us, (leader_side, wall_us)
    s = team_profile.summarize(traces)
    assert s["loops"] == loops.shape[0] and s["worker_idle_us"] >= 0 and s["forward_us"] > 0
    report = team_profile.format_report(s, team_profile.top_loops(traces, 3), "head")
    assert report.count("\n| ") == 4, report  # header + 3 loops


def test_team_profile_needs_two_threads():
    from mbv3_fast import team_profile
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with pytest.raises(ValueError, match="2\\+ threads"):
            team_profile.trace(torch.nn.Identity(), torch.zeros(1), iters=1)
    finally:
        torch.set_num_threads(before)
