"""mbv3_fast: MobileNetV3 for PyTorch with fused CPU (SIMD) and GPU (Triton) kernels.

Importing the package loads the C++ extension, which registers the ops under torch.ops.mbv3.
"""
import torch  # noqa: F401  (loads libtorch before our extension)

from mbv3_fast import _C  # noqa: F401  (registers torch.ops.mbv3.*)
from mbv3_fast import ops
from mbv3_fast import cuda_graph  # noqa: F401  (capture(model, example_input): CUDA-graph replay)
from mbv3_fast.isa import available_cpu_isas, get_cpu_isa, set_cpu_isa
from mbv3_fast.model import (MobileNetV3Large, MobileNetV3Small, from_torchvision,
                             mobilenet_v3_large, mobilenet_v3_small)

__all__ = ["ops", "set_cpu_isa", "get_cpu_isa", "available_cpu_isas", "MobileNetV3Large",
           "MobileNetV3Small", "mobilenet_v3_large", "mobilenet_v3_small", "from_torchvision"]
