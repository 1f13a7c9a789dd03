#!/usr/bin/env python3
"""One-shot GPU check of the Triton kernels (mbv3_fast.kernels) on one NVIDIA GPU.

    python bench/gpu_check.py [--no-build] [--skip-tests] [--out PATH] [--quick]

1. build: ``pip install --no-build-isolation -e .`` when ``mbv3_fast.kernels`` is not importable
   (skip with --no-build);
2. correctness: ``pytest tests/test_triton_*.py -q`` (every Triton kernel, see TESTS)
   (CUDA cases incl. every MobileNetV3-Large layer; skip with --skip-tests);
3. timing, CUDA events after warm-up (triton.testing.do_bench, median; L2 flushed between
   reps), first end to end: mbv3_fast's MobileNetV3-Large/Small eval forward (one
   mbv3::mobilenet_v3 call) vs torchvision's eager model, batch 1/32, fp32/fp16, NCHW image in;
   then fused Triton vs PyTorch unfused for every depthwise layer (cuDNN conv groups=C +
   F.batch_norm eval + activation), SE layer (torchvision SqueezeExcitation, hardsigmoid, eval)
   and 1x1 layer (cuDNN 1x1 conv + F.batch_norm + activation (+ residual add)) of
   MobileNetV3-Large, batch 1/32/256, fp32/fp16, channels_last.  The kernels have a
   native NCHW path (no layout conversion), timed too at batch 32 (skip with --no-nchw).
   "loop" columns = wall time per call of 100 back-to-back eager calls (includes Python /
   launch overhead, which dominates at batch 1).
Prints one table and writes everything (plus device name, torch/triton versions) as JSON to
--out (default bench/results/gpu_check.json).  Designed to finish in < 5 minutes on H100/H200;
a deadline stops the timing early (recorded in the JSON) if it would not.
"""
import argparse
import copy
import importlib
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = ["tests/test_triton_dwconv_bn_act.py", "tests/test_triton_se.py",
         "tests/test_triton_pwconv_bn_act.py", "tests/test_triton_conv_bn_act.py",
         "tests/test_triton_classifier_head.py", "tests/test_triton_expand_dwconv_bn_act.py",
         "tests/test_model.py::test_eval_parity_cuda"]


def log(msg):
    print(msg, flush=True)


# ----------------------------------------------------------------------------------------------
# MobileNetV3-Large layers, enumerated from torchvision (not hand-copied)
# ----------------------------------------------------------------------------------------------

def mbv3_large_layers():
    """-> (depthwise, se, pointwise) lists, one entry per layer of the network (repeats
    included), from tests/mbv3_shapes.py (torchvision forward hooks).  depthwise: dict(name, C,
    H, k, stride, dilation, pad, act); se: dict(name, C, S, H); pointwise: dict(name, Cin, Cout,
    H, act, res)."""
    sys.path.insert(0, os.path.join(REPO, "tests"))
    from mbv3_shapes import depthwise_layers, pointwise_layers, se_layers
    dws = [dict(name=f"dw{i:02d} {C}@{H} k{k}s{s} {'HS' if act == 'hardswish' else 'RE'}",
                C=C, H=H, k=k, stride=s, dilation=d, pad=p, act=act)
           for i, (C, H, W, k, s, p, d, act) in enumerate(depthwise_layers("large"))]
    ses = [dict(name=f"se{i:02d} {C}->{S}@{H}", C=C, S=S, H=H)
           for i, (C, S, H, W) in enumerate(se_layers("large"))]
    pws = [dict(name=f"pw{i:02d} {ci}->{co}@{H}{' +res' if res else ''}", Cin=ci, Cout=co, H=H,
                act=act, res=res)
           for i, (ci, co, H, W, act, res) in enumerate(pointwise_layers("large"))]
    return dws, ses, pws


# ----------------------------------------------------------------------------------------------
# Steps
# ----------------------------------------------------------------------------------------------

