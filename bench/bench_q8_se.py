"""int8 squeeze-excitation scale (torch.ops.mbv3.q8_se) vs PyTorch's quantized modules
(adaptive_avg_pool2d on the quint8 tensor, ConvReLU2d, Conv2d, hardsigmoid; x86 engine), on
every SE layer of MobileNetV3-Large, batch 1, 1 thread, channels_last.

  pytest bench/bench_q8_se.py --benchmark-only
"""
import os
import sys

import pytest
import torch
import torch.nn.functional as F

import mbv3_fast  # noqa: F401
from mbv3_fast.ops.q8_se import se_args
from mbv3_fast.testing import se_layers

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
from test_q8_se import make_modules  # noqa: E402

LAYERS = se_layers("large")


def make_layer(index):
    torch.backends.quantized.engine = "x86"
    c, s, h, w = LAYERS[index]
    torch.manual_seed(100 + index)
    fc1, fc2 = make_modules(c, s, 0.05, 10, "x86")
    xi = torch.randint(0, 256, (1, c, h, w), dtype=torch.uint8).contiguous(memory_format=torch.channels_last)
    xq = torch._make_per_tensor_quantized_tensor(xi, 0.05, 10)
    args = (xi,) + se_args(fc1, fc2, 0.05, 10, "x86")
    op = torch.ops.mbv3.q8_se
    return (lambda: op(*args)), (lambda: F.hardsigmoid(fc2(fc1(F.adaptive_avg_pool2d(xq, 1)))))


@pytest.mark.parametrize("threads", [1], indirect=True)
@pytest.mark.parametrize("provider", ["mbv3", "torch"])
@pytest.mark.parametrize("index", range(len(LAYERS)))
def test_q8_se(benchmark, record, threads, provider, index):
    ours, ref = make_layer(index)
    c, s, h, w = LAYERS[index]
    benchmark.group = f"q8_se L{index} C{c} S{s} {h}x{w}"
    record(suite="q8_se", provider=provider, layer=index)
    benchmark(ours if provider == "mbv3" else ref)
