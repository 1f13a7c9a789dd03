"""The q8 ops written out in plain PyTorch from csrc/common/q8.h's formulas (float64 convolutions
of the integer values, which are exact, then float32 requantization), with the ops' signatures.
test_quantization.py runs the int8 model's plan on these to check the plan itself (which layer
gets which qparams) against torchvision's quantized model, independently of the kernels."""
import platform

import torch
import torch.nn.functional as F

import mbv3_fast  # noqa: F401 (registers torch.ops.mbv3)


def torch_int8_saturates() -> bool:
    """Whether PyTorch's fbgemm and oneDNN int8 GEMMs (engines fbgemm, x86, onednn) can differ from
    the exact sums on this CPU: without AVX512-VNNI they add pairs of u8 x s8 products in
    saturating int16 (vpmaddubsw), so a pair over 32767 is clipped (which is why PyTorch's x86
    recipe keeps activations to 7 bits there, reduce_range).  Our kernels sum exactly, so the
    tests that compare with those engines keep their activations in [0, X_MAX] here: no pair can
    then saturate (2 * 127 * 128 < 32768) and the comparison stays bit for bit.  qnnpack widens to
    int16 and is exact everywhere."""
    if platform.machine().lower() not in ("x86_64", "amd64", "i686", "x86"):
        return False
    return not torch.ops.mbv3.q8_cpu_has_avx512_vnni()


SATURATES = ("PyTorch's fbgemm / oneDNN int8 GEMMs on this CPU (no AVX512-VNNI) add u8 x s8 pairs in "
              "saturating int16 (vpmaddubsw): not the exact sums our kernels compute; the qnnpack-engine "
              "cases test the same kernels here, and this case runs on VNNI CPUs")

# The largest activation byte the tests feed PyTorch's fbgemm / oneDNN GEMMs (see above).
X_MAX = 127 if torch_int8_saturates() else 255


def torch_int8_exact(engine: str) -> bool:
    """Whether PyTorch's int8 result under `engine` is the exact one on this CPU (see above)."""
    return engine == "qnnpack" or not torch_int8_saturates()


def _rne_u8(v, zp, lo=0, hi=255):
    v = v.clamp(float(lo - zp), float(hi - zp))
    return (torch.round(v).to(torch.int64) + zp).to(torch.uint8)  # torch.round: half to even


def requantize(acc, bias_int, bias_float, multiplier, out_qparams, lut, dim=1, onednn=None):
    shape = [1] * acc.dim()
    shape[dim] = -1
    zp, lo, hi = out_qparams
    a = (acc + bias_int.view(shape).long()).to(torch.float32)
    if onednn is None:  # Fbgemm mode
        v = (a + bias_float.view(shape)) * multiplier.view(shape)
        q = _rne_u8(v, zp, lo, hi)
    else:  # Onednn mode: the zero point added in float before rounding
        src, inv = (torch.tensor(float(s), dtype=torch.float32) for s in onednn)
        v = ((a * src) * multiplier.view(shape) + bias_float.view(shape)) * inv + torch.tensor(float(zp))
        q = _rne_u8(v, 0, lo, hi)
    return lut.long()[q.long()] if lut is not None else q


def mul(a, b, p):
    a_zp, b_zp, zp, m = p
    c = (a.long() - int(a_zp)) * (b.long() - int(b_zp))
    return _rne_u8(c.to(torch.float32) * torch.tensor(m, dtype=torch.float32), int(zp))


def add(a, b, p):
    mode, sa, oa, sb, ob, inv, am, bm, zpp, shift, zp = p
    if mode == 0:  # fma in float64 (exact product and one rounding of the sum to float32)
        da = (a.double() * sa + oa).to(torch.float32)
        db = (b.double() * sb + ob).to(torch.float32)
        return _rne_u8((da + db) * torch.tensor(inv, dtype=torch.float32), int(zp))
    acc = a.long() * int(am) + b.long() * int(bm) + int(zpp)
    acc = (acc + 2 ** 31) % 2 ** 32 - 2 ** 31
    shift = int(shift)
    mask = (1 << shift) - 1
    rem = (acc & mask) - (acc < 0).long()
    q = (acc >> shift) + (rem > (mask >> 1)).long() + int(zp)
    return q.clamp(0, 255).to(torch.uint8)


def _conv(x, x_zp, w, stride, padding, dilation, groups):
    return F.conv2d(x.double() - x_zp, w.double(), None, stride, padding, dilation, groups).round().long()


def q8_conv_act(x, x_scale, x_zp, w, bias_int, bias_float, multiplier, out_qparams, lut, stride, padding,
                onednn=None):
    if x.dtype == torch.float32:
        x = torch.quantize_per_tensor(x, x_scale, x_zp, torch.quint8).int_repr()
    acc = _conv(x, x_zp, w, stride, padding, 1, 1)
    return requantize(acc, bias_int, bias_float, multiplier, out_qparams, lut, onednn=onednn)


