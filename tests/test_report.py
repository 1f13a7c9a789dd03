"""The reporting tools keep working: bench/bench_blocks.py (quick mode), bench/summarize.py
(tables, --png, --compare) on the JSON it writes, and the profiler CLI (python -m
mbv3_fast.profile).  Each runs in a subprocess, as a user runs it; about half a minute."""
import copy
import json
import math
import os
import subprocess
import sys

import pytest
import torch

import mbv3_fast
from mbv3_fast import model as fm
from mbv3_fast.profile import Pair, block_configs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _env(**extra):
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def _run(args, **env):
    p = subprocess.run([sys.executable] + args, cwd=ROOT, env=_env(**env), capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return p.stdout


def _md_rows(text, title):
    """Data rows of the Markdown table whose bold title contains `title`."""
    blocks = text.split("**" + title)
    assert len(blocks) >= 2, text
    rows = []
    for line in blocks[1].splitlines()[1:]:
        if line.startswith("**"):
            break
        if line.startswith("| ") and not line.startswith("| layer"):
            rows.append([c.strip() for c in line.strip("|").split("|")])
    return rows


@pytest.fixture(scope="module")
def bench_json(tmp_path_factory):
    """A quick, real pytest-benchmark run of bench/bench_blocks.py (MBV3_BENCH_QUICK=1)."""
    path = str(tmp_path_factory.mktemp("bench") / "blocks.json")
    _run(["-m", "pytest", "bench/bench_blocks.py", "-q", "-p", "no:cacheprovider",
          f"--benchmark-json={path}", "--benchmark-min-rounds=2", "--benchmark-max-time=0.001",
          "--benchmark-warmup=off", "--benchmark-disable-gc"],
         MBV3_BENCH_QUICK="1", OMP_NUM_THREADS="1")
    return path


def test_fused_block_forward_matches_model():
    """The shared block function chained == the model's fused forward (and torchvision's)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _check_chain()
    finally:
        torch.set_num_threads(before)


def _check_chain():
    pair = Pair("small", 1)
    with torch.no_grad():
        h = fm.fused_stem_forward(pair.plan, pair.x)
        for i, blk in enumerate(pair.plan.net.blocks):
            ref_block = pair.tv.features[i + 1](h)
            h2 = fm.fused_block_forward(blk, h, i)
            torch.testing.assert_close(h2, ref_block, rtol=1e-3, atol=1e-3)
            h = h2
        y = fm.fused_head_forward(pair.plan, h, pair.fused.classifier)
        torch.testing.assert_close(y, pair.fused(pair.x), rtol=0, atol=0)


def test_bench_blocks_and_summarize(bench_json, tmp_path):
    with open(bench_json) as f:
        data = json.load(f)
    infos = [b["extra_info"] for b in data["benchmarks"]]
    assert {i["suite"] for i in infos} == {"blocks"}
    assert {i["provider"] for i in infos} == {"fused", "unfused"}
    for k in ("k", "exp", "out", "se", "act", "stride"):
        assert all(k in i for i in infos)
    out = _run(["bench/summarize.py", bench_json, "--png", str(tmp_path / "png")])
    for arch in ("large", "small"):
        quick = {0, len(block_configs(arch)) // 2, len(block_configs(arch)) - 1}
        rows = _md_rows(out, f"blocks — {arch} b1 t1")
        blocks = [r for r in rows if not r[0].startswith("**")]
        assert len(blocks) == len(quick), out
        for r in blocks:
            speedup = float(r[-1])
            assert math.isfinite(speedup) and speedup > 0
    pngs = sorted(os.listdir(tmp_path / "png"))
    assert pngs == ["blocks_large_b1_t1.png", "blocks_small_b1_t1.png"], pngs
    assert all(os.path.getsize(tmp_path / "png" / p) > 1000 for p in pngs)


def test_summarize_compare(bench_json, tmp_path):
    with open(bench_json) as f:
        data = json.load(f)
    slower = copy.deepcopy(data)
    slower["benchmarks"][0]["stats"]["median"] *= 1.5
    new = tmp_path / "new.json"
    new.write_text(json.dumps(slower))
    out = _run(["bench/summarize.py", "--compare", bench_json, str(new)])
    assert out.count("REGRESSION") == 1, out
    assert f"{len(data['benchmarks'])} compared, 1 regression" in out
    p = subprocess.run([sys.executable, "bench/summarize.py", "--compare", bench_json, str(new),
                        "--fail"], cwd=ROOT, env=_env(), capture_output=True, text=True)
    assert p.returncode == 1


def test_summarize_model_chart(tmp_path):
    """--png on a (synthetic) end-to-end "model" suite JSON draws model.png."""
    benches = []
    for cfg in ("large b1 t1", "large b8 t1"):
        for prov, t in (("fused", 1e-3), ("torchvision_cl", 2e-3), ("torchvision_nchw", 3e-3)):
            benches.append({"name": f"test_latency[{cfg}-{prov}]", "fullname": f"x::{cfg}::{prov}",
                            "group": f"mobilenet_v3_{cfg}",
                            "stats": {"median": t, "iqr": t / 10},
                            "extra_info": {"suite": "model", "config": cfg, "provider": prov,
                                           "layer": "mobilenet_v3_large"}})
    path = tmp_path / "model.json"
    path.write_text(json.dumps({"benchmarks": benches, "machine_info": {}, "datetime": ""}))
    out = _run(["bench/summarize.py", str(path), "--png", str(tmp_path / "png")])
    assert "**model — large b1 t1**" in out
    assert (tmp_path / "png" / "model.png").stat().st_size > 1000


def test_profile_cli(tmp_path):
    trace, png, js = tmp_path / "trace.json", tmp_path / "prof.png", tmp_path / "prof.json"
    out = _run(["-m", "mbv3_fast.profile", "--arch", "small", "--batch", "1", "--threads", "1",
                "--iters", "2", "--trace", str(trace), "--png", str(png), "--json", str(js)])
    n = len(block_configs("small"))
    lines = [l for l in out.splitlines() if l.startswith("| B")]
    assert len(lines) == n, out
    assert any(l.startswith("| stem ") for l in out.splitlines())
    assert any(l.startswith("| head ") for l in out.splitlines())
    for line in lines:
        speedup = float(line.strip("|").split("|")[3])
        assert math.isfinite(speedup) and speedup > 0, line
    result = json.loads(js.read_text())
    blocks = [r for r in result["rows"] if "block" in r]
    assert [r["block"] for r in blocks] == list(range(n))
    for r in blocks:
        sp = r["split_pct"]
        assert sp["depthwise"] is not None and sp["project"] is not None
        assert (sp["se"] is not None) == r["se"]
        # "in dw": the block's expand runs inside its depthwise op (expand_dwconv_bn_act)
        assert sp["expand"] in (None, "in dw") or isinstance(sp["expand"], float)
        assert abs(sum(v for v in sp.values() if isinstance(v, float)) - 100) < 1e-6
    text = trace.read_text()
    events = json.loads(text)["traceEvents"]
    names = {e.get("name", "") for e in events}
    assert any(n.startswith("mbv3::") for n in names), sorted(names)[:50]
    assert "mbv3.block0.depthwise" in names
    assert png.stat().st_size > 1000


def test_every_bench_file_runs():
    """Smoke run of the other benchmark files (one call each, no timing) so they never rot:
    first/last layer of each op at 1 thread, the model at batch 1 (torch.compile and ONNX
    Runtime providers left out: they take minutes, and ORT is optional)."""
    p = _run(["-m", "pytest", "bench/bench_dwconv_bn_act.py", "bench/bench_conv_bn_act.py",
              "bench/bench_se.py", "bench/bench_pwconv_bn_act.py", "bench/bench_model.py", "-q",
              "-p", "no:cacheprovider",
              "--benchmark-disable", "-k",
              "(L00 or L14 or L0_ or L7_ or fused or torchvision_cl) and t1 and not b8 "
              "and not compile and not onnx and not interleaved"])
    assert "passed" in p and " failed" not in p, p[-2000:]
