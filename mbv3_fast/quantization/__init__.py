"""int8 MobileNetV3: torchvision's quantized model run on fused int8 kernels (torch.ops.mbv3.q8_*)."""
from mbv3_fast.quantization import params  # noqa: F401
