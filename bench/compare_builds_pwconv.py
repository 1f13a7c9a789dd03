#!/usr/bin/env python3
"""Two builds of mbv3_fast, the 1x1 op (`pwconv_bn_act`) alone, shape by shape: for kernel
changes that the whole forward shows only as a few percent.  Each build runs in its own process
(both register torch.ops.mbv3), the two alternating, the order swapped every turn.

    python bench/compare_builds_pwconv.py BEFORE_DIR AFTER_DIR [--turns 6] [--threads 1]
                                          [K,Cout,HW ...]   (default: Large's 1x1 shapes)

A worker times each shape hot (fp32, batch 1, channels_last, relu, the weight packed as the model
packs it on the path in force): 7 blocks of calls, the second-best block's mean (the machine is
shared).  Prints per shape the median over turns of each build and after/before, as a ratio of
medians and as the median of the per-turn ratios.
Noise between builds of the same code was up to ~5% here (code placement), so read shapes that
the change does not touch as the control.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

DEFAULT = ["16,16,112", "16,64,112", "64,24,56", "24,72,56", "72,24,56", "72,40,28", "40,120,28",
           "120,40,28", "240,80,14", "80,200,14", "200,80,14", "80,184,14", "184,80,14", "80,480,14",
           "480,112,14", "112,672,14", "672,112,14", "672,160,7", "160,960,7", "960,160,7"]

WORKER = r"""
import json, sys, time, torch, mbv3_fast
from mbv3_fast.isa import cpu_pw_panel_cols
from mbv3_fast.ops import pack_pw_weight, pack_pw_weight_panels
torch.set_num_threads(int(sys.argv[1]))
res = {}
for s in sys.argv[2:]:
    K, N, H = map(int, s.split(","))
    torch.manual_seed(K * 1000 + N)
    x = torch.randn(1, K, H, H).contiguous(memory_format=torch.channels_last)
    w, b = torch.randn(N, K, 1, 1) / K ** 0.5, torch.randn(N)
    P = cpu_pw_panel_cols()  # the model's layout on this path
    wp = pack_pw_weight_panels(w, P) if P else pack_pw_weight(w)
    f = lambda: torch.ops.mbv3.pwconv_bn_act(x, wp, b, "relu", None, None)
    n = max(10, int(5e7 / (2 * H * H * K * N)))
    blocks = []
    for _ in range(7):
        f()
        t = time.perf_counter()
        for _ in range(n):
            f()
        blocks.append((time.perf_counter() - t) / n)
    res[s] = sorted(blocks)[1]
print(json.dumps(res))
"""


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("before")
    ap.add_argument("after")
    ap.add_argument("shapes", nargs="*", default=DEFAULT, help="K,Cout,HW")
    ap.add_argument("--turns", type=int, default=6)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    runs = {a.before: [], a.after: []}
    for t in range(a.turns):
        for d in (a.before, a.after) if t % 2 == 0 else (a.after, a.before):
            out = subprocess.run([sys.executable, "-c", WORKER, str(a.threads), *a.shapes], cwd=d,
                                 env={**os.environ, "PYTHONPATH": os.path.abspath(d)},
                                 capture_output=True, text=True, check=True).stdout
            runs[d].append(json.loads(out.strip().splitlines()[-1]))
    print(f"pwconv_bn_act fp32, batch 1, {a.threads} thread(s), {a.turns} turns; after / before")
    for s in a.shapes:
        K, N, H = map(int, s.split(","))
        flop = 2 * H * H * K * N
        b = statistics.median(r[s] for r in runs[a.before])
        f = statistics.median(r[s] for r in runs[a.after])
        paired = statistics.median(ra[s] / rb[s] for rb, ra in zip(runs[a.before], runs[a.after]))
        print(f"{K:4d} -> {N:4d} @ {H:3d}: before {b * 1e6:7.1f} us {flop / b / 1e9:5.1f} GFLOP/s, "
              f"after {f * 1e6:7.1f} us {flop / f / 1e9:5.1f} GFLOP/s, after/before {f / b:.3f} (paired {paired:.3f})")


if __name__ == "__main__":
    main()
