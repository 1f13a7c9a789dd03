"""Layer by layer: mbv3_fast fp32 against ExecuTorch + XNNPACK fp32 on MobileNetV3 (issue #17).

    python bench/bench_layers_xnnpack.py [--arch large|small] [--threads 1|2] [--batch 1]
                                         [--rounds N] [--turns N] [--json out.json]
    python -m pytest bench/bench_layers_xnnpack.py -q -s -p no:cacheprovider   # Large, 1 and 2 threads

Both sides run the same torchvision model (``mbv3_fast.testing.realistic``: random weights,
real BN statistics), lowered to ExecuTorch + XNNPACK exactly as the end-to-end benchmark does
(``peers._et_program``) and folded by ``mbv3_fast.from_torchvision``.

Method
------
* XNNPACK: per-operator times from ExecuTorch's devtools.  The method is loaded a second time
  with ``enable_etdump=True``; the XNNPACK delegate then runs its runtime with XNNPACK's own
  per-operator profiling and logs one ETDump event per XNNPACK operator and run (the pip build
  has it compiled in).  ``write_etdump_result_to_file`` + ``devtools.Inspector`` give, for every
  operator in execution order, its time in each run.  XNNPACK reports whole microseconds.
* Ours: the fused network walked op by op from Python, as ``mbv3_fast.plan.run`` walks it
  (same folded weights, same expand+depthwise fusion rule), with ``time.perf_counter`` around
  each ``torch.ops.mbv3`` call.  So our per-layer figures include the Python + dispatcher cost
  of a call, which XNNPACK's in-runtime timers do not; the table prints how much slower the walk
  is than the one-call forward (that cost and anything else the walk adds), next to the totals.
* End to end: ours is one ``mbv3::mobilenet_v3`` call (the model's eager forward); XNNPACK the
  method loaded without ETDump, called as bench_model's ``executorch_fp32`` provider.
* Interleaved: in each round every provider (ours per op, ours end to end, XNNPACK with ETDump,
  XNNPACK plain) runs ``turns`` calls in a row, order rotated per round; a figure is the median
  over rounds of each round's median.  The same thread count on both sides:
  ``torch.set_num_threads`` and ExecuTorch's ``_unsafe_reset_threadpool``.

Layer-matching rule
-------------------
XNNPACK's event names carry the operator kind, not the layer, so operators are matched to our
layers by order and kind.  Each of our layers expects a sequence of *anchor* operators:
stem: dense conv; expand / project / last 1x1: one GEMM (Fully Connected, or a 1x1
Convolution); depthwise: DWConv; our fused expand+depthwise op: GEMM then DWConv; SE:
Mean, GEMM, GEMM; head: Mean, GEMM, GEMM.  Walking XNNPACK's operators in execution order, an
anchor goes to the current layer if it is that layer's next expected anchor, else it opens the
next layer, which must expect it first.  Every other operator (HardSwish, Clamp, Add,
Divide, Transpose, Reshape) goes to the layer of the anchor before it: the residual Add to the
project, the hardsigmoid pieces (Add, Clamp, Divide and two Transposes) to the SE, the input's
NCHW->NHWC Transpose (before any anchor) to the stem, whose op reads NCHW in place.  One
exception: the SE's ``x * scale`` Multiply goes to the project row, because our project GEMM
applies the SE scale while reading its input.  A layer left without all its anchors, or an
operator that fits no layer, is reported as unmatched (and the walk stops there).  Names give
no shapes, so the check is the exact anchor sequence of the whole network.  ExecuTorch kernels
outside the delegate and the delegate's own overhead (DELEGATE_CALL minus its operators) get
their own rows.

MFLOP counts 2 x multiply-adds of the convolutions and FCs, plus one add per input element of a
global mean (SE, head); activations, scales and residual adds are not counted.
"""
import argparse
import copy
import json
import os
import statistics
import tempfile
import time

import pytest
import torch
import torchvision

import mbv3_fast
import peers
from mbv3_fast.testing import realistic

ROUNDS = int(os.environ.get("MBV3_BENCH_ROUNDS", "8"))

# ---- our side: the fused walk, one timed op call per layer ----------------------------------


