"""Band-fused expand + depthwise (torch.ops.mbv3.expand_dwconv_bn_act) vs the same two fused
ops back to back (pwconv_bn_act -> dwconv_bn_act) and vs PyTorch's unfused eval path
(conv1x1 -> BN -> act -> depthwise conv -> BN -> act modules), per MobileNetV3-Large block
with an expand conv, batch 1, channels_last, 1 and 2 threads.

Measured "warm" (pytest-benchmark's loop: the expanded tensor of the two-op path stays in L3
between calls), which understates the fusion's gain in a real forward, where the rest of the
network has evicted it; bench_blocks.py / bench_model.py show the end-to-end effect.
"""
import time

import pytest
import torch
from torch import nn

from mbv3_fast.ops import fold_bn, pack_pw_weight, pack_weight_k_pairs
from mbv3_fast.testing import expand_depthwise_layers
from interleave import round_medians

LAYERS = expand_depthwise_layers("large")
ACT = {"hardswish": nn.Hardswish, "relu": nn.ReLU}


def make(i):
    cin, ce, h, w, eact, k, s, p, d, act = LAYERS[i]
    g = torch.Generator().manual_seed(i)
    x = torch.randn(1, cin, h, w, generator=g).contiguous(memory_format=torch.channels_last)
    expand = nn.Sequential(nn.Conv2d(cin, ce, 1, bias=False), nn.BatchNorm2d(ce, eps=1e-3), ACT[eact]())
    dwm = nn.Sequential(nn.Conv2d(ce, ce, k, s, p, d, groups=ce, bias=False), nn.BatchNorm2d(ce, eps=1e-3), ACT[act]())
    unfused = nn.Sequential(expand, dwm).eval().to(memory_format=torch.channels_last)
    with torch.no_grad():
        for bn in (expand[1], dwm[1]):
            bn.running_mean.normal_(0, 0.3, generator=g)
            bn.running_var.uniform_(0.5, 2, generator=g)
        ew, eb = fold_bn(expand[0].weight, expand[1])
        dw, db = fold_bn(dwm[0].weight, dwm[1])
    ew = pack_pw_weight(ew)
    dw = dw.permute(2, 3, 1, 0).contiguous().permute(3, 2, 0, 1)  # the model's packed layout
    fused = torch.ops.mbv3.expand_dwconv_bn_act.default
    pw, dwop = torch.ops.mbv3.pwconv_bn_act.default, torch.ops.mbv3.dwconv_bn_act.default
    return {
        "unfused": lambda: unfused(x),
        "two_ops": lambda: dwop(pw(x, ew, eb, eact, None, None), dw, db, s, p, d, act),
        "fused": lambda: fused(x, ew, eb, eact, dw, db, s, p, d, act),
    }


@pytest.mark.parametrize("provider", ["unfused", "two_ops", "fused"])
@pytest.mark.parametrize("layer", range(len(LAYERS)), ids=lambda i: f"B{i + 1:02d}")
@pytest.mark.parametrize("threads", [1, 2], indirect=True, ids=lambda t: f"t{t}")
def test_expand_dwconv_bn_act(benchmark, record, threads, layer, provider):
    cin, ce, h, w, eact, k, s, p, d, act = LAYERS[layer]
    benchmark.group = f"expand_dw t{threads} B{layer + 1:02d} {cin}->{ce} {h}x{w} k{k}s{s}"
    record(suite="expand_dwconv_bn_act", config=f"nhwc t{threads} b1", provider=provider, layer=layer + 1)
    fn = make(layer)[provider]
    with torch.no_grad():
        benchmark(fn)


def test_interleaved():
    """ours bf16 (the current path) vs ours fp32 vs PyTorch bf16 (the unfused modules) per Large
    block, batch 1, 1 thread, NHWC.  Speed is printed, never asserted."""
    import os
    import mbv3_fast
    rounds = int(os.environ.get("MBV3_BENCH_ROUNDS", 7))
    calls = int(os.environ.get("MBV3_BENCH_CALLS", 40))
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    fused = torch.ops.mbv3.expand_dwconv_bn_act.default
    tot = {}
    print(f"\nisa {mbv3_fast.get_cpu_isa()}; µs (thread time), median of {rounds} round medians of {calls} calls")
    print("block  Cin->Ce  map      k s  | fp32   bf16  torch_bf16 | bf16/fp32")
    try:
        with torch.no_grad():
            for i, (cin, ce, h, w, eact, k, s, p, d, act) in enumerate(LAYERS):
                g = torch.Generator().manual_seed(i)
                x = torch.randn(1, cin, h, w, generator=g).contiguous(memory_format=torch.channels_last)
                ew = pack_pw_weight(torch.randn(ce, cin, 1, 1, generator=g) / cin ** 0.5)
                eb = torch.randn(ce, generator=g)
                dw = (torch.randn(ce, 1, k, k, generator=g) / k).permute(2, 3, 1, 0).contiguous().permute(3, 2, 0, 1)
                db = torch.randn(ce, generator=g)
                xb, dwb = x.bfloat16(), dw.bfloat16()
                w1 = torch.randn(ce, cin, 1, 1, generator=g) / cin ** 0.5
                # The model's bf16 packing for the ISA in force (K pairs on avx512_bf16).
                ewb = pack_weight_k_pairs(w1) if torch.ops.mbv3.cpu_isa_reads_k_pairs() else pack_pw_weight(w1).bfloat16()
                mods = nn.Sequential(nn.Conv2d(cin, ce, 1), ACT[eact](), nn.Conv2d(ce, ce, k, s, p, d, groups=ce),
                                     ACT[act]()).eval().bfloat16().to(memory_format=torch.channels_last)
                prov = {
                    "fp32": lambda: fused(x, ew, eb, eact, dw, db, s, p, d, act),
                    "bf16": lambda: fused(xb, ewb, eb, eact, dwb, db, s, p, d, act),
                    "torch_bf16": lambda: mods(xb),
                }
                r = {n: 1e6 * t for n, t in round_medians(prov, rounds, calls, time.thread_time).items()}
                for n, v in r.items():
                    tot[n] = tot.get(n, 0) + v
                print(f"B{i + 1:02d} {cin:4d}->{ce:<4d} {h:3d}x{w:<3d} {k} {s}  | {r['fp32']:6.1f} {r['bf16']:6.1f} "
                      f"{r['torch_bf16']:8.1f}   | {r['bf16'] / r['fp32']:.2f}")
        print(f"sum                        | {tot['fp32']:6.1f} {tot['bf16']:6.1f} {tot['torch_bf16']:8.1f}   "
              f"| {tot['bf16'] / tot['fp32']:.2f}")
    finally:
        torch.set_num_threads(before)
