#!/usr/bin/env python3
"""1x1 weights K-major in place vs packed in panels (issue #17): per layer and the whole network.

    python bench/bench_pwconv_panels.py [--threads 1 2] [--rounds 9] [--calls 40] [--cols N]
                                        [--model large|small] [--batch 1] [K,Cout,HW ...]

Both layouts run the same kernel with the same sums (bit-identical outputs, tests/
test_pwconv_bn_act.py); they differ in how a register tile's weights lie in memory:

* k_major: the [K, Cout] buffer read in place, a panel of NR output columns being a slice of
  every K row (what the model kept before panels, and still keeps where the path wants none);
* panels:  ``pack_pw_weight_panels`` (NR columns per panel, each K-major and contiguous: one
  stream per tile), what the model packs where ``cpu_pw_panel_cols()`` is > 0 (AVX2: 24).

Per layer: one pwconv_bn_act call, batch 1, fp32, channels_last, hot.  --model: the whole
network as one mbv3::mobilenet_v3 call, its plan's 1x1 weights in panels vs the same network
folded K-major.  Interleaved (interleave.round_medians): median of round medians.
"""
import argparse
import time

import torch
import torchvision

import mbv3_fast
from mbv3_fast import plan as records
from mbv3_fast.isa import cpu_pw_panel_cols
from mbv3_fast.model import _Fold
from mbv3_fast.ops import pack_pw_weight, pack_pw_weight_panels
from interleave import round_medians

DEFAULT = ["16,64,56", "80,480,14", "480,112,14", "112,672,14", "672,112,14", "672,160,7", "160,960,7",
           "960,160,7"]


def layer_providers(K, N, H, cols):
    op = torch.ops.mbv3.pwconv_bn_act
    g = torch.Generator().manual_seed(K * 1000 + N)
    x = torch.randn(1, K, H, H, generator=g).contiguous(memory_format=torch.channels_last)
    w, b = torch.randn(N, K, 1, 1, generator=g) / K ** 0.5, torch.randn(N, generator=g)
    wk, wp = pack_pw_weight(w), pack_pw_weight_panels(w, cols)
    assert torch.equal(op(x, wk, b, "relu", None, None), op(x, wp, b, "relu", None, None))
    return {"k_major": lambda: op(x, wk, b, "relu", None, None), "panels": lambda: op(x, wp, b, "relu", None, None)}


def model_providers(arch, batch):
    tv = getattr(torchvision.models, f"mobilenet_v3_{arch}")()
    torch.manual_seed(0)
    with torch.no_grad():
        for m in tv.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    model = mbv3_fast.from_torchvision(tv).eval()
    plan = model._fused_plan()
    k_major = records.encode(_Fold(torch.float32).net(model))
    x = torch.randn(batch, 3, 224, 224)
    net = torch.ops.mbv3.mobilenet_v3
    assert torch.equal(net(x, plan.net_weights, plan.net_spec), net(x, *k_major))
    return {"k_major": lambda: net(x, *k_major), "panels": lambda: net(x, plan.net_weights, plan.net_spec)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("shapes", nargs="*", default=DEFAULT, help="K,Cout,HW")
    ap.add_argument("--threads", type=int, nargs="+", default=[1])
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--calls", type=int, default=40)
    ap.add_argument("--cols", type=int, default=0, help="panel width (default: the path's, else 24)")
    ap.add_argument("--model", choices=("large", "small"), help="the whole network instead of layers")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--cpu-time", action="store_true",
                    help="time this thread's CPU time (time.thread_time; steadier on a shared VM, 1 thread only)")
    a = ap.parse_args(argv)
    isa, want = mbv3_fast.get_cpu_isa(), cpu_pw_panel_cols()
    cols = a.cols or want or 24
    if a.model and want == 0:
        raise SystemExit(f"--model: the {isa} path packs no panels (cpu_pw_panel_cols() == 0)")
    for threads in a.threads:
        torch.set_num_threads(threads)
        what = f"{a.model}, batch {a.batch}" if a.model else f"pwconv_bn_act, batch 1, panels of {cols} columns"
        print(f"\nfp32 {what}, {threads} thread(s), isa {isa}; median of {a.rounds} round medians x "
              f"{a.calls} calls, µs")
        print("| case | k_major | panels | panels / k_major |\n|---|---|---|---|")
        cases = [(f"{a.model} b{a.batch}", None)] if a.model else [(s, s) for s in a.shapes]
        with torch.no_grad():
            for name, s in cases:
                fns = model_providers(a.model, a.batch) if s is None else layer_providers(*map(int, s.split(",")), cols)
                clock = time.thread_time if a.cpu_time and threads == 1 else time.perf_counter
                m = {k: v * 1e6 for k, v in round_medians(fns, a.rounds, a.calls, clock).items()}
                print(f"| {name} | {m['k_major']:.0f} | {m['panels']:.0f} | {m['panels'] / m['k_major']:.3f} |",
                      flush=True)


if __name__ == "__main__":
    main()
