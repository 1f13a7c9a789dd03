"""Block by block: mbv3_fast fp32 against ONNX Runtime fp32 on MobileNetV3 (the peer that led
on the AVX2-only Zen 3, issue #17).

    python bench/bench_layers_ort.py [--arch large|small] [--threads 1|2] [--rounds N] [--turns N]

Both sides run the same torchvision model (``mbv3_fast.testing.realistic``), exported to ONNX
as bench_model's ``onnxruntime`` provider does.

Method
------
* ONNX Runtime: its own profiler (``SessionOptions.enable_profiling``): one ``Node`` event per
  kernel and run, with the node's name.  ORT fuses and renames nodes, but every name keeps the
  torchvision module path (``/features/features.12/block/block.0/...``), which gives the block
  and the part (``block.M``: expand, depthwise, SE, project, in torchvision's order).  The
  layout nodes ORT inserts (``ReorderInput``/``ReorderOutput``, NCHW <-> NCHWc) carry no path
  and are counted in the block of the node before them, as "other".
* Ours: the fused network walked op by op (``bench_layers_xnnpack.walk``, the same ops
  ``mbv3_fast.plan.run`` calls), ``time.perf_counter`` around each ``torch.ops.mbv3`` call, so
  our figures include ~2-3 µs of Python + dispatch per op, which ORT's in-runtime timers do not.
* Interleaved: each round runs ``turns`` ORT calls, then ``turns`` walks (order alternating per
  round); a figure is the median over rounds of each round's median.

Parts: ``1x1`` (expand, project, last conv), ``dw`` (depthwise; our expand+depthwise op counts
as 1x1 + dw, its time in the dw column, the 1x1 column then holding only ORT's), ``se``
(pool, FCs and the scale multiply: ours folds the multiply into the project), ``stem``,
``head``, ``other``.
"""
import argparse
import copy
import json
import os
import re
import statistics
import tempfile
import time
import warnings

import torch
import torchvision

import mbv3_fast
from bench_layers_xnnpack import walk
from mbv3_fast.testing import realistic


def _ort_block(name, has_expand, has_se):
    """(block row, part) of an ORT node name; None when the name carries no module path."""
    if name.startswith("/classifier") or "avgpool/GlobalAveragePool" in name and "/block/" not in name:
        return "head", "head"
    if name.startswith("/Flatten"):
        return "head", "head"
    m = re.match(r"/features/features\.(\d+)/", name)
    if not m:
        return None
    f = int(m.group(1))
    if f == 0:
        return "stem", "stem"
    blk = re.search(r"/block/block\.(\d+)/", name)
    if blk is None:  # the last 1x1 conv (features.16)
        return "last", "1x1"
    i, part = f - 1, int(blk.group(1))
    parts = (["1x1"] if has_expand[i] else []) + ["dw"] + (["se"] if has_se[i] else []) + ["1x1"]
    return f"B{i:02d}", parts[part] if part < len(parts) else "other"


