"""Fused depthwise conv + BN + activation vs PyTorch's unfused eval path, per MobileNetV3-Large
depthwise layer, batch 1.  `make bench` runs it; bench/summarize.py prints ratios and sums."""
import time

import pytest
import torch
import torch.nn.functional as F

from mbv3_fast.ops import fold_bn
from mbv3_fast.testing import depthwise_layers
from interleave import round_medians

LAYERS = depthwise_layers("large")
ACT = {"hardswish": F.hardswish, "relu": F.relu, "none": lambda t: t}


def make_layer(i, channels_last):
    c, h, w, k, s, p, d, act = LAYERS[i]
    x = torch.randn(1, c, h, w)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    conv = torch.nn.Conv2d(c, c, k, s, p, d, groups=c, bias=False)
    bn = torch.nn.BatchNorm2d(c, eps=1e-3).eval()
    with torch.no_grad():
        bn.running_mean.normal_(0, 0.3)
        bn.running_var.uniform_(0.5, 2)
    wf, bf = fold_bn(conv.weight, bn)
    # The layout the model keeps its folded weights in ([k, k, C] viewed as [C, 1, k, k]).
    wf = wf.permute(2, 3, 1, 0).contiguous().permute(3, 2, 0, 1)

    def unfused():
        return ACT[act](bn(conv(x)))

    # `.default`, the overload the model calls: through the OpOverloadPacket every call also
    # pays the packet's overload resolution (~0.1 us of the ~3 us fixed cost per call,
    # measured at 1 thread on a 16x4x4 input), which the model never does.
    op = torch.ops.mbv3.dwconv_bn_act.default

    def fused():
        return op(x, wf, bf, s, p, d, act)

    return {"unfused": unfused, "fused": fused}


@pytest.mark.parametrize("provider", ["unfused", "fused"])
@pytest.mark.parametrize("layer", range(len(LAYERS)), ids=lambda i: f"L{i:02d}")
@pytest.mark.parametrize("fmt", ["nhwc", "nchw"])
@pytest.mark.parametrize("threads", [1, 2], indirect=True, ids=lambda t: f"t{t}")
def test_dwconv_bn_act(benchmark, record, threads, fmt, layer, provider):
    c, h, w, k, s, p, d, act = LAYERS[layer]
    benchmark.group = f"dwconv {fmt} t{threads} L{layer:02d} C{c} {h}x{w} k{k}s{s} {act}"
    record(suite="dwconv_bn_act", config=f"{fmt} t{threads} b1", provider=provider, layer=layer)
    fn = make_layer(layer, fmt == "nhwc")[provider]
    with torch.no_grad():
        benchmark(fn)


def test_interleaved():
    """ours bf16 (the current path) vs ours fp32 vs PyTorch bf16 per Large depthwise layer,
    batch 1, 1 thread, NHWC.  Speed is printed, never asserted."""
    import os
    rounds = int(os.environ.get("MBV3_BENCH_ROUNDS", 7))
    calls = int(os.environ.get("MBV3_BENCH_CALLS", 40))
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    op = torch.ops.mbv3.dwconv_bn_act.default
    tot = {}
    print(f"\nisa {mbv3_isa()}; µs (thread time), median of {rounds} round medians of {calls} calls")
    print("layer  C    map      k s  | fp32   bf16  torch_bf16 | bf16/fp32")
    try:
        with torch.no_grad():
            for i, (c, h, w, k, s, p, d, act) in enumerate(LAYERS):
                g = torch.Generator().manual_seed(i)
                x = torch.randn(1, c, h, w, generator=g).contiguous(memory_format=torch.channels_last)
                wt = torch.randn(c, 1, k, k, generator=g) / k
                wt = wt.permute(2, 3, 1, 0).contiguous().permute(3, 2, 0, 1)
                b = torch.randn(c, generator=g)
                xb, wb = x.bfloat16(), wt.bfloat16()
                wref = wb.contiguous()
                tact = ACT[act]
                prov = {
                    "fp32": lambda: op(x, wt, b, s, p, d, act),
                    "bf16": lambda: op(xb, wb, b, s, p, d, act),
                    "torch_bf16": lambda: tact(F.conv2d(xb, wref, b.bfloat16(), s, p, d, c)),
                }
                r = {n: 1e6 * t for n, t in round_medians(prov, rounds, calls, time.thread_time).items()}
                for n, v in r.items():
                    tot[n] = tot.get(n, 0) + v
                print(f"L{i:02d} {c:4d} {h:3d}x{w:<3d}   {k} {s}  | {r['fp32']:6.1f} {r['bf16']:6.1f} "
                      f"{r['torch_bf16']:8.1f}   | {r['bf16'] / r['fp32']:.2f}")
        print(f"sum                  | {tot['fp32']:6.1f} {tot['bf16']:6.1f} {tot['torch_bf16']:8.1f}   "
              f"| {tot['bf16'] / tot['fp32']:.2f}")
    finally:
        torch.set_num_threads(before)


def mbv3_isa():
    import mbv3_fast
    return mbv3_fast.get_cpu_isa()
