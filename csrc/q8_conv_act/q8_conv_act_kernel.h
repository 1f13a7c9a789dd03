// int8 dense KxK conv (the stem) + requantization, and the float -> quint8 quantizer, compiled
// once per ISA (q8_conv_act_<isa>.cpp).  The conv's inner loops run over output channels
// (contiguous int32 weights and sums), which the compiler vectorizes for the unit's ISA; the
// requantization loop does q8_requantize's float steps in its order, also vectorized.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "q8_conv_act.h"
#include "common/simd.h"

namespace mbv3 {
namespace MBV3_ISA_NS {

void q8_conv_act(const Q8ConvArgs& p, int64_t row_begin, int64_t row_end) {
  constexpr int64_t kMaxCout = 64;  // output channels per pass (sums kept on the stack)
  const int k = p.k;
  const int64_t Cin = p.Cin, W = p.W;
  const float lo = static_cast<float>(p.r.lo - p.r.zp), hi = static_cast<float>(p.r.hi - p.r.zp);
  alignas(64) int32_t acc[kMaxCout];
  alignas(64) int32_t q[kMaxCout];
  for (int64_t row = row_begin; row < row_end; ++row) {
    const int64_t b = row / p.OH, oh = row % p.OH;
    for (int64_t ow = 0; ow < p.OW; ++ow) {
      uint8_t* py = p.y + (row * p.OW + ow) * p.Cout;
      for (int64_t c0 = 0; c0 < p.Cout; c0 += kMaxCout) {
        const int64_t nc = std::min(kMaxCout, p.Cout - c0);
        for (int64_t j = 0; j < nc; ++j) acc[j] = 0;
        for (int kh = 0; kh < k; ++kh) {
          const int64_t ih = oh * p.stride - p.pad + kh;
          for (int kw = 0; kw < k; ++kw) {
            const int64_t iw = ow * p.stride - p.pad + kw;
            const bool ok = ih >= 0 && ih < p.H && iw >= 0 && iw < W;
            const uint8_t* px = p.x + ((b * p.H + ih) * W + iw) * Cin;
            for (int64_t ci = 0; ci < Cin; ++ci) {
              const int32_t xv = ok ? px[ci] : p.x_zp;
              const int32_t* w = p.w + ((kh * k + kw) * Cin + ci) * p.Cout + c0;
              for (int64_t j = 0; j < nc; ++j) acc[j] += xv * w[j];
            }
          }
        }
        const int32_t* bi = p.r.bias_int + c0;
        const float* bf = p.r.bias_float + c0;
        const float* m = p.r.multiplier + c0;
        for (int64_t j = 0; j < nc; ++j) {
          float v = (static_cast<float>(acc[j] + bi[j]) + bf[j]) * m[j];
          v = std::min(std::max(v, lo), hi);
          q[j] = static_cast<int32_t>(std::nearbyint(v)) + p.r.zp;
        }
        for (int64_t j = 0; j < nc; ++j)
          py[c0 + j] = p.r.lut ? p.r.lut[q[j]] : static_cast<uint8_t>(q[j]);
      }
    }
  }
}

void q8_quantize(const float* x, uint8_t* y, int64_t n, float inv_scale, int32_t zp) {
  int64_t i = 0;
#if defined(MBV3_ISA_AVX512)
  // max(0, v) keeps a NaN (vmaxps returns its second operand), min(v, 255) turns it into 255.
  const __m512 inv = _mm512_set1_ps(inv_scale), z = _mm512_set1_ps(static_cast<float>(zp));
  const __m512 zero = _mm512_setzero_ps(), top = _mm512_set1_ps(255.f);
  for (; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? __mmask16(0xffff) : __mmask16((1u << (n - i)) - 1);
    __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), inv);
    v = _mm512_add_ps(_mm512_roundscale_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), z);
    v = _mm512_min_ps(_mm512_max_ps(zero, v), top);
    _mm_mask_storeu_epi8(y + i, m, _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(v)));
  }
#elif defined(MBV3_ISA_AVX2)
  const __m256 inv = _mm256_set1_ps(inv_scale), z = _mm256_set1_ps(static_cast<float>(zp));
  const __m256 zero = _mm256_setzero_ps(), top = _mm256_set1_ps(255.f);
  for (; i + 8 <= n; i += 8) {
    __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + i), inv);
    v = _mm256_add_ps(_mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), z);
    v = _mm256_min_ps(_mm256_max_ps(zero, v), top);
    const __m256i q = _mm256_cvtps_epi32(v);
    const __m256i b = _mm256_packus_epi16(_mm256_packus_epi32(q, q), q);  // lane bytes 0..3 = its 4 values
    const __m256i g = _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 0, 0, 0, 0, 0, 0));
    _mm_storel_epi64(reinterpret_cast<__m128i*>(y + i), _mm256_castsi256_si128(g));
  }
#endif
  for (; i < n; ++i) y[i] = q8_quantize_value(x[i], inv_scale, zp);
}

}  // namespace MBV3_ISA_NS
}  // namespace mbv3
