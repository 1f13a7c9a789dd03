"""Fused 1x1 conv + BN + activation (+ residual) vs PyTorch's unfused eval path, per
MobileNetV3-Large pointwise layer (expand, project, last conv), batch 1, channels_last.
`make bench` runs it; bench/summarize.py prints ratios and sums.  GFLOP/s (2 * M * Cin * Cout
per call, from the median) is stored in extra_info["gflops"]."""
import pytest
import torch
import torch.nn.functional as F

from mbv3_fast.ops import fold_bn, pack_pw_weight
from mbv3_fast.testing import pointwise_layers

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

    return {"unfused": unfused, "fused": fused}


@pytest.mark.parametrize("provider", ["unfused", "fused"])
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
