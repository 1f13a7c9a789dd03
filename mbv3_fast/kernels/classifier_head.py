"""MobileNetV3's classifier head as Triton kernels:

  classifier_head(x, w1, b1, w2, b2, activation) = w2 @ act(w1 @ mean_hw(x) + b1) + b2
  x [N, C, H, W] (NCHW or channels_last); w1 [hidden, C]; w2 [classes, hidden] -> [N, classes]
  in x's dtype; fp32 accumulation, the pooled and hidden vectors kept in fp32.

Kernels (no atomics, deterministic):
  1. ``_head_pool_kernel``  grid (N, cdiv(C, BLOCK_C)): sums its channel block over the pixels
     (tiles oriented so the contiguous dim -- channels for channels_last, pixels for NCHW -- is
     the fast register dim) -> pooled [N, C] fp32.
  2. ``_head_linear_kernel`` (twice)  grid (cdiv(OUT, BLOCK_O), cdiv(N, BLOCK_N)): a
     [BLOCK_N, BLOCK_O] output tile, the K loop reading [BLOCK_O, BLOCK_K] weight tiles once
     for BLOCK_N samples; + bias, activation, store.
This is the plain version: at batch 1 the work is streaming the weights (a grid of
cdiv(OUT, BLOCK_O) programs does that); large batches would want tl.dot tiles.  Block sizes
are untuned: no GPU was available when it was written.
"""
import torch
import triton
import triton.language as tl

from mbv3_fast.ops._checks import ACTIVATIONS
from mbv3_fast.ops.classifier_head import check_inputs

from ._utils import (
    _cdiv, _check_launchable, _device_ctx, _kernel_is_interpreted, _next_pow2, apply_act,
    launch, needs_bf16_rne, round_to_bf16_rne, wants_channels_last,
)

__all__ = ["classifier_head"]


@triton.jit(do_not_specialize=["C", "HW", "sx_n", "sx_c", "sx_hw"])
def _head_pool_kernel(x_ptr, out_ptr, C, HW, sx_n, sx_c, sx_hw, inv_hw,
                      CL: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_HW: tl.constexpr):
    n = tl.program_id(0)
    c0 = tl.program_id(1) * BLOCK_C
    base = x_ptr + n.to(tl.int64) * sx_n
    if CL:  # channels contiguous: [pixels, channels] tiles
        offs_c = c0 + tl.arange(0, BLOCK_C)
        acc = tl.zeros((BLOCK_HW, BLOCK_C), dtype=tl.float32)
        for hw0 in range(0, HW, BLOCK_HW):
            offs_hw = hw0 + tl.arange(0, BLOCK_HW)
            m = (offs_hw[:, None] < HW) & (offs_c[None, :] < C)
            v = tl.load(base + offs_hw[:, None] * sx_hw + offs_c[None, :] * sx_c, mask=m, other=0.0)
            acc += v.to(tl.float32)
        s = tl.sum(acc, axis=0)
    else:  # pixels contiguous: [channels, pixels] tiles
        offs_c = c0 + tl.arange(0, BLOCK_C)
        acc = tl.zeros((BLOCK_C, BLOCK_HW), dtype=tl.float32)
        for hw0 in range(0, HW, BLOCK_HW):
            offs_hw = hw0 + tl.arange(0, BLOCK_HW)
            m = (offs_c[:, None] < C) & (offs_hw[None, :] < HW)
            v = tl.load(base + offs_c[:, None] * sx_c + offs_hw[None, :] * sx_hw, mask=m, other=0.0)
            acc += v.to(tl.float32)
        s = tl.sum(acc, axis=1)
    tl.store(out_ptr + n * C + offs_c, s * inv_hw, mask=offs_c < C)