class Layer:
    """One row: our op call and the XNNPACK anchors it should match."""

    def __init__(self, name, shape, mflop, anchors):
        self.name, self.shape, self.mflop, self.anchors = name, shape, mflop, anchors


def _hw(t):
    return f"{t.shape[2]}×{t.shape[3]}"


def walk(net, x, call, layers=None):
    """The fused network (as mbv3_fast.plan.run), each op through ``call(index, fn)``.  With
    ``layers`` a list, appends each layer's description to it (first walk only)."""
    ops = torch.ops.mbv3
    idx = [0]

    def op(fn, describe):
        if layers is not None:
            layers.append(describe())
        idx[0] += 1
        return call(idx[0] - 1, fn)

    def pw_mflop(t, pw):  # Cout from the bias: a packed weight (panels, K pairs) is padded
        return 2 * t.shape[0] * t.shape[1] * t.shape[2] * t.shape[3] * pw.bias.shape[0] / 1e6

    def dw_mflop(t_out, w):
        return 2 * t_out.shape[0] * t_out.shape[2] * t_out.shape[3] * w.numel() / 1e6

    def dw_out(t, d):  # the depthwise output's shape (only its size is used, for FLOPs)
        k = d.weight.shape[-1]
        ho = (t.shape[2] + 2 * d.padding - d.dilation * (k - 1) - 1) // d.stride + 1
        wo = (t.shape[3] + 2 * d.padding - d.dilation * (k - 1) - 1) // d.stride + 1
        return torch.empty(t.shape[0], 1, ho, wo, device="meta")

    s = net.stem
    k = s.weight.shape[-1]
    y = op(lambda: ops.conv_bn_act(x, s.weight, s.bias, s.stride, s.padding, s.act.op_name),
           lambda: Layer("stem", f"{x.shape[1]}→{s.weight.shape[0]} @ {_hw(x)}, k{k} s{s.stride}",
                         None, ["conv"]))
    if layers is not None:  # the stem's FLOPs need its output size
        layers[-1].mflop = 2 * y.shape[0] * y.shape[2] * y.shape[3] * s.weight.numel() / 1e6
    for i, b in enumerate(net.blocks):
        d, e, h = b.depthwise, b.expand, y
        dw = (d.weight, d.bias, d.stride, d.padding, d.dilation, d.act.op_name)
        kd = f"k{d.weight.shape[-1]} s{d.stride}"
        c = d.weight.shape[0]
        if e is not None and 0 <= b.fuse_min_pixels <= y.shape[2] * y.shape[3]:
            h = op(lambda: ops.expand_dwconv_bn_act(y, e.weight, e.bias, e.act.op_name, *dw),
                   lambda: Layer(f"B{i:02d} expand+dw", f"{y.shape[1]}→{c} @ {_hw(y)}, k1 + {kd}",
                                 pw_mflop(y, e) + dw_mflop(dw_out(y, d), d.weight),
                                 ["gemm", "dw"]))
        else:
            if e is not None:
                h = op(lambda: ops.pwconv_bn_act(y, e.weight, e.bias, e.act.op_name, None, None),
                       lambda: Layer(f"B{i:02d} expand", f"{y.shape[1]}→{c} @ {_hw(y)}, k1 s1",
                                     pw_mflop(y, e), ["gemm"]))
            hin = h
            h = op(lambda: ops.dwconv_bn_act(hin, *dw),
                   lambda: Layer(f"B{i:02d} dw", f"{c} @ {_hw(hin)}, {kd}",
                                 dw_mflop(dw_out(hin, d), d.weight), ["dw"]))
        scale = None
        if b.se is not None:
            se, hs = b.se, h
            scale = op(lambda: ops.se_scale(hs, se.w1, se.b1, se.w2, se.b2),
                       lambda: Layer(f"B{i:02d} SE", f"{c}→{se.b1.shape[0]}→{c} @ {_hw(hs)}",
                                     (hs.numel() + 4 * c * se.b1.shape[0]) / 1e6,
                                     ["mean", "gemm", "gemm"]))
        p, hp, res, sc = b.project, h, (y if b.residual else None), scale
        y = op(lambda: ops.pwconv_bn_act(hp, p.weight, p.bias, p.act.op_name, res, sc),
               lambda: Layer(f"B{i:02d} project",
                             f"{c}→{p.bias.shape[0]} @ {_hw(hp)}, k1 s1"
                             + (" +res" if b.residual else "") + (" ×SE" if sc is not None else ""),
                             pw_mflop(hp, p), ["gemm"]))
    lc, yl = net.last, y
    y = op(lambda: ops.pwconv_bn_act(yl, lc.weight, lc.bias, lc.act.op_name, None, None),
           lambda: Layer("last 1x1", f"{yl.shape[1]}→{lc.bias.shape[0]} @ {_hw(yl)}, k1 s1",
                         pw_mflop(yl, lc), ["gemm"]))
    hd, yh = net.head, y
    return op(lambda: ops.classifier_head(yh, hd.w1, hd.b1, hd.w2, hd.b2, hd.act.op_name),
              # Widths from the biases: the weights may be packed in panels (padded).
              lambda: Layer("head", f"{yh.shape[1]}→{hd.b1.shape[0]}→{hd.b2.shape[0]} @ {_hw(yh)}",
                            (yh.numel() + 2 * yh.shape[0] * hd.b1.shape[0] * (yh.shape[1] + hd.b2.shape[0])) / 1e6,
                            ["mean", "gemm", "gemm"]))


