"""Band-fused expand + depthwise (torch.ops.mbv3.expand_dwconv_bn_act) vs the same two fused
ops back to back (pwconv_bn_act -> dwconv_bn_act) and vs PyTorch's unfused eval path
(conv1x1 -> BN -> act -> depthwise conv -> BN -> act modules), per MobileNetV3-Large block
with an expand conv, batch 1, channels_last, 1 and 2 threads.

Measured "warm" (pytest-benchmark's loop: the expanded tensor of the two-op path stays in L3
between calls), which understates the fusion's gain in a real forward, where the rest of the
network has evicted it; bench_blocks.py / bench_model.py show the end-to-end effect.
"""
import pytest
import torch
from torch import nn

from mbv3_fast.ops import fold_bn, pack_pw_weight
from mbv3_fast.testing import expand_depthwise_layers

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
