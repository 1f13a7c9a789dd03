"""End-to-end MobileNetV3 eval latency: mbv3_fast fp32 (one op call per forward, and the
same ops called per layer from Python) vs torchvision eager (NCHW and
channels_last), torch.compile of torchvision (inductor) and ONNX Runtime (when importable),
and the peers in peers.py (OpenVINO fp32/bf16, ExecuTorch + XNNPACK fp32/int8, torchvision
bf16 eager autocast / torch.compile), batch 1 and 8, 1 and 2 threads, all in the same run.
A provider that cannot run here (package missing, CPU without native bf16) is skipped with
its reason (test_latency: a pytest skip; test_interleaved: a printed line).

Three kinds of tests:
  test_latency      one pytest-benchmark result per (arch, batch, threads, provider), grouped
                    per (arch, batch, threads); bench/summarize.py prints ratios (suite "model").
  test_interleaved  per (arch, batch, threads): rounds in which every provider runs a block of
                    calls in turn (order rotated per round); reports the median of the round
                    medians and each ratio to mbv3_fast (the numbers to quote on a noisy shared
                    machine: they compare providers under the same background load).  Printed (run with -s)
                    and written to bench/results/model_interleaved.json.

  test_agreement    each provider's output on one input vs torchvision fp32 (fp32: within
                    1e-3 of the largest logit; bf16/int8: finite and cosine > 0.9).

MBV3_BENCH_ARCHS=large,small picks the models (default large); MBV3_BENCH_ROUNDS the rounds
of the interleaved test (default 7); MBV3_BENCH_PROVIDERS=fused,openvino_fp32,... the
providers (default all; fused, the ratios' base, always runs).
"""
import copy
import json
import os
import statistics
import tempfile
import time
import warnings

import pytest
import torch
import torchvision

import mbv3_fast
import peers
from mbv3_fast import from_torchvision
from mbv3_fast.testing import realistic

ARCHS = [a for a in os.environ.get("MBV3_BENCH_ARCHS", "large").split(",") if a]
BATCHES = [1, 8]
THREADS = [1, 2]
# fused_per_op: the same fused ops called layer by layer from Python (the model's per-op path,
# which torch.compile graphs and the profiler use) instead of one mbv3::mobilenet_v3 call.
# fused_bf16: model.bfloat16() with a bf16 input; fused_autocast_bf16: the float32 model under
# torch.autocast("cpu", dtype=torch.bfloat16).  Both run everywhere (CPUs without native bf16
# widen to float32 in the kernels), so they are never skipped.
# fused_int8: mbv3_fast.quantization on torchvision's quantized model (x86 engine recipe, the
# same converted model as torchvision_int8, which runs it eagerly), one mbv3::q8_mobilenet_v3 call;
# fused_int8_per_op: the same model with one op call per layer from Python (one_call False).
PROVIDERS = ["fused", "fused_per_op", "fused_bf16", "fused_autocast_bf16", "fused_int8", "fused_int8_per_op",
             "torchvision_nchw", "torchvision_cl", "torchvision_int8", "torchvision_compile", "onnxruntime", *peers.PEERS]
OURS_PRECISION = {"fused_bf16": "bf16", "fused_autocast_bf16": "bf16", "fused_int8": "int8", "fused_int8_per_op": "int8",
                  "torchvision_int8": "int8"}
_picked = [p for p in os.environ.get("MBV3_BENCH_PROVIDERS", "").split(",") if p]
if _picked:
    assert set(_picked) <= set(PROVIDERS), f"unknown providers {set(_picked) - set(PROVIDERS)}"
    PROVIDERS = [p for p in PROVIDERS if p == "fused" or p in _picked]
ROUNDS = int(os.environ.get("MBV3_BENCH_ROUNDS", "7"))
# Pause before each provider's block: ONNX Runtime's pool threads spin for a while after a run
# and slowed whoever ran next at 2 threads (OpenVINO bf16 batch 8: 19.5 ms after it, 13.6 ms
# without ONNX Runtime in the run; Zen 4, 2026-12-07).
COOL_DOWN_S = float(os.environ.get("MBV3_BENCH_COOL_DOWN_S", "0.05"))
RESULTS = os.path.join(os.path.dirname(__file__), "results", "model_interleaved.json")

_models = {}
_quantized = {}
_compiled = {}
_ort = {}


def _torchvision_model(arch):
    """torchvision model with non-trivial BN statistics and logits of order 10 (as a trained
    model has: the agreement checks compare outputs of that size), shared by all providers."""
    if arch not in _models:
        torch.manual_seed(0)
        _models[arch] = realistic(getattr(torchvision.models, f"mobilenet_v3_{arch}")(), seed=0)
    return _models[arch]