# ---- XNNPACK side: operators from ETDump, matched to our layers -----------------------------


def _anchor(name):
    """The anchor kind of an XNNPACK operator name, or None (activations, elementwise, ...)."""
    if "DWConv" in name:
        return "dw"
    if name.startswith("Convolution"):
        return "conv"
    if name.startswith("Fully Connected"):
        return "gemm"
    if name.startswith("Mean") or "Average Pooling" in name:
        return "mean"
    return None


def _fits(kind, expected):
    # A 1x1 conv may be lowered as a Convolution instead of a Fully Connected GEMM.
    return kind == expected or (kind == "conv" and expected == "gemm")


def match(layers, op_names):
    """(owner, problems): owner[j] = index of the layer XNNPACK operator j goes to, or None;
    the rule is the module docstring's."""
    owner = [None] * len(op_names)
    cur, done = -1, 0  # current layer, anchors of it consumed
    pending_mul = None  # an SE's x*scale Multiply waits for the next (project) layer
    problems = []
    for j, name in enumerate(op_names):
        kind = _anchor(name)
        if kind is None:
            if pending_mul is None and cur >= 0 and "SE" in layers[cur].name \
                    and done == len(layers[cur].anchors) and name.startswith("Multiply"):
                pending_mul = j
            else:
                owner[j] = max(cur, 0)
            continue
        if cur >= 0 and done < len(layers[cur].anchors) and _fits(kind, layers[cur].anchors[done]):
            done += 1
        elif (cur < 0 or done == len(layers[cur].anchors)) and cur + 1 < len(layers) \
                and _fits(kind, layers[cur + 1].anchors[0]):
            cur, done = cur + 1, 1
            if pending_mul is not None:
                owner[pending_mul], pending_mul = cur, None
        else:
            want = (layers[cur].anchors[done:] if cur >= 0 and done < len(layers[cur].anchors)
                    else layers[cur + 1].anchors[:1] if cur + 1 < len(layers) else "nothing")
            problems.append(f"XNNPACK op {j} {name!r} ({kind}) does not fit: expected {want} "
                            f"after layer {layers[cur].name if cur >= 0 else '(start)'}")
            break
        owner[j] = cur
    if not problems and (cur != len(layers) - 1 or done != len(layers[-1].anchors)):
        problems.append(f"XNNPACK ops ended at layer {layers[cur].name if cur >= 0 else '-'} "
                        f"(anchor {done}); later layers have no operators")
    if pending_mul is not None:
        problems.append(f"SE Multiply (op {pending_mul}) found no following layer")
    return owner, problems


