#!/usr/bin/env python3
"""One-shot GPU check of the Triton kernels (mbv3_fast.kernels) on one NVIDIA GPU.

    python bench/gpu_check.py [--no-build] [--skip-tests] [--out PATH] [--quick]
                              [--budget-s 450] [--phase-s tests=120,models=120,layers=90]
    python bench/gpu_check.py --compile-only [--archs 90,80] [--variants ...] [--batches ...]
                              [--jobs N]
        no GPU needed: compiles every Triton kernel of the CUDA path for sm_90 and sm_80 through
        the real wrappers and checks registers / spills / vectorisation (see "--compile-only"
        below); exit 0 when all pass.
    TRITON_INTERPRET=1 python bench/gpu_check.py --dry-run
        no GPU needed: the timing phases on the CPU (interpreter, tiny layers, fake timings)

Phases of a GPU run, each with its own time budget (--phase-s), none past --budget-s since the
start, the JSON (--out, default bench/results/gpu_check.json) rewritten as rows come in:
1. build: ``pip install --no-build-isolation -e .`` when ``mbv3_fast.kernels`` is not importable
   (skip with --no-build);
2. compile check: the full sm_90 grid of --compile-only on every CPU, before any launch (the
   compiled kernels stay in TRITON_CACHE_DIR for the timing phases);
3. tests: ``pytest`` of every Triton kernel, the CUDA model parity and the CUDA-graph /
   torch.compile(mode="reduce-overhead") parity (TESTS; skip with --skip-tests);
4. models: MobileNetV3-Large/Small eval forward, channels_last, batch 1/32/256, fp16/fp32/bf16:
   ours (one mbv3::mobilenet_v3 call), ours replayed from a CUDA graph
   (mbv3_fast.cuda_graph.capture), torchvision eager, torch.compile(torchvision) default and
   mode="reduce-overhead" (the compile rows last: tens of seconds each);
5. layers: every layer of MobileNetV3-Large (stem, depthwise, SE, 1x1, head), fused Triton vs cuDNN +
   unfused PyTorch ops (conv + F.batch_norm eval + activation (+ residual); torchvision
   SqueezeExcitation), channels_last at batch 1/32/256, NCHW at batch 32 (--no-nchw skips).
Timing: triton.testing.do_bench median (CUDA events, L2 flushed); "loop" = wall ms per call of
100 back-to-back eager calls, batch 1 (launch overhead included).  Ends with one Markdown table
(model rows and summed layer rows) that README takes as it is.  Sized for < 8 min on an H200,
build included.
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
         "tests/test_model.py::test_eval_parity_cuda", "tests/test_cuda_graph.py"]


def log(msg):
    print(msg, flush=True)


# ----------------------------------------------------------------------------------------------
# MobileNetV3-Large layers, enumerated from torchvision (not hand-copied)
# ----------------------------------------------------------------------------------------------

def mbv3_large_layers():
    """-> {kind: layers}, one entry per layer of the network (repeats included), from
    mbv3_fast/testing.py (torchvision forward hooks).  stem: dict(name, Cin, Cout, H, k, stride,
    pad, act); dw: dict(name, C, H, k, stride, dilation, pad, act); se: dict(name, C, S, H); pw:
    dict(name, Cin, Cout, H, act, res); head: dict(name, C, H, hidden, classes, act)."""
    from mbv3_fast.testing import (depthwise_layers, head_layers, pointwise_layers, se_layers,
                                   stem_layers)
    stems = [dict(name=f"stem {ci}->{co}@{H}", Cin=ci, Cout=co, H=H, k=k, stride=s, pad=p, act=act)
             for ci, co, H, W, k, s, p, act in stem_layers("large")]
    heads = [dict(name=f"head {C}@{H}->{hid}->{cls}", C=C, H=H, hidden=hid, classes=cls, act=act)
             for C, H, W, hid, cls, act in head_layers("large")]
    dws = [dict(name=f"dw{i:02d} {C}@{H} k{k}s{s} {'HS' if act == 'hardswish' else 'RE'}",
                C=C, H=H, k=k, stride=s, dilation=d, pad=p, act=act)
           for i, (C, H, W, k, s, p, d, act) in enumerate(depthwise_layers("large"))]
    ses = [dict(name=f"se{i:02d} {C}->{S}@{H}", C=C, S=S, H=H)
           for i, (C, S, H, W) in enumerate(se_layers("large"))]
    pws = [dict(name=f"pw{i:02d} {ci}->{co}@{H}{' +res' if res else ''}", Cin=ci, Cout=co, H=H,
                act=act, res=res)
           for i, (ci, co, H, W, act, res) in enumerate(pointwise_layers("large"))]
    return dict(stem=stems, dw=dws, se=ses, pw=pws, head=heads)


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


def run_tests(timeout):
    """The Triton/CUDA tests, killed after ``timeout`` seconds (recorded as rc None)."""
    cmd = [sys.executable, "-m", "pytest", *TESTS, "-q", "-rs", "-p", "no:cacheprovider"]
    log(f"[tests] {' '.join(cmd)}")
    t0 = time.time()
    env = dict(os.environ)
    env.pop("TRITON_INTERPRET", None)
    try:
        proc = subprocess.run(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=timeout)
        rc, out = proc.returncode, proc.stdout
    except subprocess.TimeoutExpired as e:
        rc, out = None, (e.stdout or b"").decode(errors="replace") + f"\n[tests] timed out after {timeout:.0f} s"
    tail = out[-6000:]
    log(tail[-2500:])
    return dict(cmd=" ".join(cmd), rc=rc, seconds=round(time.time() - t0, 1), output_tail=tail)


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


def bench_stem(timer, K, layer, N, dtype, fmt, dev):
    import torch
    import torch.nn.functional as F
    ci, co, H, k = layer["Cin"], layer["Cout"], layer["H"], layer["k"]
    mf = torch.channels_last if fmt == "channels_last" else torch.contiguous_format
    g = torch.Generator(device=dev).manual_seed(0)
    x = torch.randn(N, ci, H, H, generator=g, device=dev, dtype=dtype).contiguous(memory_format=mf)
    wf, bf, w_t, bn, eps = _conv_bn(torch.randn(co, ci, k, k, generator=g, device=dev) / k, g, dev, dtype, mf)

    def torch_fn():
        return F.hardswish(F.batch_norm(F.conv2d(x, w_t, None, layer["stride"], layer["pad"]),
                                        *bn, False, 0.0, eps))

    def fused_fn():
        return K.conv_bn_act(x, wf, bf, layer["stride"], layer["pad"], layer["act"])

    # the stem's output is channels_last whatever the input's layout
    return _time_pair(timer, torch_fn, fused_fn, N, torch.channels_last)


def bench_head(timer, K, layer, N, dtype, fmt, dev):
    import torch
    import torch.nn.functional as F
    from mbv3_fast.kernels.classifier_head import classifier_head
    C, H, hid, cls = layer["C"], layer["H"], layer["hidden"], layer["classes"]
    mf = torch.channels_last if fmt == "channels_last" else torch.contiguous_format
    g = torch.Generator(device=dev).manual_seed(0)
    x = torch.randn(N, C, H, H, generator=g, device=dev, dtype=dtype).contiguous(memory_format=mf)
    w1, b1 = (torch.randn(hid, C, generator=g, device=dev) / C ** 0.5).to(dtype), torch.zeros(hid, device=dev, dtype=dtype)
    w2, b2 = (torch.randn(cls, hid, generator=g, device=dev) / hid ** 0.5).to(dtype), torch.zeros(cls, device=dev, dtype=dtype)

    def torch_fn():  # torchvision's avgpool + flatten + Linear + Hardswish + (Dropout) + Linear
        return F.linear(F.hardswish(F.linear(F.adaptive_avg_pool2d(x, 1).flatten(1), w1, b1)), w2, b2)

    def fused_fn():
        return classifier_head(x, w1, b1, w2, b2, layer["act"])

    return _time_pair(timer, torch_fn, fused_fn, N, torch.contiguous_format)


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


# How each model row runs: ours = one mbv3::mobilenet_v3 call; ours_graph = that forward replayed
# from a CUDA graph (mbv3_fast.cuda_graph.capture); tv = torchvision eager; tv_compile /
# tv_compile_ro = torch.compile(tv) in the default mode / mode="reduce-overhead".  All
# channels_last (model and input), eval, no_grad.
MODEL_MODES = ("ours", "ours_graph", "tv", "tv_compile", "tv_compile_ro")
CUDA_ONLY_MODES = {"ours_graph", "tv_compile", "tv_compile_ro"}
COMPILE_MIN_LEFT_S = 60  # a torch.compile row is not started with less budget left than this


def _models(arch, dtype, dev):
    """-> (torchvision model, ours), same random weights, channels_last, eval."""
    import torch
    import torchvision
    import mbv3_fast
    from mbv3_fast.testing import realistic
    torch.manual_seed(0)
    tv = realistic(getattr(torchvision.models, f"mobilenet_v3_{arch}")(), seed=0).eval()
    ours = mbv3_fast.from_torchvision(copy.deepcopy(tv)).eval()
    return tuple(m.to(dev, dtype, memory_format=torch.channels_last) for m in (tv, ours))


def _model_fn(mode, tv, ours, x):
    """-> a zero-argument forward for ``mode`` (compiled / captured here, warmed up)."""
    import torch
    from mbv3_fast import cuda_graph
    if mode == "ours":
        return lambda: ours(x)
    if mode == "ours_graph":
        run = cuda_graph.capture(ours, x)
        return lambda: run(x)
    if mode == "tv":
        return lambda: tv(x)
    # a fresh dynamo cache per row: past its recompile limit (8) dynamo would silently run the
    # shared torchvision forward eagerly, and the row would time eager under a compile label
    torch._dynamo.reset()
    cm = torch.compile(tv, mode="reduce-overhead" if mode == "tv_compile_ro" else None)
    for _ in range(3):  # compile, then (reduce-overhead) record the graph
        cm(x)
    return lambda: cm(x)


def bench_model(timer, arch, N, dtype, mode, dev, cache):
    """One (model, batch, dtype, mode) row: ms, setup seconds (compile / capture), agreement
    with torchvision eager.  ``cache`` keeps the models and reference per (arch, N, dtype)."""
    import torch
    key = (arch, N, dtype)
    if key not in cache:
        cache.clear()  # one configuration's models on the device at a time
        tv, ours = _models(arch, dtype, dev)
        x = torch.randn(N, 3, 224, 224, device=dev, dtype=dtype).contiguous(
            memory_format=torch.channels_last)
        with torch.no_grad():
            cache[key] = (tv, ours, x, tv(x).float())
    tv, ours, x, ref = cache[key]
    with torch.no_grad():
        t0 = time.perf_counter()
        fn = _model_fn(mode, tv, ours, x)
        setup_s = time.perf_counter() - t0
        y = fn().float()
        res = dict(ms=timer.gpu_ms(fn), setup_s=round(setup_s, 2),
                   max_abs_diff_vs_tv=(y - ref).abs().max().item(),
                   logits_scale=ref.abs().max().item(),
                   top1_agree=float((y.argmax(1) == ref.argmax(1)).float().mean().item()))
    if mode.startswith("ours"):
        res["fused_status"] = ours.fused_status
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


def fmt_markdown(result):
    """The one table README takes: every model row (ms per forward, each mode) and the summed
    per-layer rows (fused vs cuDNN + unfused ops)."""
    cols = " | ".join(f"{m} ms" for m in MODEL_MODES)
    lines = [f"| what | batch | dtype | layout | {cols} | speedup vs tv |",
             "|---|---|---|---|" + "---|" * (len(MODEL_MODES) + 1)]
    cell = lambda r, m: f"{r[m]:.3f}" if isinstance(r.get(m), float) else "–"  # noqa: E731
    by_cfg = {}
    for r in result.get("model_rows", []):
        by_cfg.setdefault((r["layer"], r["batch"], r["dtype"]), {})[r["mode"]] = r.get("ms")
    for (name, N, dt), ms in by_cfg.items():
        best = min((v for m, v in ms.items() if m.startswith("ours") and v), default=None)
        sp = f"{ms['tv'] / best:.2f}x" if best and ms.get("tv") else "–"
        lines.append(f"| {name} | {N} | {dt} | channels_last | "
                     f"{' | '.join(cell(ms, m) for m in MODEL_MODES)} | {sp} |")
    for r in result.get("sums", []):
        ms = dict(ours=r["fused_ms"], tv=r["torch_ms"])
        lines.append(f"| {r['layer']} | {r['batch']} | {r['dtype']} | {r['fmt']} | "
                     f"{' | '.join(cell(ms, m) for m in MODEL_MODES)} | {r['torch_ms'] / r['fused_ms']:.2f}x |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(REPO, "bench", "results", "gpu_check.json"))
    ap.add_argument("--no-build", action="store_true", help="never run pip install")
    ap.add_argument("--skip-tests", action="store_true", help="skip the pytest correctness run")
    ap.add_argument("--no-nchw", action="store_true", help="skip the NCHW timings")
    ap.add_argument("--quick", action="store_true", help="batch 1 and 32 only")
    ap.add_argument("--budget-s", type=float, default=450.0,
                    help="no phase runs past this many seconds since start (default 450)")
    ap.add_argument("--phase-s", default="",
                    help=f"per-phase budgets, e.g. tests=60,models=200 (defaults {PHASE_S})")
    ap.add_argument("--dry-run", action="store_true",
                    help="exercise this script without a GPU: CPU tensors, TRITON_INTERPRET=1 "
                         "(set it yourself), tiny shapes, no build/tests, fake timings")
    ap.add_argument("--compile-only", action="store_true",
                    help="compile every kernel for sm_90 and sm_80 without a GPU and check "
                         "registers / spills / vectorisation (exit 0 when all pass)")
    ap.add_argument("--compile-out", default=os.path.join(REPO, "bench", "results", "gpu_compile.json"))
    ap.add_argument("--archs", default="90,80", help="--compile-only targets")
    ap.add_argument("--variants", default="large,small", help="--compile-only models")
    ap.add_argument("--batches", default="1,32,256", help="--compile-only batch sizes")
    ap.add_argument("--dtypes", default="fp32,fp16,bf16", help="--compile-only dtypes")
    ap.add_argument("--layouts", default="channels_last,nchw", help="--compile-only layouts")
    ap.add_argument("--verbose", action="store_true", help="--compile-only: log each new kernel")
    ap.add_argument("--jobs", type=int, default=min(8, os.cpu_count() or 1),
                    help="--compile-only: compile in this many forked processes (default: CPUs, <= 8)")
    args = ap.parse_args(argv)
    t_start = time.time()

    import torch
    if args.compile_only:
        return 0 if compile_only_main(args) else 1
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

    # phase 1: the compile check, full sm_90 grid on every CPU, before any launch (it also
    # leaves the compiled kernels in TRITON_CACHE_DIR, where the timing phases find them)
    t_c = time.time()
    c_ok, c_res = compile_check(archs={90: ARCHS[90]}, jobs=os.cpu_count() or 1)
    result["compile_check"] = dict(ok=c_ok, seconds=round(time.time() - t_c, 1),
                                   unique_kernels=c_res["unique_kernels"],
                                   summary=c_res["summary"], failures=c_res["failures"][:20])
    log(fmt_compile_table(c_res))
    write(args.out, result)

    if not args.skip_tests:
        result["tests"] = run_tests(timeout=phase_left(args, t_start, "tests"))
        write(args.out, result)
    result["torch_ops_routing"] = check_torch_ops_routing(K, dev)
    log(f"[routing] {result['torch_ops_routing']}")

    batches = [1, 32] if args.quick else [1, 32, 256]
    dtypes = ("fp16", "fp32", "bf16")  # priority order: a phase's budget cuts the tail
    bench_models(args, result, dev, Timer(time.time() + phase_left(args, t_start, "models")),
                 ("large", "small"), batches, dtypes)
    bench_layers(args, result, K, dev, Timer(time.time() + phase_left(args, t_start, "layers")),
                 mbv3_large_layers(), batches, [] if args.no_nchw else [32], dtypes)
    bad = [r for r in result["rows"] + result["model_rows"]
           if "error" in r or not r.get("output_format_ok", True)]
    if bad:
        log(f"[warn] {len(bad)} rows with errors or wrong output memory format")
    result["total_seconds"] = round(time.time() - t_start, 1)
    write(args.out, result)
    log("\n" + fmt_markdown(result))
    tests_rc = result.get("tests", {}).get("rc", 0)
    log(f"[done] {result['total_seconds']} s; tests rc={tests_rc}; JSON -> {args.out}")
    c_ok = result["compile_check"]["ok"]
    return 0 if tests_rc == 0 and c_ok and not bad else 1


PHASE_S = dict(tests=120, models=120, layers=90)  # default per-phase budgets (s), --phase-s


def phase_left(args, t_start, phase):
    """Seconds the phase may take: its budget, cut to what is left of --budget-s."""
    budgets = dict(PHASE_S, **dict(kv.split("=") for kv in filter(None, args.phase_s.split(","))))
    return max(0.0, min(float(budgets[phase]), t_start + args.budget_s - time.time()))


def _run_phase(args, result, name, items, timer):
    """Rows of one timing phase, in ``items`` order, until its deadline; result[name] grows
    and the JSON is rewritten (at most every 5 s) as it goes."""
    rows, t0, last = result.setdefault(name, []), time.time(), 0.0
    for i, (row, call) in enumerate(items):
        if time.time() > timer.deadline:
            log(f"[time] {name}: budget reached, {len(items) - i} rows skipped")
            break
        try:
            row.update(call())
        except Exception as e:  # keep going; report the failure
            row["error"] = f"{type(e).__name__}: {e}"[:500]
        rows.append(row)
        if time.time() - last > 5:
            write(args.out, result)
            last = time.time()
    result.setdefault("phases", {})[name] = dict(seconds=round(time.time() - t0, 1),
                                                 rows=len(rows), skipped=len(items) - len(rows))
    write(args.out, result)


def bench_models(args, result, dev, timer, archs, batches, dtypes, modes=MODEL_MODES):
    """Whole-model rows: the cheap modes for every configuration first, then torch.compile
    (tens of seconds each) in priority order (large before small, batch 256 and 1 first)."""
    import torch
    dts = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    order = sorted(batches, key=lambda n: (n != 256, n != 1, n))
    cfgs = [(a, N, dt) for N in order for dt in dtypes for a in archs]
    slow = [m for m in modes if m.startswith("tv_compile")]
    plan = [(c, m) for c in cfgs for m in modes if m not in slow] + [(c, m) for c in cfgs for m in slow]
    cache = {}

    def row(a, N, dt, m):
        if dev.type != "cuda" and m in CUDA_ONLY_MODES:
            return dict(skipped="needs CUDA")
        if m in slow and timer.deadline - time.time() < COMPILE_MIN_LEFT_S:
            return dict(skipped=f"less than {COMPILE_MIN_LEFT_S} s of the phase left")
        return bench_model(timer, a, N, dts[dt], m, dev, cache)

    items = [(dict(kind="model", layer=f"mobilenet_v3_{a}", batch=N, dtype=dt, mode=m,
                   fmt="channels_last"), lambda a=a, N=N, dt=dt, m=m: row(a, N, dt, m))
             for (a, N, dt), m in plan]
    _run_phase(args, result, "model_rows", items, timer)
    cache.clear()


LAYER_BENCHES = dict(stem=bench_stem, dw=bench_dw, se=bench_se, pw=bench_pw, head=bench_head)


def bench_layers(args, result, K, dev, timer, layers, batches, nchw_batches, dtypes):
    """Every fused layer of MobileNetV3-Large vs cuDNN + unfused PyTorch ops, channels_last at
    every batch, NCHW at ``nchw_batches``; a repeated identical layer reuses its numbers."""
    import torch
    dts = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    kinds = [(kind, layers[kind], fn) for kind, fn in LAYER_BENCHES.items()]
    plan = [(kind, fn, layer, N, dt, "channels_last")
            for N in batches for dt in dtypes for kind, ls, fn in kinds for layer in ls]
    plan += [(kind, fn, layer, N, dt, "nchw") for N in nchw_batches for dt in dtypes
             for kind, ls, fn in kinds for layer in ls]
    cache = {}

    def row(kind, fn, layer, N, dt, fmt):
        key = (kind, tuple(sorted((k, v) for k, v in layer.items() if k != "name")), N, dt, fmt)
        if key in cache:
            return dict(cache[key], repeat_of_previous=True)
        cache[key] = fn(timer, K, layer, N, dts[dt], fmt, dev)
        if dev.type == "cuda":
            torch.cuda.empty_cache()
        return cache[key]

    items = [(dict(kind=p[0], layer=p[2]["name"], batch=p[3], dtype=p[4], fmt=p[5]),
              lambda p=p: row(*p)) for p in plan]
    _run_phase(args, result, "rows", items, timer)
    sums = []  # summed rows per (kind, batch, dtype, fmt)
    for kind, _, _ in kinds:
        for fmt in ("channels_last", "nchw"):
            for N in sorted(set(batches) | set(nchw_batches)):
                for dt in dtypes:
                    sel = [r for r in result["rows"] if r["kind"] == kind and r["batch"] == N
                           and r["dtype"] == dt and r["fmt"] == fmt and "error" not in r]
                    if sel:
                        sums.append(dict(kind=kind, layer=f"SUM {kind} ({len(sel)} layers)", batch=N,
                                         dtype=dt, fmt=fmt, torch_ms=sum(r["torch_ms"] for r in sel),
                                         fused_ms=sum(r["fused_ms"] for r in sel)))
    result["sums"] = sums


class _FakeTimer:
    """--dry-run: one call, wall time, no CUDA."""
    deadline = float("inf")

    def gpu_ms(self, fn):
        t0 = time.perf_counter()
        fn()
        return (time.perf_counter() - t0) * 1e3

    loop_ms = gpu_ms


def dry_run(args):
    """Every phase's code on the CPU (Triton interpreter, tiny layers, one model config, fake
    timings), so the device script does not rot between GPU runs."""
    import torch
    if os.environ.get("TRITON_INTERPRET", "0") != "1":
        log("gpu_check --dry-run: set TRITON_INTERPRET=1 (CPU tensors through Triton's interpreter)")
        return 2
    if REPO not in sys.path:
        sys.path.insert(0, REPO)  # this checkout's package (nothing is built or installed here)
    K = importlib.import_module("mbv3_fast.kernels")
    L = mbv3_large_layers()
    # one layer of each kind, tiny; the depthwise one twice (the repeated-layer path)
    pw_res = [p for p in L["pw"] if p["res"]][0]
    layers = dict(stem=[dict(L["stem"][0], H=16)], dw=[dict(L["dw"][-1], C=24, H=8)] * 2,
                  se=[dict(L["se"][0], C=24, S=8, H=7)],
                  pw=[dict(L["pw"][1], Cin=16, Cout=24, H=8), dict(pw_res, Cin=24, Cout=24, H=8)],
                  head=[dict(L["head"][0], C=24, H=3, hidden=32, classes=10)])
    cpu = torch.device("cpu")
    result = dict(device="dry-run (CPU, Triton interpreter)", dry_run=True,
                  torch=torch.__version__, routing=check_torch_ops_routing(K, cpu))
    # the model rows run on the CPU (C++ ops, float32); the CUDA-only modes are recorded skipped
    bench_models(args, result, cpu, _FakeTimer(), ("small",), [1], ("fp32",))
    bench_layers(args, result, K, cpu, _FakeTimer(), layers, [1],
                 [] if args.no_nchw else [2], ("fp32", "bf16"))
    write(args.out, result)
    log("\n" + fmt_markdown(result))
    log(f"[done] dry run; JSON -> {args.out}")
    return 0


# ----------------------------------------------------------------------------------------------
# --compile-only: every Triton kernel of the CUDA path compiled for sm_90 / sm_80 without a GPU
# ----------------------------------------------------------------------------------------------
#
# How: a stand-in Triton driver (a CudaDriver subclass that reports a fixed GPUTarget and never
# touches libcuda) and the kernels' JIT run(..., warmup=True), which compiles and does not
# launch.  The wrappers in mbv3_fast/kernels/*.py run unchanged on *meta* tensors (shapes and
# strides, no storage) inside mbv3_fast.kernels._utils.compile_only(hook, sms): their one launch
# seam, _utils.launch(), hands the exact (kernel, grid, args, meta) to the hook, which swaps each
# tensor for a tensor-like stand-in (dtype, shape, stride, a 16-byte-aligned data_ptr, as a
# caching allocator gives).  Pass 1 runs every wrapper and computes each launch's Triton cache
# key (the key JITFunction.run looks its compiled kernel up by): many layer configurations give
# the same key, and each key is compiled once, in pass 2, by `--jobs` forked processes (run(...,
# warmup=True), which compiles without launching).  TRITON_CACHE_DIR is a fresh temporary
# directory, so nothing is reused between runs.  Registers / stack / local / shared memory come
# from cuobjdump --dump-resource-usage of the cubin (a stack frame or local memory counts
# as a spill: these kernels have no local arrays or calls),
# vectorisation from the PTX (ld.global.v2/v4, st.global.v2/v4).

ARCHS = {90: 132, 80: 108}  # compute capability -> SM count of the target (H100/H200, A100)
REG_BUDGET = 128  # memory-bound kernels: depthwise, SE, pooling / head
MEMORY_BOUND = {"_dwconv_bn_act_kernel", "_se_pool_fc1_kernel", "_se_fc2_kernel",
                "_se_mul_kernel", "_head_pool_kernel", "_head_linear_kernel"}
# kernel name -> measured reason it may exceed REG_BUDGET (none today).
REG_EXCEPTIONS = {}


def _stand_in_driver(arch_holder):
    from triton.backends.compiler import GPUTarget
    from triton.backends.nvidia.driver import CudaDriver

    class StandInDriver(CudaDriver):
        def __init__(self):  # no CudaUtils: it needs libcuda, and nothing is launched
            self.utils = None
            self.launcher_cls = None
            # the device index is the arch, so Triton keeps one kernel cache per target
            self.get_current_device = lambda: arch_holder[0]
            self.get_current_stream = lambda device=None: 0
            self.get_device_capability = lambda device=None: divmod(arch_holder[0], 10)
            self.set_current_device = lambda device: None

        def get_current_target(self):
            return GPUTarget("cuda", arch_holder[0], 32)

        def get_active_torch_device(self):
            import torch
            return torch.device("meta")

    return StandInDriver()


class _TensorStandIn:
    """What Triton's binder reads of a CUDA tensor: dtype, shape, stride(), data_ptr()."""

    def __init__(self, t):
        self.dtype, self.shape, self._stride = t.dtype, tuple(t.shape), t.stride()

    def data_ptr(self):
        return 1 << 24  # aligned like a caching-allocator block

    def stride(self, *dim):
        return self._stride[dim[0]] if dim else self._stride


