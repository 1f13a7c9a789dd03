"""CUDA-graph and torch.compile(mode="reduce-overhead") parity of the fused eval forward.

Both need a CUDA device (graphs do not exist on the CPU); they skip here with "no CUDA device"
and run in bench/gpu_check.py on a GPU.  The argument checks of capture() run everywhere.
"""
import pytest
import torch

import mbv3_fast
from mbv3_fast import cuda_graph

CUDA = torch.cuda.is_available()
cuda_only = pytest.mark.skipif(not CUDA, reason="no CUDA device")


def _model(arch, dtype):
    torch.manual_seed(0)
    m = {"large": mbv3_fast.mobilenet_v3_large, "small": mbv3_fast.mobilenet_v3_small}[arch]()
    m.eval()
    with torch.no_grad():  # non-trivial BN statistics so the folded biases are not zero
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.2, 0.2)
                mod.running_var.uniform_(0.5, 1.5)
    return m.to("cuda", dtype)


def test_capture_rejects_cpu_input():
    with pytest.raises(ValueError, match="CUDA tensor"):
        cuda_graph.capture(torch.nn.Identity(), torch.randn(1, 3, 8, 8))


@cuda_only
@pytest.mark.parametrize("arch", ["large", "small"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_graph_replay_matches_eager(arch, dtype):
    m = _model(arch, dtype)
    x = torch.randn(1, 3, 224, 224, device="cuda", dtype=dtype)
    with torch.no_grad():
        ref = m(x)
    run = cuda_graph.capture(m, x)
    x2 = torch.randn_like(x)
    with torch.no_grad():
        ref2 = m(x2)
    torch.testing.assert_close(run(x), ref, rtol=0, atol=0)  # same kernels, same order
    torch.testing.assert_close(run(x2), ref2, rtol=0, atol=0)
    with pytest.raises(ValueError, match="captured for"):
        run(torch.randn(2, 3, 224, 224, device="cuda", dtype=dtype))


@cuda_only
@pytest.mark.parametrize("arch", ["large", "small"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_compile_reduce_overhead_matches_eager(arch, dtype):
    m = _model(arch, dtype).to(memory_format=torch.channels_last)
    x, x2 = (torch.randn(1, 3, 224, 224, device="cuda", dtype=dtype) for _ in range(2))
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == torch.float32 else dict(rtol=1e-2, atol=1e-2)
    with torch.no_grad():
        ref, ref2 = m(x), m(x2)
        cm = torch.compile(m, mode="reduce-overhead")
        for _ in range(3):  # warm-up runs, then the graph replays
            out = cm(x).clone()
        out2 = cm(x2).clone()  # a replay reads the new input, not the recorded one
    torch.testing.assert_close(out, ref, **tol)
    torch.testing.assert_close(out2, ref2, **tol)
