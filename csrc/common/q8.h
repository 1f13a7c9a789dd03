// int8 numerics, in one place: quint8 activations x qint8 weights, rounded exactly as PyTorch's
// quantized CPU ops round (mbv3_fast/quantization/params.py builds these arguments from a
// converted torchvision model).  Every q8 kernel's scalar code calls these functions; the SIMD
// kernels do the same float operations in the same order, and the tests hold them bit-identical.
//
//   conv / linear   Fbgemm mode (fbgemm, QNNPACK, and the x86 engine's fbgemm layers):
//                     q = clamp(zp + rne(((float)(acc + bias_int) + bias_float) * multiplier))
//                   acc = sum (x - x_zp) * w, exact in int32.  fbgemm adds the float bias
//                   bias / (x_scale * w_scale) (bias_int = 0); QNNPACK adds it rounded to int32
//                   (bias_float = 0).  multiplier = float(x_scale * w_scale) / y_scale, per output
//                   channel.  Clamping to [lo, hi] before rounding equals clamping after (the
//                   bounds are integers) and keeps the conversion in range.
//                   Onednn mode (the x86 engine's Conv2d layers with groups <= 100 on a CPU with
//                   AVX512-VNNI, which PyTorch packs for oneDNN):
//                     q = clamp(rne((((float)(acc + bias_int) * src_scale * multiplier + bias_float)
//                                   * inv_scale + zp))
//                   each operation rounded separately, left to right (no fma): the zero point is
//                   added in float BEFORE rounding, so the modes differ where v + zp rounds onto a
//                   .5 tie.  bias_float is the raw float bias; ReLU is the clamp at zp.  The scales
//                   are the float values oneDNN's kernels see (params.py onednn_scales): src_scale
//                   x_scale through PyTorch's and ideep's float reciprocals, multiplier =
//                   float(w_scale), inv_scale 1 / y_scale likewise.
//   hardswish,      a 256-entry table per layer, made by PyTorch's own quantized op on every
//   hardsigmoid     input value (exact by construction).  ReLU is the clamp (lo = zp).
//   add (residual)  fbgemm/x86: ATen's vectorized qadd: each side dequantized with one fma,
//                   x * scale + (-zp * scale), summed in float, times 1 / y_scale, rne.
//                   QNNPACK: its fixed-point add (22-bit multipliers, rounding right shift).
//   mul (SE scale)  ATen's qmul: (a - a_zp) * (b - b_zp) in int32, times the float multiplier
//                   a_scale * b_scale * (1 / y_scale), rne.
//   average pool    rne of the float mean, see q8_mean.
// rne: round to nearest even, the default rounding mode (std::nearbyint, cvtps2dq, fcvtns).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "cpu_isa.h"

