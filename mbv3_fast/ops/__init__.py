"""Python side of the fused ops: fake (meta) kernels, CUDA (Triton) registrations, wrappers."""
from mbv3_fast.ops.fold_bn import fold_bn
from mbv3_fast.ops.dwconv_bn_act import dwconv_bn_act
from mbv3_fast.ops.se import se
from mbv3_fast.ops.pwconv_bn_act import (pack_weight as pack_pw_weight, pack_weight_k_pairs,
                                         pack_weight_panels as pack_pw_weight_panels, pwconv_bn_act)
from mbv3_fast.ops.conv_bn_act import conv_bn_act, pack_weight as pack_conv_weight
from mbv3_fast.ops.classifier_head import classifier_head
from mbv3_fast.ops import expand_dwconv_bn_act as _expand_dwconv_bn_act  # noqa: F401 (registers the fake/CUDA kernels)
from mbv3_fast.ops import mobilenet_v3 as _mobilenet_v3  # noqa: F401 (registers the fake/CUDA kernels)
# int8 (CPU): fake kernels, weight packing, wrappers
from mbv3_fast.ops import q8_conv_act, q8_dwconv_act, q8_pwconv_act, q8_se, q8_classifier_head  # noqa: F401
from mbv3_fast.ops import q8_mobilenet_v3 as _q8_mobilenet_v3  # noqa: F401 (registers the fake kernel)

__all__ = ["fold_bn", "dwconv_bn_act", "se", "pwconv_bn_act", "pack_pw_weight", "pack_pw_weight_panels",
           "pack_weight_k_pairs", "conv_bn_act",
           "pack_conv_weight", "classifier_head"]