@triton.jit(do_not_specialize=["N", "K", "OUT", "sw_o", "sw_k", "sb"])
def _head_linear_kernel(in_ptr, w_ptr, b_ptr, out_ptr, N, K, OUT, sw_o, sw_k, sb,
                        ACT: tl.constexpr, BF16_RNE: tl.constexpr, BLOCK_N: tl.constexpr,
                        BLOCK_O: tl.constexpr, BLOCK_K: tl.constexpr):
    offs_o = tl.program_id(0) * BLOCK_O + tl.arange(0, BLOCK_O)
    offs_n = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    acc = tl.zeros((BLOCK_N, BLOCK_O), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)
        a = tl.load(in_ptr + offs_n[:, None] * K + offs_k[None, :],
                    mask=(offs_n[:, None] < N) & (offs_k[None, :] < K), other=0.0)
        w = tl.load(w_ptr + offs_o[:, None] * sw_o + offs_k[None, :] * sw_k,
                    mask=(offs_o[:, None] < OUT) & (offs_k[None, :] < K), other=0.0).to(tl.float32)
        acc += tl.sum(a[:, None, :] * w[None, :, :], axis=2)
    acc += tl.load(b_ptr + offs_o * sb, mask=offs_o < OUT, other=0.0).to(tl.float32)[None, :]
    acc = apply_act(acc, ACT)
    if BF16_RNE:
        acc = round_to_bf16_rne(acc)
    m = (offs_n[:, None] < N) & (offs_o[None, :] < OUT)
    tl.store(out_ptr + offs_n[:, None] * OUT + offs_o[None, :],
             acc.to(out_ptr.dtype.element_ty), mask=m)


_INTERPRETED = _kernel_is_interpreted(_head_pool_kernel)


def _linear(inp, w, b, out, act: int):
    n, k = inp.shape
    o = w.shape[0]
    # the [BLOCK_N, BLOCK_O, BLOCK_K] product lives in registers: <= 4096 fp32 (32 per thread at
    # 4 warps); 16 x 32 x 64 took 255 registers and spilled in the sm_90 compile check
    block_n = min(8, _next_pow2(n))
    block_o, block_k = (16, 32) if _INTERPRETED else (32, 16)
    grid = (_cdiv(o, block_o), _cdiv(n, block_n))
    launch(_head_linear_kernel, grid,
           (inp, w, b, out, n, k, o, w.stride(0), w.stride(1), b.stride(0)),
           dict(ACT=act, BF16_RNE=needs_bf16_rne(out.dtype, _INTERPRETED),
                BLOCK_N=block_n, BLOCK_O=block_o, BLOCK_K=block_k), _INTERPRETED)


def classifier_head(x: torch.Tensor, w1: torch.Tensor, b1: torch.Tensor, w2: torch.Tensor,
                    b2: torch.Tensor, activation: str = "hardswish") -> torch.Tensor:
    n, c, hidden, classes = check_inputs(x, w1, b1, w2, b2, activation)
    _check_launchable("classifier_head", x, _INTERPRETED)
    out = torch.empty((n, classes), device=x.device, dtype=x.dtype)
    if n == 0:
        return out
    cl = wants_channels_last(x)
    if not cl and not x.is_contiguous():
        x = x.contiguous()
    hw = x.shape[2] * x.shape[3]
    sx_hw = x.stride(3)  # both layouts here are dense: pixel (h, w) at h * W * s + w * s
    pooled = torch.empty((n, c), device=x.device, dtype=torch.float32)
    hid = torch.empty((n, hidden), device=x.device, dtype=torch.float32)
    block_c = min(_next_pow2(c), 64 if cl else 16)
    block_hw = min(_next_pow2(hw), 16 if cl else 64)
    with _device_ctx(x):
        launch(_head_pool_kernel, (n, _cdiv(c, block_c)),
               (x, pooled, c, hw, x.stride(0), x.stride(1), sx_hw, 1.0 / hw),
               dict(CL=cl, BLOCK_C=block_c, BLOCK_HW=block_hw), _INTERPRETED)
        _linear(pooled, w1, b1, hid, ACTIVATIONS[activation])
        _linear(hid, w2, b2, out, 0)
    return out
