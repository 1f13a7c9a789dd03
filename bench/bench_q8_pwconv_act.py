"""int8 1x1 conv (mbv3::q8_pwconv_act, packed weight) vs PyTorch's quantized ops, per
MobileNetV3-Large pointwise layer (expand, project, last conv), batch 1, channels_last.
The torch provider runs what torchvision's quantized model runs for the layer under the 'x86'
engine: (quantized mul by the SE scale, on the projections after an SE block,) Conv2d /
ConvReLU2d (+ quantized hardswish, + quantized add); ours fuses all of it, with fbgemm's rounding
("ours") or the Onednn requantization mode the x86 engine's oneDNN convs round with on a VNNI
CPU ("ours_onednn", what an x86-converted model runs there).  GOP/s (2 * M * Cin * Cout per call,
from the median) is stored in extra_info["gops"].

test_interleaved_gops (run with -s): both providers in interleaved rounds, one table.
"""

import pytest
import torch
import torch.ao.nn.intrinsic.quantized as nniq
import torch.ao.nn.quantized as nnq
import torch.ao.nn.quantized.functional as qF

from mbv3_fast.ops.q8_pwconv_act import pack_weight
from mbv3_fast.quantization.params import add_args, mul_args, onednn_scales, requant_args, unary_lut
from mbv3_fast.testing import pointwise_layers, se_layers
from interleave import round_medians

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
LAYERS = pointwise_layers("large")
SE_INPUTS = {(c, h, w) for c, _, h, w in se_layers("large")}


def gops(layer):
    cin, cout, h, w, _, _ = LAYERS[layer]
    return 2 * h * w * cin * cout


def make_layer(i, engine="x86"):
    torch.backends.quantized.engine = engine
    cin, cout, h, w, act, res = LAYERS[i]
    x_q = torch.quantize_per_tensor(torch.randn(1, cin, h, w), 0.05, 128, torch.quint8).contiguous(
        memory_format=torch.channels_last)
    wf = torch.randn(cout, cin, 1, 1) / cin ** 0.5
    sc = (wf.reshape(cout, -1).abs().amax(1) / 127).double()
    qw = torch.quantize_per_channel(wf, sc, torch.zeros(cout, dtype=torch.long), 0, torch.qint8)
    bias = torch.randn(cout) * 0.1
    ys, yzp = 0.05, 0 if act == "relu" else 128
    conv = (nniq.ConvReLU2d if act == "relu" else nnq.Conv2d)(cin, cout, 1)
    conv.set_weight_bias(qw, bias)
    conv.scale, conv.zero_point = ys, yzp
    hs, hzp = 0.05, 10
    r_q = torch.quantize_per_tensor(torch.randn(1, cout, h, w), 0.05, 128, torch.quint8).contiguous(
        memory_format=torch.channels_last) if res else None

    se = act == "none" and (cin, h, w) in SE_INPUTS
    s_q = torch.quantize_per_tensor(torch.rand(1, cin, 1, 1), 1 / 256, 0, torch.quint8) if se else None

    def torch_q():
        y = conv(torch.ops.quantized.mul(x_q, s_q, 0.05, 128) if se else x_q)
        if act == "hardswish":
            y = qF.hardswish(y, hs, hzp)
        return torch.ops.quantized.add(y, r_q, 0.07, 128) if res else y

    lut = unary_lut(lambda t: qF.hardswish(t, hs, hzp), ys, yzp) if act == "hardswish" else None
    bi, bf, m, oq, _ = requant_args(0.05, qw.q_per_channel_scales(), bias, ys, yzp, engine, relu=act == "relu")
    add = add_args(hs if lut is not None else ys, hzp if lut is not None else yzp, 0.05, 128, 0.07, 128,
                   engine) if res else None
    xu, wp, ru = x_q.int_repr(), pack_weight(qw.int_repr()), None if r_q is None else r_q.int_repr()

    su = s_q.int_repr().reshape(1, cin) if se else None
    mul = mul_args(0.05, 128, 1 / 256, 0, 0.05, 128) if se else None

    def ours():
        return torch.ops.mbv3.q8_pwconv_act(xu, 128, wp, bi, bf, m, oq, lut, ru, add, su, mul)

    obi, obf, om, _, _ = requant_args(0.05, qw.q_per_channel_scales(), bias, ys, yzp, engine, relu=act == "relu",
                                      onednn=True)
    od = onednn_scales(0.05, ys)

    def ours_onednn():
        return torch.ops.mbv3.q8_pwconv_act(xu, 128, wp, obi, obf, om, oq, lut, ru, add, su, mul, od)

    return {"torch": torch_q, "ours": ours, "ours_onednn": ours_onednn}


@pytest.mark.parametrize("threads", [1], indirect=True, ids=lambda t: f"t{t}")
def test_interleaved_gops(threads):
    names, rounds, turns = ["torch", "ours", "ours_onednn"], 5, 20
    print(f"\nint8 1x1 layers of MobileNetV3-Large, batch 1, 1 thread, {rounds} rounds x {turns} calls, "
          "GOP/s from the median of round medians")
    print("| layer | Cin->Cout | map | torch x86 | ours (fbgemm rounding) | ours (onednn rounding) |")
    print("|---|---|---|---|---|---|")
    totals = dict.fromkeys(names, 0.0)
    for i, (cin, cout, h, w, act, res) in enumerate(LAYERS):
        fns = make_layer(i)
        med = round_medians(fns, rounds, turns)
        for n in names:
            totals[n] += med[n]
        g = {n: gops(i) / med[n] / 1e9 for n in names}
        print(f"| L{i:02d} | {cin}->{cout} | {h}x{w} | {g['torch']:.0f} | {g['ours']:.0f} | {g['ours_onednn']:.0f} |")
    total = sum(gops(i) for i in range(len(LAYERS)))
    print("| all | | | " + " | ".join(f"{total / totals[n] / 1e9:.0f} ({totals[n] * 1e3:.2f} ms)" for n in names) + " |")


@pytest.mark.parametrize("provider", ["torch", "ours", "ours_onednn"])
@pytest.mark.parametrize("layer", range(len(LAYERS)), ids=lambda i: f"L{i:02d}")
@pytest.mark.parametrize("threads", [1], indirect=True, ids=lambda t: f"t{t}")
def test_q8_pwconv_act(benchmark, record, threads, layer, provider):
    cin, cout, h, w, act, res = LAYERS[layer]
    benchmark.group = f"q8_pwconv t{threads} L{layer:02d} {cin}->{cout} {h}x{w} {act}{' +res' if res else ''}"
    record(suite="q8_pwconv_act", config=f"nhwc t{threads} b1", provider=provider, layer=layer)
    fn = make_layer(layer)[provider]
    benchmark(fn)
    if benchmark.stats is not None:  # None under --benchmark-disable (CI smoke run)
        benchmark.extra_info["gops"] = gops(layer) / benchmark.stats.stats.median / 1e9
