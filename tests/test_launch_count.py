"""Kernel launches per forward of the model's CUDA path, counted without a GPU.

``mbv3::mobilenet_v3`` is run on *meta* tensors with every ``torch.ops.mbv3`` call sent to its
CUDA kernel (a dispatch mode redispatching to the CUDA key, as CUDA tensors would be), so the
real walk (mbv3_fast.plan.run) and the real Triton wrappers run; the one launch seam,
``mbv3_fast.kernels._utils.launch``, hands each launch to a hook (``compile_only``) that records
the kernel instead of launching it.  The expected sequence is derived from the folded network's
plan records, so a wrapper that starts launching an extra kernel, or a walk that skips a layer,
fails here.  At batch 1 these launches, not the kernels, set the latency (hence CUDA graphs).
"""
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import mbv3_fast
from mbv3_fast import plan
from mbv3_fast.kernels import _utils
from mbv3_fast.model import _Fold

# Triton kernels each record's CUDA op launches (mbv3_fast/kernels/*.py).  expand_dwconv_bn_act
# is pwconv then dwconv on CUDA (no band-fused Triton kernel yet), so a fused block launches the
# same kernels as an unfused one.
KERNELS = {
    plan.Conv: ["_conv_bn_act_kernel"],
    plan.Pointwise: ["_pwconv_bn_act_kernel"],
    plan.Depthwise: ["_dwconv_bn_act_kernel"],
    plan.SE: ["_se_pool_fc1_kernel", "_se_fc2_kernel"],  # se_scale; its mul is the project's
    plan.Head: ["_head_pool_kernel", "_head_linear_kernel", "_head_linear_kernel"],
}
_CUDA = torch._C.DispatchKeySet(torch._C.DispatchKey.CUDA)


class _AsIfCuda(TorchDispatchMode):
    """Send every mbv3 op (not the _check_* argument checks) to its CUDA kernel."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.namespace == "mbv3" and not func.__name__.startswith("_check"):
            with self:  # nested ops (mobilenet_v3 -> per-layer ops) are sent on too
                return func.redispatch(_CUDA, *args, **(kwargs or {}))
        return func(*args, **(kwargs or {}))


def expected_kernels(net: plan.Net):
    """The launch sequence the records imply, in plan.run's order."""
    records = [net.stem]
    for b in net.blocks:
        records += [b.expand, b.depthwise, b.se, b.project]
    records += [net.last, net.head]
    return [k for r in records if r is not None for k in KERNELS[type(r)]]


def launched_kernels(arch: str, n: int, dtype=torch.float32, channels_last=False):
    model = getattr(mbv3_fast, f"mobilenet_v3_{arch}")().eval().to("meta", dtype)
    net = _Fold(dtype).net(model)
    x = torch.empty(n, 3, 224, 224, device="meta", dtype=dtype)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    names = []
    record = lambda kernel, grid, args, meta: names.append(kernel.fn.__name__)  # noqa: E731
    with _utils.compile_only(record, 132), _AsIfCuda():
        y = torch.ops.mbv3.mobilenet_v3(x, *plan.encode(net))
    assert y.shape == (n, 1000)
    return net, names


@pytest.mark.parametrize("arch,blocks,se_blocks", [("large", 15, 8), ("small", 11, 9)])
def test_launches_per_forward_batch1(arch, blocks, se_blocks):
    net, names = launched_kernels(arch, 1)
    assert len(net.blocks) == blocks and sum(b.se is not None for b in net.blocks) == se_blocks
    assert names == expected_kernels(net)
    # the plan-derived count, spelled out: stem + depthwise + 1x1 (expand, project, last)
    # + 2 per SE + 3 for the head
    n_expand = sum(b.expand is not None for b in net.blocks)
    assert len(names) == 1 + blocks + (n_expand + blocks + 1) + 2 * se_blocks + 3
    print(f"{arch}: {len(names)} launches per batch-1 forward")


@pytest.mark.parametrize("n,dtype,channels_last", [(32, torch.float16, True), (2, torch.bfloat16, False)])
def test_launch_count_independent_of_batch_dtype_layout(n, dtype, channels_last):
    net, names = launched_kernels("large", n, dtype, channels_last)
    assert names == expected_kernels(net)
