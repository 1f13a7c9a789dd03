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
specialises a stride equal to 1, which gives the vectorised/coalesced access), so
non-contiguous inputs are read in place without a copy.  Padding is done with masked loads;
the k*k weights of the channel block are loaded once per program (one vector per tap), bias +
activation run in the epilogue, and the store converts to x's dtype.
"""
import contextlib
import functools

import torch
import triton
import triton.language as tl

__all__ = ["dwconv_bn_act", "check_dwconv_inputs"]

_ACTIVATIONS = {"none": 0, "relu": 1, "hardswish": 2}
_FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
_INT32_MAX = 2**31 - 1


# ----------------------------------------------------------------------------------------------
# Helpers shared with se.py
# ----------------------------------------------------------------------------------------------

def _next_pow2(v: int) -> int:
    return 1 if v <= 1 else 1 << (v - 1).bit_length()


def _strides_like_channels_last(size, stride) -> bool:
    """Port of c10::is_channels_last_strides_2d_s4 (what Tensor.suggest_memory_format uses),
    so ambiguous shapes (C == 1, H == W == 1, ...) resolve exactly as PyTorch resolves them."""
    if stride[1] == 0:
        return False
    smin = 0
    for d in (1, 3, 2, 0):
        if size[d] == 0:
            return False
        if stride[d] < smin:
            return False
        if d == 0 and smin == stride[1]:
            return False
        smin = stride[d]
        if size[d] > 1:
            smin *= size[d]
    return True


def wants_channels_last(x: torch.Tensor) -> bool:
    """True when the output of an op on 4-D ``x`` should be channels_last: x is channels_last
    contiguous and PyTorch would suggest channels_last for it.  Everything else (contiguous
    NCHW, non-contiguous views) gets a contiguous NCHW output."""
    return x.is_contiguous(memory_format=torch.channels_last) and _strides_like_channels_last(
        x.shape, x.stride())


def _check_float(t: torch.Tensor, name: str, op: str, x_dtype=None) -> None:
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{op}: {name} must be a torch.Tensor, got {type(t).__name__}")
    if x_dtype is None:
        if t.dtype not in _FLOAT_DTYPES:
            raise ValueError(f"{op}: {name} must be float32, float16 or bfloat16, got {t.dtype}")
    elif t.dtype not in (torch.float32, x_dtype):
        raise ValueError(
            f"{op}: {name} must be float32 or the same dtype as x ({x_dtype}), got {t.dtype}")


def _check_same_device(op: str, x: torch.Tensor, **others: torch.Tensor) -> None:
    for name, t in others.items():
        if t.device != x.device:
            raise RuntimeError(f"{op}: {name} is on {t.device} but x is on {x.device}; "
                               "all tensors must be on the same device")


def _kernel_is_interpreted(kernel) -> bool:
    try:
        from triton.runtime.interpreter import InterpretedFunction
    except ImportError:  # pragma: no cover
        return False
    return isinstance(kernel, InterpretedFunction)


def _check_launchable(op: str, x: torch.Tensor, interpreted: bool) -> None:
    if x.device.type == "cuda":
        return
    if x.device.type == "cpu" and interpreted:
        return
    if x.device.type == "cpu":
        raise RuntimeError(f"{op}: the Triton kernel needs CUDA tensors; CPU tensors only work "
                           "when TRITON_INTERPRET=1 is set before triton is imported")
    raise RuntimeError(f"{op}: unsupported device {x.device} (Triton kernel needs CUDA)")


def _wrap(kernel, interpreted: bool):
    """torch.library.wrap_triton (traceable by torch.compile); older torch versions refuse
    interpreter-mode kernels, which only ever run eagerly anyway."""
    if interpreted:
        try:
            return torch.library.wrap_triton(kernel)
        except (RuntimeError, TypeError):
            return kernel
    return torch.library.wrap_triton(kernel)


def _device_ctx(x: torch.Tensor):
    if x.device.type == "cuda" and x.device.index is not None \
            and x.device.index != torch.cuda.current_device():
        return torch.cuda.device(x.device)
    return contextlib.nullcontext()


@functools.lru_cache(maxsize=None)
def _num_sms(device_index: int) -> int:
    return torch.cuda.get_device_properties(device_index).multi_processor_count


def num_sms(x: torch.Tensor) -> int:
    if x.device.type != "cuda":
        return 1
    idx = x.device.index if x.device.index is not None else torch.cuda.current_device()
    return _num_sms(idx)


def channel_block(C: int, cap: int = 64) -> int:
    """Power-of-two channel block in [16, cap] wasting at most C/8 lanes in the tail block
    (falls back to the smallest), or next_pow2(C) when C < 16."""
    if C < 16:
        return _next_pow2(C)
    b = cap
    while b > 16:
        if triton.cdiv(C, b) * b - C <= C // 8:
            return b
        b //= 2
    return 16


def span_fits_int32(t: torch.Tensor) -> bool:
    """Largest in-sample element offset (dims 1..) fits int32; the sample offset is int64."""
    return sum((s - 1) * abs(st) for s, st in zip(t.shape[1:], t.stride()[1:])) <= _INT32_MAX


# ----------------------------------------------------------------------------------------------
# Validation
# ----------------------------------------------------------------------------------------------

def check_dwconv_inputs(x, weight, bias, stride, padding, dilation, activation,
                        op: str = "dwconv_bn_act"):
    """Validate dwconv_bn_act arguments.  Returns (k, OH, OW, activation_code).
    Raises ValueError for bad dtypes/shapes/values, RuntimeError for device mismatches."""
    _check_float(x, "x", op)
    if x.dim() != 4:
        raise ValueError(f"{op}: x must be 4-D [N, C, H, W], got {x.dim()}-D shape {tuple(x.shape)}")
    N, C, H, W = x.shape
    if C < 1 or H < 1 or W < 1:
        raise ValueError(f"{op}: x must have C, H, W >= 1, got shape {tuple(x.shape)}")
    _check_float(weight, "weight", op, x.dtype)
    _check_float(bias, "bias", op, x.dtype)
    if weight.dim() != 4 or weight.shape[0] != C or weight.shape[1] != 1 \
            or weight.shape[2] != weight.shape[3]:
        raise ValueError(f"{op}: weight must be [C, 1, k, k] with C={C}, got {tuple(weight.shape)}")
    k = weight.shape[2]
    if k < 1 or k % 2 == 0:
        raise ValueError(f"{op}: kernel size k must be odd and >= 1, got k={k}")
    if bias.dim() != 1 or bias.shape[0] != C:
        raise ValueError(f"{op}: bias must be 1-D of size C={C}, got shape {tuple(bias.shape)}")
    for name, v, lo in (("stride", stride, 1), ("dilation", dilation, 1), ("padding", padding, 0)):
        if isinstance(v, bool) or not isinstance(v, int):
            raise ValueError(f"{op}: {name} must be an int, got {type(v).__name__}")
        if v < lo:
            raise ValueError(f"{op}: {name} must be >= {lo}, got {v}")
    if not isinstance(activation, str) or activation not in _ACTIVATIONS:
        raise ValueError(f"{op}: activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
    _check_same_device(op, x, weight=weight, bias=bias)
    eff = dilation * (k - 1) + 1
    OH = (H + 2 * padding - eff) // stride + 1
    OW = (W + 2 * padding - eff) // stride + 1
    if OH < 1 or OW < 1:
        raise ValueError(f"{op}: output size is too small: input {H}x{W}, k={k}, padding={padding}, "
                         f"dilation={dilation} gives {OH}x{OW}")
    return k, OH, OW, _ACTIVATIONS[activation]


# ----------------------------------------------------------------------------------------------
# Kernel
# ----------------------------------------------------------------------------------------------

@triton.jit
def _dwconv_bn_act_kernel(
    x_ptr, w_ptr, b_ptr, y_ptr,
    C, H, W, OH, OW, tiles_p,
    sx_n, sx_c, sx_h, sx_w,
    sw_c, sw_h, sw_w, s_b,
    sy_n, sy_c, sy_h, sy_w,
    PAD,
    K: tl.constexpr, STRIDE: tl.constexpr, DIL: tl.constexpr, ACT: tl.constexpr,
    CL: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr,
):
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
    for kh in tl.static_range(K):
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
    if ACT == 1:
        acc = tl.maximum(acc, 0.0)
    elif ACT == 2:
        acc = acc * tl.minimum(tl.maximum(acc + 3.0, 0.0), 6.0) / 6.0
    y = y_ptr + n64 * sy_n + c * sy_c + oh * sy_h + ow * sy_w
    tl.store(y, acc.to(y_ptr.dtype.element_ty), mask=mask_p & mask_c)


_INTERPRETED = _kernel_is_interpreted(_dwconv_bn_act_kernel)


def _dw_blocks(N: int, C: int, P: int, cl: bool, sms: int, interpreted: bool):
    """(BLOCK_P, BLOCK_C, num_warps).  Interpreter: big tiles (numpy cost is per op, not per
    element).  GPU: ~2048-element tiles (16 fp32 accumulators/thread at 4 warps), shrunk while
    the grid would not fill ~2 waves of the SMs."""
    if interpreted:
        tile = 8192
        if cl:
            bc = min(_next_pow2(C), 256)
            bp = max(1, min(tile // bc, _next_pow2(P)))
        else:
            bp = min(_next_pow2(P), 4096)
            bc = max(1, min(tile // bp, _next_pow2(C)))
        return bp, bc, 4
    target = 2 * sms
    if cl:
        bc = channel_block(C, 64)
        bp = max(16, min(2048 // bc, _next_pow2(P)))
        while bp > 16 and N * triton.cdiv(P, bp) * triton.cdiv(C, bc) < target:
            bp //= 2
    else:
        bp = max(32, min(256, _next_pow2(P)))
        bc = max(1, min(2048 // bp, _next_pow2(C)))
        while bc > 1 and N * triton.cdiv(P, bp) * triton.cdiv(C, bc) < target:
            bc //= 2
    return bp, bc, 4


def dwconv_bn_act(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, stride: int,
                  padding: int, dilation: int, activation: str) -> torch.Tensor:
    """Depthwise conv (groups=C) + bias + activation; see the module docstring."""
    k, OH, OW, act = check_dwconv_inputs(x, weight, bias, stride, padding, dilation, activation)
    _check_launchable("dwconv_bn_act", x, _INTERPRETED)
    N, C, H, W = x.shape
    cl = wants_channels_last(x)
    y = torch.empty((N, C, OH, OW), device=x.device, dtype=x.dtype,
                    memory_format=torch.channels_last if cl else torch.contiguous_format)
    if N == 0:
        return y
    if not span_fits_int32(x):
        x = x.contiguous(memory_format=torch.channels_last if cl else torch.contiguous_format)
        if not span_fits_int32(x):
            raise RuntimeError("dwconv_bn_act: one sample of x exceeds 2**31 elements")
    if not span_fits_int32(y):
        raise RuntimeError("dwconv_bn_act: one sample of the output exceeds 2**31 elements")
    P = OH * OW
    bp, bc, warps = _dw_blocks(N, C, P, cl, num_sms(x), _INTERPRETED)
    tiles_p = triton.cdiv(P, bp)
    grid = (N * tiles_p, triton.cdiv(C, bc))
    with _device_ctx(x):
        _wrap(_dwconv_bn_act_kernel, _INTERPRETED)[grid](
            x, weight, bias, y,
            C, H, W, OH, OW, tiles_p,
            x.stride(0), x.stride(1), x.stride(2), x.stride(3),
            weight.stride(0), weight.stride(2), weight.stride(3), bias.stride(0),
            y.stride(0), y.stride(1), y.stride(2), y.stride(3),
            padding,
            K=k, STRIDE=stride, DIL=dilation, ACT=act, CL=cl,
            BLOCK_P=bp, BLOCK_C=bc, num_warps=warps,
        )
    return y