def _torchvision_int8(arch):
    """torchvision's eager int8 model of the shared float model: its own recipe (fuse_model,
    the x86 engine's default qconfig, 4 random calibration batches, convert)."""
    if arch not in _quantized:
        import mbv3_fast.quantization as Q
        g = torch.Generator().manual_seed(0)
        batches = [torch.randn(2, 3, 224, 224, generator=g) for _ in range(4)]
        _quantized[arch] = Q.quantize_torchvision(_torchvision_model(arch), batches, "x86")
    torch.backends.quantized.engine = "x86"
    return _quantized[arch]


def _ort_session(arch, batch, threads):
    try:
        import onnxruntime as ort
    except ImportError:
        pytest.skip("onnxruntime is not importable")
    key = (arch, batch, threads)
    if key not in _ort:
        tv = _torchvision_model(arch)
        path = os.path.join(tempfile.mkdtemp(), f"mbv3_{arch}_b{batch}.onnx")
        x = torch.randn(batch, 3, 224, 224)
        try:
            with warnings.catch_warnings():  # the TorchScript exporter is deprecated, still fine
                warnings.simplefilter("ignore", DeprecationWarning)
                try:
                    torch.onnx.export(tv, (x,), path, dynamo=False, input_names=["x"])
                except TypeError:  # exporter without the dynamo switch
                    torch.onnx.export(tv, (x,), path, input_names=["x"])
        except Exception as e:  # e.g. the dynamo exporter without onnxscript installed
            pytest.skip(f"torch.onnx.export failed: {type(e).__name__}: {e}")
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        _ort[key] = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    return _ort[key]


def make_provider(provider, arch, batch, threads, x=None):
    """A no-argument callable running one batch (`x`, random by default) through `provider`."""
    tv = _torchvision_model(arch)
    if x is None:
        x = torch.randn(batch, 3, 224, 224)
    if provider in peers.PEERS:
        return peers.PEERS[provider][0](tv, arch, batch, threads, x)
    if provider == "fused":
        model = from_torchvision(copy.deepcopy(tv)).eval()
        assert model.fused_status == "fused", model.fused_status
        return lambda: model(x)
    if provider == "fused_bf16":
        model = from_torchvision(copy.deepcopy(tv)).eval().bfloat16()
        assert model.fused_status == "fused", model.fused_status
        xb = x.to(torch.bfloat16)
        return lambda: model(xb)
    if provider == "fused_autocast_bf16":
        model = from_torchvision(copy.deepcopy(tv)).eval()

        def run():
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return model(x)
        return run
    if provider in ("fused_int8", "fused_int8_per_op"):
        import mbv3_fast.quantization as Q
        model = Q.from_torchvision_quantized(_torchvision_int8(arch), "x86")
        model.one_call = provider == "fused_int8"
        return lambda: model(x)
    if provider == "torchvision_int8":
        model = _torchvision_int8(arch)
        return lambda: model(x)
    if provider == "fused_per_op":
        model = from_torchvision(copy.deepcopy(tv)).eval()
        plan = model._fused_plan()
        assert plan.ok, plan.reason
        return lambda: model._forward_fused(x, plan, one_call=False)
    if provider == "torchvision_nchw":
        return lambda: tv(x)
    if provider == "torchvision_cl":
        model = copy.deepcopy(tv).to(memory_format=torch.channels_last)
        xc = x.contiguous(memory_format=torch.channels_last)
        return lambda: model(xc)
    if provider == "torchvision_compile":
        if arch not in _compiled:
            _compiled[arch] = torch.compile(copy.deepcopy(tv))
        model = _compiled[arch]
        return lambda: model(x)
    if provider == "onnxruntime":
        sess = _ort_session(arch, batch, threads)
        feed = {"x": x.numpy()}
        return lambda: sess.run(None, feed)
    raise ValueError(provider)


def _agreement(provider, out, ref):
    """(ok, line): `out` of `provider` against torchvision fp32's `ref`."""
    out = peers.as_tensor(out)
    if out.shape != ref.shape or not torch.isfinite(out).all():
        return False, f"{provider}: shape {tuple(out.shape)} or non-finite values"
    diff = (out - ref).abs().max().item()
    rel = diff / ref.abs().max().item()
    cos = torch.nn.functional.cosine_similarity(out.flatten(), ref.flatten(), dim=0).item()
    top1 = (out.argmax(1) == ref.argmax(1)).float().mean().item()
    precision = OURS_PRECISION.get(provider) or peers.PEERS.get(provider, (None, "fp32"))[1]
    ok = rel < 1e-3 if precision == "fp32" else cos > 0.9
    return ok, (f"{provider} ({precision}): max abs diff {diff:.2e} ({rel:.1e} of max |logit|), "
                f"cosine {cos:.5f}, top-1 agreement {top1:.2f}")


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("threads", [1], indirect=True, ids=lambda t: f"t{t}")
@pytest.mark.parametrize("arch", ARCHS)
def test_agreement(arch, threads, provider):
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = _torchvision_model(arch)(x)
        ok, line = _agreement(provider, make_provider(provider, arch, 1, threads, x)(), ref)
    print(line)
    assert ok, line


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("threads", THREADS, indirect=True, ids=lambda t: f"t{t}")
@pytest.mark.parametrize("batch", BATCHES, ids=lambda b: f"b{b}")
@pytest.mark.parametrize("arch", ARCHS)
def test_latency(benchmark, record, arch, batch, threads, provider):
    benchmark.group = f"mobilenet_v3_{arch} b{batch} t{threads}"
    record(suite="model", config=f"{arch} b{batch} t{threads}", provider=provider,
           layer=f"mobilenet_v3_{arch}")
    with torch.no_grad():
        fn = make_provider(provider, arch, batch, threads)
        for _ in range(3):  # warm up (and compile)
            fn()
        benchmark.pedantic(fn, rounds=30 if batch == 1 else 10, iterations=1, warmup_rounds=2)


