"""Fused 1x1 conv + BN + activation (+ residual) vs PyTorch's unfused eval path, per
MobileNetV3-Large pointwise layer (expand, project, last conv), batch 1, channels_last.
`make bench` runs it; bench/summarize.py prints ratios and sums.  GFLOP/s (2 * M * Cin * Cout
per call, from the median) is stored in extra_info["gflops"].

Providers: unfused (PyTorch eval modules, float32), fused (float32), fused_bf16 (bf16, the
model's layout: K pairs, read by vdpbf16ps on avx512_bf16) and fused_bf16_widen (bf16 with
K-major weights: the widening kernel, what CPUs without AVX512_BF16 run).

test_interleaved_gflops (run with -s): the three fused providers in interleaved rounds per
layer, GFLOP/s from the median of round medians, against this core's peak (bench/peak.py).
"""

import pytest
import torch
import torch.nn.functional as F

from mbv3_fast.ops import fold_bn, pack_pw_weight, pack_weight_k_pairs
from mbv3_fast.testing import pointwise_layers
from interleave import round_medians

LAYERS = pointwise_layers("large")
ACT = {"hardswish": F.hardswish, "relu": F.relu, "none": lambda t: t}


def flops(layer):
    cin, cout, h, w, _, _ = LAYERS[layer]
    return 2 * h * w * cin * cout


def make_layer(i):
    cin, cout, h, w, act, res = LAYERS[i]
    x = torch.randn(1, cin, h, w).contiguous(memory_format=torch.channels_last)
    r = torch.randn(1, cout, h, w).contiguous(memory_format=torch.channels_last) if res else None
    conv = torch.nn.Conv2d(cin, cout, 1, bias=False)
    bn = torch.nn.BatchNorm2d(cout, eps=1e-3).eval()
    with torch.no_grad():
        bn.running_mean.normal_(0, 0.3)
        bn.running_var.uniform_(0.5, 2)
    wf, bf = fold_bn(conv.weight, bn)
    wf = pack_pw_weight(wf)  # the layout the model keeps ([Cin, Cout] viewed as [Cout, Cin, 1, 1])

    def unfused():
        y = ACT[act](bn(conv(x)))
        return y if r is None else y + r

    def fused():
        return torch.ops.mbv3.pwconv_bn_act(x, wf, bf, act, r, None)

    xb, rb = x.to(torch.bfloat16), None if r is None else r.to(torch.bfloat16)
    w_pairs, w_kmajor = pack_weight_k_pairs(wf), wf.to(torch.bfloat16)

    def fused_bf16():
        return torch.ops.mbv3.pwconv_bn_act(xb, w_pairs, bf, act, rb, None)

    def fused_bf16_widen():
        return torch.ops.mbv3.pwconv_bn_act(xb, w_kmajor, bf, act, rb, None)

    return {"unfused": unfused, "fused": fused, "fused_bf16": fused_bf16, "fused_bf16_widen": fused_bf16_widen}


@pytest.mark.parametrize("threads", [1], indirect=True, ids=lambda t: f"t{t}")
def test_interleaved_gflops(threads):
    names, rounds, turns = ["fused", "fused_bf16_widen", "fused_bf16"], 7, 20
    print(f"\n1x1 layers of MobileNetV3-Large, batch 1, 1 thread, {rounds} rounds x {turns} calls, "
          "GFLOP/s from the median of round medians")
    print("| layer | Cin->Cout | map | fp32 | bf16 widening | bf16 vdpbf16ps |")
    print("|---|---|---|---|---|---|")
    totals = dict.fromkeys(names, 0.0)
    for i, (cin, cout, h, w, act, res) in enumerate(LAYERS):
        fns = make_layer(i)
        with torch.no_grad():
            med = round_medians(fns, rounds, turns)
        for n in names:
            totals[n] += med[n]
        gf = {n: flops(i) / med[n] / 1e9 for n in names}
        print(f"| L{i:02d} | {cin}->{cout} | {h}x{w} | {gf['fused']:.0f} | {gf['fused_bf16_widen']:.0f} | "
              f"{gf['fused_bf16']:.0f} |")
    total = sum(flops(i) for i in range(len(LAYERS)))
    print("| all | | | " + " | ".join(f"{total / totals[n] / 1e9:.0f} ({totals[n] * 1e3:.2f} ms)" for n in names) + " |")


@pytest.mark.parametrize("provider", ["unfused", "fused", "fused_bf16", "fused_bf16_widen"])
@pytest.mark.parametrize("layer", range(len(LAYERS)), ids=lambda i: f"L{i:02d}")
@pytest.mark.parametrize("fmt", ["nhwc"])
@pytest.mark.parametrize("threads", [1, 2], indirect=True, ids=lambda t: f"t{t}")
def test_pwconv_bn_act(benchmark, record, threads, fmt, layer, provider):
    cin, cout, h, w, act, res = LAYERS[layer]
    benchmark.group = f"pwconv {fmt} t{threads} L{layer:02d} {cin}->{cout} {h}x{w} {act}{' +res' if res else ''}"
    record(suite="pwconv_bn_act", config=f"{fmt} t{threads} b1", provider=provider, layer=layer)
    fn = make_layer(layer)[provider]
    with torch.no_grad():
        benchmark(fn)
    if benchmark.stats is not None:  # None under --benchmark-disable (CI smoke run)
        benchmark.extra_info["gflops"] = flops(layer) / benchmark.stats.stats.median / 1e9