def read_etdump(path, n_runs):
    """[(name, [ms per run])] of the XNNPACK operators in execution order, plus the lists for
    DELEGATE_CALL, Method::execute and the summed non-delegated OPERATOR_CALLs."""
    from executorch.devtools import Inspector
    events = [e for blk in Inspector(etdump_path=path).event_blocks if blk.name != "Default"
              for e in blk.events if e.perf_data is not None]
    for e in events:
        if len(e.perf_data.raw) != n_runs:
            raise RuntimeError(f"ETDump event {e.name!r} has {len(e.perf_data.raw)} runs, "
                               f"expected {n_runs}")
    xnn = [(e.name, list(e.perf_data.raw)) for e in events if e.is_delegated_op]
    totals = {}
    for key in ("DELEGATE_CALL", "Method::execute"):
        found = [e for e in events if e.name == key]
        if len(found) != 1:
            raise RuntimeError(f"ETDump has {len(found)} {key} events per run, expected 1")
        totals[key] = list(found[0].perf_data.raw)
    outside = [e.perf_data.raw for e in events if e.name == "OPERATOR_CALL"]
    totals["OPERATOR_CALL"] = [sum(v) for v in zip(*outside)] if outside else [0.0] * n_runs
    return xnn, totals


# ---- the run ---------------------------------------------------------------------------------


def _med_of_rounds(per_round):
    return statistics.median(statistics.median(r) for r in per_round)


def _cpu_model():
    info = {}
    with open("/proc/cpuinfo") as f:
        for line in f:
            k, _, v = line.partition(":")
            k = k.strip()
            if k in ("model name", "cpu family", "model") and k not in info:
                info[k] = v.strip()
            if k == "flags" and "flags" not in info:
                info["flags"] = " ".join(x for x in v.split() if x in ("avx2", "fma") or x.startswith("avx512"))
    return info


