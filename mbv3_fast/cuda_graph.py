"""CUDA-graph capture of a fixed-shape eval forward (batch-1 inference).

At batch 1 a MobileNetV3 forward is ~50 small kernel launches from Python, so launch overhead,
not the kernels, sets the latency.  ``capture`` records one forward into a CUDA graph and
returns a callable that replays it:

    run = mbv3_fast.cuda_graph.capture(model.eval().cuda(), torch.randn(1, 3, 224, 224, device="cuda"))
    y = run(x)          # x: same shape, dtype, device and memory format as the example

The returned tensor is the graph's static output buffer: the next call overwrites it (clone it
to keep it).  The Triton kernels are compiled by the warm-up forwards (on a side stream, as
torch.cuda.graphs requires) before capture.  ``torch.compile(model, mode="reduce-overhead")``
is the other route (it captures CUDA graphs itself; our ops are torch.library custom ops with
fake kernels, so they are traceable).
"""
from typing import Callable

import torch

__all__ = ["capture"]


def capture(model: torch.nn.Module, example_input: torch.Tensor, warmup: int = 3) -> Callable:
    """Capture ``model(example_input)`` (no_grad) in a CUDA graph; -> run(x) replaying it."""
    if not isinstance(example_input, torch.Tensor) or example_input.device.type != "cuda":
        raise ValueError("capture: example_input must be a CUDA tensor")
    if warmup < 1:
        raise ValueError("capture: warmup must be >= 1 (kernels compile before capture)")
    fmt = (torch.channels_last if example_input.dim() == 4
           and example_input.is_contiguous(memory_format=torch.channels_last)
           and not example_input.is_contiguous() else torch.contiguous_format)
    static_in = torch.empty_like(example_input, memory_format=fmt).copy_(example_input)
    side = torch.cuda.Stream(device=example_input.device)
    side.wait_stream(torch.cuda.current_stream(example_input.device))
    with torch.no_grad(), torch.cuda.stream(side):
        for _ in range(warmup):
            model(static_in)
    torch.cuda.current_stream(example_input.device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.no_grad(), torch.cuda.graph(graph):
        static_out = model(static_in)

    def run(x: torch.Tensor) -> torch.Tensor:
        if x.shape != static_in.shape or x.dtype != static_in.dtype or x.device != static_in.device:
            raise ValueError(f"capture: the graph was captured for {tuple(static_in.shape)} "
                             f"{static_in.dtype} on {static_in.device}; got {tuple(x.shape)} "
                             f"{x.dtype} on {x.device}")
        static_in.copy_(x)
        graph.replay()
        return static_out

    run.graph = graph
    return run
