#!/usr/bin/env python3
"""Paired speed comparison of two builds of mbv3_fast (two checkouts, each built in place), for
"before/after" claims.  Two builds cannot share a process (both register torch.ops.mbv3), so
each runs in its own worker process; the workers take turns, one block of calls at a time, while
the other waits idle on its pipe (interleaved, as bench_model.py does within one process).

    python bench/compare_builds.py BEFORE_DIR AFTER_DIR [--arch large] [--batch 1]
                                   [--threads 1 2] [--rounds 8] [--calls 30]
                                   [--dtype float32|bfloat16|int8]

int8: torchvision's quantized model (x86 recipe, seeded calibration) through
mbv3_fast.quantization.from_torchvision_quantized, float32 input.

Prints, per thread count, the median of round medians for each build and after/before.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

WORKER = r"""
import json, sys, time, torch, torchvision, mbv3_fast
arch, batch, dtype = sys.argv[1], int(sys.argv[2]), sys.argv[3]
tv = getattr(torchvision.models, "mobilenet_v3_" + arch)()
with torch.no_grad():  # realistic BN statistics (the same seed in both builds)
    torch.manual_seed(0)
    for m in tv.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.2); m.running_var.uniform_(0.5, 1.5)
if dtype == "int8":  # torchvision's x86 recipe on seeded calibration batches, as bench_model's fused_int8
    import mbv3_fast.quantization as Q
    g = torch.Generator().manual_seed(0)
    q = Q.quantize_torchvision(tv.eval(), [torch.randn(2, 3, 224, 224, generator=g) for _ in range(4)], "x86")
    model = Q.from_torchvision_quantized(q, "x86")
    status = "int8, " + ("oneDNN rounding in the x86 convs" if model.onednn_convs else "fbgemm rounding")
    x = torch.randn(batch, 3, 224, 224)
else:
    model = mbv3_fast.from_torchvision(tv).eval().requires_grad_(False).to(getattr(torch, dtype))
    status = model.fused_status
    x = torch.randn(batch, 3, 224, 224, dtype=getattr(torch, dtype))
print(json.dumps({"file": mbv3_fast.__file__, "status": status}), flush=True)
for line in sys.stdin:
    threads, calls = map(int, line.split())
    torch.set_num_threads(threads)
    with torch.no_grad():
        for _ in range(3):
            model(x)
        ts = []
        for _ in range(calls):
            t0 = time.perf_counter(); model(x); ts.append(time.perf_counter() - t0)
    ts.sort()
    print(json.dumps(ts[len(ts) // 2]), flush=True)
"""


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("before")
    ap.add_argument("after")
    ap.add_argument("--arch", default="large")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--calls", type=int, default=30)
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "int8"])
    a = ap.parse_args(argv)
    env = dict(os.environ, PYTHONPATH="")
    workers = {}
    for name, path in (("before", a.before), ("after", a.after)):
        p = subprocess.Popen([sys.executable, "-c", WORKER, a.arch, str(a.batch), a.dtype], cwd=path, env=env,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        info = json.loads(p.stdout.readline())
        print(f"{name}: {info['file']} ({info['status']})")
        workers[name] = p
    rows = {}
    for t in a.threads:
        med = {n: [] for n in workers}
        for r in range(a.rounds):
            order = list(workers) if r % 2 == 0 else list(reversed(workers))
            for n in order:
                workers[n].stdin.write(f"{t} {a.calls}\n")
                workers[n].stdin.flush()
                med[n].append(json.loads(workers[n].stdout.readline()))
        b, f = statistics.median(med["before"]) * 1e3, statistics.median(med["after"]) * 1e3
        paired = statistics.median(x / y for x, y in zip(med["after"], med["before"]))
        rows[t] = (b, f, paired)
        print(f"{a.arch} {a.dtype} b{a.batch} {t} thread(s): before {b:.3f} ms, after {f:.3f} ms, "
              f"after/before {f / b:.3f} (median of paired round ratios {paired:.3f})", flush=True)
    for p in workers.values():
        p.stdin.close()
        p.wait()
    return rows


if __name__ == "__main__":
    main()
