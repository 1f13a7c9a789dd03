"""CI compile check of the Triton kernels for real GPU targets, with no GPU present.

Runs ``bench/gpu_check.py --compile-only`` in a subprocess (this pytest process has
TRITON_INTERPRET=1 from conftest.py; compiling needs the real JIT).  The script compiles the
kernels through their own wrappers for sm_90 and sm_80 and fails on a compile error, a spill or a
memory-bound kernel above 128 registers.  A fresh TRITON_CACHE_DIR per run: nothing compiled
earlier can hide a failure.

* ``test_compile_subset`` (every run): MobileNetV3-Small, batch 1 and 256, fp16, both layouts,
  both targets, ~80 s on 2 cores.
* ``test_compile_full_grid`` (MBV3_GPU_COMPILE_FULL=1, CI's compile step): Large and Small,
  batch 1/32/256, fp32/fp16/bf16, both layouts, both targets: 6156 launches, 549 distinct
  kernels; 382 s of CPU (2026-12-02, Zen 3): about 3.5 min on 2 idle cores with --jobs 2.
"""
import itertools
import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KERNELS = {"_conv_bn_act_kernel", "_dwconv_bn_act_kernel", "_pwconv_bn_act_kernel",
           "_se_pool_fc1_kernel", "_se_fc2_kernel", "_se_mul_kernel", "_head_pool_kernel",
           "_head_linear_kernel"}
FULL = os.environ.get("MBV3_GPU_COMPILE_FULL") == "1"

# Open failures of the full grid, not fixed on this branch (none today).  Each entry: (arch,
# kernel, meta values, dtype in the first configuration's label, the largest stack measured, in
# bytes).  Any other failure, or one of these growing, fails the test.  The last two (the fp32
# stem at batch 1 on sm_90, 64 B; the fp32 1x1 conv with the SE scale on sm_80, 24 B) were fixed
# by their launch configurations: see _conv_blocks / _pw_blocks.
KNOWN_OPEN = []


def _ptxas_available():
    try:
        import triton
    except ImportError:
        return False
    return os.path.exists(os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia",
                                       "bin", "ptxas"))


needs_ptxas = pytest.mark.skipif(not _ptxas_available(),
                                 reason="triton's NVIDIA backend (ptxas) not installed")


def _is_known(k):
    return any(k.get("arch") == arch and k.get("kernel") == name
               and all(k["meta"].get(m) == v for m, v in meta.items())
               and f" {dtype} " in k.get("first_config", "") and k.get("spill_bytes", 1 << 30) <= most
               for arch, name, meta, dtype, most in KNOWN_OPEN)


def _compile_and_check(tmp_path, grid, timeout):
    out = tmp_path / "compile.json"
    env = {k: v for k, v in os.environ.items() if k not in ("TRITON_INTERPRET", "TRITON_CACHE_DIR")}
    args = [f"--{k}={','.join(map(str, v))}" for k, v in grid.items()]
    proc = subprocess.run(
        [sys.executable, os.path.join(REPO, "bench", "gpu_check.py"), "--compile-only", "--jobs", "2",
         *args, "--compile-out", str(out)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    log = proc.stdout[-6000:] + proc.stderr[-3000:]
    assert out.exists(), log
    res = json.loads(out.read_text())
    assert res["errors"] == [], res["errors"]
    known = [f for f in res["failures"] if _is_known(f)]
    assert [f for f in res["failures"] if not _is_known(f)] == [], log
    assert proc.returncode == (1 if known else 0), log
    # every configuration of the grid was enumerated, every kernel compiled for both targets
    tags = {" ".join(c["config"].split()[:4]) for c in res["config_map"]}
    assert tags == {f"{v} N={n} {d} {lay}" for v, n, d, lay in itertools.product(
        grid["variants"], grid["batches"], grid["dtypes"], grid["layouts"])}
    assert {(k["arch"], k["kernel"]) for k in res["kernels"]} == {(a, k) for a in (90, 80) for k in KERNELS}
    for k in res["kernels"]:
        assert k["regs"] > 0 and (k["spill_bytes"] == 0 or _is_known(k)), k
    # the channels_last depthwise path does get vector (v2/v4) accesses along channels (not every
    # variant does yet: see the table gpu_check prints)
    dw_cl = [k for k in res["kernels"] if k["kernel"] == "_dwconv_bn_act_kernel" and k["meta"]["CL"]
             and k["meta"]["VEC"] == 8]
    assert dw_cl and any(k["ld_v4"] + k["ld_v2"] > 0 and k["st_v4"] + k["st_v2"] > 0 for k in dw_cl)
    return res, known


@needs_ptxas
def test_compile_subset(tmp_path):
    res, known = _compile_and_check(tmp_path, dict(
        archs=(90, 80), variants=("small",), batches=(1, 256), dtypes=("fp16",),
        layouts=("channels_last", "nchw")), timeout=900)
    assert known == []


@needs_ptxas
@pytest.mark.skipif(not FULL, reason="the full grid (~3.5 min on 2 idle cores) runs in CI's compile "
                                     "step: MBV3_GPU_COMPILE_FULL=1")
def test_compile_full_grid(tmp_path):
    res, known = _compile_and_check(tmp_path, dict(
        archs=(90, 80), variants=("large", "small"), batches=(1, 32, 256),
        dtypes=("fp32", "fp16", "bf16"), layouts=("channels_last", "nchw")), timeout=2400)
    print(f"full grid: {res['configs']} launches, {res['unique_kernels']} kernels, "
          f"{res['seconds']} s, open: {[(k['arch'], k['kernel']) for k in known]}")