def compile_configs(variants=("large", "small"), batches=(1, 32, 256), dtypes=None,
                    layouts=("channels_last", "nchw")):
    """Yield (label, fn) for every layer call of the model's CUDA path (and the ops' other
    kernels: the full se op) over the configuration grid; fn(device='meta') calls the real
    wrapper."""
    import torch
    import mbv3_fast.testing as S
    from mbv3_fast.kernels.classifier_head import classifier_head
    from mbv3_fast.kernels.conv_bn_act import conv_bn_act
    from mbv3_fast.kernels.dwconv_bn_act import dwconv_bn_act
    from mbv3_fast.kernels.pwconv_bn_act import pwconv_bn_act
    from mbv3_fast.kernels.se import se, se_scale
    dtypes = dtypes or {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    m = "meta"

    def t(*shape, dt, cl=False):
        x = torch.empty(shape, device=m, dtype=dt)
        return x.to(memory_format=torch.channels_last) if cl and len(shape) == 4 else x

    for v in variants:
        ses = {(C, H): Sq for C, Sq, H, W in S.se_layers(v)}
        for N in batches:
            for dn, dt in dtypes.items():
                for lay in layouts:
                    cl = lay == "channels_last"
                    tag = f"{v} N={N} {dn} {lay}"
                    for Cin, Cout, H, W, k, s, p, act in S.stem_layers(v):
                        yield (f"{tag} stem {Cin}->{Cout}@{H}", lambda Cin=Cin, Cout=Cout, H=H, W=W, k=k, s=s, p=p, act=act, dt=dt, cl=cl:
                               conv_bn_act(t(N, Cin, H, W, dt=dt, cl=cl), t(Cout, Cin, k, k, dt=dt),
                                           t(Cout, dt=dt), s, p, act))
                    for C, H, W, k, s, p, d, act in S.depthwise_layers(v):
                        yield (f"{tag} dw {C}@{H} k{k}s{s}", lambda C=C, H=H, W=W, k=k, s=s, p=p, d=d, act=act, dt=dt, cl=cl:
                               dwconv_bn_act(t(N, C, H, W, dt=dt, cl=cl), t(C, 1, k, k, dt=dt),
                                             t(C, dt=dt), s, p, d, act))
                    for Cin, Cout, H, W, act, res in S.pointwise_layers(v):
                        sq = act == "none" and (Cin, H) in ses  # project conv after an SE
                        yield (f"{tag} pw {Cin}->{Cout}@{H}{' res' if res else ''}{' se' if sq else ''}",
                               lambda Cin=Cin, Cout=Cout, H=H, W=W, act=act, res=res, sq=sq, dt=dt, cl=cl:
                               pwconv_bn_act(t(N, Cin, H, W, dt=dt, cl=cl), t(Cout, Cin, 1, 1, dt=dt),
                                             t(Cout, dt=dt), act,
                                             t(N, Cout, H, W, dt=dt, cl=cl) if res else None,
                                             t(N, Cin, dt=dt) if sq else None))
                    for C, Sq, H, W in S.se_layers(v):
                        for op in (se_scale, se):
                            yield (f"{tag} {op.__name__} {C}/{Sq}@{H}", lambda C=C, Sq=Sq, H=H, W=W, op=op, dt=dt, cl=cl:
                                   op(t(N, C, H, W, dt=dt, cl=cl), t(Sq, C, 1, 1, dt=dt), t(Sq, dt=dt),
                                      t(C, Sq, 1, 1, dt=dt), t(C, dt=dt)))
                    for C, H, W, hid, cls, act in S.head_layers(v):
                        yield (f"{tag} head {C}@{H}", lambda C=C, H=H, W=W, hid=hid, cls=cls, act=act, dt=dt, cl=cl:
                               classifier_head(t(N, C, H, W, dt=dt, cl=cl), t(hid, C, dt=dt),
                                               t(hid, dt=dt), t(cls, hid, dt=dt), t(cls, dt=dt), act))


def _resources(compiled, arch, tmp):
    """-> dict(regs, stack, local, shared, spill_bytes, ld_v, st_v) of one compiled kernel."""
    import re
    import triton
    bindir = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin")
    cubin = os.path.join(tmp, f"k{os.getpid()}_{id(compiled)}.cubin")  # unique across workers
    with open(cubin, "wb") as f:
        f.write(compiled.asm["cubin"])
    out = subprocess.run([os.path.join(bindir, "cuobjdump"), "--dump-resource-usage", cubin],
                         capture_output=True, text=True, check=True).stdout
    m = re.search(r"REG:(\d+) STACK:(\d+) SHARED:(\d+) LOCAL:(\d+)", out)
    regs, stack, shared, local = map(int, m.groups())
    ptx = compiled.asm["ptx"]
    return dict(regs=regs, stack=stack, local=local,
                shared=max(shared, compiled.metadata.shared),
                spill_bytes=stack + local,  # ptxas -v agrees: stack frame = spill stores here
                ld_v4=ptx.count("ld.global.v4") + ptx.count("ld.global.nc.v4"),
                ld_v2=len(re.findall(r"ld\.global(\.\w+)*\.v2", ptx)),
                ld_scalar=len(re.findall(r"ld\.global(\.(?!v[24])\w+)*\s", ptx)),
                st_v4=ptx.count("st.global.v4"),
                st_v2=len(re.findall(r"st\.global(\.\w+)*\.v2", ptx)),
                st_scalar=len(re.findall(r"st\.global(\.(?!v[24])\w+)*\s", ptx)))


def _cache_key(kernel, device, args, meta):
    """Triton's own in-memory cache key of this launch, as JITFunction.run computes it: two
    launches with the same key run the same compiled kernel, so each key is compiled once."""
    from triton import knobs
    from triton.runtime.jit import compute_cache_key
    kw = dict(meta, debug=meta.get("debug", kernel.debug) or knobs.runtime.debug,
              instrumentation_mode=knobs.compilation.instrumentation_mode)
    _, key_cache, _, _, binder = kernel.device_caches[device]
    _, specialization, options = binder(*args, **kw)
    return compute_cache_key(key_cache, specialization, options)


_UNIQUE = []  # (arch, kernel, grid, args, meta, label) per key; the pool's workers fork it


def _compile_one(i):
    """Compile _UNIQUE[i] for its arch -> dict(kernel record) or dict(error=...)."""
    import triton
    arch, kernel, grid, args, meta, label, key, tmp = _UNIQUE[i]
    triton.runtime.driver.set_active(_stand_in_driver([arch]))
    try:
        ck = kernel.run(*args, grid=grid, warmup=True, **meta)
        # the dedupe is only right if Triton filed the kernel under the key we computed
        assert key in kernel.device_caches[arch][0], "cache key mismatch"
        return dict(arch=arch, kernel=kernel.fn.__name__, meta=dict(meta), grid=list(grid),
                    hash=ck.hash, first_config=label, **_resources(ck, arch, tmp))
    except Exception as e:  # a compile error: record, keep going
        return dict(arch=arch, config=label, error=f"{type(e).__name__}: {e}"[:2000])


def compile_check(archs=ARCHS, out=None, verbose=False, jobs=1, **grid_kw):
    """Compile every configuration; -> (ok, result dict).  Fails on a compile error, a spill,
    or a memory-bound kernel above REG_BUDGET (unless in REG_EXCEPTIONS).  Pass 1 runs every
    wrapper and keeps one launch per Triton cache key; pass 2 compiles those (``jobs`` forked
    processes)."""
    import multiprocessing
    import tempfile
    tmp = tempfile.mkdtemp(prefix="mbv3_gpu_compile_")
    os.environ["TRITON_CACHE_DIR"] = os.path.join(tmp, "triton_cache")  # fresh: no stale kernels
    import triton
    if REPO not in sys.path:
        sys.path.insert(0, REPO)  # this checkout's package, not another install
    from mbv3_fast.kernels import _utils
    arch_holder = [90]
    prev_driver = triton.runtime.driver._active  # None without a GPU (no driver is active)
    triton.runtime.driver.set_active(_stand_in_driver(arch_holder))
    keys, configs, errors = {}, [], []
    t0 = time.time()
    current = {}

    def hook(kernel, grid, args, meta):
        a = [_TensorStandIn(x) if hasattr(x, "data_ptr") and hasattr(x, "dtype") else x for x in args]
        key = _cache_key(kernel, arch_holder[0], a, meta)
        if (arch_holder[0], kernel.fn.__name__, key) not in keys:
            keys[(arch_holder[0], kernel.fn.__name__, key)] = len(_UNIQUE)
            _UNIQUE.append((arch_holder[0], kernel, grid, a, meta, current["label"], key, tmp))
        configs.append(dict(arch=arch_holder[0], config=current["label"],
                            kernel=kernel.fn.__name__,
                            unique=keys[(arch_holder[0], kernel.fn.__name__, key)]))

    del _UNIQUE[:]
    try:
        for arch, sms in archs.items():
            arch_holder[0] = arch
            with _utils.compile_only(hook, sms):
                for label, fn in compile_configs(**grid_kw):
                    current["label"] = label
                    try:
                        fn()
                    except Exception as e:  # a wrapper / launch error: record, keep going
                        errors.append(dict(arch=arch, config=label, error=f"{type(e).__name__}: {e}"[:2000]))
        t_enum = time.time() - t0
        log(f"[compile] {len(configs)} launches -> {len(_UNIQUE)} distinct Triton cache keys "
            f"({t_enum:.1f} s); compiling with {jobs} process(es)")
        if jobs > 1:
            with multiprocessing.get_context("fork").Pool(jobs) as pool:
                compiled = pool.map(_compile_one, range(len(_UNIQUE)), chunksize=1)
        else:
            compiled = [_compile_one(i) for i in range(len(_UNIQUE))]
    finally:
        triton.runtime.driver.set_active(prev_driver)
    for c in configs:  # each launch -> the hash of the kernel it runs (None: compile error)
        c["hash"] = compiled[c.pop("unique")].get("hash")
    errors += [c for c in compiled if "error" in c]
    kernels = [c for c in compiled if "error" not in c]
    if verbose:
        for k in kernels:
            log(f"[compile] sm_{k['arch']} {k['kernel']} {k['regs']} regs {k['first_config']}")
    failures = list(errors)
    for k in kernels:
        if k["spill_bytes"]:
            failures.append(dict(k, error=f"spills: stack {k['stack']} B, local {k['local']} B"))
        if k["kernel"] in MEMORY_BOUND and k["regs"] > REG_BUDGET and k["kernel"] not in REG_EXCEPTIONS:
            failures.append(dict(k, error=f"{k['regs']} registers > budget {REG_BUDGET}"))
    summary = {}
    for k in kernels:
        s = summary.setdefault((k["arch"], k["kernel"]), dict(variants=0, max_regs=0, max_spill=0,
                                                              max_shared=0, vec_ld=0, vec_st=0))
        s["variants"] += 1
        s["max_regs"] = max(s["max_regs"], k["regs"])
        s["max_spill"] = max(s["max_spill"], k["spill_bytes"])
        s["max_shared"] = max(s["max_shared"], k["shared"])
        s["vec_ld"] += (k["ld_v4"] + k["ld_v2"]) > 0
        s["vec_st"] += (k["st_v4"] + k["st_v2"]) > 0
    result = dict(seconds=round(time.time() - t0, 1), enumerate_seconds=round(t_enum, 1),
                  jobs=jobs, configs=len(configs), unique_kernels=len(kernels), kernels=kernels,
                  config_map=configs, errors=errors, failures=failures,
                  summary=[dict(arch=a, kernel=n, **s) for (a, n), s in sorted(summary.items())])
    if out:
        write(out, result)
    return not failures, result


def fmt_compile_table(result):
    lines = ["| kernel | arch | compiled variants | worst registers | spills (B) | max shared (B) "
             "| variants with vector loads / stores |",
             "|---|---|---|---|---|---|---|"]
    for s in result["summary"]:
        lines.append(f"| {s['kernel']} | sm_{s['arch']} | {s['variants']} | {s['max_regs']} | "
                     f"{s['max_spill']} | {s['max_shared']} | {s['vec_ld']} / {s['vec_st']} |")
    return "\n".join(lines)


def compile_only_main(args):
    log(f"[compile] sm_{', sm_'.join(map(str, ARCHS))}: every layer of Large/Small, batch 1/32/256, "
        "fp32/fp16/bf16, channels_last/NCHW")
    import torch
    dts = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    ok, res = compile_check(
        archs={a: ARCHS[a] for a in map(int, args.archs.split(","))}, out=args.compile_out,
        verbose=args.verbose, jobs=args.jobs, variants=args.variants.split(","),
        batches=tuple(map(int, args.batches.split(","))),
        dtypes={d: dts[d] for d in args.dtypes.split(",")}, layouts=args.layouts.split(","))
    log(fmt_compile_table(res))
    log(f"[compile] {res['configs']} launches, {res['unique_kernels']} distinct compiled kernels, "
        f"{res['seconds']} s; JSON -> {args.compile_out}")
    for f in res["failures"][:40]:
        log(f"[compile] FAIL {f.get('kernel', '')} sm_{f['arch']} {f.get('config', f.get('meta', ''))}: {f['error']}")
    return ok


def write(path, result):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
