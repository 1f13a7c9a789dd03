"""Fused squeeze-and-excitation (MobileNetV3 flavour) as Triton kernels.

Ops:
  ``se(x, w1, b1, w2, b2)``       = x * hardsigmoid(w2 @ relu(w1 @ mean_hw(x) + b1) + b2)
  ``se_scale(x, w1, b1, w2, b2)`` = the [N, C] per-channel scale alone, in x's dtype.
  x [N, C, H, W]; w1 [S, C] or [S, C, 1, 1]; b1 [S]; w2 [C, S] or [C, S, 1, 1]; b2 [C];
  hardsigmoid(v) = relu6(v + 3) / 6.  fp32 accumulation throughout; output in x's dtype and
  x's memory format (channels_last stays channels_last, everything else -> contiguous NCHW).

Kernels (no atomics, deterministic):
  1. ``_se_pool_fc1_kernel``  grid (cdiv(N, NB) * n_hs, n_cb): program = (NB samples, one
     block of BLOCK_C channels, one chunk of the H*W pixels).  It sums its [pixels, channels]
     tile in fp32 and, because FC1 is linear, immediately multiplies the partial mean by its
     w1[:, cblock] slice, writing a partial FC1 vector hpart[n, part, :S].  Splitting over
     channels *and* pixels keeps many SMs busy at batch 1; NB > 1 samples per program reuse
     the w1 slice from L1 at large batch.
  2. ``_se_fc2_kernel``  grid (cdiv(N, NB2), cdiv(C, BLOCK_CO)): h = relu(sum_parts hpart + b1),
     z = w2[cblock] @ h + b2, scale = hardsigmoid(z) -> [N, C] (fp32 for se, x dtype for
     se_scale).
  3. ``_se_mul_kernel`` (se only)  grid (N * cdiv(HW, BLOCK_HW), cdiv(C, BLOCK_C)):
     y = x * scale[n, c], streaming, same tile orientation as 1.
Shape ints are excluded from Triton's value specialisation (fewer compiled variants); the
strides that tell the compiler which dim is contiguous (== 1) stay specialised.
Tiles are oriented so the memory-contiguous dim (channels for channels_last, pixels for NCHW)
is the fastest register dim.
"""
import functools

import torch
import triton
import triton.language as tl

from mbv3_fast.ops.se import check_inputs

from ._utils import (
    _INT32_MAX, _cdiv, _check_launchable, _device_ctx, _kernel_is_interpreted, _next_pow2,
    channel_block, hardsigmoid, launch, needs_bf16_rne, num_sms, round_to_bf16_rne, vec_width,
    wants_channels_last,
)

__all__ = ["se", "se_scale"]


# ----------------------------------------------------------------------------------------------
# Kernels
# ----------------------------------------------------------------------------------------------

@triton.jit(do_not_specialize=["N", "C_v", "S", "HW", "hw_chunk", "n_hs", "parts", "NB", "sx_n_v",
                               "sw1_s"])
def _se_pool_fc1_kernel(
    x_ptr, w1_ptr, hpart_ptr,
    N, C_v, S, HW, hw_chunk, n_hs, parts, NB,
    sx_n_v, sx_c, sx_hw_v, sw1_s, sw1_c,
    inv_hw,
    CL: tl.constexpr, BLOCK_HW: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_S: tl.constexpr,
    VEC: tl.constexpr,
):
    # C and the n / pixel strides arrive divided by VEC (see dwconv_bn_act: lets the compiler
    # emit 16-byte vector loads along channels_last channels when C % 16 != 0).
    C = C_v * VEC
    sx_n = sx_n_v * VEC
    sx_hw = sx_hw_v * VEC
    pid0 = tl.program_id(0)
    cb = tl.program_id(1)
    nb = pid0 // n_hs
    hs = pid0 - nb * n_hs
    part = cb * n_hs + hs
    offs_c = cb * BLOCK_C + tl.arange(0, BLOCK_C)
    offs_hw = tl.arange(0, BLOCK_HW)
    offs_s = tl.arange(0, BLOCK_S)
    mask_c = offs_c < C
    if CL:
        c2 = offs_c[None, :]
        hw2 = offs_hw[:, None]
    else:
        c2 = offs_c[:, None]
        hw2 = offs_hw[None, :]
    mask_c2 = c2 < C
    hw_lo = hs * hw_chunk
    hw_hi = tl.minimum(hw_lo + hw_chunk, HW)
    for i in range(NB):
        n = nb * NB + i
        n_ok = n < N
        # the channel offset goes into each load's offset, not into this hoisted base: with
        # x_ptr + c * sx_c hoisted out of the NB loop, ptxas (12.9, sm_80) kept half of that
        # pointer on the stack at 40 registers (8-byte frame, 4 B spill store/load, C=16 S=8)
        x_n = x_ptr + n.to(tl.int64) * sx_n
        if CL:
            acc = tl.zeros((BLOCK_HW, BLOCK_C), dtype=tl.float32)
        else:
            acc = tl.zeros((BLOCK_C, BLOCK_HW), dtype=tl.float32)
        for t in range(0, hw_chunk, BLOCK_HW):
            hw = hw_lo + t + hw2
            m = (hw < hw_hi) & mask_c2 & n_ok
            acc += tl.load(x_n + (c2 * sx_c + hw * sx_hw), mask=m, other=0.0).to(tl.float32)
        if CL:
            pooled = tl.sum(acc, axis=0) * inv_hw
        else:
            pooled = tl.sum(acc, axis=1) * inv_hw
        h_row = hpart_ptr + (n.to(tl.int64) * parts + part) * S
        for s0 in range(0, S, BLOCK_S):
            s = s0 + offs_s
            ms = s < S
            w1t = tl.load(w1_ptr + s[:, None] * sw1_s + offs_c[None, :] * sw1_c,
                          mask=ms[:, None] & mask_c[None, :], other=0.0).to(tl.float32)
            h = tl.sum(w1t * pooled[None, :], axis=1)
            tl.store(h_row + s, h, mask=ms & n_ok)