def ensure_built(no_build: bool) -> bool:
    if importlib.util.find_spec("mbv3_fast") is not None:
        try:
            importlib.import_module("mbv3_fast.kernels")
            return True
        except ImportError as e:
            log(f"[build] mbv3_fast.kernels not importable: {e}")
    if no_build:
        log("[build] --no-build given and mbv3_fast.kernels is not importable")
        return False
    cmd = [sys.executable, "-m", "pip", "install", "--no-build-isolation", "-e", "."]
    log(f"[build] {' '.join(cmd)}")
    rc = subprocess.call(cmd, cwd=REPO)
    if rc != 0:
        log(f"[build] failed (rc={rc})")
        return False
    importlib.invalidate_caches()
    try:
        importlib.import_module("mbv3_fast.kernels")
        return True
    except ImportError as e:
        log(f"[build] still not importable: {e}")
        return False


def run_tests():
    cmd = [sys.executable, "-m", "pytest", *TESTS, "-q", "-rs", "-p", "no:cacheprovider"]
    log(f"[tests] {' '.join(cmd)}")
    t0 = time.time()
    env = dict(os.environ)
    env.pop("TRITON_INTERPRET", None)
    proc = subprocess.run(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)
    tail = proc.stdout[-6000:]
    log(tail[-2500:])
    return dict(cmd=" ".join(cmd), rc=proc.returncode, seconds=round(time.time() - t0, 1),
                output_tail=tail)


class Timer:
    def __init__(self, deadline):
        import torch
        self.torch = torch
        self.deadline = deadline
        try:
            from triton.testing import do_bench
            self.do_bench = do_bench
        except ImportError:  # pragma: no cover
            self.do_bench = None

    def gpu_ms(self, fn):
        """Median GPU time per call (CUDA events, L2 flushed between reps)."""
        torch = self.torch
        if self.do_bench is not None:
            return float(self.do_bench(fn, warmup=10, rep=40, return_mode="median"))
        for _ in range(5):
            fn()
        times = []
        for _ in range(30):
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record()
            fn()
            e.record()
            e.synchronize()
            times.append(s.elapsed_time(e))
        return statistics.median(times)

    def loop_ms(self, fn, n=100):
        """Wall time per call of n back-to-back eager calls (launch overhead included)."""
        torch = self.torch
        fn()
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        torch.cuda.synchronize()
        return (time.perf_counter() - t0) * 1e3 / n


def _conv_bn(w, g, dev, dtype, mf):
    """Random eval BatchNorm for conv weight `w` -> (folded weight, folded bias, the conv weight
    in `dtype`/`mf` for PyTorch, BN (mean, var, gamma, beta) in `dtype`, eps)."""
    import torch
    C = w.shape[0]
    gamma, beta = torch.rand(C, generator=g, device=dev) + 0.5, torch.randn(C, generator=g, device=dev)
    mean, var = torch.randn(C, generator=g, device=dev) * 0.1, torch.rand(C, generator=g, device=dev) + 0.5
    eps = 1e-3
    inv = gamma / torch.sqrt(var + eps)
    wf, bf = (w * inv[:, None, None, None]).to(dtype), (beta - mean * inv).to(dtype)
    bn = tuple(t.to(dtype) for t in (mean, var, gamma, beta))
    return wf, bf, w.to(dtype).contiguous(memory_format=mf), bn, eps


def _time_pair(timer, torch_fn, fused_fn, N, mf):
    """Both outputs compared, both timed (loop timings too at batch 1)."""
    import torch
    with torch.no_grad():
        yt, yf = torch_fn(), fused_fn()
        diff = (yt.float() - yf.float()).abs().max().item() if yt.numel() else 0.0
        res = dict(torch_ms=timer.gpu_ms(torch_fn), fused_ms=timer.gpu_ms(fused_fn),
                   max_abs_diff_vs_torch=diff,
                   output_format_ok=bool(yf.is_contiguous(memory_format=mf)))
        if N == 1:
            res.update(torch_loop_ms=timer.loop_ms(torch_fn), fused_loop_ms=timer.loop_ms(fused_fn))
    return res


