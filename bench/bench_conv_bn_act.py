"""Fused stem (dense 3x3/s2 conv + BN + hardswish, 3 -> 16 channels) vs PyTorch's unfused eval
path, MobileNetV3-Large at batch 1 and 8.  The input is an NCHW image, as users pass them; the
fused op reads it in place and writes channels_last.  Baselines: torch.conv2d (BN folded, so the
baseline does no more arithmetic than we do) + hardswish on the NCHW input, and on a
channels_last copy made inside the timed call (the model's old stem), and on an input that is
already channels_last.  `make bench` runs it; bench/summarize.py prints ratios (suite
"conv_bn_act")."""
import pytest
import torch
import torch.nn.functional as F

from mbv3_fast.ops import fold_bn, pack_conv_weight
from mbv3_fast.testing import stem_layers

LAYERS = stem_layers("large")
ACT = {"hardswish": F.hardswish, "relu": F.relu, "none": lambda t: t}


def make_layer(i, batch):
    cin, cout, h, w, k, s, p, act = LAYERS[i]
    x = torch.randn(batch, cin, h, w)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    conv = torch.nn.Conv2d(cin, cout, k, s, p, bias=False)
    bn = torch.nn.BatchNorm2d(cout, eps=1e-3).eval()
    with torch.no_grad():
        bn.running_mean.normal_(0, 0.3)
        bn.running_var.uniform_(0.5, 2)
    wf, bf = fold_bn(conv.weight, bn)
    wp = pack_conv_weight(wf)  # the layout the model keeps its folded stem weight in
    a = ACT[act]

    return {
        "torch_nchw": lambda: a(F.conv2d(x, wf, bf, s, p)),
        "torch_cl_copy": lambda: a(F.conv2d(x.contiguous(memory_format=torch.channels_last), wf, bf, s, p)),
        "torch_cl_input": lambda: a(F.conv2d(x_cl, wf, bf, s, p)),
        "fused": lambda: torch.ops.mbv3.conv_bn_act(x, wp, bf, s, p, act),
    }


@pytest.mark.parametrize("provider", ["torch_nchw", "torch_cl_copy", "torch_cl_input", "fused"])
@pytest.mark.parametrize("layer", range(len(LAYERS)), ids=lambda i: f"L{i}")
@pytest.mark.parametrize("batch", [1, 8], ids=lambda b: f"b{b}")
@pytest.mark.parametrize("threads", [1, 2], indirect=True, ids=lambda t: f"t{t}")
def test_conv_bn_act(benchmark, record, threads, batch, layer, provider):
    cin, cout, h, w, k, s, p, act = LAYERS[layer]
    benchmark.group = f"stem t{threads} b{batch} Cin{cin} Cout{cout} {h}x{w} k{k}s{s} {act}"
    record(suite="conv_bn_act", config=f"nchw-in t{threads} b{batch}", provider=provider,
           layer=f"stem{layer}")
    fn = make_layer(layer, batch)[provider]
    with torch.no_grad():
        benchmark(fn)


def test_interleaved():
    """ours fp32 vs ours bf16 vs PyTorch bf16 (conv + activation) per stem layer, NCHW input and
    channels_last (the profile's and bench_model's input), batch 1, 1 thread.  Where the CPU has
    avx512_bf16, also bf16_widen: the avx512 path's widening kernel, which avx512_bf16 ran before
    its vdpbf16ps kernel (conv_bn_act_dp.h).  Speed is printed, never asserted."""
    import itertools
    import os
    import time

    import mbv3_fast
    from interleave import round_medians
    rounds = int(os.environ.get("MBV3_BENCH_ROUNDS", 7))
    calls = int(os.environ.get("MBV3_BENCH_CALLS", 40))
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    op = torch.ops.mbv3.conv_bn_act.default
    isa = mbv3_fast.get_cpu_isa()
    print(f"\nisa {isa}; µs (thread time), median of {rounds} round medians of {calls} calls")
    widen = isa == "avx512_bf16"

    def on_avx512(fn):  # the widening kernel, then back to the default path
        def call():
            mbv3_fast.set_cpu_isa("avx512")
            try:
                return fn()
            finally:
                mbv3_fast.set_cpu_isa(isa)
        return call

    print("layer Cin->Cout map     k s layout | fp32   bf16  torch_bf16 | bf16/fp32"
          + ("  bf16_widen  bf16/bf16_widen" if widen else ""))
    try:
        with torch.no_grad():
            for (i, (cin, cout, h, w, k, s, p, act)), fmt in itertools.product(enumerate(LAYERS), ("nchw", "nhwc")):
                g = torch.Generator().manual_seed(i)
                x = torch.randn(1, cin, h, w, generator=g)
                if fmt == "nhwc":
                    x = x.contiguous(memory_format=torch.channels_last)
                wf = torch.randn(cout, cin, k, k, generator=g) / (cin * k * k) ** 0.5
                bf = torch.randn(cout, generator=g)
                wp = pack_conv_weight(wf)
                xb, wpb, wb = x.bfloat16(), wp.bfloat16(), wf.bfloat16()
                a = ACT[act]
                prov = {
                    "fp32": lambda: op(x, wp, bf, s, p, act),
                    "bf16": lambda: op(xb, wpb, bf, s, p, act),
                    "torch_bf16": lambda: a(F.conv2d(xb, wb, bf.bfloat16(), s, p)),
                }
                if widen:
                    prov["bf16_widen"] = on_avx512(prov["bf16"])
                r = {n: 1e6 * t for n, t in round_medians(prov, rounds, calls, time.thread_time).items()}
                print(f"stem{i} {cin:3d}->{cout:<4d} {h}x{w} {k} {s} {fmt}   | {r['fp32']:6.1f} {r['bf16']:6.1f} "
                      f"{r['torch_bf16']:8.1f}   | {r['bf16'] / r['fp32']:.2f}"
                      + (f"  {r['bf16_widen']:10.1f}  {r['bf16'] / r['bf16_widen']:.2f}" if widen else ""))
    finally:
        torch.set_num_threads(before)
