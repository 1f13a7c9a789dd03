"""bench/gpu_check.py --dry-run: the device script's timing phases run on the CPU (Triton
interpreter, tiny layers, fake timings), so that code cannot rot between the rare GPU runs.
Checks the exit status, the JSON it writes (every planned row present, no errors, the CUDA-only
model modes recorded as skipped) and the Markdown table README takes."""
import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "bench"))
import gpu_check  # noqa: E402


def test_dry_run_json_and_table(tmp_path):
    out = tmp_path / "dry.json"
    env = dict(os.environ, TRITON_INTERPRET="1")
    proc = subprocess.run([sys.executable, os.path.join(REPO, "bench", "gpu_check.py"), "--dry-run",
                           "--out", str(out)], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    res = json.loads(out.read_text())
    assert res["dry_run"] is True
    assert set(res["routing"]) == {"dwconv_bn_act", "se", "se_scale"}

    # whole-model rows: one per mode; the CPU ones timed, the CUDA-only ones skipped with why
    models = res["model_rows"]
    assert [r["mode"] for r in models] == list(gpu_check.MODEL_MODES)
    for r in models:
        assert "error" not in r, r
        if r["mode"] in gpu_check.CUDA_ONLY_MODES:
            assert r["skipped"] == "needs CUDA"
        else:
            assert r["ms"] > 0 and r["top1_agree"] == 1.0, r
            assert r["max_abs_diff_vs_tv"] <= 1e-3 * r["logits_scale"], r
    assert models[0]["fused_status"] == "fused"

    # per-layer rows: every kind x dtype x layout planned, none failed or dropped
    rows = res["rows"]
    assert all("error" not in r for r in rows), [r for r in rows if "error" in r]
    assert {(r["kind"], r["dtype"], r["fmt"]) for r in rows} == {
        (k, d, f) for k in gpu_check.LAYER_BENCHES for d in ("fp32", "bf16")
        for f in ("channels_last", "nchw")}
    for r in rows:
        assert r["torch_ms"] > 0 and r["fused_ms"] > 0 and r["output_format_ok"], r
    assert any(r.get("repeat_of_previous") for r in rows)
    assert {p: v["skipped"] for p, v in res["phases"].items()} == {"model_rows": 0, "rows": 0}
    assert len(res["sums"]) == len({(r["kind"], r["batch"], r["dtype"], r["fmt"]) for r in rows})

    # the Markdown table: header, separator, one line per model configuration and per sum
    table = [ln for ln in proc.stdout.splitlines() if ln.startswith("|")]
    assert table[0].startswith("| what | batch | dtype | layout |")
    ncols = table[0].count("|")
    assert all(ln.count("|") == ncols for ln in table)
    assert len(table) == 2 + 1 + len(res["sums"])
    assert table == gpu_check.fmt_markdown(res).splitlines()