def bench_dw(timer, K, layer, N, dtype, fmt, dev):
    import torch
    import torch.nn.functional as F
    C, H, k = layer["C"], layer["H"], layer["k"]
    mf = torch.channels_last if fmt == "channels_last" else torch.contiguous_format
    g = torch.Generator(device=dev).manual_seed(0)
    x = torch.randn(N, C, H, H, generator=g, device=dev, dtype=dtype).contiguous(memory_format=mf)
    wf, bf, w_t, bn, eps = _conv_bn(torch.randn(C, 1, k, k, generator=g, device=dev) / k, g, dev, dtype, mf)
    act_fn = F.hardswish if layer["act"] == "hardswish" else F.relu
    s, p, d = layer["stride"], layer["pad"], layer["dilation"]

    def torch_fn():
        y = F.conv2d(x, w_t, None, s, p, d, C)
        y = F.batch_norm(y, *bn, False, 0.0, eps)
        return act_fn(y)

    def fused_fn():
        return K.dwconv_bn_act(x, wf, bf, s, p, d, layer["act"])

    return _time_pair(timer, torch_fn, fused_fn, N, mf)


def bench_se(timer, K, layer, N, dtype, fmt, dev):
    import torch
    from torch import nn
    from torchvision.ops import SqueezeExcitation
    C, S, H = layer["C"], layer["S"], layer["H"]
    mf = torch.channels_last if fmt == "channels_last" else torch.contiguous_format
    torch.manual_seed(0)
    m = SqueezeExcitation(C, S, scale_activation=nn.Hardsigmoid).eval().to(dev, dtype)
    x = torch.randn(N, C, H, H, device=dev, dtype=dtype).contiguous(memory_format=mf)
    w1, b1, w2, b2 = m.fc1.weight, m.fc1.bias, m.fc2.weight, m.fc2.bias

    def torch_fn():
        return m(x)

    def fused_fn():
        return K.se(x, w1, b1, w2, b2)

    return _time_pair(timer, torch_fn, fused_fn, N, mf)


def bench_pw(timer, K, layer, N, dtype, fmt, dev):
    import torch
    import torch.nn.functional as F
    ci, co, H = layer["Cin"], layer["Cout"], layer["H"]
    mf = torch.channels_last if fmt == "channels_last" else torch.contiguous_format
    g = torch.Generator(device=dev).manual_seed(0)
    x = torch.randn(N, ci, H, H, generator=g, device=dev, dtype=dtype).contiguous(memory_format=mf)
    r = torch.randn(N, co, H, H, generator=g, device=dev, dtype=dtype).contiguous(memory_format=mf) \
        if layer["res"] else None
    wf, bf, w_t, bn, eps = _conv_bn(torch.randn(co, ci, 1, 1, generator=g, device=dev) / ci ** 0.5,
                                    g, dev, dtype, mf)
    act_fn = {"hardswish": F.hardswish, "relu": F.relu, "none": lambda t: t}[layer["act"]]

    def torch_fn():
        y = act_fn(F.batch_norm(F.conv2d(x, w_t), *bn, False, 0.0, eps))
        return y + r if r is not None else y

    def fused_fn():
        return K.pwconv_bn_act(x, wf, bf, layer["act"], r)

    return _time_pair(timer, torch_fn, fused_fn, N, mf)


