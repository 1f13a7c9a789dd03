"""The ways into the int8 model: torchvision's quantized builders, and post-training quantization
of a float model with torch.ao's own fuse / prepare / convert (torchvision's eager recipe), so the
converted model is exactly what torchvision's recipe gives; ``from_torchvision_quantized`` then
runs it on the q8 ops."""
from typing import Iterable, Optional

import torch
from torch import nn
from torchvision.models import mobilenetv3 as _tv
from torchvision.models.quantization import mobilenetv3 as _tvq

from mbv3_fast.quantization.model import QuantizedMobileNetV3, from_torchvision_quantized
from mbv3_fast.quantization.params import ENGINES


def _settings(model: nn.Module):
    """(inverted_residual_setting, last_channel, num_classes) of a float torchvision-structured
    MobileNetV3 (torchvision's or mbv3_fast's), read from its modules."""
    settings = []
    for blk in list(model.features)[1:-1]:
        layers = list(blk.block)
        convs = [seq[0] for seq in layers if isinstance(seq, nn.Sequential)]
        dw = next(c for c in convs if c.groups > 1)
        dw_seq = next(seq for seq in layers if isinstance(seq, nn.Sequential) and seq[0] is dw)
        act = "HS" if any(isinstance(m, nn.Hardswish) for m in dw_seq) else "RE"
        use_se = any(isinstance(m, _tv.SElayer) for m in layers)
        # A dilated depthwise keeps stride 1 (torchvision drops the stride where it dilates).
        settings.append(_tv.InvertedResidualConfig(convs[0].in_channels, dw.kernel_size[0], dw.out_channels,
                                                   convs[-1].out_channels, use_se, act, dw.stride[0], dw.dilation[0],
                                                   width_mult=1.0))
    cls = list(model.classifier)
    return settings, cls[0].out_features, cls[-1].out_features


def quantize_torchvision(model: nn.Module, calibration_batches: Iterable[torch.Tensor],
                         engine: Optional[str] = None) -> nn.Module:
    """torchvision's eager post-training recipe on a float MobileNetV3 (torchvision's, or an
    mbv3_fast one): a ``QuantizableMobileNetV3`` with the same weights, ``fuse_model()``, the
    engine's default qconfig, ``prepare``, a forward per calibration batch, ``convert``.
    Returns the converted torchvision model (what ``from_torchvision_quantized`` takes)."""
    engine = engine or torch.backends.quantized.engine
    if engine not in ENGINES:
        raise ValueError(f"quantize: engine must be one of {ENGINES}, got {engine!r}")
    settings, last_channel, num_classes = _settings(model)
    qmodel = _tvq.QuantizableMobileNetV3(settings, last_channel, block=_tvq.QuantizableInvertedResidual,
                                         num_classes=num_classes)
    _tvq._replace_relu(qmodel)
    qmodel.load_state_dict(model.state_dict())
    qmodel.eval()
    qmodel.fuse_model()
    before = torch.backends.quantized.engine
    torch.backends.quantized.engine = engine
    try:
        qmodel.qconfig = torch.ao.quantization.get_default_qconfig(engine)
        torch.ao.quantization.prepare(qmodel, inplace=True)
        seen = 0
        with torch.no_grad():
            for x in calibration_batches:
                qmodel(x.float())
                seen += 1
        if seen == 0:
            raise ValueError("quantize: calibration_batches gave no batch")
        torch.ao.quantization.convert(qmodel, inplace=True)
    finally:
        torch.backends.quantized.engine = before
    return qmodel.eval()


def quantize(model: nn.Module, calibration_batches: Iterable[torch.Tensor],
             engine: Optional[str] = None) -> QuantizedMobileNetV3:
    """Post-training static quantization of a float MobileNetV3 (torchvision's recipe, see
    ``quantize_torchvision``), run on the fused int8 ops."""
    engine = engine or torch.backends.quantized.engine
    return from_torchvision_quantized(quantize_torchvision(model, calibration_batches, engine), engine)


def _quantized_only(quantize: bool):
    if not quantize:
        raise ValueError("mbv3_fast.quantization builders make the int8 model (quantize=True); "
                         "the float model is mbv3_fast.mobilenet_v3_large / mobilenet_v3_small")


def mobilenet_v3_large(*, weights=None, progress: bool = True, quantize: bool = True, **kwargs) -> QuantizedMobileNetV3:
    """``torchvision.models.quantization.mobilenet_v3_large(weights=..., quantize=True, **kwargs)``
    on the fused int8 ops.  As torchvision's builder: QAT-prepared then converted under its
    ``backend`` (default qnnpack; the QNNPACK weights set it), the weights loaded in between."""
    _quantized_only(quantize)
    backend = kwargs.get("backend", "qnnpack")
    if weights is not None:
        weights = _tvq.MobileNet_V3_Large_QuantizedWeights.verify(weights)
        backend = weights.meta.get("backend", backend)
    before = torch.backends.quantized.engine
    torch.backends.quantized.engine = backend
    try:
        qmodel = _tvq.mobilenet_v3_large(weights=weights, progress=progress, quantize=True, **kwargs)
    finally:
        torch.backends.quantized.engine = before
    return from_torchvision_quantized(qmodel, backend)


def mobilenet_v3_small(*, weights=None, progress: bool = True, quantize: bool = True, **kwargs) -> QuantizedMobileNetV3:
    """MobileNetV3-Small built the way torchvision builds the quantized Large (torchvision has
    no quantized Small builder or weights): ``_mobilenet_v3_conf("mobilenet_v3_small")`` +
    ``QuantizableMobileNetV3``, QAT-prepared and converted under ``backend`` (default qnnpack)."""
    _quantized_only(quantize)
    if weights is not None:
        raise ValueError("mobilenet_v3_small: torchvision publishes no quantized Small weights")
    backend = kwargs.get("backend", "qnnpack")
    conf_kwargs = {k: kwargs.pop(k) for k in ("width_mult", "reduced_tail", "dilated") if k in kwargs}
    settings, last_channel = _tv._mobilenet_v3_conf("mobilenet_v3_small", **conf_kwargs)
    before = torch.backends.quantized.engine
    torch.backends.quantized.engine = backend
    try:
        qmodel = _tvq._mobilenet_v3_model(settings, last_channel, None, progress, True, **kwargs)
    finally:
        torch.backends.quantized.engine = before
    return from_torchvision_quantized(qmodel, backend)