@triton.jit(do_not_specialize=["N", "C", "S", "parts", "NB", "s_b1", "sw2_c", "s_b2", "ss_n"])
def _se_fc2_kernel(
    hpart_ptr, b1_ptr, w2_ptr, b2_ptr, s_ptr,
    N, C, S, parts, NB,
    s_b1, sw2_c, sw2_s, s_b2, ss_n, ss_c,
    BLOCK_PART: tl.constexpr, BLOCK_S: tl.constexpr, BLOCK_CO: tl.constexpr,
    BF16_RNE: tl.constexpr,
):
    nb = tl.program_id(0)
    offs_co = tl.program_id(1) * BLOCK_CO + tl.arange(0, BLOCK_CO)
    mask_co = offs_co < C
    offs_s = tl.arange(0, BLOCK_S)
    offs_pt = tl.arange(0, BLOCK_PART)
    b2 = tl.load(b2_ptr + offs_co * s_b2, mask=mask_co, other=0.0).to(tl.float32)
    for i in range(NB):
        n = nb * NB + i
        n_ok = n < N
        h_rows = hpart_ptr + n.to(tl.int64) * parts * S
        z = tl.zeros((BLOCK_CO,), dtype=tl.float32)
        for s0 in range(0, S, BLOCK_S):
            s = s0 + offs_s
            ms = s < S
            hsum = tl.zeros((BLOCK_S,), dtype=tl.float32)
            for p0 in range(0, parts, BLOCK_PART):
                pt = p0 + offs_pt
                tile = tl.load(h_rows + pt[:, None] * S + s[None, :],
                               mask=(pt[:, None] < parts) & ms[None, :] & n_ok, other=0.0)
                hsum += tl.sum(tile, axis=0)
            b1 = tl.load(b1_ptr + s * s_b1, mask=ms, other=0.0).to(tl.float32)
            h = tl.maximum(hsum + b1, 0.0)
            w2t = tl.load(w2_ptr + offs_co[:, None] * sw2_c + s[None, :] * sw2_s,
                          mask=mask_co[:, None] & ms[None, :], other=0.0).to(tl.float32)
            z += tl.sum(w2t * h[None, :], axis=1)
        z = z + b2
        scale = hardsigmoid(z)
        if BF16_RNE:
            scale = round_to_bf16_rne(scale)
        tl.store(s_ptr + n * ss_n + offs_co * ss_c, scale.to(s_ptr.dtype.element_ty),
                 mask=mask_co & n_ok)


