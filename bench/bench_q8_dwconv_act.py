"""int8 depthwise conv (+ requantization, + hardswish table) vs PyTorch's quantized depthwise
conv (engines x86 and onednn; + quantized hardswish), per MobileNetV3-Large depthwise layer,
batch 1, 1 thread, channels_last.

test_interleaved (run with -s): torch (x86 engine) and ours (packed weight) in interleaved rounds,
per layer and in total, one table."""

import pytest
import torch
import torch.ao.nn.intrinsic.quantized as nniq
import torch.ao.nn.quantized as nnq

from mbv3_fast.ops.q8_dwconv_act import pack_weight
from mbv3_fast.quantization.params import requant_args, unary_lut
from mbv3_fast.testing import depthwise_layers
from interleave import round_medians

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
LAYERS = depthwise_layers("large")


def make_layer(i, engine):
    c, h, w, k, s, p, d, act = LAYERS[i]
    torch.backends.quantized.engine = engine
    x = torch.quantize_per_tensor(torch.randn(1, c, h, w), 0.03, 128, torch.quint8).contiguous(
        memory_format=torch.channels_last)
    wf = torch.randn(c, 1, k, k)
    sc = wf.abs().amax((1, 2, 3)) / 127
    qw = torch.quantize_per_channel(wf, sc.double(), torch.zeros(c, dtype=torch.long), 0, torch.qint8)
    m = (nniq.ConvReLU2d if act == "relu" else nnq.Conv2d)(c, c, k, s, p, d, groups=c)
    m.set_weight_bias(qw, torch.randn(c) * 0.1)
    m.scale, m.zero_point = 0.05, 100
    hs = (lambda q: torch.ao.nn.quantized.functional.hardswish(q, 0.04, 10)) if act == "hardswish" else None
    bi, bf, mult, oq, lut = requant_args(0.03, sc, m.bias(), 0.05, 100, engine, relu=act == "relu",
                                         lut=unary_lut(hs, 0.05, 100) if hs else None)
    xi, wi = x.int_repr(), qw.int_repr()
    op = torch.ops.mbv3.q8_dwconv_act.default

    def torch_q8():
        y = m(x)
        return hs(y) if hs else y

    def ours():
        return op(xi, 128, wi, bi, bf, mult, oq, lut, s, p, d)

    wp = pack_weight(wi)

    def ours_packed():
        return op(xi, 128, wp, bi, bf, mult, oq, lut, s, p, d)

    return {"torch": torch_q8, "ours": ours, "ours_packed": ours_packed}


@pytest.mark.parametrize("provider", ["torch", "ours", "ours_packed"])
@pytest.mark.parametrize("layer", range(len(LAYERS)), ids=lambda i: f"L{i:02d}")
@pytest.mark.parametrize("engine", ["x86", "onednn"])
@pytest.mark.parametrize("threads", [1], indirect=True, ids=lambda t: f"t{t}")
def test_q8_dwconv_act(benchmark, record, threads, engine, layer, provider):
    c, h, w, k, s, p, d, act = LAYERS[layer]
    benchmark.group = f"q8_dwconv {engine} t{threads} L{layer:02d} C{c} {h}x{w} k{k}s{s} {act}"
    record(suite="q8_dwconv_act", config=f"{engine} t{threads} b1", provider=provider, layer=layer)
    before = torch.backends.quantized.engine
    try:
        fn = make_layer(layer, engine)[provider]
        with torch.no_grad():
            benchmark(fn)
        if benchmark.stats is not None:  # None under --benchmark-disable (CI smoke run)
            oh, ow = ((n + 2 * p - d * (k - 1) - 1) // s + 1 for n in (h, w))
            benchmark.extra_info["gops"] = 2 * c * k * k * oh * ow / benchmark.stats.stats.median / 1e9
    finally:
        torch.backends.quantized.engine = before


@pytest.mark.parametrize("threads", [1], indirect=True, ids=lambda t: f"t{t}")
def test_interleaved(threads):
    names, rounds, turns = ["torch", "ours_packed"], 5, 20
    print(f"\nint8 depthwise layers of MobileNetV3-Large, batch 1, 1 thread, {rounds} rounds x {turns} calls, "
          "median of round medians")
    print("| layer | C | map | k s | act | torch x86 us | ours us | ours/torch |")
    print("|---|---|---|---|---|---|---|---|")
    totals = dict.fromkeys(names, 0.0)
    before = torch.backends.quantized.engine
    try:
        for i, (c, h, w, k, s, p, d, act) in enumerate(LAYERS):
            fns = make_layer(i, "x86")
            with torch.no_grad():
                med = round_medians(fns, rounds, turns)
            for n in names:
                totals[n] += med[n]
            print(f"| L{i:02d} | {c} | {h}x{w} | {k} {s} | {act} | {med['torch'] * 1e6:.1f} | "
                  f"{med['ours_packed'] * 1e6:.1f} | {med['ours_packed'] / med['torch']:.2f} |")
    finally:
        torch.backends.quantized.engine = before
    print(f"| all | | | | | {totals['torch'] * 1e6:.1f} | {totals['ours_packed'] * 1e6:.1f} | "
          f"{totals['ours_packed'] / totals['torch']:.2f} |")
