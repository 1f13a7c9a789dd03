#!/usr/bin/env python3
"""Paired speed comparison of two builds of mbv3_fast (two checkouts, each built in place), for
"before/after" claims.  Two builds cannot share a process (both register torch.ops.mbv3), so
each runs in worker processes of its own; the workers take turns, one block of calls at a time,
while the others wait idle on their pipes (interleaved, as bench_model.py does in one process).

Placement: left to the scheduler, each worker's calling thread stays on one CPU for many rounds,
and on a VM whose vCPUs run at different speeds that alone moved the ratio of a build against
itself by up to 7%.  So each block pins its calling thread (the team's leader) to one CPU and
every other thread of the worker to the others, the same CPU for both builds within a round and
rotated over the rounds, so that every pair compares like with like (Linux; --no-pin: off).
And a process alone stays as fast or slow as it started: with one worker per build, the worker
started first measured 2-4% slower than the one started second at 1 thread in 7 of 8 runs (the
same build twice, Zen 3, 2026-12-08), whichever build it held.  So each build runs in
--procs processes (default 2), started A B B A, and a round's time for a build is the
geometric mean of its processes' block medians.

    python bench/compare_builds.py BEFORE_DIR AFTER_DIR [--arch large] [--batch 1]
                                   [--threads 1 2] [--rounds 8] [--calls 30]
                                   [--dtype float32|bfloat16|int8] [--procs 2] [--no-pin]

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
import json, os, sys, threading, time, torch, torchvision, mbv3_fast
arch, batch, dtype = sys.argv[1], int(sys.argv[2]), sys.argv[3]
CPUS = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []


def place(leader):  # the calling thread on `leader`, the worker's other threads on the other CPUs
    others = set(CPUS) - {leader} or {leader}
    me = threading.get_native_id()
    for tid in map(int, os.listdir("/proc/self/task")):
        try:
            os.sched_setaffinity(tid, {leader} if tid == me else others)
        except OSError:  # the thread has exited
            pass


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
    threads, calls, leader = map(int, line.split())
    torch.set_num_threads(threads)
    with torch.no_grad():
        for _ in range(3):
            model(x)
        if leader >= 0:  # after the warm-up calls, so that the team's threads exist
            place(CPUS[leader % len(CPUS)])
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
    ap.add_argument("--procs", type=int, default=2, help="worker processes per build")
    ap.add_argument("--no-pin", action="store_true", help="leave the threads' placement to the scheduler")
    a = ap.parse_args(argv)
    pin = not a.no_pin and hasattr(os, "sched_setaffinity")
    env = dict(os.environ, PYTHONPATH="")
    # a.procs worker processes per build, started in the order A B B A A B ...: see the docstring.
    builds = {"before": a.before, "after": a.after}
    workers = []
    for i in range(a.procs):
        for name in (("before", "after") if i % 2 == 0 else ("after", "before")):
            p = subprocess.Popen([sys.executable, "-c", WORKER, a.arch, str(a.batch), a.dtype], cwd=builds[name],
                                 env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            info = json.loads(p.stdout.readline())
            if i == 0:
                print(f"{name}: {info['file']} ({info['status']})")
            workers.append((name, p))
    rows = {}
    for t in a.threads:
        med = {n: [] for n in builds}  # per round: the geometric mean of the build's processes' medians
        for r in range(a.rounds):
            # Both orders and every leader CPU equally: rounds 0, 1 on CPU 0 in both orders, 2, 3 on CPU 1, ...
            order = workers if r % 2 == 0 else workers[::-1]
            leader = r // 2 if pin else -1
            got = {n: [] for n in builds}
            for n, p in order:
                p.stdin.write(f"{t} {a.calls} {leader}\n")
                p.stdin.flush()
                got[n].append(json.loads(p.stdout.readline()))
            for n in builds:
                med[n].append(statistics.geometric_mean(got[n]))
        b, f = statistics.median(med["before"]) * 1e3, statistics.median(med["after"]) * 1e3
        paired = statistics.median(x / y for x, y in zip(med["after"], med["before"]))
        rows[t] = (b, f, paired)
        print(f"{a.arch} {a.dtype} b{a.batch} {t} thread(s): before {b:.3f} ms, after {f:.3f} ms, "
              f"after/before {f / b:.3f} (median of paired round ratios {paired:.3f})", flush=True)
    for _, p in workers:
        p.stdin.close()
        p.wait()
    return rows


if __name__ == "__main__":
    main()