def bench_model(timer, arch, N, dtype, dev):
    """mbv3_fast's eval forward vs torchvision's eager model, same random weights, NCHW image in."""
    import torch
    import torchvision
    import mbv3_fast
    sys.path.insert(0, os.path.join(REPO, "tests"))
    from test_model import _realistic  # O(1) logits (torchvision's init gives ~1e-9), real BN stats
    torch.manual_seed(0)
    tv = _realistic(getattr(torchvision.models, f"mobilenet_v3_{arch}")(), seed=0)
    ours = mbv3_fast.from_torchvision(copy.deepcopy(tv)).eval().to(dev, dtype)
    tv = tv.to(dev, dtype)
    x = torch.randn(N, 3, 224, 224, device=dev, dtype=dtype)
    with torch.no_grad():
        yt, yf = tv(x), ours(x)
        res = dict(fused_status=ours.fused_status,
                   max_abs_diff_vs_torch=(yt.float() - yf.float()).abs().max().item(),
                   logits_scale=yt.float().abs().max().item(),
                   top1_agree=float((yt.argmax(1) == yf.argmax(1)).float().mean().item()),
                   output_format_ok=ours.fused_status == "fused")
        res.update(torch_ms=timer.gpu_ms(lambda: tv(x)), fused_ms=timer.gpu_ms(lambda: ours(x)))
        if N == 1:
            res.update(torch_loop_ms=timer.loop_ms(lambda: tv(x)),
                       fused_loop_ms=timer.loop_ms(lambda: ours(x)))
    return res


def check_torch_ops_routing(K, dev):
    """If the C++ library registered torch.ops.mbv3.*, check its CUDA dispatch gives the same
    result as calling the Triton kernels directly."""
    import torch
    out = {}
    ops = getattr(torch.ops, "mbv3", None)
    x = torch.randn(2, 72, 14, 14, device=dev).contiguous(memory_format=torch.channels_last)
    w, b = torch.randn(72, 1, 5, 5, device=dev) / 5, torch.randn(72, device=dev)
    w1, b1 = torch.randn(24, 72, device=dev) / 8, torch.randn(24, device=dev)
    w2, b2 = torch.randn(72, 24, device=dev) / 5, torch.randn(72, device=dev)
    checks = {
        "dwconv_bn_act": (lambda f: f(x, w, b, 2, 2, 1, "hardswish"), K.dwconv_bn_act),
        "se": (lambda f: f(x, w1, b1, w2, b2), K.se),
        "se_scale": (lambda f: f(x, w1, b1, w2, b2), K.se_scale),
    }
    for name, (call, direct) in checks.items():
        op = None
        try:
            op = getattr(ops, name) if ops is not None else None
        except (AttributeError, RuntimeError):
            op = None
        if op is None:
            out[name] = "not registered"
            continue
        try:
            a, b_ = call(op), call(direct)
            out[name] = "same" if torch.equal(a, b_) else \
                f"DIFFERENT (max abs diff {(a.float() - b_.float()).abs().max().item():.3e})"
        except Exception as e:  # report, don't abort the benchmark
            out[name] = f"error: {type(e).__name__}: {e}"
    return out


