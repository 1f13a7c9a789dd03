"""Per-block profile of MobileNetV3: mbv3_fast's fused path vs torchvision's modules.

    python -m mbv3_fast.profile --arch large|small --device cpu|cuda --batch N --threads T \\
        [--dtype float32] [--iters N] [--trace out.json] [--png out.png] [--json out.json]

Builds torchvision's model (random weights, BN running statistics taken from real batches, as
a trained model has) and mbv3_fast's ``from_torchvision`` copy, then per row (stem, every
inverted residual block, head):

* fused ms   -- median time of the fused path for that row (``fused_block_forward`` for a block)
* unfused ms -- median time of torchvision's module on the same channels_last input
  (the torchvision model converted to channels_last)
* speedup    -- unfused / fused; % fused -- share of the summed fused time
* expand / dw / se / project -- split of the block's fused time between its op calls, from
  ``torch.profiler`` and the ``mbv3.block{i}.<op>`` record_function labels that
  ``fused_block_forward`` adds while this tool runs (CPU time on cpu, device time on cuda).

Fused and unfused calls are interleaved per iteration, so both see the same background load.
``--trace`` writes a Chrome trace (chrome://tracing, Perfetto) of ``--iters`` profiled fused
forwards: it contains the ``mbv3::`` op names and the labels.  ``--png`` draws the table.
"""
import argparse
import copy
import json
import math
import statistics
import sys
import time
from typing import Dict, List, Optional

import torch
import torchvision
from torch import nn
from torchvision.models import mobilenetv3 as _tv

import mbv3_fast
from mbv3_fast import model as _model

OPS = ("expand", "depthwise", "se", "project")
FUSED_EXPAND_DW = "expand+depthwise"  # label of a block whose expand runs inside the dw op
EXPAND_IN_DW = "in dw"  # split entry of such a block's "expand": counted in the dw column


def realistic_torchvision(arch: str, seed: int = 0) -> nn.Module:
    """torchvision MobileNetV3 (eval, float32, CPU) with random weights, random BN affine
    parameters and BN running statistics set from the statistics of a few random batches (so
    activations keep a realistic scale through the network)."""
    torch.manual_seed(seed)
    model = getattr(torchvision.models, f"mobilenet_v3_{arch}")()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.2)
            elif isinstance(m, nn.Linear):
                m.weight.normal_(0, 0.05, generator=g)
                m.bias.normal_(0, 0.1, generator=g)
        bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
        momenta = [m.momentum for m in bns]
        for m in bns:
            m.momentum = None  # cumulative average of the batches' statistics
        model.train()
        for _ in range(2):
            model(torch.randn(4, 3, 64, 64, generator=g) * 1.5 + 0.3)
        for m, mom in zip(bns, momenta):
            m.momentum = mom
    return model.eval()


def block_configs(arch: str) -> List[dict]:
    """Per inverted residual block of torchvision's MobileNetV3-<arch>: k, exp, out, se, act,
    stride (and in channels, dilation)."""
    setting, _ = _tv._mobilenet_v3_conf(f"mobilenet_v3_{arch}")
    return [dict(k=c.kernel, inp=c.input_channels, exp=c.expanded_channels, out=c.out_channels,
                 se=bool(c.use_se), act="hardswish" if c.use_hs else "relu", stride=c.stride,
                 dilation=c.dilation) for c in setting]


def block_label(i: int, cfg: dict) -> str:
    return (f"B{i:02d} k{cfg['k']} e{cfg['exp']} o{cfg['out']}{' SE' if cfg['se'] else ''} "
            f"{'hs' if cfg['act'] == 'hardswish' else 'relu'} s{cfg['stride']}")