def run(arch="large", batch=1, threads=1, rounds=ROUNDS, turns=20, seed=0):
    peers._import("executorch")
    from executorch.extension.pybindings import portable_lib
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    tv = realistic(getattr(torchvision.models, f"mobilenet_v3_{arch}")(), seed=seed)
    fused = mbv3_fast.from_torchvision(copy.deepcopy(tv)).eval()
    if fused.fused_status != "fused":
        raise RuntimeError(f"mbv3_fast does not run fused here: {fused.fused_status}")
    net = fused._plan.net
    x = torch.randn(batch, 3, 224, 224, generator=torch.Generator().manual_seed(seed + 1))

    t0 = time.time()
    xnn_e2e = peers._executorch(tv, arch, batch, threads, x, quantized=False)  # lowers, resets pool
    lower_s = time.time() - t0
    # Loaded after peers' threadpool reset, so it runs on the same `threads`.
    traced = portable_lib._load_for_executorch_from_buffer(
        peers._et_program(tv, arch, batch, False), enable_etdump=True)
    assert portable_lib._threadpool_get_thread_count() == threads
    et_runs = [0]

    def xnn_traced():
        et_runs[0] += 1
        return traced.forward((x,))

    layers = []
    with torch.no_grad():
        ref = tv(x)
        ours = walk(net, x, lambda i, fn: fn(), layers)
        agree = {"ours_per_op": (ours - ref).abs().max().item(),
                 "ours_one_call": (fused(x) - ref).abs().max().item(),
                 "xnnpack": (peers.as_tensor(xnn_e2e()) - ref).abs().max().item(),
                 "logit_scale": ref.abs().max().item()}

        n = len(layers)
        lay_t = [[] for _ in range(n)]  # per layer: per round, the list of call times
        e2e = {"ours": [], "xnnpack": [], "ours_walk": []}
        traced_runs = []  # per round: the ETDump run indices of its timed calls

        def ours_layers():
            cur = [[] for _ in range(n)]
            walls = []

            def timed(i, fn):
                t = time.perf_counter()
                out = fn()
                cur[i].append(time.perf_counter() - t)
                return out
            walk(net, x, lambda i, fn: fn())  # warm
            for _ in range(turns):
                t = time.perf_counter()
                walk(net, x, timed)
                walls.append(time.perf_counter() - t)
            for i in range(n):
                lay_t[i].append(cur[i])
            e2e["ours_walk"].append(walls)

        def timed_block(fn, key):
            fn()  # warm this provider's threads and caches again
            s = []
            for _ in range(turns):
                t = time.perf_counter()
                fn()
                s.append(time.perf_counter() - t)
            e2e[key].append(s)

        def xnn_layers():
            xnn_traced()
            first = et_runs[0]
            for _ in range(turns):
                xnn_traced()
            traced_runs.append(range(first, et_runs[0]))

        providers = [ours_layers, lambda: timed_block(lambda: fused(x), "ours"), xnn_layers,
                     lambda: timed_block(xnn_e2e, "xnnpack")]
        for p in providers:  # warm-up round, not recorded below
            p()
        for v in lay_t:
            v.clear()
        for v in e2e.values():
            v.clear()
        traced_runs.clear()
        load_before = os.getloadavg()
        for r in range(rounds):
            k = r % len(providers)
            for p in providers[k:] + providers[:k]:
                p()
        load_after = os.getloadavg()

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "run.etdp")
        traced.write_etdump_result_to_file(path)
        xnn_ops, totals = read_etdump(path, et_runs[0])
    names = [nm for nm, _ in xnn_ops]
    owner, problems = match(layers, names)

    def xnn_ms(values):  # median of round medians of a per-run list
        return _med_of_rounds([[values[j] for j in rr] for rr in traced_runs])

    rows = []
    for i, L in enumerate(layers):
        mine = [j for j, o in enumerate(owner) if o == i]
        per_run = [sum(xnn_ops[j][1][run] for j in mine) for run in range(et_runs[0])]
        ours_us = _med_of_rounds(lay_t[i]) * 1e6
        rows.append(dict(layer=L.name, shape=L.shape, mflop=L.mflop, ours_us=ours_us,
                         xnnpack_us=xnn_ms(per_run) * 1e3 if mine else None,
                         xnnpack_ops=[names[j].split(" #")[0] for j in mine]))
    op_sum = [sum(v[run] for _, v in xnn_ops) for run in range(et_runs[0])]
    unowned = [names[j] for j, o in enumerate(owner) if o is None]
    return dict(
        arch=arch, batch=batch, threads=threads, rounds=rounds, turns=turns,
        cpu=_cpu_model(), isa=mbv3_fast.get_cpu_isa(), torch=torch.__version__,
        executorch=_version("executorch"), lowering_s=lower_s,
        loadavg=dict(before=load_before, after=load_after),  # 1/5/15-min, around the timed rounds
        method="ETDump: XNNPACK per-operator profiling events (Inspector)",
        agreement_max_abs=agree, rows=rows, problems=problems, unmatched_xnnpack_ops=unowned,
        xnnpack_op_count=len(names),
        totals=dict(
            ours_layers_us=sum(r["ours_us"] for r in rows),
            ours_walk_us=_med_of_rounds(e2e["ours_walk"]) * 1e6,
            ours_one_call_us=_med_of_rounds(e2e["ours"]) * 1e6,
            xnnpack_ops_us=xnn_ms(op_sum) * 1e3,
            xnnpack_delegate_overhead_us=xnn_ms([d - s for d, s in zip(totals["DELEGATE_CALL"], op_sum)]) * 1e3,
            xnnpack_outside_delegate_us=xnn_ms(totals["OPERATOR_CALL"]) * 1e3,
            xnnpack_method_execute_etdump_us=xnn_ms(totals["Method::execute"]) * 1e3,
            xnnpack_e2e_us=_med_of_rounds(e2e["xnnpack"]) * 1e6))


def _version(pkg):
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version(pkg)
    except PackageNotFoundError:
        return None


def _load(v):
    return "/".join(f"{x:.2f}" for x in v)


def _f(v, fmt="{:.1f}"):
    return "–" if v is None else fmt.format(v)


