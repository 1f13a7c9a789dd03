"""int8 MobileNetV3: torchvision's quantized model run on fused int8 kernels (torch.ops.mbv3.q8_*).

    qmodel = torchvision.models.quantization.mobilenet_v3_large(weights=..., quantize=True)
    model = mbv3_fast.quantization.from_torchvision_quantized(qmodel)   # same logits, faster

or ``mbv3_fast.quantization.mobilenet_v3_large(weights=..., quantize=True)`` directly, or
``quantize(float_model, calibration_batches, engine="x86")`` for post-training quantization with
torch.ao's own recipe.  The rounding of every op follows the engine the model was converted for
(csrc/common/q8.h, params.py).
"""
from mbv3_fast.quantization import params  # noqa: F401
from mbv3_fast.quantization.model import QuantizedMobileNetV3, from_torchvision_quantized
from mbv3_fast.quantization.recipe import mobilenet_v3_large, mobilenet_v3_small, quantize, quantize_torchvision

__all__ = ["QuantizedMobileNetV3", "from_torchvision_quantized", "mobilenet_v3_large", "mobilenet_v3_small",
           "quantize", "quantize_torchvision"]
