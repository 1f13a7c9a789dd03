"""Render a pytest-benchmark JSON as Markdown: per layer median (IQR) of each provider, the
speedup of `fused` over every other provider, and the sum over layers per configuration.

    python bench/summarize.py bench/results/latest.json [--suite dwconv_bn_act] [--png DIR]
    python bench/summarize.py --compare OLD.json NEW.json [--threshold 0.10] [--fail]

--png DIR   also draws charts (matplotlib, Agg): per configuration of every layered suite
            (e.g. "blocks"), bars of each provider's median per layer; for suite "model"
            one end-to-end chart, providers vs fused per configuration.
--compare   per benchmark present in both files: old and new median and new/old; flags
            ratios above 1 + threshold as regressions (--fail: exit status 1 if any).
"""
import argparse
import json
import math
import os
import re
import sys
from collections import defaultdict


def load(path):
    with open(path) as f:
        data = json.load(f)
    rows = []
    for b in data["benchmarks"]:
        info = b.get("extra_info", {})
        if "suite" not in info:
            continue
        rows.append(dict(suite=info["suite"], config=info["config"], provider=info["provider"],
                         layer=info.get("layer", b["group"]), group=b["group"],
                         median_us=b["stats"]["median"] * 1e6, iqr_us=b["stats"]["iqr"] * 1e6))
    return data.get("machine_info", {}), data.get("datetime", ""), rows


def tables(rows, suite_filter=None):
    by_cfg = defaultdict(lambda: defaultdict(dict))  # (suite, config) -> layer -> provider -> row
    for r in rows:
        if suite_filter and r["suite"] != suite_filter:
            continue
        by_cfg[(r["suite"], r["config"])][r["layer"]][r["provider"]] = r
    out = []
    for (suite, config), layers in sorted(by_cfg.items()):
        providers = sorted({p for v in layers.values() for p in v}, key=lambda p: (p == "fused", p))
        baselines = [p for p in providers if p != "fused"]
        head = ["layer"] + [f"{p} µs (IQR)" for p in providers] + [f"× vs {b}" for b in baselines]
        lines = [f"**{suite} — {config}**", "", "| " + " | ".join(head) + " |",
                 "|" + "---|" * len(head)]
        sums = defaultdict(float)
        for layer, prov in sorted(layers.items(), key=lambda kv: str(kv[0]).zfill(4)):
            name = next(iter(prov.values()))["group"]
            cells = [name]
            for p in providers:
                r = prov.get(p)
                cells.append(f"{r['median_us']:.1f} ({r['iqr_us']:.1f})" if r else "–")
                if r and all(q in prov for q in providers):
                    sums[p] += r["median_us"]
            for b in baselines:
                ok = "fused" in prov and b in prov
                cells.append(f"{prov[b]['median_us'] / prov['fused']['median_us']:.2f}" if ok else "–")
            lines.append("| " + " | ".join(cells) + " |")
        if "fused" in sums:
            cells = ["**sum**"] + [f"**{sums[p]:.1f}**" for p in providers]
            cells += [f"**{sums[b] / sums['fused']:.2f}**" for b in baselines]
            lines.append("| " + " | ".join(cells) + " |")
        out.append("\n".join(lines))
    return out


def _slug(text):
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(text)).strip("_")


