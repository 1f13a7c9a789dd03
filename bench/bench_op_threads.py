"""Per-op 1 vs 2 thread times of the fused MobileNetV3 forward at batch 1 (issue #17).

    python bench/bench_op_threads.py [--arch large] [--dtype float32|bfloat16] [--rounds 7] [--calls 40]

Walks the folded network op by op as mbv3_fast.plan.run does (bench_layers_xnnpack.walk), and
times every op at 1 and at 2 threads, interleaved, median of round medians: by default each
round runs `calls` walks at 1 thread and `calls` at 2 (order alternating), every op timed once
per walk, so it sees the forward's cache state (weights cold as in the one-call forward); with
--hot each op runs `calls` times in a row per thread count (weights cached).  A figure includes the op's Python + dispatcher
call cost (the same at both thread counts), so `saved` = t1 - t2 is what the second thread buys.
"""
import argparse
import statistics
import time

import torch
import torchvision

import mbv3_fast
from bench_layers_xnnpack import walk
from mbv3_fast.testing import realistic


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="large")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--calls", type=int, default=40)
    ap.add_argument("--hot", action="store_true",
                    help="time each op `calls` times in a row (weights cached) instead of once per "
                         "forward walk (the forward's own cache state)")
    a = ap.parse_args(argv)
    dtype = getattr(torch, a.dtype)
    tv = realistic(getattr(torchvision.models, f"mobilenet_v3_{a.arch}")(), seed=0)
    model = mbv3_fast.from_torchvision(tv).eval().requires_grad_(False).to(dtype)
    net = model._plan.net
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(1)).to(dtype)
    layers = []
    with torch.no_grad():
        walk(net, x, lambda i, fn: fn(), layers)
        per = {(i, t): [] for i in range(len(layers)) for t in (1, 2)}
        for r in range(a.rounds):
            if a.hot:
                def timed(i, fn):
                    for t in ((1, 2) if r % 2 == 0 else (2, 1)):
                        torch.set_num_threads(t)
                        fn()
                        ts = []
                        for _ in range(a.calls):
                            t0 = time.perf_counter()
                            fn()
                            ts.append(time.perf_counter() - t0)
                        per[(i, t)].append(statistics.median(ts))
                    return fn()
                walk(net, x, timed)
                continue
            for t in ((1, 2) if r % 2 == 0 else (2, 1)):
                torch.set_num_threads(t)
                ts = {}

                def once(i, fn):
                    t0 = time.perf_counter()
                    out = fn()
                    ts.setdefault(i, []).append(time.perf_counter() - t0)
                    return out
                walk(net, x, lambda i, fn: fn())
                for _ in range(a.calls):
                    walk(net, x, once)
                for i, v in ts.items():
                    per[(i, t)].append(statistics.median(v))
    med = {k: statistics.median(v) * 1e6 for k, v in per.items()}
    print(f"{'layer':22s} {'shape':42s} {'1T us':>8s} {'2T us':>8s} {'x':>5s} {'saved':>7s} {'lost vs 2x':>10s}")
    tot1 = tot2 = 0.0
    kinds = {}
    for i, l in enumerate(layers):
        t1, t2 = med[(i, 1)], med[(i, 2)]
        tot1 += t1
        tot2 += t2
        kind = l.name.split(" ", 1)[-1]
        k = kinds.setdefault(kind, [0.0, 0.0])
        k[0] += t1
        k[1] += t2
        print(f"{l.name:22s} {l.shape:42s} {t1:8.1f} {t2:8.1f} {t1 / t2:5.2f} {t1 - t2:7.1f} {t2 - t1 / 2:10.1f}")
    print(f"{'total':65s} {tot1:8.1f} {tot2:8.1f} {tot1 / tot2:5.2f} {tot1 - tot2:7.1f} {tot2 - tot1 / 2:10.1f}")
    for kind, (t1, t2) in sorted(kinds.items(), key=lambda kv: -(kv[1][1] - kv[1][0] / 2)):
        print(f"  {kind:20s} {t1:8.1f} {t2:8.1f} {t1 / t2:5.2f}  lost vs 2x {t2 - t1 / 2:7.1f}")


if __name__ == "__main__":
    main()
