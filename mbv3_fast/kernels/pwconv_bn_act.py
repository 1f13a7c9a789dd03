"""Fused 1x1 conv + (folded BatchNorm) bias + activation (+ residual, + SE input scale), as one
Triton matmul kernel.

Op: ``pwconv_bn_act(x, weight, bias, activation, residual, in_scale) -> Tensor``
    y = act(conv1x1(x * in_scale[:, :, None, None], weight) + bias) + residual
    x [N, Cin, H, W] (any strides); weight [Cout, Cin, 1, 1] or [Cout, Cin] (any strides);
    bias [Cout]; residual None or [N, Cout, H, W] (any strides); in_scale None or [N, Cin].
    fp32 accumulation, output in x's dtype and x's memory format (channels_last in ->
    channels_last out, anything else -> contiguous NCHW out).

Kernel: one program per (sample n, BLOCK_M pixels of that sample, BLOCK_N output channels);
grid = (N * cdiv(H*W, BLOCK_M), cdiv(Cout, BLOCK_N)).  A tile never straddles two samples, so
the SE scale of a K block is one [BLOCK_K] vector, multiplied into the A tile as it is loaded
(prologue).  K loop: A [BLOCK_M, BLOCK_K] (pixel rows, addressed through x's n/c/h/w strides, so
NCHW, channels_last and strided views are read in place) times B [BLOCK_K, BLOCK_N] by tl.dot
with fp32 accumulation; fp32 uses IEEE precision (no TF32), fp16/bf16 feed the tensor cores in
their own dtype.  Epilogue: + bias, activation, + residual, cast, masked store.
GPU blocks (no autotune): BLOCK_N = next_pow2(Cout) in [16, 64], BLOCK_M = 64 (32 when the grid
would leave SMs idle), BLOCK_K = 32 (16 for fp32 with the SE scale: see _pw_blocks); 4 warps.
Under TRITON_INTERPRET=1 (CPU tensors) bigger blocks (numpy cost is per op) and fp32 dots; bf16
results are rounded to nearest-even explicitly because the interpreter's fp32->bf16 cast
truncates.
"""
import functools

import torch
import triton
import triton.language as tl

from mbv3_fast.ops.pwconv_bn_act import check_inputs

from ._utils import (
    _INT32_MAX, _cdiv, _check_launchable, _device_ctx, _kernel_is_interpreted, _next_pow2,
    apply_act, launch, needs_bf16_rne, num_sms, round_to_bf16_rne, span_fits_int32,
    wants_channels_last,
)

__all__ = ["pwconv_bn_act"]


@triton.jit(do_not_specialize=["K", "Cout", "HW", "W", "tiles_m", "sx_n", "sx_c", "sx_h", "sx_w",
                               "sw_n", "sw_k", "s_b", "sr_n", "sr_c", "sr_h", "sr_w", "ss_n", "ss_c",
                               "sy_n", "sy_c", "sy_h", "sy_w"])
def _pwconv_bn_act_kernel(
    x_ptr, w_ptr, b_ptr, r_ptr, s_ptr, y_ptr,
    K, Cout, HW, W, tiles_m,
    sx_n, sx_c, sx_h, sx_w,
    sw_n, sw_k, s_b,
    sr_n, sr_c, sr_h, sr_w,
    ss_n, ss_c,
    sy_n, sy_c, sy_h, sy_w,
    ACT: tl.constexpr, HAS_RES: tl.constexpr, HAS_SCALE: tl.constexpr, DOT_F32: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, BF16_RNE: tl.constexpr,
):
    pid = tl.program_id(0)
    n = pid // tiles_m
    tm = pid - n * tiles_m
    n64 = n.to(tl.int64)
    offs_m = tm * BLOCK_M + tl.arange(0, BLOCK_M)      # pixel index within the sample
    offs_n = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    mask_m = offs_m < HW
    mask_n = offs_n < Cout
    h = offs_m // W
    w = offs_m - h * W
    x_rows = x_ptr + n64 * sx_n + h * sx_h + w * sx_w   # [BLOCK_M]
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        kk = k0 + offs_k
        mask_k = kk < K
        a = tl.load(x_rows[:, None] + kk[None, :] * sx_c,
                    mask=mask_m[:, None] & mask_k[None, :], other=0.0)
        if HAS_SCALE:
            sc = tl.load(s_ptr + n64 * ss_n + kk * ss_c, mask=mask_k, other=0.0).to(tl.float32)
            a = a.to(tl.float32) * sc[None, :]
        b = tl.load(w_ptr + kk[:, None] * sw_k + offs_n[None, :] * sw_n,
                    mask=mask_k[:, None] & mask_n[None, :], other=0.0)
        if DOT_F32:
            acc = tl.dot(a.to(tl.float32), b.to(tl.float32), acc, input_precision="ieee")
        else:
            acc = tl.dot(a.to(x_ptr.dtype.element_ty), b.to(x_ptr.dtype.element_ty), acc)
    acc += tl.load(b_ptr + offs_n * s_b, mask=mask_n, other=0.0).to(tl.float32)[None, :]
    acc = apply_act(acc, ACT)
    mask = mask_m[:, None] & mask_n[None, :]
    if HAS_RES:
        r = tl.load(r_ptr + n64 * sr_n + (h * sr_h + w * sr_w)[:, None] + offs_n[None, :] * sr_c,
                    mask=mask, other=0.0)
        acc += r.to(tl.float32)
    if BF16_RNE:
        acc = round_to_bf16_rne(acc)
    y = y_ptr + n64 * sy_n + (h * sy_h + w * sy_w)[:, None] + offs_n[None, :] * sy_c
    tl.store(y, acc.to(y_ptr.dtype.element_ty), mask=mask)


