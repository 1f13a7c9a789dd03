"""Fused depthwise conv + BN + activation vs PyTorch's unfused eval path, per MobileNetV3-Large
depthwise layer, batch 1.  `make bench` runs it; bench/summarize.py prints ratios and sums."""
import pytest
import torch
import torch.nn.functional as F

from mbv3_fast.ops import fold_bn
from mbv3_fast.testing import depthwise_layers

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