@triton.jit(do_not_specialize=["C_v", "HW", "tiles_hw", "sx_n_v", "ss_n_v", "sy_n_v"])
def _se_mul_kernel(
    x_ptr, s_ptr, y_ptr,
    C_v, HW, tiles_hw,
    sx_n_v, sx_c, sx_hw_v, ss_n_v, ss_c, sy_n_v, sy_c, sy_hw_v,
    CL: tl.constexpr, BLOCK_HW: tl.constexpr, BLOCK_C: tl.constexpr, VEC: tl.constexpr,
    BF16_RNE: tl.constexpr,
):
    C = C_v * VEC  # C and n / pixel strides arrive divided by VEC (alignment proof)
    sx_n = sx_n_v * VEC
    sx_hw = sx_hw_v * VEC
    ss_n = ss_n_v * VEC
    sy_n = sy_n_v * VEC
    sy_hw = sy_hw_v * VEC
    pid = tl.program_id(0)
    n = pid // tiles_hw
    t = pid - n * tiles_hw
    offs_hw = t * BLOCK_HW + tl.arange(0, BLOCK_HW)
    offs_c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    if CL:
        c2 = offs_c[None, :]
        hw2 = offs_hw[:, None]
    else:
        c2 = offs_c[:, None]
        hw2 = offs_hw[None, :]
    mask_c2 = c2 < C
    m = mask_c2 & (hw2 < HW)
    n64 = n.to(tl.int64)
    scale = tl.load(s_ptr + n64 * ss_n + c2 * ss_c, mask=mask_c2, other=0.0).to(tl.float32)
    xv = tl.load(x_ptr + n64 * sx_n + c2 * sx_c + hw2 * sx_hw, mask=m, other=0.0).to(tl.float32)
    yv = xv * scale
    if BF16_RNE:
        yv = round_to_bf16_rne(yv)
    tl.store(y_ptr + n64 * sy_n + c2 * sy_c + hw2 * sy_hw, yv.to(y_ptr.dtype.element_ty), mask=m)


_INTERPRETED = _kernel_is_interpreted(_se_pool_fc1_kernel)


