"""Fused squeeze-excitation (torch.ops.mbv3.se) vs torchvision's SqueezeExcitation module.

Every SE layer of MobileNetV3-Large (enumerated by torchvision), batch 1 and 8, channels_last
and NCHW, 1 and 2 threads; the module runs in eval mode under torch.no_grad with the same
weights.  Two ways to run:

  pytest bench/bench_se.py --benchmark-only            # pytest-benchmark, pairs grouped
  python bench/bench_se.py --summary [--rounds 15]     # interleaved medians, per layer + sum

The target: summed over Large's 8 SE layers at batch 1 channels_last, fused >= 3x faster than
the module at 1 and at 2 threads.  The summary mode interleaves fused / module calls layer by
layer within each round (this machine is shared and noisy) and reports medians over rounds.
"""
import argparse
import os
import statistics
import sys
import time

import pytest
import torch
from torch import nn
from torchvision.ops import SqueezeExcitation

import mbv3_fast  # noqa: E402
from mbv3_fast.testing import se_layers  # noqa: E402

LAYERS = se_layers("large")
FORMATS = {"channels_last": torch.channels_last, "nchw": torch.contiguous_format}


def make_layer(index: int, batch: int, fmt: str):
    """(module, x, fused callable, module callable) for Large's SE layer `index`."""
    c, s, h, w = LAYERS[index]
    g = torch.Generator().manual_seed(1000 + index)
    m = SqueezeExcitation(c, s, scale_activation=nn.Hardsigmoid).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    x = torch.randn(batch, c, h, w, generator=g).contiguous(memory_format=FORMATS[fmt])
    args = (x, m.fc1.weight.detach(), m.fc1.bias.detach(), m.fc2.weight.detach(),
            m.fc2.bias.detach())
    op = torch.ops.mbv3.se

    def fused():
        return op(*args)

    def module():
        with torch.no_grad():
            return m(x)

    return m, x, fused, module


def label(index, batch, fmt, threads):
    c, s, h, w = LAYERS[index]
    return f"se L{index} C{c} S{s} {h}x{w} b{batch} {fmt} t{threads}"


# -- pytest-benchmark --------------------------------------------------------------------------
@pytest.mark.parametrize("threads", [1, 2], indirect=True, ids=lambda t: f"t{t}")
@pytest.mark.parametrize("fmt", list(FORMATS))
@pytest.mark.parametrize("batch", [1, 8], ids=lambda b: f"b{b}")
@pytest.mark.parametrize("index", range(len(LAYERS)), ids=lambda i: "L{}_C{}_S{}_{}x{}".format(i, *LAYERS[i]))
@pytest.mark.parametrize("impl", ["fused", "torchvision"])
def test_se(benchmark, record, impl, index, batch, fmt, threads):
    _, _, fused, module = make_layer(index, batch, fmt)
    fn = fused if impl == "fused" else module
    torch.testing.assert_close(fused(), module())  # same computation, same weights
    benchmark.group = label(index, batch, fmt, threads)
    record(suite="se", config=f"{fmt} t{threads} b{batch}", layer=index, shape=list(LAYERS[index]),
           provider="fused" if impl == "fused" else "unfused")
    benchmark(fn)


# -- summary mode ------------------------------------------------------------------------------
def per_call_us(fn, calls):
    """Median of `calls` individually timed calls (robust to the odd preempted call)."""
    ts = []
    for _ in range(calls):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts) * 1e6


def summary(batch, fmt, threads, rounds, calls):
    torch.set_num_threads(threads)
    layers = [make_layer(i, batch, fmt) for i in range(len(LAYERS))]
    for _, _, fused, module in layers:  # warm up
        per_call_us(fused, 20)
        per_call_us(module, 20)
    times = [([], []) for _ in layers]
    for r in range(rounds):
        for i, (_, _, fused, module) in enumerate(layers):
            first, second = (fused, module) if r % 2 == 0 else (module, fused)
            a, b = per_call_us(first, calls), per_call_us(second, calls)
            times[i][0].append(a if r % 2 == 0 else b)
            times[i][1].append(b if r % 2 == 0 else a)
    print(f"\nbatch {batch}, {fmt}, {threads} thread(s), isa {mbv3_fast.get_cpu_isa()}, "
          f"torch {torch.__version__}: median over {rounds} rounds of per-call medians "
          f"({calls} calls each), µs/call")
    print(f"{'layer':<26}{'fused':>9}{'module':>9}{'ratio':>8}")
    tot_f = tot_m = 0.0
    for i, (tf, tm) in enumerate(times):
        f, m = statistics.median(tf), statistics.median(tm)
        tot_f, tot_m = tot_f + f, tot_m + m
        c, s, h, w = LAYERS[i]
        print(f"{f'L{i} C{c} S{s} {h}x{w}':<26}{f:>9.1f}{m:>9.1f}{m / f:>7.2f}x")
    print(f"{'sum':<26}{tot_f:>9.1f}{tot_m:>9.1f}{tot_m / tot_f:>7.2f}x")
    return tot_m / tot_f


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--summary", action="store_true", help="interleaved per-layer table + sum")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--calls", type=int, default=20, help="calls per round and layer (median taken)")
    ap.add_argument("--batch", type=int, nargs="+", default=[1])
    ap.add_argument("--format", nargs="+", default=["channels_last", "nchw"], choices=list(FORMATS))
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    a = ap.parse_args()
    if not a.summary:
        sys.exit(pytest.main([__file__, "--benchmark-only", "-q"]))
    for fmt in a.format:
        for batch in a.batch:
            for threads in a.threads:
                summary(batch, fmt, threads, a.rounds, a.calls)


if __name__ == "__main__":
    main()