@pytest.mark.parametrize("threads", THREADS, indirect=True, ids=lambda t: f"t{t}")
@pytest.mark.parametrize("batch", BATCHES, ids=lambda b: f"b{b}")
@pytest.mark.parametrize("arch", ARCHS)
def test_interleaved(arch, batch, threads):
    fns = {}
    x = torch.randn(batch, 3, 224, 224)
    with torch.no_grad():
        ref = _torchvision_model(arch)(x)
        for p in PROVIDERS:
            try:
                fns[p] = make_provider(p, arch, batch, threads, x)
            except pytest.skip.Exception as e:
                print(f"[{arch} b{batch} t{threads}] {p} skipped: {e}")
                continue
            ok, line = _agreement(p, fns[p](), ref)  # a wrong answer is not worth timing
            print(f"[{arch} b{batch} t{threads}] {line}{'' if ok else '  -> dropped'}")
            if not ok:
                del fns[p]
        for fn in fns.values():
            for _ in range(3):
                fn()
        # Each provider runs `turns` calls in a row, then the next: one call each in turn would
        # let ONNX Runtime's spinning thread pool and our OpenMP pool take each other's core.
        turns = 20 if batch == 1 else 3
        names = list(fns)
        samples = {p: [] for p in names}  # per round: median of that round's turns
        cpu = {p: [] for p in names}  # the same for this thread's CPU time (1 thread only)
        for r in range(ROUNDS):
            per = {p: [] for p in names}
            per_cpu = {p: [] for p in names}
            k = r % len(names)
            for p in names[k:] + names[:k]:  # rotate who goes first
                time.sleep(COOL_DOWN_S)  # the last provider's pool threads stop spinning
                fns[p]()  # warm this provider's threads and caches again
                for t in range(turns):
                    c0 = time.thread_time()
                    t0 = time.perf_counter()
                    fns[p]()
                    per[p].append(time.perf_counter() - t0)
                    per_cpu[p].append(time.thread_time() - c0)
            for p in names:
                samples[p].append(statistics.median(per[p]))
                cpu[p].append(statistics.median(per_cpu[p]))
    med = {p: statistics.median(v) * 1e3 for p, v in samples.items()}
    spread = {p: (min(v) * 1e3, max(v) * 1e3) for p, v in samples.items()}
    # With one thread everything runs on this thread, so its CPU time is the work done, free
    # of the time other processes held the core (on a shared machine the steadier number).
    cpu_med = {p: statistics.median(v) * 1e3 for p, v in cpu.items()} if threads == 1 else None
    lines = [f"mobilenet_v3_{arch} batch {batch}, {threads} thread(s), {ROUNDS} rounds x {turns} "
             f"turns (median of round medians, ms; round-median range; x = provider / fused"
             f"{'; thread CPU ms, x' if cpu_med else ''})"]
    for p in names:
        line = (f"  {p:25s} {med[p]:8.2f}  [{spread[p][0]:.2f}-{spread[p][1]:.2f}]  "
                f"x{med[p] / med['fused']:.2f}")
        if cpu_med:
            line += f"   cpu {cpu_med[p]:7.2f}  x{cpu_med[p] / cpu_med['fused']:.2f}"
        lines.append(line)
    print("\n" + "\n".join(lines))
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    try:
        with open(RESULTS) as f:
            saved = json.load(f)
    except (OSError, ValueError):
        saved = {}
    saved[f"{arch} b{batch} t{threads}"] = {"median_ms": med, "round_range_ms": spread,
                                            "thread_cpu_median_ms": cpu_med,
                                            "rounds": ROUNDS, "turns": turns,
                                            "isa": mbv3_fast.get_cpu_isa(),
                                            "torch": torch.__version__, "time": time.time()}
    with open(RESULTS, "w") as f:
        json.dump(saved, f, indent=1)