# ----------------------------------------------------------------------------------------------
# Launch configuration (pure function of the shape so tests can inspect / override it)
# ----------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=4096)
def _se_config(N: int, C: int, S: int, HW: int, cl: bool, sms: int, interpreted: bool) -> dict:
    """Block sizes and work split.  Keys: BC, BHW (pool/mul tiles), n_hs (pixel chunks per
    sample), NB (samples per pool program), BS1 (S block of FC1), BCO, BS2, BPART, NB2 (FC2),
    MBC, MBHW (mul tiles), warps."""
    if interpreted:  # few, big programs: interpreter cost is per op, not per element
        bc = min(_next_pow2(C), 256)
        bhw = max(1, min(_next_pow2(HW), 8192 // bc))
        return dict(BC=bc, BHW=bhw, n_hs=1, NB=max(N, 1), BS1=max(1, min(_next_pow2(S), 8192 // bc)),
                    BCO=min(_next_pow2(C), 256), BS2=min(_next_pow2(S), 32), BPART=1,
                    NB2=max(N, 1), MBC=bc, MBHW=bhw, warps=4)
    target = 4 * sms
    if cl:
        bc = channel_block(C, 64)
        bhw = max(1, min(2048 // bc, _next_pow2(HW)))
    else:
        bhw = max(1, min(256, _next_pow2(HW)))
        bc = max(1, min(1024 // bhw, _next_pow2(C)))  # 2048: 148 registers (sm_90 check)
    n_cb = _cdiv(C, bc)
    tiles = _cdiv(HW, bhw)
    if N * n_cb < target:
        n_hs = max(1, min(tiles, _cdiv(target, max(N, 1) * n_cb)))
        nb = 1
    else:
        n_hs = 1
        nb = max(1, min(16, (N * n_cb) // target))
    # w1 / w2 tiles of <= 2048 fp32 (16 per thread): 4096-element tiles took 142 / 237
    # registers in the sm_90 compile check (budget 128 for these memory-bound kernels)
    bs1 = max(1, min(_next_pow2(S), 2048 // bc))
    bco = min(_next_pow2(C), 64)
    bs2 = min(_next_pow2(S), 32)
    n_co = _cdiv(C, bco)
    nb2 = 1 if N * n_co < target else max(1, min(16, (N * n_co) // target))
    return dict(BC=bc, BHW=bhw, n_hs=n_hs, NB=nb, BS1=bs1, BCO=bco, BS2=bs2, BPART=8,
                NB2=nb2, MBC=bc, MBHW=bhw, warps=4)


def _hw_stride(t: torch.Tensor) -> int:
    """Stride of the flattened H*W index of a (channels_last or NCHW) contiguous 4-D tensor."""
    if t.shape[3] > 1:
        return t.stride(3)
    if t.shape[2] > 1:
        return t.stride(2)
    return 1


@functools.lru_cache(maxsize=4096)
def _se_plan(config_fn, N, C, S, HW, cl, sms, interpreted, vec):
    """Everything launch-related that depends only on the shape (cached: keeps the per-call
    Python cost low).  config_fn is part of the key so tests can swap _se_config."""
    cfg = config_fn(N, C, S, HW, cl, sms, interpreted)
    bc, bhw = cfg["BC"], cfg["BHW"]
    n_cb = _cdiv(C, bc)
    hw_chunk = _cdiv(_cdiv(HW, bhw), cfg["n_hs"]) * bhw
    n_hs = _cdiv(HW, hw_chunk)
    nb = 1 if n_hs > 1 else cfg["NB"]
    parts = n_cb * n_hs
    pool = dict(grid=(_cdiv(N, nb) * n_hs, n_cb), hw_chunk=hw_chunk, n_hs=n_hs, parts=parts,
                nb=nb, meta=dict(CL=cl, BLOCK_HW=bhw, BLOCK_C=bc, BLOCK_S=cfg["BS1"], VEC=vec,
                                 num_warps=cfg["warps"]))
    fc2 = dict(grid=(_cdiv(N, cfg["NB2"]), _cdiv(C, cfg["BCO"])), nb=cfg["NB2"],
               meta=dict(BLOCK_PART=cfg["BPART"], BLOCK_S=cfg["BS2"], BLOCK_CO=cfg["BCO"],
                         num_warps=cfg["warps"]))
    mtiles = _cdiv(HW, cfg["MBHW"])
    mul = dict(grid=(N * mtiles, _cdiv(C, cfg["MBC"])), tiles=mtiles,
               meta=dict(CL=cl, BLOCK_HW=cfg["MBHW"], BLOCK_C=cfg["MBC"], VEC=vec,
                         num_warps=cfg["warps"]))
    return pool, fc2, mul


def _se_impl(x, w1, b1, w2, b2, op: str, scale_only: bool) -> torch.Tensor:
    S = check_inputs(x, w1, b1, w2, b2, op)[4]
    _check_launchable(op, x, _INTERPRETED)
    N, C, H, W = x.shape
    HW = H * W
    cl = wants_channels_last(x)
    if not cl and not x.is_contiguous():
        x = x.contiguous()
    if C * HW > _INT32_MAX:
        raise RuntimeError(f"{op}: one sample of x exceeds 2**31 elements")
    dev, dtype = x.device, x.dtype
    if scale_only:
        out = torch.empty((N, C), device=dev, dtype=dtype)
    else:  # same strides as x (x is channels_last- or NCHW-contiguous here)
        out = torch.empty((N, C, H, W), device=dev, dtype=dtype,
                          memory_format=torch.channels_last if cl else torch.contiguous_format)
    if N == 0:
        return out
    sx = x.stride()
    sx_hw = _hw_stride(x)
    # x and out share strides; scale/hpart are contiguous [N, C] / [N, parts, S] with C | VEC
    vec = vec_width(dtype, C, sx[0], sx_hw) if cl and sx[1] == 1 else 1
    pool, fc2, mul = _se_plan(_se_config, N, C, S, HW, cl, num_sms(x), _INTERPRETED, vec)
    parts = pool["parts"]
    hpart = torch.empty((N, parts, S), device=dev, dtype=torch.float32)
    scale = out if scale_only else torch.empty((N, C), device=dev, dtype=torch.float32)
    with _device_ctx(x):
        launch(_se_pool_fc1_kernel, pool["grid"],
               (x, w1, hpart,
                N, C // vec, S, HW, pool["hw_chunk"], pool["n_hs"], parts, pool["nb"],
                sx[0] // vec, sx[1], sx_hw // vec, w1.stride(0), w1.stride(1),
                1.0 / HW),
               pool["meta"], _INTERPRETED)
        launch(_se_fc2_kernel, fc2["grid"],
               (hpart, b1, w2, b2, scale,
                N, C, S, parts, fc2["nb"],
                b1.stride(0), w2.stride(0), w2.stride(1), b2.stride(0), C, 1),
               dict(BF16_RNE=needs_bf16_rne(scale.dtype, _INTERPRETED), **fc2["meta"]),
               _INTERPRETED)
        if not scale_only:
            launch(_se_mul_kernel, mul["grid"],
                   (x, scale, out,
                    C // vec, HW, mul["tiles"],
                    sx[0] // vec, sx[1], sx_hw // vec, C // vec, 1, sx[0] // vec, sx[1],
                    sx_hw // vec),
                   dict(BF16_RNE=needs_bf16_rne(dtype, _INTERPRETED), **mul["meta"]),
                   _INTERPRETED)
    return out


def se(x: torch.Tensor, w1: torch.Tensor, b1: torch.Tensor, w2: torch.Tensor,
       b2: torch.Tensor) -> torch.Tensor:
    """x * hardsigmoid(w2 @ relu(w1 @ mean_hw(x) + b1) + b2), per (n, c)."""
    return _se_impl(x, w1, b1, w2, b2, "se", scale_only=False)


def se_scale(x: torch.Tensor, w1: torch.Tensor, b1: torch.Tensor, w2: torch.Tensor,
             b2: torch.Tensor) -> torch.Tensor:
    """The [N, C] scale hardsigmoid(w2 @ relu(w1 @ mean_hw(x) + b1) + b2), in x's dtype."""
    return _se_impl(x, w1, b1, w2, b2, "se_scale", scale_only=True)
