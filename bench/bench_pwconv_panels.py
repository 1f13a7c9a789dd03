#!/usr/bin/env python3
"""What contiguous 1x1 weight panels would gain (issue #17's weight-layout lead).

    python bench/bench_pwconv_panels.py [--threads 1] [--rounds 9] [--calls 40] [K,Cout,HW ...]

The 1x1 op reads its weight in place, K-major: a panel of NR output columns (24 on AVX2, 64 on
AVX-512) is a slice of every K row.  XNNPACK and ONNX Runtime pack each panel contiguous.  This
runs the same GEMM three ways, batch 1, fp32, channels_last, hot:

* one_call:   one pwconv_bn_act call, weight [K, Cout] in place (what the model runs);
* slices:     one call per panel, each weight a strided slice of that same [K, Cout] buffer;
* contiguous: one call per panel, each weight its own contiguous [K, NR] buffer.

The per-panel providers pay one op call per panel; the time of the same calls on a 1-pixel
input is measured in the same rounds and subtracted.  So contiguous vs slices isolates the
layout; slices vs one_call shows what splitting into calls changes on its own.  Interleaved
(interleave.round_medians): median of round medians.
"""
import argparse

import torch

import mbv3_fast
from mbv3_fast.ops import pack_pw_weight
from interleave import round_medians

# The float 1x1 kernel's widest panel per ISA (NV vectors, pwconv_bn_act_kernel.h).
PANEL_COLS = {"avx512": 64, "avx512_vnni": 64, "avx512_bf16": 64, "avx2": 24, "neon": 16, "neon_bf16": 16, "scalar": 3}
DEFAULT = ["80,480,14", "480,112,14", "112,672,14", "672,112,14", "672,160,7", "160,960,7", "960,160,7"]


def providers(K, N, H, nr):
    op = torch.ops.mbv3.pwconv_bn_act
    g = torch.Generator().manual_seed(K * 1000 + N)
    x = torch.randn(1, K, H, H, generator=g).contiguous(memory_format=torch.channels_last)
    one = torch.randn(1, K, 1, 1, generator=g).contiguous(memory_format=torch.channels_last)
    w, b = torch.randn(N, K, 1, 1, generator=g) / K ** 0.5, torch.randn(N, generator=g)
    wp = pack_pw_weight(w)
    slices, biases = list(wp.split(nr)), list(b.split(nr))
    conts = [pack_pw_weight(p.contiguous()) for p in w.split(nr)]

    def calls(inp, ws):
        return lambda: [op(inp, wi, bi, "relu", None, None) for wi, bi in zip(ws, biases)]

    return {"one_call": lambda: op(x, wp, b, "relu", None, None),
            "slices": calls(x, slices), "contiguous": calls(x, conts),
            "call_cost": calls(one, conts)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("shapes", nargs="*", default=DEFAULT, help="K,Cout,HW")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--calls", type=int, default=40)
    ap.add_argument("--nr", type=int, default=0, help="panel width (default: the float kernel's for the ISA)")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    isa = mbv3_fast.get_cpu_isa()
    nr = a.nr or PANEL_COLS.get(isa, 24)
    print(f"pwconv_bn_act fp32, batch 1, {a.threads} thread(s), isa {isa}, panels of {nr} columns; "
          f"median of {a.rounds} round medians x {a.calls} calls, µs")
    print("| K -> Cout @ map | one call | slices | contiguous | contiguous / slices | slices / one call |")
    print("|---|---|---|---|---|---|")
    with torch.no_grad():
        for s in a.shapes:
            K, N, H = map(int, s.split(","))
            m = {k: v * 1e6 for k, v in round_medians(providers(K, N, H, nr), a.rounds, a.calls).items()}
            sl, co = m["slices"] - m["call_cost"], m["contiguous"] - m["call_cost"]
            print(f"| {K} -> {N} @ {H}x{H} | {m['one_call']:.0f} | {sl:.0f} | {co:.0f} | {co / sl:.2f} | "
                  f"{sl / m['one_call']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
