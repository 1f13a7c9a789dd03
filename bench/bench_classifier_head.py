"""Fused classifier head (torch.ops.mbv3.classifier_head) vs torchvision's eval head
(mean over H, W -> Linear -> Hardswish -> Dropout -> Linear modules), MobileNetV3-Large's head
(960 x 7 x 7 -> 1280 -> 1000), batch 1 and 8, 1 and 2 threads, channels_last input.

Two cache states, because the head reads 10 MB of weights:
  hot   the same call repeated: the weights stay in L2/L3 (pytest-benchmark's default loop);
  cold  a 64 MB buffer is written before every call (pytest-benchmark setup, not timed), as
        in a real forward, where the rest of the network has evicted the head's weights.
"""
import pytest
import torch
from torch import nn

from mbv3_fast.testing import head_layers

C, H, W, HIDDEN, CLASSES, ACT = head_layers("large")[0]
_flush = None


def make(batch):
    g = torch.Generator().manual_seed(7)
    head = nn.Sequential(nn.Linear(C, HIDDEN), nn.Hardswish(), nn.Dropout(0.2),
                         nn.Linear(HIDDEN, CLASSES)).eval()
    x = torch.randn(batch, C, H, W, generator=g).contiguous(memory_format=torch.channels_last)
    w = (head[0].weight.detach(), head[0].bias.detach(), head[3].weight.detach(), head[3].bias.detach())
    op = torch.ops.mbv3.classifier_head.default
    return {"fused": lambda: op(x, *w, ACT), "unfused": lambda: head(x.mean((2, 3)))}


def flush_caches():
    global _flush
    if _flush is None:
        _flush = torch.empty(16 * 1024 * 1024)  # 64 MB: twice this machine's L3
    _flush.fill_(1.0)


@pytest.mark.parametrize("provider", ["unfused", "fused"])
@pytest.mark.parametrize("cache", ["hot", "cold"])
@pytest.mark.parametrize("batch", [1, 8], ids=lambda b: f"b{b}")
@pytest.mark.parametrize("threads", [1, 2], indirect=True, ids=lambda t: f"t{t}")
def test_classifier_head(benchmark, record, threads, batch, cache, provider):
    benchmark.group = f"classifier_head {cache} b{batch} t{threads}"
    record(suite="classifier_head", config=f"{cache} b{batch} t{threads}", provider=provider,
           layer=f"C{C} {H}x{W} -> {HIDDEN} -> {CLASSES}")
    fn = make(batch)[provider]
    with torch.no_grad():
        if cache == "hot":
            benchmark(fn)
        else:
            benchmark.pedantic(fn, setup=flush_caches, rounds=30, warmup_rounds=2)
