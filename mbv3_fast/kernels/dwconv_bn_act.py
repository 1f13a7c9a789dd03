"""Fused depthwise conv2d + (folded BatchNorm) bias + activation, as one Triton kernel.

Op: ``dwconv_bn_act(x, weight, bias, stride, padding, dilation, activation) -> Tensor``
    y = act(conv2d(x, weight, groups=C, stride, padding, dilation) + bias)
    x [N, C, H, W]; weight [C, 1, k, k] (any strides); bias [C]; activation in
    {"hardswish", "relu", "none"}.  fp32 accumulation, output in x's dtype, output memory
    format = x's (channels_last in -> channels_last out, anything else -> contiguous NCHW out).

Kernel layout: one program per (sample n, tile of BLOCK_P output pixels, block of BLOCK_C
channels); grid = (N * cdiv(OH*OW, BLOCK_P), cdiv(C, BLOCK_C)).  The tile is oriented so that
the memory-contiguous dimension is the fastest one of the register tile:
  * channels_last (CL=True):  tile [BLOCK_P, BLOCK_C], channels contiguous/coalesced;
  * NCHW          (CL=False): tile [BLOCK_C, BLOCK_P], pixels contiguous/coalesced.
Both use the same code; strides of x, weight, bias and y are runtime arguments (Triton
specialises a stride equal to 1, which gives the coalesced access), so non-contiguous inputs are
read in place without a copy (no NCHW <-> NHWC conversion anywhere).  For channels_last, C and
the n/h/w strides are passed divided by VEC (largest power of two <= 16 bytes dividing them) so
that loads/stores become 16-byte vectors even for C = 72, 120, 184, 200.  Padding is done with
masked loads; the k*k weights of the channel block are loaded once per program (one vector per
tap), bias + activation run in the epilogue, and the store converts to x's dtype.
GPU blocks (no autotune): channels_last BLOCK_C in {16, 32, 64} (least tail waste), BLOCK_P =
1024 / BLOCK_C; NCHW BLOCK_P = next_pow2(OH*OW) clamped to [32, 256], BLOCK_C = 1024 / BLOCK_P;
8 warps (4 accumulators per thread); tiles shrink only when the grid would have fewer programs than SMs.
Under TRITON_INTERPRET=1 (CPU tensors) bigger tiles are used, and bf16 results are rounded to
nearest-even explicitly because the interpreter's fp32->bf16 cast truncates.
"""
import functools

import torch
import triton
import triton.language as tl

from mbv3_fast.ops.dwconv_bn_act import check_inputs

from ._utils import (
    _INT32_MAX, _cdiv, _check_launchable, _device_ctx, _kernel_is_interpreted, _next_pow2,
    apply_act, channel_block, launch, needs_bf16_rne, num_sms, round_to_bf16_rne,
    span_fits_int32, vec_width, wants_channels_last,
)

__all__ = ["dwconv_bn_act", "wants_channels_last"]


# Shape ints and weight strides are not specialised (value 1 / multiple of 16) by Triton: that
# would only multiply the compiled variants.  sx_c / sy_c stay specialised (== 1 tells the
# compiler the channel dim is contiguous for channels_last).
@triton.jit(do_not_specialize=["C_v", "H", "W", "OH", "OW", "tiles_p", "sx_n_v", "sx_h_v", "sx_w_v",
                               "sw_c", "sw_h", "sw_w", "s_b", "sy_n_v", "sy_h_v", "sy_w_v", "PAD"])
def _dwconv_bn_act_kernel(
    x_ptr, w_ptr, b_ptr, y_ptr,
    C_v, H, W, OH, OW, tiles_p,
    sx_n_v, sx_c, sx_h_v, sx_w_v,
    sw_c, sw_h, sw_w, s_b,
    sy_n_v, sy_c, sy_h_v, sy_w_v,
    PAD,
    K: tl.constexpr, STRIDE: tl.constexpr, DIL: tl.constexpr, ACT: tl.constexpr,
    CL: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr, VEC: tl.constexpr,
    BF16_RNE: tl.constexpr,
):
    # C and the n/h/w strides arrive divided by VEC (a power of two dividing all of them) so
    # that the compiler can prove VEC-element alignment and emit 16-byte vector accesses along
    # the contiguous channel dim even when C is not a multiple of 16 (72, 120, 184, 200, ...).
    C = C_v * VEC
    sx_n = sx_n_v * VEC
    sx_h = sx_h_v * VEC
    sx_w = sx_w_v * VEC
    sy_n = sy_n_v * VEC
    sy_h = sy_h_v * VEC
    sy_w = sy_w_v * VEC
    pid = tl.program_id(0)
    n = pid // tiles_p
    tp = pid - n * tiles_p
    offs_p = tp * BLOCK_P + tl.arange(0, BLOCK_P)
    offs_c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    if CL:  # [pixels, channels]: channels fastest
        p = offs_p[:, None]
        c = offs_c[None, :]
        acc = tl.zeros((BLOCK_P, BLOCK_C), dtype=tl.float32)
    else:   # [channels, pixels]: pixels fastest
        p = offs_p[None, :]
        c = offs_c[:, None]
        acc = tl.zeros((BLOCK_C, BLOCK_P), dtype=tl.float32)
    mask_p = p < OH * OW
    mask_c = c < C
    oh = p // OW
    ow = p - oh * OW
    ih0 = oh * STRIDE - PAD
    iw0 = ow * STRIDE - PAD
    n64 = n.to(tl.int64)
    x_nc = x_ptr + n64 * sx_n + c * sx_c
    w_c = w_ptr + c * sw_c
    # kh is a run-time loop: unrolling all K*K taps let the compiler hoist every load and ran
    # into 255 registers and spills (sm_90 compile check); K taps per iteration stay < 128.
    for kh in range(K):
        ih = ih0 + kh * DIL
        row_ok = mask_p & (ih >= 0) & (ih < H)
        x_row = x_nc + ih * sx_h
        for kw in tl.static_range(K):
            iw = iw0 + kw * DIL
            m = row_ok & (iw >= 0) & (iw < W) & mask_c
            xv = tl.load(x_row + iw * sx_w, mask=m, other=0.0).to(tl.float32)
            wv = tl.load(w_c + (kh * sw_h + kw * sw_w), mask=mask_c, other=0.0).to(tl.float32)
            acc += xv * wv
    acc += tl.load(b_ptr + c * s_b, mask=mask_c, other=0.0).to(tl.float32)
    acc = apply_act(acc, ACT)
    if BF16_RNE:
        acc = round_to_bf16_rne(acc)
    y = y_ptr + n64 * sy_n + c * sy_c + oh * sy_h + ow * sy_w
    tl.store(y, acc.to(y_ptr.dtype.element_ty), mask=mask_p & mask_c)