class Pair:
    """The torchvision model (channels_last) and mbv3_fast's fused copy, on one device/dtype,
    with every block's input for a given batch."""

    def __init__(self, arch: str, batch: int, device="cpu", dtype=torch.float32, seed: int = 0):
        tv = realistic_torchvision(arch, seed)
        self.fused = mbv3_fast.from_torchvision(copy.deepcopy(tv)).to(device, dtype).eval()
        self.tv = tv.to(device, dtype).to(memory_format=torch.channels_last).eval()
        status = self.fused.fused_status
        if status != "fused":
            raise RuntimeError(f"mbv3_fast model does not run fused: {status}")
        self.plan = self.fused._plan
        self.configs = block_configs(arch)
        g = torch.Generator().manual_seed(seed + 1)
        x = torch.randn(batch, 3, 224, 224, generator=g).to(device, dtype)
        self.x = x.contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            h = _model.fused_stem_forward(self.plan, self.x)
            self.block_inputs = []
            for i, blk in enumerate(self.plan.net.blocks):
                self.block_inputs.append(h)
                h = _model.fused_block_forward(blk, h, i)
            self.head_input = h

    def fused_block(self, i: int):
        blk, x = self.plan.net.blocks[i], self.block_inputs[i]
        return lambda: _model.fused_block_forward(blk, x, i)

    def unfused_block(self, i: int):
        mod, x = self.tv.features[i + 1], self.block_inputs[i]
        return lambda: mod(x)

    def rows(self):
        """[(name, cfg or None, fused callable, unfused callable)] for stem, blocks, head."""
        plan, tv, x, hx = self.plan, self.tv, self.x, self.head_input
        classifier = self.fused.classifier

        def tv_head():
            return tv.classifier(torch.flatten(tv.avgpool(tv.features[-1](hx)), 1))

        out = [("stem", None, lambda: _model.fused_stem_forward(plan, x), lambda: tv.features[0](x))]
        for i, cfg in enumerate(self.configs):
            out.append((block_label(i, cfg), cfg, self.fused_block(i), self.unfused_block(i)))
        out.append(("head", None, lambda: _model.fused_head_forward(plan, hx, classifier), tv_head))
        return out


def _sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def time_rows(rows, iters: int, device, warmup: int = 2) -> List[tuple]:
    """Median seconds of each row's fused and unfused callable, calls interleaved."""
    samples = [([], []) for _ in rows]
    with torch.no_grad():
        for it in range(warmup + iters):
            for (name, cfg, f, u), (sf, su) in zip(rows, samples):
                for fn, s in ((f, sf), (u, su)):
                    _sync(device)
                    t0 = time.perf_counter()
                    fn()
                    _sync(device)
                    if it >= warmup:
                        s.append(time.perf_counter() - t0)
    return [(statistics.median(sf), statistics.median(su)) for sf, su in samples]


def _event_time_us(ev, device) -> float:
    if torch.device(device).type == "cuda":
        for attr in ("device_time_total", "cuda_time_total"):
            t = getattr(ev, attr, None)
            if t:
                return float(t)
    return float(ev.cpu_time_total)


def profile_split(pair: Pair, iters: int, device, trace: Optional[str] = None) -> Dict[int, dict]:
    """Per block: {op: microseconds summed over `iters` profiled fused forwards}."""
    from torch.profiler import ProfilerActivity, profile
    acts = [ProfilerActivity.CPU]
    if torch.device(device).type == "cuda":
        acts.append(ProfilerActivity.CUDA)
    from torch.profiler import record_function

    def forward():  # the fused forward, one op call per layer, each inside an "mbv3.<layer>" label
        return pair.fused._forward_fused(pair.x, pair.plan, label=lambda name: record_function("mbv3." + name))

    with torch.no_grad():
        forward()  # warm up with the labels on
        _sync(device)
        with profile(activities=acts) as prof:
            for _ in range(max(1, iters)):
                forward()
            _sync(device)
    split: Dict[int, dict] = {}
    fused_expand = set()
    for ev in prof.key_averages():
        key = ev.key
        if not key.startswith("mbv3.block"):
            continue
        blk, _, op = key[len("mbv3.block"):].partition(".")
        if op == FUSED_EXPAND_DW:  # one op call (expand_dwconv_bn_act): shown in the dw column
            op = "depthwise"
            fused_expand.add(int(blk))
        if op in OPS and blk.isdigit():
            d = split.setdefault(int(blk), {})
            d[op] = d.get(op, 0.0) + _event_time_us(ev, device)
    if trace:
        prof.export_chrome_trace(trace)
    for blk in fused_expand:
        split[blk]["expand"] = EXPAND_IN_DW
    return split