def q8_dwconv_act(x, x_zp, w, bias_int, bias_float, multiplier, out_qparams, lut, stride, padding, dilation=1,
                  onednn=None):
    acc = _conv(x, x_zp, w, stride, padding, dilation, x.shape[1])
    return requantize(acc, bias_int, bias_float, multiplier, out_qparams, lut, onednn=onednn)


def q8_pwconv_act(x, x_zp, w, bias_int, bias_float, multiplier, out_qparams, lut=None, residual=None, add_p=None,
                  se_scale=None, mul_p=None, onednn=None):
    if se_scale is not None:
        x = mul(x, se_scale[:, :, None, None], mul_p)
    acc = _conv(x, x_zp, w.reshape(w.shape[0], -1, 1, 1), 1, 0, 1, 1)
    y = requantize(acc, bias_int, bias_float, multiplier, out_qparams, lut, onednn=onednn)
    return add(y, residual, add_p) if residual is not None else y


def pool(x, x_zp, x_scale):
    """Quantized adaptive average pool to 1x1 of a channels_last map, keeping its qparams, rounded
    as PyTorch rounds under the engine in force (csrc/q8_se/q8_se.h)."""
    hw = x.shape[2] * x.shape[3]
    acc = (x.long().sum((2, 3)) - x_zp * hw).to(torch.float32)
    if torch.backends.quantized.engine == "qnnpack" and hw > 1:
        s = torch.tensor(x_scale, dtype=torch.float32)
        m = s / (s * hw)
    else:
        m = 1.0 / (1.0 / torch.tensor(1.0 / hw, dtype=torch.float32))
    return _rne_u8(acc * m.to(torch.float32), x_zp)


def linear(x, x_zp, w, bias_int, bias_float, multiplier, out_qparams, lut=None, onednn=None):
    acc = (x.long() - x_zp) @ w.reshape(w.shape[0], -1).long().t()
    return requantize(acc, bias_int, bias_float, multiplier, out_qparams, lut, onednn=onednn)


def q8_se(x, x_zp, w1, bi1, bf1, m1, o1, w2, bi2, bf2, m2, o2, lut, x_scale, onednn1=None,
          onednn2=None):
    h = linear(pool(x, x_zp, x_scale), x_zp, w1, bi1, bf1, m1, o1, onednn=onednn1)
    return linear(h, o1[0], w2, bi2, bf2, m2, o2, lut, onednn=onednn2)


def q8_classifier_head(x, x_zp, w1, bi1, bf1, m1, o1, lut1, hidden_zp, w2, bi2, bf2, m2, o2, out_scale, x_scale,
                       onednn1=None, onednn2=None):
    h = linear(pool(x, x_zp, x_scale), x_zp, w1, bi1, bf1, m1, o1, lut1, onednn=onednn1)
    q = linear(h, hidden_zp, w2, bi2, bf2, m2, o2, onednn=onednn2)
    return (q.to(torch.float32) - float(o2[0])) * torch.tensor(out_scale, dtype=torch.float32)


def onednn_requantize(acc, x_scale, w_scales, bias, y_scale, y_zp):
    """What the x86 engine's oneDNN convolution (groups <= 100, on a VNNI CPU) computes from the
    exact sums, in float32, each step rounded, the zero point added BEFORE rounding to nearest
    even (fbgemm's rule, requantize above, adds it after, so the two differ where v + zp rounds
    onto a .5 tie).  The scales as oneDNN gets them: PyTorch passes ideep 1 / scale (double, then
    float), ideep passes oneDNN its float reciprocal (rr below), oneDNN inverts the output scale.
      ((acc * rr(x_scale)) * w_scale + bias) * (1 / rr(y_scale)) + zp    (1x1, KxK and depthwise)
    Written from the raw scales, independently of params.requant_args(onednn=True) and
    requantize's Onednn mode; test_quantization checks both against PyTorch."""
    f32 = torch.float32
    shape = [1, -1] + [1] * (acc.dim() - 2)
    rr = lambda s: 1 / (1 / torch.as_tensor(s, dtype=torch.float64)).to(f32)  # noqa: E731
    w = torch.as_tensor(w_scales, dtype=torch.float64).view(shape)
    v = (acc.to(f32) * rr(x_scale)) * w.to(f32)
    inv = 1 / rr(y_scale)
    v = (v + bias.to(f32).view(shape)) * inv
    return torch.round(v + torch.tensor(float(y_zp), dtype=f32)).clamp(0, 255).to(torch.uint8)
