"""The int8 stem (QuantStub + 3x3 stride-2 conv + hardswish) vs PyTorch's quantize_per_tensor +
quantized Conv2d + quantized hardswish, MobileNetV3-Large, batch 1, 1 thread.  ours: fbgemm's
rounding; ours_onednn: oneDNN's (what an x86-converted model runs on a VNNI CPU).

test_interleaved (run with -s): every provider in interleaved rounds, one table."""
import pytest
import torch
import torch.ao.nn.quantized as nnq

from mbv3_fast.ops.q8_conv_act import pack_weight
from mbv3_fast.quantization.params import onednn_scales, requant_args, unary_lut
from mbv3_fast.testing import stem_layers
from interleave import round_medians

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
CIN, COUT, H, W, K, S, P, ACT = stem_layers("large")[0]


def make(engine):
    torch.backends.quantized.engine = engine
    x = torch.randn(1, CIN, H, W)
    wf = torch.randn(COUT, CIN, K, K)
    sc = wf.abs().amax((1, 2, 3)) / 127
    qw = torch.quantize_per_channel(wf, sc.double(), torch.zeros(COUT, dtype=torch.long), 0, torch.qint8)
    m = nnq.Conv2d(CIN, COUT, K, S, P)
    m.set_weight_bias(qw, torch.randn(COUT) * 0.1)
    m.scale, m.zero_point = 0.05, 100

    def hs(q):
        return torch.ao.nn.quantized.functional.hardswish(q, 0.04, 10)

    bi, bf, mult, oq, lut = requant_args(0.02, sc, m.bias(), 0.05, 100, engine, lut=unary_lut(hs, 0.05, 100))
    wi = qw.int_repr()
    op = torch.ops.mbv3.q8_conv_act.default

    def torch_q8():
        return hs(m(torch.quantize_per_tensor(x, 0.02, 128, torch.quint8)))

    def ours():
        return op(x, 0.02, 128, wi, bi, bf, mult, oq, lut, S, P)

    wp = pack_weight(wi)

    def ours_packed():
        return op(x, 0.02, 128, wp, bi, bf, mult, oq, lut, S, P)

    obi, obf, omult, ooq, olut = requant_args(0.02, sc, m.bias(), 0.05, 100, engine, lut=unary_lut(hs, 0.05, 100),
                                              onednn=True)
    scales = onednn_scales(0.02, 0.05)

    def ours_onednn():
        return op(x, 0.02, 128, wp, obi, obf, omult, ooq, olut, S, P, scales)

    return {"torch": torch_q8, "ours": ours, "ours_packed": ours_packed, "ours_onednn": ours_onednn}


@pytest.mark.parametrize("threads", [1], indirect=True, ids=lambda t: f"t{t}")
def test_interleaved(threads):
    before = torch.backends.quantized.engine
    try:
        fns = make("x86")
        with torch.no_grad():
            med = round_medians(fns, 9, 100)
    finally:
        torch.backends.quantized.engine = before
    print(f"\nint8 stem {CIN}->{COUT} {H}x{W} k{K}s{S}, batch 1, 1 thread, median of 9 round medians (x 100 calls)")
    for n, t in med.items():
        print(f"  {n:12s} {t * 1e3:.4f} ms  torch/{n} {med['torch'] / t:.2f}x")


@pytest.mark.parametrize("provider", ["torch", "ours", "ours_packed", "ours_onednn"])
@pytest.mark.parametrize("engine", ["x86", "onednn"])
@pytest.mark.parametrize("threads", [1], indirect=True, ids=lambda t: f"t{t}")
def test_q8_conv_act(benchmark, record, threads, engine, provider):
    benchmark.group = f"q8_conv_act stem {engine} t{threads}"
    record(suite="q8_conv_act", config=f"{engine} t{threads} b1", provider=provider, layer=0)
    before = torch.backends.quantized.engine
    try:
        fn = make(engine)[provider]
        with torch.no_grad():
            benchmark(fn)
        if benchmark.stats is not None:  # None under --benchmark-disable (CI smoke run)
            oh, ow = ((n + 2 * P - K) // S + 1 for n in (H, W))
            benchmark.extra_info["gops"] = 2 * COUT * CIN * K * K * oh * ow / benchmark.stats.stats.median / 1e9
    finally:
        torch.backends.quantized.engine = before
