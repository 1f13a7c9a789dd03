"""Argument checks shared by every op's fake (meta) and CUDA (Triton) paths.

Messages follow the C++ kernels' (csrc/common/op_utils.h), so an error reads the same on every device.
"""
import torch

FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def check_float(t, name: str, op: str, x_dtype=None) -> None:
    """x: float32/float16/bfloat16; parameters (x_dtype given): float32 or x's dtype."""
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{op}: {name} must be a torch.Tensor, got {type(t).__name__}")
    allowed = FLOAT_DTYPES if x_dtype is None else tuple(dict.fromkeys((torch.float32, x_dtype)))
    if t.dtype not in allowed:
        names = " or ".join(str(d).replace("torch.", "") for d in allowed)
        raise ValueError(f"mbv3: {name} must be {names}, got {t.dtype}")


def check_same_device(x, **others) -> None:
    for name, t in others.items():
        if t.device != x.device:
            raise RuntimeError(f"mbv3: {name} is on {t.device} but x is on {x.device}; "
                               "all tensors must be on the same device")


def check_cpu_dtype(x) -> None:
    """The C++ CPU kernels are float32 only; the fake kernels say so for CPU tensors too."""
    if x.device.type == "cpu" and x.dtype != torch.float32:
        raise ValueError(f"mbv3: x must be float32 on the CPU, got {x.dtype}")


ACTIVATIONS = {"none": 0, "relu": 1, "hardswish": 2}  # codes shared with the kernels (mbv3::Act)


def check_activation(activation, op: str) -> int:
    """The kernels' code for an activation name."""
    if not isinstance(activation, str) or activation not in ACTIVATIONS:
        raise ValueError(f"{op}: unknown activation {activation!r}, "
                         "expected 'hardswish', 'relu' or 'none'")
    return ACTIVATIONS[activation]


def check_int_args(op: str, **args) -> None:
    """check_int_args(op, stride=(stride, 1), padding=(padding, 0)): ints at least their bound."""
    for name, (v, lo) in args.items():
        if isinstance(v, bool) or not isinstance(v, int):
            raise ValueError(f"{op}: {name} must be an int, got {type(v).__name__}")
        if v < lo:
            raise ValueError(f"{op}: {name} must be >= {lo}, got {v}")