_INTERPRETED = _kernel_is_interpreted(_pwconv_bn_act_kernel)


@functools.lru_cache(maxsize=4096)
def _pw_blocks(N: int, K: int, Cout: int, HW: int, sms: int, interpreted: bool,
               f32_scale: bool = False):
    """(BLOCK_M, BLOCK_N, BLOCK_K, num_warps).  ``f32_scale``: fp32 input with the SE scale,
    BLOCK_K 16: at 32 the 64x64 tile spills on sm_80 (255 registers, 24 B stack; 188 on sm_90),
    at 16 it needs 140 (sm_80) / 128 (sm_90)."""
    if interpreted:
        return (max(16, min(_next_pow2(HW), 256)), max(16, min(_next_pow2(Cout), 256)),
                max(16, min(_next_pow2(K), 128)), 4)
    bn = max(16, min(_next_pow2(Cout), 64))
    bm = 64
    if N * _cdiv(HW, bm) * _cdiv(Cout, bn) < sms:
        bm = 32
    return bm, bn, 16 if f32_scale else 32, 4


def _w_strides(weight: torch.Tensor):
    return weight.stride(0), weight.stride(1)


def pwconv_bn_act(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, activation: str,
                  residual=None, in_scale=None) -> torch.Tensor:
    """1x1 conv + bias + activation (+ residual, + in_scale); see the module docstring."""
    Cout, act = check_inputs(x, weight, bias, activation, residual, in_scale)
    _check_launchable("pwconv_bn_act", x, _INTERPRETED)
    N, K, H, W = x.shape
    cl = wants_channels_last(x)
    y = torch.empty((N, Cout, H, W), device=x.device, dtype=x.dtype,
                    memory_format=torch.channels_last if cl else torch.contiguous_format)
    if N == 0 or Cout == 0 or H * W == 0:
        return y
    for name, t in (("x", x), ("residual", residual)):
        if t is not None and t.numel() > _INT32_MAX and not span_fits_int32(t):
            raise RuntimeError(f"pwconv_bn_act: one sample of {name} exceeds 2**31 elements")
    if y.numel() > _INT32_MAX and not span_fits_int32(y):
        raise RuntimeError("pwconv_bn_act: one sample of the output exceeds 2**31 elements")
    HW = H * W
    bm, bn, bk, warps = _pw_blocks(N, K, Cout, HW, num_sms(x), _INTERPRETED,
                                   x.dtype == torch.float32 and in_scale is not None)
    tiles_m = _cdiv(HW, bm)
    sx, sy = x.stride(), y.stride()
    sw_n, sw_k = _w_strides(weight)
    has_res, has_scale = residual is not None, in_scale is not None
    sr = residual.stride() if has_res else (0, 0, 0, 0)
    ss = in_scale.stride() if has_scale else (0, 0)
    grid = (N * tiles_m, _cdiv(Cout, bn))
    args = (x, weight, bias, residual if has_res else y, in_scale if has_scale else bias, y,
            K, Cout, HW, W, tiles_m,
            sx[0], sx[1], sx[2], sx[3],
            sw_n, sw_k, bias.stride(0),
            sr[0], sr[1], sr[2], sr[3],
            ss[0], ss[1],
            sy[0], sy[1], sy[2], sy[3])
    meta = dict(ACT=act, HAS_RES=has_res, HAS_SCALE=has_scale,
                DOT_F32=(x.dtype == torch.float32 or _INTERPRETED),
                BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, BF16_RNE=needs_bf16_rne(y.dtype, _INTERPRETED),
                num_warps=warps)
    with _device_ctx(x):
        launch(_pwconv_bn_act_kernel, grid, args, meta, _INTERPRETED)
    return y