def fmt_table(rows):
    head = f"{'layer':34s} {'batch':>5s} {'dtype':>5s} {'fmt':>4s} {'torch ms':>9s} {'fused ms':>9s} {'speedup':>7s}"
    lines = [head, "-" * len(head)]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['layer']:34s} {r['batch']:5d} {r['dtype']:>5s} {r['fmt'][:4]:>4s} ERROR {r['error']}")
            continue
        extra = ""
        if "torch_loop_ms" in r:
            extra = f"   (loop: torch {r['torch_loop_ms']:.4f} fused {r['fused_loop_ms']:.4f})"
        lines.append(f"{r['layer']:34s} {r['batch']:5d} {r['dtype']:>5s} {r['fmt'][:4]:>4s} "
                     f"{r['torch_ms']:9.4f} {r['fused_ms']:9.4f} {r['torch_ms'] / r['fused_ms']:6.2f}x{extra}")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(REPO, "bench", "results", "gpu_check.json"))
    ap.add_argument("--no-build", action="store_true", help="never run pip install")
    ap.add_argument("--skip-tests", action="store_true", help="skip the pytest correctness run")
    ap.add_argument("--no-nchw", action="store_true", help="skip the NCHW timings")
    ap.add_argument("--quick", action="store_true", help="batch 1 and 32 only")
    ap.add_argument("--budget-s", type=float, default=270.0,
                    help="stop timing after this many seconds since start (default 270)")
    ap.add_argument("--dry-run", action="store_true",
                    help="exercise this script without a GPU: CPU tensors, TRITON_INTERPRET=1 "
                         "(set it yourself), tiny shapes, no build/tests, fake timings")
    args = ap.parse_args(argv)
    t_start = time.time()

    import torch
    if args.dry_run:
        return dry_run(args)
    if os.environ.get("TRITON_INTERPRET", "0") == "1":
        log("gpu_check: TRITON_INTERPRET=1 is set; unset it to run the kernels on the GPU")
        return 2
    if not torch.cuda.is_available():
        log("gpu_check: no CUDA device available (torch.cuda.is_available() is False); "
            "this script needs one NVIDIA GPU")
        return 2
    try:
        import torchvision  # noqa: F401
    except ImportError:
        log("gpu_check: torchvision is required (layer table and SqueezeExcitation baseline)")
        return 2
    import triton

    dev = torch.device("cuda")
    result = dict(
        device=torch.cuda.get_device_name(dev),
        capability=".".join(map(str, torch.cuda.get_device_capability(dev))),
        sms=torch.cuda.get_device_properties(dev).multi_processor_count,
        torch=torch.__version__, triton=triton.__version__, cuda=torch.version.cuda,
        cudnn=torch.backends.cudnn.version(), python=platform.python_version(),
        started=time.strftime("%Y-%m-%d %H:%M:%S"),
        method="triton.testing.do_bench median (warmup 10 ms, rep 40 ms, L2 flushed), "
               "loop = wall ms/call of 100 eager calls (batch 1 only)",
    )
    log(f"[env] {result['device']} (sm_{result['capability']}, {result['sms']} SMs), "
        f"torch {result['torch']}, triton {result['triton']}, CUDA {result['cuda']}")

    result["build_ok"] = ensure_built(args.no_build)
    if not result["build_ok"]:
        write(args.out, result)
        return 1
    K = importlib.import_module("mbv3_fast.kernels")

    if not args.skip_tests:
        result["tests"] = run_tests()
    result["torch_ops_routing"] = check_torch_ops_routing(K, dev)
    log(f"[routing] {result['torch_ops_routing']}")

    dws, ses, pws = mbv3_large_layers()
    batches = [1, 32] if args.quick else [1, 32, 256]
    timer = Timer(t_start + args.budget_s)
    models = [(arch, N) for arch in ("large", "small") for N in (1, 32)]
    bench_all(args, result, K, dev, timer, dws, ses, pws, batches,
              [32] if not args.no_nchw else [], models)
    bad = [r for r in result["rows"] if "error" in r or not r.get("output_format_ok", True)]
    if bad:
        log(f"[warn] {len(bad)} rows with errors or wrong output memory format")
    result["total_seconds"] = round(time.time() - t_start, 1)
    write(args.out, result)
    tests_rc = result.get("tests", {}).get("rc", 0)
    log(f"[done] {result['total_seconds']} s; tests rc={tests_rc}; JSON -> {args.out}")
    return 0 if tests_rc == 0 and not bad else 1


