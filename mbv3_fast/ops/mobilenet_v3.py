"""mbv3::mobilenet_v3 — a whole MobileNetV3 eval forward (stem, inverted residual blocks, last
1x1 conv, classifier head) as one op call.

    torch.ops.mbv3.mobilenet_v3(x, weights, spec) -> logits [N, classes]
                                                   (or the last conv's features, with no head)

No kernel of its own: it runs the fused ops layer after layer.  ``(weights, spec)`` is the
mechanical encoding of a folded network's records (mbv3_fast.plan.encode documents it).  On the
CPU the walk happens in C++ (csrc/mobilenet_v3/mobilenet_v3_op.cpp), which skips the Python and
dispatcher work of ~50 op calls per Large forward: 0.04-0.15 ms of a 3-5 ms batch-1 forward
(bench_model.py, fused vs fused_per_op), small but never a loss.  The fake and CUDA kernels
decode the spec back into the records and run mbv3_fast.plan.run (Triton kernels on CUDA; the
launches are asynchronous, so that walk costs no device time).
"""
from typing import Sequence

import torch

from mbv3_fast import plan as _plan


def run_spec(x: torch.Tensor, weights: Sequence[torch.Tensor], spec: Sequence[int]) -> torch.Tensor:
    """The op's semantics, one ``torch.ops.mbv3`` call per layer (the fake and CUDA kernels;
    the tests' reference for the C++ walk)."""
    return _plan.run(_plan.decode(weights, spec), x)


@torch.library.register_fake("mbv3::mobilenet_v3")
def _fake(x, weights, spec):
    return run_spec(x, weights, spec)


@torch.library.register_kernel("mbv3::mobilenet_v3", "cuda")
def _cuda(x, weights, spec):
    return run_spec(x, weights, spec)
