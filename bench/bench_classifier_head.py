"""Fused classifier head (torch.ops.mbv3.classifier_head) vs torchvision's eval head
(mean over H, W -> Linear -> Hardswish -> Dropout -> Linear modules), MobileNetV3-Large's head
(960 x 7 x 7 -> 1280 -> 1000), batch 1 and 8, 1 and 2 threads, channels_last input.

Two cache states, because the head reads 10 MB of weights:
  hot   the same call repeated: the weights stay in L2/L3 (pytest-benchmark's default loop);
  cold  a 64 MB buffer is written before every call (pytest-benchmark setup, not timed), as
        in a real forward, where the rest of the network has evicted the head's weights.

test_interleaved (python -m pytest bench/bench_classifier_head.py -k interleaved -s -q
-p no:cacheprovider): fused vs unfused, float32 and bf16, batch 1, interleaved rounds; its
"rotating" case cycles every call through copies of the weights 80 MB in all (over twice
L3), so each call finds its weights in DRAM and their pages out of the TLB, as in a forward.
float32 also runs the weights packed in panels of 64 outputs ("panels": the model's layout on
AVX2, cpu_head_panel_rows) beside the [out, in] rows.

test_model_head_layouts (-k head_layouts): the whole Large network as one mbv3::mobilenet_v3
call, its head's weights in panels (the plan's, where the path wants them) vs rows, batch 1,
1 and 2 threads, interleaved: the head where the rest of a forward has just run.
"""
import os
import time

import pytest
import torch
from torch import nn

import dataclasses

import mbv3_fast
from mbv3_fast import plan as records
from mbv3_fast.isa import cpu_head_panel_rows
from mbv3_fast.ops import pack_pw_weight_panels
from mbv3_fast.testing import VARIANTS, head_layers, realistic
from interleave import round_medians

C, H, W, HIDDEN, CLASSES, ACT = head_layers("large")[0]
_flush = None


def make(batch):
    g = torch.Generator().manual_seed(7)
    head = nn.Sequential(nn.Linear(C, HIDDEN), nn.Hardswish(), nn.Dropout(0.2),
                         nn.Linear(HIDDEN, CLASSES)).eval()
    x = torch.randn(batch, C, H, W, generator=g).contiguous(memory_format=torch.channels_last)
    w = (head[0].weight.detach(), head[0].bias.detach(), head[3].weight.detach(), head[3].bias.detach())
    op = torch.ops.mbv3.classifier_head.default
    return {"fused": lambda: op(x, *w, ACT), "unfused": lambda: head(x.mean((2, 3)))}


def flush_caches():
    global _flush
    if _flush is None:
        _flush = torch.empty(16 * 1024 * 1024)  # 64 MB: twice this machine's L3
    _flush.fill_(1.0)


@pytest.mark.parametrize("provider", ["unfused", "fused"])
@pytest.mark.parametrize("cache", ["hot", "cold"])
@pytest.mark.parametrize("batch", [1, 8], ids=lambda b: f"b{b}")
@pytest.mark.parametrize("threads", [1, 2], indirect=True, ids=lambda t: f"t{t}")
def test_classifier_head(benchmark, record, threads, batch, cache, provider):
    benchmark.group = f"classifier_head {cache} b{batch} t{threads}"
    record(suite="classifier_head", config=f"{cache} b{batch} t{threads}", provider=provider,
           layer=f"C{C} {H}x{W} -> {HIDDEN} -> {CLASSES}")
    fn = make(batch)[provider]
    with torch.no_grad():
        if cache == "hot":
            benchmark(fn)
        else:
            benchmark.pedantic(fn, setup=flush_caches, rounds=30, warmup_rounds=2)


