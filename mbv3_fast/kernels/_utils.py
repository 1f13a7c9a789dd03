"""Helpers shared by the Triton kernels: Python-side launch arithmetic, the device / interpreter
checks, the one launch seam, and the @triton.jit activations.

Launch seam: every wrapper computes its grid, arguments and meta-parameters and hands them to
``launch(kernel, grid, args, meta, interpreted)``, which does ``kernel[grid](*args, **meta)``.
``bench/gpu_check.py --compile-only`` installs a hook with ``compile_only(hook, sms)``: while it
is active the wrappers accept ``meta`` tensors (shapes and strides, no storage), ``num_sms``
returns the target GPU's SM count, and ``launch`` passes the exact launch to the hook (which
compiles it for sm_90 / sm_80 without a GPU) instead of running it.  So the compile check goes
through the same wrapper code as the ops, not through a copy of it.
"""
import contextlib
import functools
import math

import torch
import triton
import triton.language as tl

from mbv3_fast.ops._layout import output_memory_format

_INT32_MAX = 2**31 - 1

# (hook, sms) while bench/gpu_check.py --compile-only runs; None otherwise.
_COMPILE_ONLY = None


@contextlib.contextmanager
def compile_only(hook, sms: int):
    """Within the block, launch() calls hook(kernel, grid, args, meta) instead of launching, the
    wrappers accept meta tensors and num_sms() is ``sms``."""
    global _COMPILE_ONLY
    prev, _COMPILE_ONLY = _COMPILE_ONLY, (hook, sms)
    try:
        yield
    finally:
        _COMPILE_ONLY = prev


def _cdiv(a: int, b: int) -> int:
    """Ceil division (triton.cdiv is a jit function: ~10 us per call from Python)."""
    return -(-a // b)


def _next_pow2(v: int) -> int:
    return 1 if v <= 1 else 1 << (v - 1).bit_length()


def wants_channels_last(x: torch.Tensor) -> bool:
    """The project's output layout rule (mbv3_fast/ops/_layout.py)."""
    return output_memory_format(x) == torch.channels_last


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
    if x.device.type == "meta" and _COMPILE_ONLY is not None:
        return
    if x.device.type == "cpu":
        raise RuntimeError(f"{op}: the Triton kernel needs CUDA tensors; CPU tensors only work "
                           "when TRITON_INTERPRET=1 is set before triton is imported")
    raise RuntimeError(f"{op}: unsupported device {x.device} (Triton kernel needs CUDA)")


def needs_bf16_rne(dtype: torch.dtype, interpreted: bool) -> bool:
    return interpreted and dtype == torch.bfloat16


def _wrap(kernel, interpreted: bool):
    """torch.library.wrap_triton (traceable by torch.compile); older torch versions refuse
    interpreter-mode kernels, which only ever run eagerly anyway."""
    if interpreted:
        try:
            return torch.library.wrap_triton(kernel)
        except (RuntimeError, TypeError):
            return kernel
    return torch.library.wrap_triton(kernel)


def launch(kernel, grid, args, meta, interpreted: bool) -> None:
    """The one place a kernel is launched (see the module docstring)."""
    if _COMPILE_ONLY is not None:
        _COMPILE_ONLY[0](kernel, grid, tuple(args), dict(meta))
        return
    _wrap(kernel, interpreted)[grid](*args, **meta)


def _device_ctx(x: torch.Tensor):
    if x.device.type == "cuda" and x.device.index is not None \
            and x.device.index != torch.cuda.current_device():
        return torch.cuda.device(x.device)
    return contextlib.nullcontext()


@functools.lru_cache(maxsize=None)
def _num_sms(device_index: int) -> int:
    return torch.cuda.get_device_properties(device_index).multi_processor_count


def num_sms(x: torch.Tensor) -> int:
    if _COMPILE_ONLY is not None:
        return _COMPILE_ONLY[1]
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
        if _cdiv(C, b) * b - C <= C // 8:
            return b
        b //= 2
    return 16


def vec_width(dtype: torch.dtype, *values: int) -> int:
    """Largest power of two <= 16 bytes / itemsize dividing every value (C and strides)."""
    g = math.gcd(*values)
    v = 16 // dtype.itemsize
    while v > 1 and g % v:
        v //= 2
    return v


def span_fits_int32(t: torch.Tensor) -> bool:
    """Largest in-sample element offset (dims 1..) fits int32; the sample offset is int64."""
    return sum((s - 1) * abs(st) for s, st in zip(t.shape[1:], t.stride()[1:])) <= _INT32_MAX


# ----------------------------------------------------------------------------------------------
# @triton.jit helpers
# ----------------------------------------------------------------------------------------------

@triton.jit
def round_to_bf16_rne(v):
    """fp32 -> the nearest-even bfloat16 value, still as fp32 (so a later .to(bf16) is exact).
    Only used under TRITON_INTERPRET=1, whose fp32->bf16 cast truncates; on the GPU the native
    conversion already rounds to nearest even."""
    bits = v.to(tl.uint32, bitcast=True)
    bits = bits + 0x7FFF + ((bits >> 16) & 1)
    bits = (bits >> 16) << 16
    return bits.to(tl.float32, bitcast=True)


@triton.jit
def hardsigmoid(v):
    """relu6(v + 3) / 6."""
    return tl.minimum(tl.maximum(v + 3.0, 0.0), 6.0) / 6.0


@triton.jit
def apply_act(v, ACT: tl.constexpr):
    """The activation codes of mbv3_fast.ops._checks.ACTIVATIONS: 0 none, 1 relu, 2 hardswish."""
    if ACT == 1:
        v = tl.maximum(v, 0.0)
    elif ACT == 2:
        v = v * tl.minimum(tl.maximum(v + 3.0, 0.0), 6.0) / 6.0  # as x * relu6(x + 3) / 6
    return v