def run(arch="large", device="cpu", batch=1, threads=1, dtype="float32", iters=20,
        trace=None, png=None, seed=0) -> dict:
    if threads:
        torch.set_num_threads(threads)
    tdtype = getattr(torch, dtype)
    pair = Pair(arch, batch, device, tdtype, seed)
    rows = pair.rows()
    times = time_rows(rows, iters, device)
    split = profile_split(pair, min(iters, 5), device, trace)
    total_fused = sum(t[0] for t in times)
    out_rows = []
    for bi, ((name, cfg, _, _), (tf, tu)) in enumerate(zip(rows, times)):
        r = dict(name=name, fused_ms=tf * 1e3, unfused_ms=tu * 1e3, speedup=tu / tf,
                 pct_fused=100.0 * tf / total_fused)
        if cfg is not None:
            r.update(block=bi - 1, **{k: cfg[k] for k in ("k", "exp", "out", "se", "act", "stride")})
            s = split.get(bi - 1, {})
            tot = sum(v for v in s.values() if v is not EXPAND_IN_DW)
            r["split_pct"] = {op: (s[op] if s[op] is EXPAND_IN_DW else 100.0 * s[op] / tot if tot
                                   else float("nan")) if op in s else None for op in OPS}
        out_rows.append(r)
    tu_total = sum(t[1] for t in times)
    result = dict(arch=arch, device=str(device), batch=batch, threads=torch.get_num_threads(),
                  dtype=dtype, iters=iters, isa=mbv3_fast.get_cpu_isa(), torch=torch.__version__,
                  rows=out_rows, total=dict(fused_ms=total_fused * 1e3, unfused_ms=tu_total * 1e3,
                                            speedup=tu_total / total_fused))
    if png:
        draw_png(result, png)
    return result


def format_table(result: dict) -> str:
    head = (f"MobileNetV3-{result['arch']} {result['device']} {result['dtype']} batch "
            f"{result['batch']}, {result['threads']} thread(s), isa {result['isa']}, torch "
            f"{result['torch']}, median of {result['iters']} iters")
    cols = ["row", "fused ms", "unfused ms", "speedup", "% fused", "expand", "dw", "se", "project"]
    lines = [head, "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]

    def pct(v):
        if v == EXPAND_IN_DW:
            return v
        return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.0f}%"

    for r in result["rows"]:
        sp = r.get("split_pct")
        cells = [r["name"], f"{r['fused_ms']:.3f}", f"{r['unfused_ms']:.3f}", f"{r['speedup']:.2f}",
                 f"{r['pct_fused']:.1f}"]
        cells += [pct(sp[op]) for op in OPS] if sp else ["–"] * len(OPS)
        lines.append("| " + " | ".join(cells) + " |")
    t = result["total"]
    lines.append(f"| **total** | **{t['fused_ms']:.3f}** | **{t['unfused_ms']:.3f}** | "
                 f"**{t['speedup']:.2f}** | 100 | | | | |")
    return "\n".join(lines)


def draw_png(result: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = result["rows"]
    names = [r["name"] for r in rows]
    ys = list(range(len(rows)))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 0.35 * len(rows) + 2), sharey=True)
    h = 0.4
    ax1.barh([y - h / 2 for y in ys], [r["unfused_ms"] for r in rows], h, label="torchvision (unfused)")
    ax1.barh([y + h / 2 for y in ys], [r["fused_ms"] for r in rows], h, label="mbv3_fast (fused)")
    for y, r in zip(ys, rows):
        ax1.text(max(r["unfused_ms"], r["fused_ms"]), y, f" ×{r['speedup']:.2f}", va="center",
                 fontsize=7)
    ax1.set_yticks(ys)
    ax1.set_yticklabels(names, fontsize=7)
    ax1.invert_yaxis()
    ax1.set_xlabel("ms (median)")
    ax1.legend(fontsize=8)
    left = [0.0] * len(rows)
    for op in OPS:
        vals = []
        for r in rows:
            sp = r.get("split_pct")
            v = sp.get(op) if sp else None
            ok = isinstance(v, float) and not math.isnan(v)
            vals.append(r["fused_ms"] * v / 100 if ok else 0.0)
        ax2.barh(ys, vals, 0.6, left=left, label=op)
        left = [a + b for a, b in zip(left, vals)]
    other = [r["fused_ms"] if not r.get("split_pct") else 0.0 for r in rows]
    ax2.barh(ys, other, 0.6, left=left, label="stem / head", color="grey")
    ax2.set_xlabel("fused ms, split by op (torch.profiler)")
    ax2.legend(fontsize=8)
    fig.suptitle(f"MobileNetV3-{result['arch']} {result['device']} {result['dtype']} batch "
                 f"{result['batch']}, {result['threads']} thread(s): total ×"
                 f"{result['total']['speedup']:.2f}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mbv3_fast.profile",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--arch", choices=["large", "small"], default="large")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0: leave)")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--trace", help="write a Chrome trace of the profiled fused forwards")
    ap.add_argument("--png", help="draw the table as a bar chart")
    ap.add_argument("--json", help="write the table as JSON")
    args = ap.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: no CUDA device")
    result = run(args.arch, args.device, args.batch, args.threads, args.dtype, args.iters,
                 args.trace, args.png)
    print(format_table(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