namespace mbv3 {

enum class Q8RequantMode : int32_t { Fbgemm = 0, Onednn = 1 };

// Requantization of a conv/linear layer's int32 sums, per output channel n, then the
// activation table (null: none).  An op's arguments; the arrays hold Cout entries.
struct Q8Requant {
  const int32_t* bias_int;
  const float* bias_float;
  const float* multiplier;
  int32_t zp, lo, hi;  // output zero point and clamp, 0 <= lo <= zp (ReLU: lo = zp), hi <= 255
  const uint8_t* lut;  // null or 256 entries
  Q8RequantMode mode = Q8RequantMode::Fbgemm;
  float src_scale = 1.f, inv_scale = 0.f;  // Onednn mode
};

// The Onednn rule's value before clamping and rounding (the zero point included).
inline float q8_onednn_value(int32_t acc, int64_t n, const Q8Requant& r) {
  const float a = static_cast<float>(acc + r.bias_int[n]) * r.src_scale;
  const float b = a * r.multiplier[n];
  return (b + r.bias_float[n]) * r.inv_scale + static_cast<float>(r.zp);
}

inline uint8_t q8_requantize(int32_t acc, int64_t n, const Q8Requant& r) {
  if (r.mode == Q8RequantMode::Onednn) {
    float v = q8_onednn_value(acc, n, r);
    v = std::min(std::max(v, static_cast<float>(r.lo)), static_cast<float>(r.hi));
    const uint8_t q = static_cast<uint8_t>(static_cast<int32_t>(std::nearbyint(v)));
    return r.lut ? r.lut[q] : q;
  }
  float v = (static_cast<float>(acc + r.bias_int[n]) + r.bias_float[n]) * r.multiplier[n];
  v = std::min(std::max(v, static_cast<float>(r.lo - r.zp)), static_cast<float>(r.hi - r.zp));
  const uint8_t q = static_cast<uint8_t>(static_cast<int32_t>(std::nearbyint(v)) + r.zp);
  return r.lut ? r.lut[q] : q;
}

// y = add(a, b): a the block's output, b the residual (the block's input).
enum class Q8AddMode : int32_t { Float = 0, Qnnpack = 1 };
struct Q8Add {
  Q8AddMode mode;
  // Float (fbgemm, x86, onednn engines)
  float a_scale, a_offset, b_scale, b_offset, inv_scale;  // offset = float(-zp) * scale
  // Qnnpack: acc = a * a_mult + b * b_mult + zp_product (int32, wrapping); rounding shift.
  int32_t a_mult, b_mult, zp_product, shift;
  int32_t zp;
};

inline uint8_t q8_add(uint8_t a, uint8_t b, const Q8Add& p) {
  int32_t q;
  if (p.mode == Q8AddMode::Float) {
    const float da = std::fma(static_cast<float>(a), p.a_scale, p.a_offset);
    const float db = std::fma(static_cast<float>(b), p.b_scale, p.b_offset);
    float v = (da + db) * p.inv_scale;
    v = std::min(std::max(v, static_cast<float>(-p.zp)), static_cast<float>(255 - p.zp));
    q = static_cast<int32_t>(std::nearbyint(v)) + p.zp;
  } else {
    const int32_t acc = static_cast<int32_t>(static_cast<uint32_t>(a) * static_cast<uint32_t>(p.a_mult) +
                                             static_cast<uint32_t>(b) * static_cast<uint32_t>(p.b_mult) +
                                             static_cast<uint32_t>(p.zp_product));
    const int32_t mask = static_cast<int32_t>((1u << p.shift) - 1u), threshold = mask >> 1;
    const int32_t rem = (acc & mask) - static_cast<int32_t>(acc < 0);
    q = (acc >> p.shift) + static_cast<int32_t>(rem > threshold) + p.zp;
  }
  return static_cast<uint8_t>(std::min(std::max(q, 0), 255));
}

// y = mul(a, b): a the activation, b the SE scale (hardsigmoid's output).
struct Q8Mul {
  int32_t a_zp, b_zp, zp;
  float multiplier;
};

inline uint8_t q8_mul(uint8_t a, uint8_t b, const Q8Mul& p) {
  const int32_t c = (static_cast<int32_t>(a) - p.a_zp) * (static_cast<int32_t>(b) - p.b_zp);
  float v = static_cast<float>(c) * p.multiplier;
  v = std::min(std::max(v, static_cast<float>(-p.zp)), static_cast<float>(255 - p.zp));
  return static_cast<uint8_t>(static_cast<int32_t>(std::nearbyint(v)) + p.zp);
}

// The int8 kernel families: the fp32 path in force (cpu_isa.h) picks one.  avx512 and
// avx512_bf16 run vpdpbusd where the CPU has AVX512_VNNI and the avx2 kernels (vpmaddwd on
// widened values: exact, no vpmaddubsw saturation) where it does not; neon and neon_bf16 run
// the NEON kernels.
enum class Q8Isa : int { Scalar = 0, Avx2 = 1, Avx512Vnni = 2, Neon = 3 };
Q8Isa q8_isa(Isa isa);
const char* q8_isa_name(Q8Isa isa);
// Whether the CPU has AVX512_VNNI (cpuid, whatever path is in force; cpu_isa.cpp): PyTorch's x86
// quantized engine packs convs for oneDNN on such CPUs, so mbv3_fast.quantization picks the
// Onednn mode from it.
bool cpu_has_avx512_vnni();

}  // namespace mbv3

#include "isa_dispatch.h"

#if MBV3_BUILD_X86 && !defined(MBV3_NO_AVX512)
#define MBV3_Q8_X86_CASES(fn)        \
  case ::mbv3::Q8Isa::Avx512Vnni:    \
    return ::mbv3::avx512_vnni::fn;  \
  case ::mbv3::Q8Isa::Avx2:          \
    return ::mbv3::avx2::fn;
#elif MBV3_BUILD_X86
#define MBV3_Q8_X86_CASES(fn) \
  case ::mbv3::Q8Isa::Avx2:   \
    return ::mbv3::avx2::fn;
#else
#define MBV3_Q8_X86_CASES(fn)
#endif
#if MBV3_BUILD_NEON
#define MBV3_Q8_NEON_CASES(fn) \
  case ::mbv3::Q8Isa::Neon:    \
    return ::mbv3::neon::fn;
#else
#define MBV3_Q8_NEON_CASES(fn)
#endif

// Usage: auto* kernel = MBV3_Q8_SELECT(q8_pwconv_act, q8_isa(current_isa()));
#define MBV3_Q8_SELECT(fn, q8isa)                           \
  [&]() -> decltype(&::mbv3::scalar::fn) {                  \
    switch (q8isa) {                                        \
      MBV3_Q8_X86_CASES(fn)                                 \
      MBV3_Q8_NEON_CASES(fn)                                \
      default:                                              \
        return &::mbv3::scalar::fn;                         \
    }                                                       \
  }()
