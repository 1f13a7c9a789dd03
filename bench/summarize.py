"""Render a pytest-benchmark JSON as Markdown: per layer median (IQR) of each provider, the
speedup of `fused` over every other provider, and the sum over layers per configuration.

    python bench/summarize.py bench/results/latest.json [--suite dwconv_bn_act]
"""
import argparse
import json
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


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("json")
    ap.add_argument("--suite")
    args = ap.parse_args()
    machine, when, rows = load(args.json)
    print(f"{when} · {machine.get('cpu', {}).get('brand_raw', machine.get('machine', ''))} · "
          f"python {machine.get('python_version', '')}\n")
    print("\n\n".join(tables(rows, args.suite)))


if __name__ == "__main__":
    main()