def run(arch="large", threads=1, rounds=9, turns=20, seed=0):
    import onnxruntime as ort
    torch.set_num_threads(threads)
    tv = realistic(getattr(torchvision.models, f"mobilenet_v3_{arch}")(), seed=seed).eval()
    fused = mbv3_fast.from_torchvision(copy.deepcopy(tv)).eval()
    net = fused._plan.net
    # torchvision's block.M: [expand,] depthwise, [SE,] project.
    has_expand = [b.expand is not None for b in net.blocks]
    has_se = [b.se is not None for b in net.blocks]
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(seed + 1))
    d = tempfile.mkdtemp()
    path = os.path.join(d, "m.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(tv, (x,), path, dynamo=False, input_names=["x"])
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.enable_profiling, so.profile_file_prefix = True, os.path.join(d, "prof")
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    feed = {"x": x.numpy()}

    layers, ours = [], {}
    with torch.no_grad():
        walk(net, x, lambda i, fn: fn(), layers)
        sess.run(None, feed)
        ort_runs = []  # per round: range of run indices
        n_runs = [1]

        def timed(i, fn):
            t = time.perf_counter()
            out = fn()
            ours.setdefault(i, [[] for _ in range(rounds)])[rnd].append(time.perf_counter() - t)
            return out
        for rnd in range(rounds):
            for side in ((0, 1) if rnd % 2 == 0 else (1, 0)):
                if side == 0:
                    sess.run(None, feed)
                    n_runs[0] += 1
                    first = n_runs[0]
                    for _ in range(turns):
                        sess.run(None, feed)
                    n_runs[0] += turns
                    ort_runs.append(range(first, n_runs[0]))
                else:
                    walk(net, x, lambda i, fn: fn())
                    for _ in range(turns):
                        walk(net, x, timed)
    events = json.load(open(sess.end_profiling()))

    # ORT: per node, per run index (the n-th event of a node is its n-th run).
    per_node, order = {}, []
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            n = e["name"][: -len("_kernel_time")]
            if n not in per_node:
                order.append(n)
                per_node[n] = []
            per_node[n].append(e["dur"])
    ort_rows, cur = {}, ("stem", "other")
    for n in order:
        where = _ort_block(n, has_expand, has_se)
        blk, part = where if where else (cur[0], "other")
        cur = (blk, part)
        meds = [statistics.median(per_node[n][i] for i in r if i < len(per_node[n])) for r in ort_runs]
        ort_rows.setdefault(blk, {}).setdefault(part, 0.0)
        ort_rows[blk][part] += statistics.median(meds)

    our_rows = {}
    for i, L in enumerate(layers):
        name = L.name.split()[0]
        blk = {"last": "last", "head": "head", "stem": "stem"}.get(name, name)
        kind = L.name.split()[-1] if " " in L.name else name
        part = {"expand": "1x1", "project": "1x1", "1x1": "1x1", "dw": "dw", "expand+dw": "dw", "SE": "se",
                "stem": "stem", "head": "head"}[kind]
        med = statistics.median(statistics.median(r) for r in ours[i]) * 1e6
        our_rows.setdefault(blk, {}).setdefault(part, 0.0)
        our_rows[blk][part] += med
    return {"arch": arch, "threads": threads, "rounds": rounds, "turns": turns, "ort": ort_rows, "ours": our_rows,
            "ort_version": ort.__version__, "isa": mbv3_fast.get_cpu_isa(),
            "cpu": next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")}


def format_table(res):
    parts = ["stem", "1x1", "dw", "se", "head", "other"]
    lines = [f"MobileNetV3-{res['arch']} fp32, batch 1, {res['threads']} thread(s), {res['cpu']}, mbv3_fast isa "
             f"{res['isa']}, onnxruntime {res['ort_version']}; median of {res['rounds']} round medians x "
             f"{res['turns']} calls, µs (ours / ORT)", "",
             "| block | " + " | ".join(parts) + " | total | ours/ORT |", "|---|" + "---|" * (len(parts) + 2)]
    tot = {"ours": {p: 0.0 for p in parts}, "ort": {p: 0.0 for p in parts}}
    for blk in res["ours"]:
        o, r = res["ours"][blk], res["ort"].get(blk, {})
        cells = []
        for p in parts:
            tot["ours"][p] += o.get(p, 0.0)
            tot["ort"][p] += r.get(p, 0.0)
            cells.append(f"{o.get(p, 0):.0f} / {r.get(p, 0):.0f}" if p in o or p in r else "")
        so, sr = sum(o.values()), sum(r.values())
        lines.append(f"| {blk} | " + " | ".join(c if c else "" for c in cells) + f" | {so:.0f} / {sr:.0f} | "
                     f"{so / sr if sr else float('nan'):.2f} |")
    so, sr = sum(tot["ours"].values()), sum(tot["ort"].values())
    for blk in res["ort"]:
        if blk not in res["ours"]:
            lines.append(f"| {blk} (ORT only) | {res['ort'][blk]} |")
    lines.append("| **sum** | " + " | ".join(f"{tot['ours'][p]:.0f} / {tot['ort'][p]:.0f}" for p in parts)
                 + f" | **{so:.0f} / {sr:.0f}** | **{so / sr:.2f}** |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", choices=["large", "small"], default="large")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--turns", type=int, default=20)
    a = ap.parse_args(argv)
    print(format_table(run(a.arch, a.threads, a.rounds, a.turns)))


if __name__ == "__main__":
    main()
