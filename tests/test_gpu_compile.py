"""CI compile check of the Triton kernels for real GPU targets, with no GPU present.

Runs ``bench/gpu_check.py --compile-only`` in a subprocess (this pytest process has
TRITON_INTERPRET=1 from conftest.py; compiling needs the real JIT).  The script compiles the
kernels through their own wrappers for sm_90 and sm_80 and fails on a compile error, a spill or a
memory-bound kernel above 128 registers.  The subset here (MobileNetV3-Small, batch 1 and 256,
fp16, both layouts, both targets) keeps the test to ~2-3 min on a 2-core machine; the full grid
(Large and Small, batch 1/32/256, fp32/fp16/bf16) is the first phase of the device script and
``python bench/gpu_check.py --compile-only`` with no options.  A fresh TRITON_CACHE_DIR per run:
nothing compiled earlier can hide a failure.
"""
import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KERNELS = {"_conv_bn_act_kernel", "_dwconv_bn_act_kernel", "_pwconv_bn_act_kernel",
           "_se_pool_fc1_kernel", "_se_fc2_kernel", "_se_mul_kernel", "_head_pool_kernel",
           "_head_linear_kernel"}


def _ptxas_available():
    try:
        import triton
    except ImportError:
        return False
    return os.path.exists(os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia",
                                       "bin", "ptxas"))


@pytest.mark.skipif(not _ptxas_available(), reason="triton's NVIDIA backend (ptxas) not installed")
def test_compile_only_sm90_sm80(tmp_path):
    out = tmp_path / "compile.json"
    env = {k: v for k, v in os.environ.items() if k not in ("TRITON_INTERPRET", "TRITON_CACHE_DIR")}
    proc = subprocess.run(
        [sys.executable, os.path.join(REPO, "bench", "gpu_check.py"), "--compile-only",
         "--archs", "90,80", "--variants", "small", "--batches", "1,256", "--dtypes", "fp16",
         "--compile-out", str(out)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    res = json.loads(out.read_text())
    assert res["errors"] == [], res["errors"]
    # Open (not explained yet, so not an exception in gpu_check.py): on sm_80 the channels_last
    # SE pool kernel for the C=16, S=8 layer gets an 8-byte stack frame (96 registers); a smaller
    # tile made it 16 bytes.  Any other failure, or this one growing, fails the test.
    known = [f for f in res["failures"] if f.get("arch") == 80 and f.get("kernel") == "_se_pool_fc1_kernel"
             and f["meta"]["BLOCK_S"] == 8 and f.get("spill_bytes", 99) <= 8]
    other = [f for f in res["failures"] if f not in known]
    known_ids = {(f["arch"], f["kernel"], json.dumps(f["meta"], sort_keys=True)) for f in known}
    assert other == [], proc.stdout[-6000:]
    assert proc.returncode == (1 if known else 0), proc.stdout[-3000:] + proc.stderr[-3000:]
    seen = {(k["arch"], k["kernel"]) for k in res["kernels"]}
    assert seen == {(a, k) for a in (90, 80) for k in KERNELS}
    for k in res["kernels"]:
        assert k["regs"] > 0 and (k["spill_bytes"] == 0 or
                                (k["arch"], k["kernel"], json.dumps(k["meta"], sort_keys=True)) in known_ids)
    # the channels_last depthwise path does get vector (v2/v4) accesses along channels (not every
    # variant does yet: see the table gpu_check prints)
    dw_cl = [k for k in res["kernels"] if k["kernel"] == "_dwconv_bn_act_kernel" and k["meta"]["CL"]
             and k["meta"]["VEC"] == 8]
    assert dw_cl and any(k["ld_v4"] + k["ld_v2"] > 0 and k["st_v4"] + k["st_v2"] > 0 for k in dw_cl)
