"""int8 classifier head (torch.ops.mbv3.q8_classifier_head) vs PyTorch's quantized modules
(adaptive_avg_pool2d, Linear 960 -> 1280, Hardswish, Linear 1280 -> 1000, dequantize; x86
engine) for MobileNetV3-Large, batch 1 and 8, 1 thread; GOP/s = 2 ops per MAC of the linears.

  pytest bench/bench_q8_classifier_head.py --benchmark-only
"""
import os
import sys

import pytest
import torch
import torch.nn.functional as F

import mbv3_fast  # noqa: F401
from mbv3_fast.ops.q8_classifier_head import head_args
from mbv3_fast.testing import head_layers

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
from test_q8_classifier_head import make_modules  # noqa: E402


def make_head(batch):
    torch.backends.quantized.engine = "x86"
    (c, h, w, hd, k, _), = head_layers("large")
    torch.manual_seed(7)
    l1, hs, l2 = make_modules(c, hd, k, "x86")
    xi = torch.randint(0, 256, (batch, c, h, w), dtype=torch.uint8).contiguous(memory_format=torch.channels_last)
    xq = torch._make_per_tensor_quantized_tensor(xi, 0.05, 10)
    args = (xi,) + head_args(l1, hs, l2, 0.05, 10, "x86")
    op = torch.ops.mbv3.q8_classifier_head
    ours = lambda: op(*args)  # noqa: E731
    ref = lambda: torch.dequantize(l2(hs(l1(F.adaptive_avg_pool2d(xq, 1).flatten(1)))))  # noqa: E731
    return ours, ref, batch * (c * hd + hd * k)


@pytest.mark.parametrize("threads", [1], indirect=True)
@pytest.mark.parametrize("provider", ["mbv3", "torch"])
@pytest.mark.parametrize("batch", [1, 8])
def test_q8_classifier_head(benchmark, record, threads, provider, batch):
    ours, ref, macs = make_head(batch)
    benchmark.group = f"q8_classifier_head b{batch}"
    record(suite="q8_classifier_head", provider=provider, batch=batch)
    benchmark(ours if provider == "mbv3" else ref)
    benchmark.extra_info["GOP/s"] = 2 * macs / benchmark.stats.stats.median / 1e9