def rotating_weights(dtype, total_bytes=80 << 20):
    """Copies of the head's (w1, b1, w2, b2) filling total_bytes, and a getter that returns the
    next copy on each call (a weight set is reused only after all the others)."""
    g = torch.Generator().manual_seed(11)
    per = (HIDDEN * C + CLASSES * HIDDEN) * dtype.itemsize
    copies = [(torch.randn(HIDDEN, C, generator=g).to(dtype) / C ** 0.5, torch.randn(HIDDEN, generator=g).to(dtype),
               torch.randn(CLASSES, HIDDEN, generator=g).to(dtype) / HIDDEN ** 0.5,
               torch.randn(CLASSES, generator=g).to(dtype)) for _ in range(max(2, total_bytes // per))]
    return copies, rotation(copies)


def rotation(items):
    """A getter returning the next of `items` on each call (each reused only after all the others)."""
    state = [0]

    def nxt():
        state[0] = (state[0] + 1) % len(items)
        return items[state[0]]
    return nxt


def linear_head(w):
    w1, b1, w2, b2 = w
    return lambda p: torch.nn.functional.linear(torch.nn.functional.hardswish(torch.nn.functional.linear(p, w1, b1)), w2, b2)


def test_interleaved():
    """Batch 1, 1 and 2 threads: fused vs torch (mean + Linear + Hardswish + Linear), weights
    hot (one set) or rotating (DRAM, cold TLB).  µs, median of round medians; printed only."""
    rounds = int(os.environ.get("MBV3_BENCH_ROUNDS", 8))
    calls = int(os.environ.get("MBV3_BENCH_CALLS", 30))
    op = torch.ops.mbv3.classifier_head.default
    before = torch.get_num_threads()
    print(f"\nclassifier_head C{C} {H}x{W} -> {HIDDEN} -> {CLASSES}, batch 1, isa {mbv3_fast.get_cpu_isa()}; "
          f"µs, median of {rounds} round medians of {calls} calls")
    try:
        with torch.no_grad():
            for dtype in (torch.float32, torch.bfloat16):
                copies, nxt = rotating_weights(dtype)
                x = torch.randn(1, C, H, W, generator=torch.Generator().manual_seed(3)).to(dtype)
                x = x.contiguous(memory_format=torch.channels_last)
                prov = {
                    "fused hot": lambda: op(x, *copies[0], ACT),
                    "fused rotating": lambda: op(x, *nxt(), ACT),
                    "torch hot": lambda: linear_head(copies[0])(x.mean((2, 3))),
                    "torch rotating": lambda: linear_head(nxt())(x.mean((2, 3))),
                }
                if dtype == torch.float32:
                    panels = [(pack_pw_weight_panels(w1, 64), b1, pack_pw_weight_panels(w2, 64), b2)
                              for w1, b1, w2, b2 in copies]
                    next_panels = rotation(panels)
                    prov["panels hot"] = lambda: op(x, *panels[0], ACT)
                    prov["panels rotating"] = lambda: op(x, *next_panels(), ACT)
                for t in (1, 2):
                    torch.set_num_threads(t)
                    clock = time.thread_time if t == 1 else time.perf_counter
                    r = round_medians(prov, rounds, calls, clock)
                    mb = (HIDDEN * C + CLASSES * HIDDEN) * dtype.itemsize / 1e6
                    print(f"{str(dtype)[6:]:<9} t{t}: " + ", ".join(
                        f"{n} {v * 1e6:.0f} ({mb / v / 1e3:.1f} GB/s)" for n, v in r.items()))
    finally:
        torch.set_num_threads(before)


def test_model_head_layouts():
    """Large, batch 1, float32, one mbv3::mobilenet_v3 call: the plan's head in panels vs the same
    plan with the head's [out, in] rows.  ms, median of round medians, and panels / rows."""
    rows_wanted = cpu_head_panel_rows()
    if rows_wanted == 0:
        pytest.skip(f"the {mbv3_fast.get_cpu_isa()} path packs no head panels (cpu_head_panel_rows() == 0)")
    rounds = int(os.environ.get("MBV3_BENCH_ROUNDS", 15))
    calls = int(os.environ.get("MBV3_BENCH_CALLS", 12))
    tv = realistic(VARIANTS["large"](), seed=0)
    model = mbv3_fast.from_torchvision(tv).eval()
    plan = model._fused_plan()
    c = model.classifier
    rows = records.encode(dataclasses.replace(plan.net, head=dataclasses.replace(
        plan.net.head, w1=c[0].weight.detach(), w2=c[3].weight.detach())))
    x = torch.randn(1, 3, 224, 224)
    net = torch.ops.mbv3.mobilenet_v3
    prov = {"rows": lambda: net(x, *rows), "panels": lambda: net(x, plan.net_weights, plan.net_spec)}
    a, b = prov["panels"](), prov["rows"]()  # the same sums in another order
    assert (a - b).abs().max() <= 1e-5 * b.abs().max(), (a - b).abs().max()
    before = torch.get_num_threads()
    print(f"\nLarge b1 fp32, head rows vs panels of {rows_wanted}, isa {mbv3_fast.get_cpu_isa()}; ms, "
          f"median of {rounds} round medians of {calls} calls")
    try:
        with torch.no_grad():
            for t in (1, 2):
                torch.set_num_threads(t)
                r = round_medians(prov, rounds, calls)
                print(f"t{t}: rows {r['rows'] * 1e3:.3f}, panels {r['panels'] * 1e3:.3f}, "
                      f"panels / rows {r['panels'] / r['rows']:.3f}")
    finally:
        torch.set_num_threads(before)