def bench_all(args, result, K, dev, timer, dws, ses, pws, batches, nchw_batches, models):
    import torch
    dtypes = {"fp32": torch.float32, "fp16": torch.float16}
    kinds = (("dw", dws), ("se", ses), ("pw", pws))
    plan = [("model", dict(name=f"mobilenet_v3_{arch}", arch=arch), N, dt, "nchw")
            for arch, N in models for dt in dtypes]
    plan += [(kind, layer, N, dt, "channels_last")
             for N in batches for dt in dtypes for kind, layers in kinds for layer in layers]
    plan += [(kind, layer, N, dt, "nchw") for N in nchw_batches for dt in dtypes
             for kind, layers in kinds for layer in layers]
    rows, cache = [], {}
    result["stopped_early"] = False
    for kind, layer, N, dt, fmt in plan:
        if time.time() > timer.deadline:
            result["stopped_early"] = True
            log(f"[time] budget of {args.budget_s:.0f} s reached; remaining rows skipped")
            break
        key = (kind, tuple(sorted((k, v) for k, v in layer.items() if k != "name")), N, dt, fmt)
        if kind == "model":
            key = (kind, layer["name"], N, dt, fmt)
        row = dict(kind=kind, layer=layer["name"], batch=N, dtype=dt, fmt=fmt)
        if key in cache:  # repeated identical layer: same numbers
            row.update(cache[key], repeat_of_previous=True)
        else:
            try:
                if kind == "model":
                    res = bench_model(timer, layer["arch"], N, dtypes[dt], dev)
                else:
                    fn = {"dw": bench_dw, "se": bench_se, "pw": bench_pw}[kind]
                    res = fn(timer, K, layer, N, dtypes[dt], fmt, dev)
            except Exception as e:  # keep going; report the failure
                res = dict(error=f"{type(e).__name__}: {e}")
            cache[key] = res
            row.update(res)
        rows.append(row)
        if dev.type == "cuda":
            torch.cuda.empty_cache()

    # summed rows per (kind, batch, dtype, fmt)
    sums = []
    for kind in ("dw", "se", "pw"):
        for fmt in ("channels_last", "nchw"):
            for N in sorted(set(batches) | set(nchw_batches)):
                for dt in dtypes:
                    sel = [r for r in rows if r["kind"] == kind and r["batch"] == N
                           and r["dtype"] == dt and r["fmt"] == fmt and "error" not in r]
                    if not sel:
                        continue
                    t, f = sum(r["torch_ms"] for r in sel), sum(r["fused_ms"] for r in sel)
                    sums.append(dict(kind=kind, layer=f"SUM {kind} ({len(sel)} layers)", batch=N,
                                     dtype=dt, fmt=fmt, torch_ms=t, fused_ms=f))
    result["rows"], result["sums"] = rows, sums
    log("\n" + fmt_table(rows + sums))


class _FakeTimer:
    """--dry-run: one call, wall time, no CUDA."""
    deadline = float("inf")

    def gpu_ms(self, fn):
        t0 = time.perf_counter()
        fn()
        return (time.perf_counter() - t0) * 1e3

    loop_ms = gpu_ms


def dry_run(args):
    import torch
    if os.environ.get("TRITON_INTERPRET", "0") != "1":
        log("gpu_check --dry-run: set TRITON_INTERPRET=1 (CPU tensors through Triton's interpreter)")
        return 2
    K = importlib.import_module("mbv3_fast.kernels")
    dws, ses, pws = mbv3_large_layers()
    shrink = lambda d: dict(d, C=min(d["C"], 24), H=min(d["H"], 8))  # noqa: E731
    dws = [shrink(d) for d in dws[:3]] + [shrink(dws[-1]), shrink(dws[-1])]
    ses = [dict(d, C=min(d["C"], 24), S=min(d["S"], 8), H=min(d["H"], 7)) for d in ses[:2]]
    pws = [dict(d, Cin=min(d["Cin"], 24), Cout=min(d["Cout"], 24), H=min(d["H"], 8))
           for d in pws[:2] + pws[-2:]]
    result = dict(device="dry-run (CPU, Triton interpreter)", dry_run=True,
                  torch=torch.__version__, routing=check_torch_ops_routing(K, torch.device("cpu")))
    # The model row runs on the CPU here (C++ ops for float32; float16 falls back to torchvision).
    bench_all(args, result, K, torch.device("cpu"), _FakeTimer(), dws, ses, pws, [1, 2],
              [] if args.no_nchw else [2], [("small", 1)])
    write(args.out, result)
    log(f"[done] dry run; JSON -> {args.out}")
    return 0


def write(path, result):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
