"""Fused dense conv2d + (folded BatchNorm) bias + activation, as one Triton kernel; made for few
input channels (MobileNetV3's stem: 3 -> 16 channels, 3x3, stride 2).

Op: ``conv_bn_act(x, weight, bias, stride, padding, activation) -> Tensor``
    y = act(conv2d(x, weight, stride=stride, padding=padding) + bias)
    x [N, Cin, H, W] (any strides); weight [Cout, Cin, k, k] (any strides, odd k <= 7); bias
    [Cout]; activation in {"hardswish", "relu", "none"}; dilation 1, groups 1.  fp32
    accumulation, output in x's dtype, output ALWAYS channels_last (as the CPU op).

Kernel layout: one program per (sample n, tile of BLOCK_P output pixels, block of BLOCK_C
output channels); register tile [BLOCK_P, BLOCK_C] with the channels fastest (the output is
channels_last, so the store is coalesced).  The loop runs over the input channels (run time)
and the k*k taps (unrolled); each tap is one [BLOCK_P] gather of x (masked for the padding)
times one [BLOCK_C] weight vector, an outer product accumulated in fp32.  Strides of x, weight,
bias and y are run-time arguments: nothing is copied or repacked.  Bias + activation in the
epilogue, the store converts to x's dtype.
Under TRITON_INTERPRET=1 (CPU tensors) bigger tiles are used, and bf16 results are rounded to
nearest-even explicitly because the interpreter's fp32->bf16 cast truncates.
"""
import functools

import torch
import triton
import triton.language as tl

from mbv3_fast.ops.conv_bn_act import check_inputs

from ._utils import (
    _INT32_MAX, _cdiv, _check_launchable, _device_ctx, _kernel_is_interpreted, _next_pow2,
    apply_act, launch, needs_bf16_rne, num_sms, round_to_bf16_rne, span_fits_int32,
)

__all__ = ["conv_bn_act"]


@triton.jit(do_not_specialize=["Cin", "Cout", "H", "W", "OH", "OW", "tiles_p", "sx_n", "sx_c",
                               "sx_h", "sx_w", "sw_o", "sw_i", "sw_h", "sw_w", "s_b", "sy_n",
                               "sy_h", "sy_w", "PAD"])
def _conv_bn_act_kernel(
    x_ptr, w_ptr, b_ptr, y_ptr,
    Cin, Cout, H, W, OH, OW, tiles_p,
    sx_n, sx_c, sx_h, sx_w,
    sw_o, sw_i, sw_h, sw_w, s_b,
    sy_n, sy_c, sy_h, sy_w,
    PAD,
    K: tl.constexpr, STRIDE: tl.constexpr, ACT: tl.constexpr,
    BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr, BF16_RNE: tl.constexpr,
):
    pid = tl.program_id(0)
    n = pid // tiles_p
    tp = pid - n * tiles_p
    offs_p = tp * BLOCK_P + tl.arange(0, BLOCK_P)
    offs_c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    mask_p = offs_p < OH * OW
    mask_c = offs_c < Cout
    oh = offs_p // OW
    ow = offs_p - oh * OW
    ih0 = oh * STRIDE - PAD
    iw0 = ow * STRIDE - PAD
    n64 = n.to(tl.int64)
    x_n = x_ptr + n64 * sx_n
    w_c = w_ptr + offs_c * sw_o
    acc = tl.zeros((BLOCK_P, BLOCK_C), dtype=tl.float32)
    for ci in range(0, Cin):
        x_ci = x_n + ci * sx_c
        w_ci = w_c + ci * sw_i
        for kh in tl.static_range(K):
            ih = ih0 + kh
            row_ok = mask_p & (ih >= 0) & (ih < H)
            x_row = x_ci + ih * sx_h
            for kw in tl.static_range(K):
                iw = iw0 + kw
                m = row_ok & (iw >= 0) & (iw < W)
                xv = tl.load(x_row + iw * sx_w, mask=m, other=0.0).to(tl.float32)
                wv = tl.load(w_ci + (kh * sw_h + kw * sw_w), mask=mask_c, other=0.0).to(tl.float32)
                acc += xv[:, None] * wv[None, :]
    acc += tl.load(b_ptr + offs_c * s_b, mask=mask_c, other=0.0).to(tl.float32)[None, :]
    acc = apply_act(acc, ACT)
    if BF16_RNE:
        acc = round_to_bf16_rne(acc)
    y = y_ptr + n64 * sy_n + offs_c[None, :] * sy_c + (oh * sy_h + ow * sy_w)[:, None]
    tl.store(y, acc.to(y_ptr.dtype.element_ty), mask=mask_p[:, None] & mask_c[None, :])


