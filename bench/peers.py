"""Peer engines for bench_model.py: OpenVINO (fp32, bf16), ExecuTorch + XNNPACK (fp32, int8)
and torchvision in bf16 (eager autocast, torch.compile).  Each builder returns a no-argument
callable running the prepared input, or calls pytest.skip with the reason (package missing,
CPU without native bf16) so that no provider drops out silently.  Engines are cached per
(arch, batch, threads); conversions that do not depend on threads per (arch, batch)."""
import copy

import numpy as np
import pytest
import torch

# provider -> (builder(tv, arch, batch, threads, x), precision); precision picks the agreement
# check in bench_model (fp32: close to torchvision; bf16/int8: correlated).
PEERS = {}


def _peer(name, precision):
    def register(fn):
        PEERS[name] = (fn, precision)
        return fn
    return register


def as_tensor(out):
    """A provider's output (tensor, list of tensors/arrays, OpenVINO result) as a float tensor."""
    if hasattr(out, "to_tuple"):  # OpenVINO's OVDict
        out = out.to_tuple()
    if isinstance(out, (list, tuple)):
        out = out[0]
    if isinstance(out, np.ndarray):
        out = torch.from_numpy(np.array(out))  # a copy: engines reuse their output buffers
    return out.detach().float()


def _import(name):
    try:
        return __import__(name, fromlist=["_"])
    except ImportError as e:
        pytest.skip(f"{name} is not importable ({e}); `make bench` installs it")


# ---- OpenVINO -------------------------------------------------------------------------------
_ov_models = {}  # (arch, batch) -> ov.Model
_ov_compiled = {}  # (arch, batch, threads, precision) -> compiled model


def _openvino(tv, arch, batch, threads, x, precision):
    ov = _import("openvino")
    core = ov.Core()
    caps = core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    # Without native bf16 OpenVINO quietly runs f32 for a bf16 hint: that is not a bf16 figure.
    if precision == "bf16" and "BF16" not in caps:
        pytest.skip(f"OpenVINO bf16: the CPU has no native bf16 (capabilities {caps}); "
                    "OpenVINO would run f32")
    if (arch, batch) not in _ov_models:
        ep = torch.export.export(tv, (torch.randn(batch, 3, 224, 224),))
        _ov_models[arch, batch] = ov.convert_model(ep)
    key = (arch, batch, threads, precision)
    if key not in _ov_compiled:
        _ov_compiled[key] = core.compile_model(_ov_models[arch, batch], "CPU", {
            "INFERENCE_PRECISION_HINT": precision, "INFERENCE_NUM_THREADS": threads,
            "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1})
    compiled = _ov_compiled[key]
    got = compiled.get_property("INFERENCE_PRECISION_HINT")
    if got != getattr(ov.Type, precision):  # e.g. f32 although bf16 was asked for
        pytest.skip(f"OpenVINO {precision}: the compiled model runs {got}")
    assert compiled.get_property("INFERENCE_NUM_THREADS") == threads
    request = compiled.create_infer_request()
    feed = {0: x.numpy()}
    return lambda: request.infer(feed, share_inputs=True)


@_peer("openvino_fp32", "fp32")
def openvino_fp32(tv, arch, batch, threads, x):
    return _openvino(tv, arch, batch, threads, x, "f32")


@_peer("openvino_bf16", "bf16")
def openvino_bf16(tv, arch, batch, threads, x):
    return _openvino(tv, arch, batch, threads, x, "bf16")


# ---- ExecuTorch + XNNPACK -------------------------------------------------------------------
_et_programs = {}  # (arch, batch, quantized) -> .pte bytes; lowering does not see threads
_et_loaded = {}  # (arch, batch, quantized) -> method loaded under the current threadpool
_et_pool = {"threads": None, "generation": 0}


def _et_program(tv, arch, batch, quantized):
    key = (arch, batch, quantized)
    if key in _et_programs:
        return _et_programs[key]
    _import("executorch")
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower
    example = (torch.randn(batch, 3, 224, 224),)
    model = tv
    if quantized:  # PT2E static quantization: int8 per-channel symmetric weights
        from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
            XNNPACKQuantizer, get_symmetric_quantization_config)
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
        quantizer = XNNPACKQuantizer().set_global(
            get_symmetric_quantization_config(is_per_channel=True))
        model = prepare_pt2e(torch.export.export(tv, example).module(), quantizer)
        g = torch.Generator().manual_seed(0)
        for _ in range(4):  # calibration: activation ranges from a few random batches
            model(torch.randn(batch, 3, 224, 224, generator=g))
        model = convert_pt2e(model)
    lowered = to_edge_transform_and_lower(torch.export.export(model, example),
                                          partitioner=[XnnpackPartitioner()])
    _et_programs[key] = lowered.to_executorch().buffer
    return _et_programs[key]


def _executorch(tv, arch, batch, threads, x, quantized):
    buffer = _et_program(tv, arch, batch, quantized)
    from executorch.extension.pybindings import portable_lib
    if _et_pool["threads"] != threads:
        # One global pool; loaded XNNPACK runtimes keep a pointer to the pool they were
        # loaded under, so a reset invalidates every method loaded before it.
        portable_lib._unsafe_reset_threadpool(threads)
        _et_pool["threads"] = threads
        _et_pool["generation"] += 1
        _et_loaded.clear()
    assert portable_lib._threadpool_get_thread_count() == threads
    key = (arch, batch, quantized)
    if key not in _et_loaded:
        _et_loaded[key] = portable_lib._load_for_executorch_from_buffer(buffer)
    forward = _et_loaded[key].forward
    generation = _et_pool["generation"]
    inputs = (x,)

    def run():
        if _et_pool["generation"] != generation:
            raise RuntimeError("ExecuTorch's threadpool was reset after this method was loaded")
        return forward(inputs)
    return run


@_peer("executorch_fp32", "fp32")
def executorch_fp32(tv, arch, batch, threads, x):
    return _executorch(tv, arch, batch, threads, x, quantized=False)


@_peer("executorch_int8", "int8")
def executorch_int8(tv, arch, batch, threads, x):
    return _executorch(tv, arch, batch, threads, x, quantized=True)


# ---- torchvision in bf16 --------------------------------------------------------------------
def _require_native_bf16():
    # Without AVX512-BF16/AMX (or oneDNN's AVX512 bf16 path) PyTorch's bf16 convolutions fall
    # back to a reference path some 300x slower than fp32: a figure of no use to compare.
    supported = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    if supported is not None and not supported():
        pytest.skip("PyTorch bf16: oneDNN has no bf16 path on this CPU "
                    f"(capability {torch.backends.cpu.get_cpu_capability()})")


@_peer("torchvision_autocast_bf16", "bf16")
def torchvision_autocast_bf16(tv, arch, batch, threads, x):
    _require_native_bf16()

    def run():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return tv(x)
    return run


_compiled_bf16 = {}  # arch -> torch.compile of the bf16 model


@_peer("torchvision_compile_bf16", "bf16")
def torchvision_compile_bf16(tv, arch, batch, threads, x):
    """bf16 weights and input (model.bfloat16()), as one deploys a bf16 model; autocast is the
    eager peer above."""
    _require_native_bf16()
    if arch not in _compiled_bf16:
        _compiled_bf16[arch] = torch.compile(copy.deepcopy(tv).bfloat16())
    model = _compiled_bf16[arch]
    xb = x.bfloat16()
    return lambda: model(xb)