def format_table(res):
    c, t = res["cpu"], res["totals"]
    lines = [f"MobileNetV3-{res['arch']} fp32, batch {res['batch']}, {res['threads']} thread(s); "
             f"{c.get('model name')} (family {c.get('cpu family')}, model {c.get('model')}; "
             f"{c.get('flags')}), mbv3_fast isa {res['isa']}; torch {res['torch']}, executorch "
             f"{res['executorch']}; load (1/5/15 min) {_load(res['loadavg']['before'])} before the timed "
             f"rounds, {_load(res['loadavg']['after'])} after; "
             f"median of {res['rounds']} round medians x {res['turns']} calls. XNNPACK per op: "
             f"{res['method']}.", "",
             "| layer | shape | ours µs | XNNPACK µs | ours/XNNPACK | MFLOP | our GFLOP/s | XNNPACK ops |",
             "|---|---|---|---|---|---|---|---|"]
    for r in res["rows"]:
        x = r["xnnpack_us"]
        ops = ", ".join(f"{o}" for o in r["xnnpack_ops"]) or "NOT MATCHED"
        lines.append(f"| {r['layer']} | {r['shape']} | {r['ours_us']:.1f} | {_f(x)} | "
                     f"{_f(r['ours_us'] / x if x else None, '{:.2f}')} | {r['mflop']:.2f} | "
                     f"{r['mflop'] / r['ours_us'] * 1e3:.1f} | {ops} |")
    mflop = sum(r["mflop"] for r in res["rows"])
    lines.append(f"| **sum of layers** | | **{t['ours_layers_us']:.1f}** | **{t['xnnpack_ops_us']:.1f}** | "
                 f"**{t['ours_layers_us'] / t['xnnpack_ops_us']:.2f}** | {mflop:.1f} | "
                 f"{mflop / t['ours_layers_us'] * 1e3:.1f} | {res['xnnpack_op_count']} ops |")
    lines += [
        f"| XNNPACK delegate overhead (DELEGATE_CALL − Σ ops) | | | {t['xnnpack_delegate_overhead_us']:.1f} | | | | |",
        f"| ExecuTorch kernels outside the delegate | | | {t['xnnpack_outside_delegate_us']:.1f} | | | | |",
        f"| **end to end** (ours: one mbv3::mobilenet_v3 call; XNNPACK: method without ETDump) | | "
        f"**{t['ours_one_call_us']:.1f}** | **{t['xnnpack_e2e_us']:.1f}** | "
        f"**{t['ours_one_call_us'] / t['xnnpack_e2e_us']:.2f}** | {mflop:.1f} | "
        f"{mflop / t['ours_one_call_us'] * 1e3:.1f} | |", "",
        f"Ours walked op by op (wall, incl. timers): {t['ours_walk_us']:.1f} µs, "
        f"{t['ours_walk_us'] - t['ours_one_call_us']:.1f} µs more than one call: Python, dispatch "
        f"and whatever else the {len(res['rows'])}-call walk adds are inside the per-layer 'ours' "
        f"figures. XNNPACK with ETDump, Method::execute: "
        f"{t['xnnpack_method_execute_etdump_us']:.1f} µs.",
        "Max |logit − torchvision| (logits up to {logit_scale:.1f}): ours per op {ours_per_op:.2e}, "
        "ours one call {ours_one_call:.2e}, XNNPACK {xnnpack:.2e}.".format(**res["agreement_max_abs"])]
    if res["problems"] or res["unmatched_xnnpack_ops"]:
        lines.append("UNMATCHED: " + "; ".join(res["problems"])
                     + (f" XNNPACK ops with no layer: {res['unmatched_xnnpack_ops']}"
                        if res["unmatched_xnnpack_ops"] else ""))
    else:
        lines.append("All layers matched (XNNPACK anchor sequence = ours).")
    losses = sorted((r for r in res["rows"] if r["xnnpack_us"] and r["ours_us"] > r["xnnpack_us"]),
                    key=lambda r: r["xnnpack_us"] - r["ours_us"])
    if losses:
        lines.append("XNNPACK faster (µs lost, largest first): " + "; ".join(
            f"{r['layer']} {r['ours_us'] - r['xnnpack_us']:.1f} (×{r['ours_us'] / r['xnnpack_us']:.2f})"
            for r in losses))
    return "\n".join(lines)


@pytest.mark.parametrize("threads", [1, 2])
def test_interleaved_layers_xnnpack(threads):
    """Large, batch 1 (`-k interleaved`: like bench_model's, not part of `make bench`)."""
    res = run("large", 1, threads)
    print("\n" + format_table(res))
    assert not res["problems"] and not res["unmatched_xnnpack_ops"], res["problems"]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", choices=["large", "small"], default="large")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=ROUNDS)
    ap.add_argument("--turns", type=int, default=20, help="calls per provider per round")
    ap.add_argument("--json", help="write the result as JSON")
    a = ap.parse_args(argv)
    res = run(a.arch, a.batch, a.threads, a.rounds, a.turns)
    print(format_table(res))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)
    return 1 if res["problems"] or res["unmatched_xnnpack_ops"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