_INTERPRETED = _kernel_is_interpreted(_conv_bn_act_kernel)


@functools.lru_cache(maxsize=4096)
def _conv_blocks(N: int, Cout: int, P: int, sms: int, interpreted: bool):
    """(BLOCK_P, BLOCK_C, num_warps).  Interpreter: big tiles (numpy cost is per op, not per
    element).  GPU: the whole Cout (<= 64) in one block, ~2048-element tiles, shrunk only when
    the grid would not give every SM a program; num_warps keeps 16 outputs per thread (at most
    4 warps).  Why: with 8 outputs per thread ptxas spills the fp32 stem on sm_90 (64x16 tile,
    4 warps: 255 registers, 64 B stack; 32x16 / 2 warps and 16x16 / 1 warp alike), while at 16
    per thread it needs 76-93 (64x16 / 2 warps: 76 on sm_90, 92 on sm_80).  8 warps spill on
    sm_80 (256x16: 8 B stack), hence the cap."""
    bc = min(_next_pow2(Cout), 64)
    if interpreted:
        return max(1, min(8192 // bc, _next_pow2(P))), bc, 4
    bp_min = max(16, 512 // bc)  # >= 16 outputs per thread with 1 warp
    bp = max(bp_min, min(2048 // bc, _next_pow2(P)))
    while bp > bp_min and N * _cdiv(P, bp) * _cdiv(Cout, bc) < sms:
        bp //= 2
    return bp, bc, max(1, min(4, bp * bc // 512))


def conv_bn_act(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, stride: int,
                padding: int, activation: str) -> torch.Tensor:
    """Dense conv + bias + activation, channels_last output; see the module docstring."""
    Cout, k, OH, OW, act = check_inputs(x, weight, bias, stride, padding, activation)
    _check_launchable("conv_bn_act", x, _INTERPRETED)
    N, Cin, H, W = x.shape
    y = torch.empty((N, Cout, OH, OW), device=x.device, dtype=x.dtype,
                    memory_format=torch.channels_last)
    if N == 0 or Cout == 0:
        return y
    if not span_fits_int32(x):
        x = x.contiguous()
        if not span_fits_int32(x):
            raise RuntimeError("conv_bn_act: one sample of x exceeds 2**31 elements")
    if y.numel() > _INT32_MAX and not span_fits_int32(y):
        raise RuntimeError("conv_bn_act: one sample of the output exceeds 2**31 elements")
    P = OH * OW
    bp, bc, warps = _conv_blocks(N, Cout, P, num_sms(x), _INTERPRETED)
    tiles_p = _cdiv(P, bp)
    sx, sw, sy = x.stride(), weight.stride(), y.stride()
    grid = (N * tiles_p, _cdiv(Cout, bc))
    args = (x, weight, bias, y,
            Cin, Cout, H, W, OH, OW, tiles_p,
            sx[0], sx[1], sx[2], sx[3],
            sw[0], sw[1], sw[2], sw[3], bias.stride(0),
            sy[0], sy[1], sy[2], sy[3],
            padding)
    meta = dict(K=k, STRIDE=stride, ACT=act, BLOCK_P=bp, BLOCK_C=bc,
                BF16_RNE=needs_bf16_rne(y.dtype, _INTERPRETED), num_warps=warps)
    with _device_ctx(x):
        launch(_conv_bn_act_kernel, grid, args, meta, _INTERPRETED)
    return y
