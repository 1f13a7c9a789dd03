"""Which CPU code path the C++ kernels use.

At import the path comes from MBV3_FAST_CPU_ISA (auto|scalar|avx2|avx512|avx512_bf16|neon;
default auto = the widest this CPU supports).  avx512_bf16 is avx512 plus the AVX512_BF16 dot
products (vdpbf16ps) for bfloat16 1x1 convs and FC layers.  These functions read and change it for the whole process.
"""
from typing import List

import torch


def get_cpu_isa() -> str:
    """The path in force now, e.g. 'avx512'."""
    return torch.ops.mbv3.get_cpu_isa()


def set_cpu_isa(name: str) -> None:
    """Force a path ('auto' picks the widest).  Raises ValueError if this CPU lacks it."""
    torch.ops.mbv3.set_cpu_isa(name)


def available_cpu_isas() -> List[str]:
    """Paths this build and CPU can run, narrowest first (always includes 'scalar')."""
    return list(torch.ops.mbv3.available_cpu_isas())


def cpu_isa_reads_k_pairs() -> bool:
    """Whether the path in force has the bf16 dot-product 1x1 kernel, which reads weights
    packed in K pairs (``mbv3_fast.ops.pack_weight_k_pairs``)."""
    return bool(torch.ops.mbv3.cpu_isa_reads_k_pairs())


def cpu_fc_dot_products() -> bool:
    """Whether the path in force sums bfloat16 FC weights read by [out, in] rows (the SE's and the
    classifier head's, in the layout the model keeps) with bf16 dot products on inputs rounded to
    bf16.  Elsewhere bf16 FC weights are widened, and the result is the float32 kernel's, rounded."""
    return bool(torch.ops.mbv3.cpu_fc_dot_products())


def cpu_pw_panel_cols() -> int:
    """The panel width the path in force wants float32 1x1 weights packed in
    (``mbv3_fast.ops.pack_pw_weight_panels``; the model packs them so), or 0 where it reads the
    K-major weight in place."""
    return int(torch.ops.mbv3.cpu_pw_panel_cols())


def cpu_head_panel_rows() -> int:
    """The panel height (outputs per panel) the path in force wants the classifier head's float32
    FC weights packed in (``mbv3_fast.ops.pack_pw_weight_panels``; the model packs them so), or 0
    where it reads the [out, in] rows in place."""
    return int(torch.ops.mbv3.cpu_head_panel_rows())
