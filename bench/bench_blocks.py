"""Per inverted residual block (bneck) of MobileNetV3-Large and -Small, fp32 eval:
torchvision's InvertedResidual module on a channels_last input ("unfused", model converted to
channels_last) vs mbv3_fast's fused block, ``mbv3_fast.model.fused_block_forward`` — the very
function the model's fused forward calls ("fused").  Both get the same input: the block's
input in a real forward of a 224x224 batch.  Batch 1 and 8, 1 and 2 threads.

bench/summarize.py prints suite "blocks": one table per (arch, batch, threads), one row per
block, speedup and sum.  MBV3_BENCH_QUICK=1: batch 1, 1 thread, three blocks per model (the CI
smoke run).
"""
import os

import pytest
import torch

from mbv3_fast.profile import Pair, block_configs, block_label

QUICK = os.environ.get("MBV3_BENCH_QUICK", "") not in ("", "0")
ARCHS = ["large", "small"]
BATCHES = [1] if QUICK else [1, 8]
THREADS = [1] if QUICK else [1, 2]


def _blocks(arch):
    n = len(block_configs(arch))
    return [0, n // 2, n - 1] if QUICK else list(range(n))


CASES = [(a, i) for a in ARCHS for i in _blocks(a)]
_pairs = {}


def _pair(arch, batch):
    if (arch, batch) not in _pairs:
        _pairs[(arch, batch)] = Pair(arch, batch)
    return _pairs[(arch, batch)]


@pytest.mark.parametrize("provider", ["unfused", "fused"])
@pytest.mark.parametrize("threads", THREADS, indirect=True, ids=lambda t: f"t{t}")
@pytest.mark.parametrize("batch", BATCHES, ids=lambda b: f"b{b}")
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-B{c[1]:02d}")
def test_block(benchmark, record, case, batch, threads, provider):
    arch, idx = case
    cfg = block_configs(arch)[idx]
    benchmark.group = f"blocks {arch} b{batch} t{threads} {block_label(idx, cfg)}"
    record(suite="blocks", config=f"{arch} b{batch} t{threads}", provider=provider, layer=idx,
           arch=arch, batch=batch, **{k: cfg[k] for k in ("k", "exp", "out", "se", "act", "stride")})
    pair = _pair(arch, batch)
    fn = pair.fused_block(idx) if provider == "fused" else pair.unfused_block(idx)
    with torch.no_grad():
        fn()
        benchmark(fn)