_INTERPRETED = _kernel_is_interpreted(_dwconv_bn_act_kernel)


@functools.lru_cache(maxsize=4096)
def _dw_blocks(N: int, C: int, P: int, cl: bool, sms: int, interpreted: bool):
    """(BLOCK_P, BLOCK_C, num_warps).  Interpreter: big tiles (numpy cost is per op, not per
    element).  GPU: ~1024-element tiles (4 fp32 accumulators/thread at 8 warps), fixed per layer
    shape so that few variants get compiled; shrunk only when the grid would not even give
    every SM one program (batch-1 layers with few pixels)."""
    if interpreted:
        tile = 8192
        if cl:
            bc = min(_next_pow2(C), 256)
            bp = max(1, min(tile // bc, _next_pow2(P)))
        else:
            bp = min(_next_pow2(P), 4096)
            bc = max(1, min(tile // bp, _next_pow2(C)))
        return bp, bc, 4
    if cl:
        bc = channel_block(C, 64)
        bp = max(16, min(1024 // bc, _next_pow2(P)))
        while bp > 16 and N * _cdiv(P, bp) * _cdiv(C, bc) < sms:
            bp //= 2
    else:
        bp = max(32, min(256, _next_pow2(P)))
        bc = max(1, min(1024 // bp, _next_pow2(C)))
        while bc > 1 and N * _cdiv(P, bp) * _cdiv(C, bc) < sms:
            bc //= 2
    return bp, bc, 8


def dwconv_bn_act(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, stride: int,
                  padding: int, dilation: int, activation: str) -> torch.Tensor:
    """Depthwise conv (groups=C) + bias + activation; see the module docstring."""
    k, OH, OW, act = check_inputs(x, weight, bias, stride, padding, dilation, activation)
    _check_launchable("dwconv_bn_act", x, _INTERPRETED)
    N, C, H, W = x.shape
    cl = wants_channels_last(x)
    y = torch.empty((N, C, OH, OW), device=x.device, dtype=x.dtype,
                    memory_format=torch.channels_last if cl else torch.contiguous_format)
    if N == 0:
        return y
    if (x.numel() > _INT32_MAX or not (cl or x.is_contiguous())) and not span_fits_int32(x):
        x = x.contiguous(memory_format=torch.channels_last if cl else torch.contiguous_format)
        if not span_fits_int32(x):
            raise RuntimeError("dwconv_bn_act: one sample of x exceeds 2**31 elements")
    if y.numel() > _INT32_MAX and not span_fits_int32(y):
        raise RuntimeError("dwconv_bn_act: one sample of the output exceeds 2**31 elements")
    P = OH * OW
    bp, bc, warps = _dw_blocks(N, C, P, cl, num_sms(x), _INTERPRETED)
    tiles_p = _cdiv(P, bp)
    sx, sy = x.stride(), y.stride()
    vec = vec_width(x.dtype, C, sx[0], sx[2], sx[3], sy[0], sy[2], sy[3]) \
        if cl and sx[1] == 1 and sy[1] == 1 else 1
    grid = (N * tiles_p, _cdiv(C, bc))
    args = (x, weight, bias, y,
            C // vec, H, W, OH, OW, tiles_p,
            sx[0] // vec, sx[1], sx[2] // vec, sx[3] // vec,
            weight.stride(0), weight.stride(2), weight.stride(3), bias.stride(0),
            sy[0] // vec, sy[1], sy[2] // vec, sy[3] // vec,
            padding)
    meta = dict(K=k, STRIDE=stride, DIL=dilation, ACT=act, CL=cl, BLOCK_P=bp, BLOCK_C=bc, VEC=vec,
                BF16_RNE=needs_bf16_rne(y.dtype, _INTERPRETED), num_warps=warps)
    with _device_ctx(x):
        launch(_dwconv_bn_act_kernel, grid, args, meta, _INTERPRETED)
    return y