def draw_pngs(rows, out_dir, suite_filter=None):
    """Charts for `rows` (from load) under out_dir; returns the paths written."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    os.makedirs(out_dir, exist_ok=True)
    by_cfg = defaultdict(lambda: defaultdict(dict))
    for r in rows:
        if suite_filter and r["suite"] != suite_filter:
            continue
        by_cfg[(r["suite"], r["config"])][r["layer"]][r["provider"]] = r
    written = []
    # Layered suites: one chart per configuration, one bar group per layer.
    for (suite, config), layers in sorted(by_cfg.items()):
        if suite == "model":
            continue
        providers = sorted({p for v in layers.values() for p in v}, key=lambda p: (p == "fused", p))
        items = sorted(layers.items(), key=lambda kv: str(kv[0]).zfill(4))
        names = [str(k) for k, _ in items]
        fig, ax = plt.subplots(figsize=(max(6, 0.45 * len(items) * len(providers) + 2), 4.5))
        w = 0.8 / len(providers)
        for j, p in enumerate(providers):
            xs = [i + (j - (len(providers) - 1) / 2) * w for i in range(len(items))]
            ax.bar(xs, [prov[p]["median_us"] if p in prov else 0 for _, prov in items], w, label=p)
        if "fused" in providers:
            for i, (_, prov) in enumerate(items):
                if "fused" in prov and len(prov) > 1:
                    top = max(r["median_us"] for r in prov.values())
                    base = [b for b in providers if b != "fused" and b in prov][0]
                    ax.text(i, top, f"×{prov[base]['median_us'] / prov['fused']['median_us']:.2f}",
                            ha="center", va="bottom", fontsize=7)
        ax.set_xticks(range(len(items)))
        ax.set_xticklabels(names, fontsize=8)
        ax.set_xlabel("layer / block")
        ax.set_ylabel("µs (median)")
        ax.set_title(f"{suite} — {config}")
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = os.path.join(out_dir, f"{_slug(suite)}_{_slug(config)}.png")
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    # End to end (suite "model"): every configuration, providers as bars, ratio to fused.
    model = {cfg: next(iter(layers.values())) for (suite, cfg), layers in by_cfg.items()
             if suite == "model" and layers}
    if model:
        configs = sorted(model)
        providers = sorted({p for v in model.values() for p in v}, key=lambda p: (p != "fused", p))
        fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(configs) * len(providers) / 2 + 2), 4.5))
        w = 0.8 / len(providers)
        for j, p in enumerate(providers):
            xs = [i + (j - (len(providers) - 1) / 2) * w for i in range(len(configs))]
            vals = [model[c][p]["median_us"] / 1e3 if p in model[c] else 0 for c in configs]
            ax.bar(xs, vals, w, label=p)
            for x, c, v in zip(xs, configs, vals):
                if v and "fused" in model[c] and p != "fused":
                    ax.text(x, v, f"×{model[c][p]['median_us'] / model[c]['fused']['median_us']:.2f}",
                            ha="center", va="bottom", fontsize=6)
        ax.set_xticks(range(len(configs)))
        ax.set_xticklabels(configs, fontsize=8)
        ax.set_ylabel("ms (median)")
        ax.set_title("MobileNetV3 end to end (× = provider / fused)")
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = os.path.join(out_dir, "model.png")
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written


def compare(old_path, new_path, threshold=0.10):
    """(Markdown lines, number of regressions): per benchmark in both files, new/old median."""
    def medians(path):
        with open(path) as f:
            data = json.load(f)
        return {b.get("fullname", b["name"]): b["stats"]["median"] for b in data["benchmarks"]}
    old, new = medians(old_path), medians(new_path)
    common = [k for k in new if k in old]
    lines = [f"old: {old_path} · new: {new_path} · regression: new/old > {1 + threshold:.2f}", "",
             "| benchmark | old µs | new µs | new/old | |", "|---|---|---|---|---|"]
    n_reg = 0
    for k in common:
        ratio = new[k] / old[k] if old[k] > 0 else math.inf
        flag = ""
        if ratio > 1 + threshold:
            flag, n_reg = "**REGRESSION**", n_reg + 1
        elif ratio < 1 - threshold:
            flag = "faster"
        lines.append(f"| {k} | {old[k] * 1e6:.1f} | {new[k] * 1e6:.1f} | {ratio:.3f} | {flag} |")
    only_old = [k for k in old if k not in new]
    only_new = [k for k in new if k not in old]
    lines.append("")
    lines.append(f"{len(common)} compared, {n_reg} regression(s) > {threshold:.0%}; "
                 f"{len(only_old)} only in old, {len(only_new)} only in new")
    return lines, n_reg


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("json", nargs="?")
    ap.add_argument("--suite")
    ap.add_argument("--png", metavar="DIR", help="also draw charts into DIR")
    ap.add_argument("--compare", nargs=2, metavar=("OLD", "NEW"))
    ap.add_argument("--threshold", type=float, default=0.10)
    ap.add_argument("--fail", action="store_true", help="with --compare: exit 1 on a regression")
    args = ap.parse_args(argv)
    if args.compare:
        lines, n_reg = compare(*args.compare, threshold=args.threshold)
        print("\n".join(lines))
        return 1 if (args.fail and n_reg) else 0
    if not args.json:
        ap.error("give a JSON file (or --compare OLD NEW)")
    machine, when, rows = load(args.json)
    print(f"{when} · {machine.get('cpu', {}).get('brand_raw', machine.get('machine', ''))} · "
          f"python {machine.get('python_version', '')}\n")
    print("\n\n".join(tables(rows, args.suite)))
    if args.png:
        for path in draw_pngs(rows, args.png, args.suite):
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
