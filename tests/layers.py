"""Building blocks every op test shares: activation references and BatchNorms with real
statistics."""
import torch
import torch.nn.functional as F
from torch import nn

import mbv3_fast

ACT_FN = {"hardswish": F.hardswish, "relu": F.relu, "none": lambda t: t}
ACT_CODE = {"none": 0, "relu": 1, "hardswish": 2}  # mbv3::Act, as the NEON harnesses take it

ALL_CPU_ISAS = mbv3_fast.available_cpu_isas()
# The distinct code paths of the float32 ops: avx512_bf16 and neon_bf16 run the avx512 / neon
# float32 code (they differ in bf16: rounding on store, the dot-product 1x1 kernel on K-pair
# weights); conftest's cpu_isa_bf16 adds them.
CPU_ISAS = [i for i in ALL_CPU_ISAS if i not in ("avx512_bf16", "neon_bf16")]
BEST_ISA = CPU_ISAS[-1]  # full-size shapes run here; the other paths get smaller ones


def random_bn(c, eps=1e-3):
    """An eval BatchNorm with real statistics (never the default mean 0 / var 1)."""
    bn = nn.BatchNorm2d(c, eps=eps)
    with torch.no_grad():
        bn.running_mean.normal_(0, 0.5)
        bn.running_var.uniform_(0.2, 2.0)
        bn.weight.normal_(1, 0.3)
        bn.bias.normal_(0, 0.3)
    return bn.eval()
