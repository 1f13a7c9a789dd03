"""mbv3::q8_mobilenet_v3 (int8) — the whole int8 MobileNetV3 forward of
mbv3_fast.quantization.QuantizedMobileNetV3 as one op call.

    torch.ops.mbv3.q8_mobilenet_v3(x, weights, spec, fspec) -> logits float32 [N, classes]

No kernel of its own: it runs the q8 ops layer after layer, in C++ on the CPU
(csrc/q8_mobilenet_v3/q8_mobilenet_v3_op.cpp), which skips the Python and dispatcher work of ~60
op calls per Large forward.  ``(weights, spec, fspec)``: the int8 plan encoded by
mbv3_fast.quantization.spec.encode (which documents the layout).  The fake kernel decodes it
back into the plan and runs the per-op walk (mbv3_fast.quantization.model.run) on the ops' fakes.
"""
import torch


@torch.library.register_fake("mbv3::q8_mobilenet_v3")
def _fake(x, weights, spec, fspec):
    # Imported here: mbv3_fast.quantization imports mbv3_fast.ops.
    from mbv3_fast.quantization.model import run
    from mbv3_fast.quantization.spec import decode
    return run(decode(weights, spec, fspec), x)
