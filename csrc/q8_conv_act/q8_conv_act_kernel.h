// int8 dense KxK conv (the stem) + requantization, and the float -> quint8 quantizer, compiled
// once per ISA (q8_conv_act_<isa>.cpp).  The conv's inner loops run over output channels
// (contiguous int32 weights and sums), which the compiler vectorizes for the unit's ISA; the
// requantization loop does q8_requantize's float steps in its order, also vectorized; the
// requantization mode (q8.h) is a template parameter OD of the conv, picked once per call.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <type_traits>
#include <vector>

#include "q8_conv_act.h"
#include "common/simd.h"
#include "common/q8_table_avx512.h"

namespace mbv3 {
namespace MBV3_ISA_NS {

// columns(ow, std::integral_constant<int, n>{}) over the output columns [0, OW): blocks of KC,
// then the last 1..KC-1 columns as one block whose count is a compile-time constant too.
template <int N, class F>
[[gnu::always_inline]] inline void column_tail(int64_t ow, int64_t n, const F& columns) {
  if constexpr (N > 0) {
    if (n == N) columns(ow, std::integral_constant<int, N>{});
    else column_tail<N - 1>(ow, n, columns);
  }
}
template <int KC, class F>
[[gnu::always_inline]] inline void column_blocks(int64_t OW, const F& columns) {
  int64_t ow = 0;
  for (; ow + KC <= OW; ow += KC) columns(ow, std::integral_constant<int, KC>{});
  column_tail<KC - 1>(ow, OW - ow, columns);
}

#if defined(MBV3_ISA_AVX512)
// 16 output channels in the lanes of one int32 vector.  x is NHWC with Cin a multiple of 4 (see
// Q8ConvArgs): a pixel's 4 channels are one int32, broadcast against the int8 weights of those
// channels interleaved per output channel, one vpdpbusd (u8 x s8, exact) per 4 terms; the sums
// start at bias_int (int32 wrapping, as the add after).  kCols output columns at once keep
// independent chains in flight.
//   Epilogue, where there is no table or the CPU has AVX512_VBMI: q8.h's float steps per vector
//   of 16, the upper clamp in float (it keeps cvtps2dq in range), then 4 pixels' int32 vectors to
//   64 bytes by saturating packs, which with a byte max do the lower clamp (before or after rne is
//   the same for integer bounds; NaN, from non-finite arguments, converts to INT32_MIN and so
//   gives lo, as the per-pixel path's float max does), the table on the 64 bytes by vpermi2b, and
//   one 64-byte store where the 4 pixels are contiguous (Cout = 16).  Without VBMI, with a table:
//   per pixel, the table by vpermi2w.
namespace {
// 16-byte lane i of v (i a constant after unrolling) to y: nc bytes.
[[gnu::always_inline]] inline void store_lane(uint8_t* y, __m512i v, int i, int64_t nc) {
  const __m128i x = i == 0   ? _mm512_castsi512_si128(v)
                    : i == 1 ? _mm512_extracti32x4_epi32(v, 1)
                    : i == 2 ? _mm512_extracti32x4_epi32(v, 2)
                             : _mm512_extracti32x4_epi32(v, 3);
  if (nc == 16) _mm_storeu_si128(reinterpret_cast<__m128i*>(y), x);
  else _mm_mask_storeu_epi8(y, static_cast<__mmask16>((1u << nc) - 1), x);
}

// PACKED: the 4-pixel epilogue (no table, or the table by VBMI).  K3: k = 3 and Cin = 4 (the stem).
template <bool OD, bool PACKED, bool K3>
__attribute__((optimize("no-tree-pre"))) void conv_rows(const Q8ConvArgs& p, int64_t row_begin, int64_t row_end) {
  static_assert(kQ8ConvCoutBlock == 16, "one __m512i of int32 sums");
  constexpr int kCols = 8;
  const int k = p.k;
  const int64_t groups = p.Cin / 4, nw = int64_t(k) * k * groups;  // weight vectors per block
  const int32_t zp = OD ? 0 : p.r.zp;  // added after rounding
  const __m512 lo = _mm512_set1_ps(static_cast<float>(p.r.lo - zp));
  const __m512 hi = _mm512_set1_ps(static_cast<float>(p.r.hi - zp));
  const __m512 src = _mm512_set1_ps(p.r.src_scale), inv = _mm512_set1_ps(p.r.inv_scale);
  const __m512 ozp = _mm512_set1_ps(static_cast<float>(p.r.zp));
  const __m512i zp_out = _mm512_set1_epi32(zp), zpw = _mm512_set1_epi16(static_cast<int16_t>(zp));
  const __m512i lo8 = _mm512_set1_epi8(static_cast<char>(p.r.lo));
  const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  const bool has_lut = p.r.lut != nullptr;
  const Q8Table lut(p.r.lut);
  const int64_t xs = p.stride * p.sw;  // bytes between two output columns' pixels
  for (int64_t c0 = 0; c0 < p.Cout; c0 += 16) {
    const int8_t* w4 = p.w + c0 / 16 * nw * 64;
    const int64_t nc = std::min<int64_t>(16, p.Cout - c0);
    const bool dense = p.Cout == 16;  // 4 consecutive pixels' outputs are 64 contiguous bytes
    const __mmask16 m = static_cast<__mmask16>((1u << nc) - 1);
    const __m512i bi = _mm512_maskz_loadu_epi32(m, p.r.bias_int + c0);
    const __m512 bf = _mm512_maskz_loadu_ps(m, p.r.bias_float + c0), mul = _mm512_maskz_loadu_ps(m, p.r.multiplier + c0);
    for (int64_t row = row_begin; row < row_end; ++row) {
      const int64_t b = row / p.OH, oh = row % p.OH;
      const uint8_t* xrow = p.x + b * p.sn + oh * p.stride * p.sh;
      auto columns = [&](int64_t ow0, auto ncols) {
        constexpr int NB = decltype(ncols)::value;
        __m512i acc[NB];
        for (int j = 0; j < NB; ++j) acc[j] = bi;
        auto tap = [&](const uint8_t* px, const int8_t* w) {  // one group of 4 input channels
          const __m512i wv = _mm512_loadu_si512(w);
          for (int j = 0; j < NB; ++j) {
            int32_t v;
            std::memcpy(&v, px + j * xs, 4);
            acc[j] = _mm512_dpbusd_epi32(acc[j], _mm512_set1_epi32(v), wv);
          }
        };
        const uint8_t* x0 = xrow + ow0 * p.stride * p.sw;
        if constexpr (K3) {  // the stem's case, unrolled: no loop-carried copies of the sums
#pragma GCC unroll 3
          for (int kh = 0; kh < 3; ++kh)
#pragma GCC unroll 3
            for (int kw = 0; kw < 3; ++kw) tap(x0 + kh * p.sh + kw * 4, w4 + (kh * 3 + kw) * 64);
        } else {
          const int8_t* w = w4;
          for (int kh = 0; kh < k; ++kh)
            for (int kw = 0; kw < k; ++kw)
              for (int64_t g = 0; g < groups; ++g, w += 64) tap(x0 + kh * p.sh + kw * p.sw + 4 * g, w);
        }
        uint8_t* y0 = p.y + (row * p.OW + ow0) * p.Cout + c0;
        auto value = [&](__m512i s) {  // q8.h's float steps, the zero point included in Onednn mode
          const __m512 a = _mm512_cvtepi32_ps(s);
          return OD ? _mm512_add_ps(_mm512_mul_ps(_mm512_add_ps(_mm512_mul_ps(_mm512_mul_ps(a, src), mul), bf), inv), ozp)
                    : _mm512_mul_ps(_mm512_add_ps(a, bf), mul);
        };
        if constexpr (PACKED) {
#pragma GCC unroll 2
          for (int j0 = 0; j0 < NB; j0 += 4) {
            constexpr int kLast = NB % 4 == 0 ? 4 : NB % 4;
            const int cnt = j0 + 4 <= NB ? 4 : kLast;
            __m512i q[4];
#pragma GCC unroll 4
            for (int i = 0; i < 4; ++i)  // vminps(hi, v) gives v where v is NaN: see above
              q[i] = i < cnt ? _mm512_cvtps_epi32(_mm512_min_ps(hi, value(acc[j0 + i])))
                             : _mm512_setzero_si512();
            __m512i ab = _mm512_packs_epi32(q[0], q[1]), cd = _mm512_packs_epi32(q[2], q[3]);
            if constexpr (!OD) ab = _mm512_adds_epi16(ab, zpw), cd = _mm512_adds_epi16(cd, zpw);
            __m512i v = _mm512_max_epu8(_mm512_packus_epi16(ab, cd), lo8);
            if (has_lut) v = lut.bytes(v);
            v = _mm512_permutexvar_epi32(order, v);  // pixel i's 16 outputs in lane i
            uint8_t* y = y0 + j0 * p.Cout;
            if (dense && cnt == 4) _mm512_storeu_si512(y, v);
            else if (dense) _mm512_mask_storeu_epi8(y, _cvtu64_mask64((1ull << (16 * cnt)) - 1), v);
            else
#pragma GCC unroll 4
              for (int i = 0; i < 4; ++i)
                if (i < cnt) store_lane(y + i * p.Cout, v, i, nc);
          }
        } else {
          for (int j = 0; j < NB; ++j) {
            const __m512 v = _mm512_min_ps(_mm512_max_ps(value(acc[j]), lo), hi);
            __m512i q = _mm512_cvtepu16_epi32(_mm512_cvtepi32_epi16(_mm512_add_epi32(_mm512_cvtps_epi32(v), zp_out)));
            if (has_lut) q = lut.words(q);  // int32 lanes = int16 pairs with a zero high half: the low halves looked up
            uint8_t* y = y0 + j * p.Cout;
            if (nc == 16) _mm_storeu_si128(reinterpret_cast<__m128i*>(y), _mm512_cvtepi32_epi8(q));
            else _mm_mask_storeu_epi8(y, m, _mm512_cvtepi32_epi8(q));
          }
        }
      };
      column_blocks<kCols>(p.OW, columns);
    }
  }
}

template <bool OD>
void conv(const Q8ConvArgs& p, int64_t row_begin, int64_t row_end) {
  const bool k3 = p.k == 3 && p.Cin == 4;  // the stem: 3x3, one group of 4 input channels
  if (!p.r.lut || q8_has_vbmi()) {
    if (k3) conv_rows<OD, true, true>(p, row_begin, row_end);
    else conv_rows<OD, true, false>(p, row_begin, row_end);
  } else {
    if (k3) conv_rows<OD, false, true>(p, row_begin, row_end);
    else conv_rows<OD, false, false>(p, row_begin, row_end);
  }
}
}  // namespace
#else
namespace {
// q8.h's float steps on one pixel's 16 sums of x * w (output channels c0..), the table, the store.
template <bool OD>
inline void requant_store(const Q8ConvArgs& p, const int32_t* acc, int64_t c0, uint8_t* py) {
  constexpr int64_t kB = kQ8ConvCoutBlock;
  const int32_t zp = OD ? 0 : p.r.zp;  // added after rounding
  const float lo = static_cast<float>(p.r.lo - zp), hi = static_cast<float>(p.r.hi - zp);
  const float src = p.r.src_scale, inv = p.r.inv_scale, ozp = static_cast<float>(p.r.zp);
  const int64_t nc = std::min(kB, p.Cout - c0);
  alignas(64) int32_t q[kB];
  // A whole block reads its per-channel terms in place; only a tail block copies them into
  // zero-padded arrays (the copy loop compiled to three memcpy calls per pixel).
  const int32_t* bi = p.r.bias_int + c0;
  const float *bf = p.r.bias_float + c0, *m = p.r.multiplier + c0;
  alignas(64) int32_t bi_tail[kB];
  alignas(64) float bf_tail[kB], m_tail[kB];
  if (nc < kB) {
    for (int64_t j = 0; j < kB; ++j) {
      bi_tail[j] = j < nc ? bi[j] : 0;
      bf_tail[j] = j < nc ? bf[j] : 0.0f;
      m_tail[j] = j < nc ? m[j] : 0.0f;
    }
    bi = bi_tail, bf = bf_tail, m = m_tail;
  }
  for (int64_t j = 0; j < kB; ++j) {
    const float a = static_cast<float>(acc[j] + bi[j]);
    float v = OD ? ((a * src) * m[j] + bf[j]) * inv + ozp : (a + bf[j]) * m[j];
    v = std::min(std::max(v, lo), hi);
    q[j] = static_cast<int32_t>(std::nearbyint(v)) + zp;
  }
  for (int64_t j = 0; j < nc; ++j)
    py[c0 + j] = p.r.lut ? p.r.lut[q[j]] : static_cast<uint8_t>(q[j]);
}

#if defined(MBV3_ISA_NEON)
// FEAT_DotProd (called only where has_dotprod()): per tap and group of 4 input channels, the
// pixel's 4 bytes (one int32: sc = 1) - 128 (x ^ 0x80, an int8) broadcast against the packed
// 16 x 4 weights, 4 SDOTs of 4 output channels each; sum x w = sum (x - 128) w + 128 sum w, sum w
// by SDOT with ones once per block of 16 output channels.  kCols output columns keep independent
// chains; the sums then go through requant_store, the portable path's epilogue.  Everything up to
// pop_options may use SDOT (the pragma, not a function attribute: it reaches the lambda too).
#pragma GCC push_options
#pragma GCC target("arch=armv8.2-a+dotprod")
template <bool OD>
[[gnu::noinline]] void conv_dot(const Q8ConvArgs& p, int64_t row_begin, int64_t row_end) {
  static_assert(kQ8ConvCoutBlock == 16, "4 int32x4 vectors of sums");
  constexpr int kCols = 4;
  const int k = p.k;
  const int64_t groups = p.Cin / 4, nw = int64_t(k) * k * groups;  // 64-byte weight blocks per 16 co
  const int64_t xs = p.stride * p.sw;  // bytes between two output columns' pixels
  const uint32_t flip = 0x80808080u;
  for (int64_t c0 = 0; c0 < p.Cout; c0 += 16) {
    const int8_t* w0 = p.w + c0 / 16 * nw * 64;
    int32x4_t corr[4];
    for (int v = 0; v < 4; ++v) corr[v] = vdupq_n_s32(0);
    const int8x16_t ones = vdupq_n_s8(1);
    for (int64_t i = 0; i < nw; ++i)
      for (int v = 0; v < 4; ++v) corr[v] = vdotq_s32(corr[v], ones, vld1q_s8(w0 + i * 64 + 16 * v));
    for (int v = 0; v < 4; ++v) corr[v] = vshlq_n_s32(corr[v], 7);  // 128 sum w
    for (int64_t row = row_begin; row < row_end; ++row) {
      const int64_t b = row / p.OH, oh = row % p.OH;
      const uint8_t* xrow = p.x + b * p.sn + oh * p.stride * p.sh;
      auto columns = [&](int64_t ow0, auto ncols) {
        constexpr int NB = decltype(ncols)::value;
        int32x4_t acc[NB][4];
        for (int j = 0; j < NB; ++j)
          for (int v = 0; v < 4; ++v) acc[j][v] = corr[v];
        const uint8_t* x0 = xrow + ow0 * xs;
        const int8_t* w = w0;
        for (int kh = 0; kh < k; ++kh)
          for (int kw = 0; kw < k; ++kw)
            for (int64_t g = 0; g < groups; ++g, w += 64) {
              int8x16_t wv[4];
              for (int v = 0; v < 4; ++v) wv[v] = vld1q_s8(w + 16 * v);
              const uint8_t* px = x0 + kh * p.sh + kw * p.sw + 4 * g;
#pragma GCC unroll 4
              for (int j = 0; j < NB; ++j) {
                uint32_t xv;
                std::memcpy(&xv, px + j * xs, 4);
                const int8x16_t xb = vreinterpretq_s8_u32(vdupq_n_u32(xv ^ flip));
                for (int v = 0; v < 4; ++v) acc[j][v] = vdotq_s32(acc[j][v], wv[v], xb);
              }
            }
        uint8_t* y0 = p.y + (row * p.OW + ow0) * p.Cout;
        for (int j = 0; j < NB; ++j) {
          alignas(16) int32_t s[16];
          for (int v = 0; v < 4; ++v) vst1q_s32(s + 4 * v, acc[j][v]);
          requant_store<OD>(p, s, c0, y0 + j * p.Cout);
        }
      };
      column_blocks<kCols>(p.OW, columns);
    }
  }
}
#pragma GCC pop_options
#endif

template <bool OD>
void conv(const Q8ConvArgs& p, int64_t row_begin, int64_t row_end) {
#if defined(MBV3_ISA_NEON)
  if (has_dotprod()) return conv_dot<OD>(p, row_begin, row_end);
#endif
  constexpr int64_t kB = kQ8ConvCoutBlock;  // output channels per pass: one int32 vector (AVX-512)
  const int k = p.k;
  for (int64_t row = row_begin; row < row_end; ++row) {
    const int64_t b = row / p.OH, oh = row % p.OH;
    for (int64_t ow = 0; ow < p.OW; ++ow) {
      uint8_t* py = p.y + (row * p.OW + ow) * p.Cout;
      for (int64_t c0 = 0; c0 < p.Cout; c0 += kB) {
        alignas(64) int32_t acc[kB] = {};
        const int8_t* w = p.w + c0 / kB * (k * k * p.Cin / 4) * 64;  // [tap, group][16][4]
        for (int kh = 0; kh < k; ++kh)
          for (int kw = 0; kw < k; ++kw) {
            const uint8_t* px = p.x + b * p.sn + (oh * p.stride + kh) * p.sh + (ow * p.stride + kw) * p.sw;
            for (int64_t g = 0; g < p.Cin / 4; ++g, w += 64)
              for (int i = 0; i < 4; ++i) {
                const int32_t xv = px[(4 * g + i) * p.sc];
                for (int64_t j = 0; j < kB; ++j) acc[j] += xv * w[j * 4 + i];
              }
          }
        requant_store<OD>(p, acc, c0, py);
      }
    }
  }
}
}  // namespace

#endif

void q8_conv_act(const Q8ConvArgs& p, int64_t row_begin, int64_t row_end) {
  if (p.r.mode == Q8RequantMode::Onednn) conv<true>(p, row_begin, row_end);
  else conv<false>(p, row_begin, row_end);
}

void q8_quantize(const float* x, uint8_t* y, int64_t n, float inv_scale, int32_t zp) {
  int64_t i = 0;
  // q8_quantize_value's steps: vminps(t, bound) returns the bound for NaN (its second operand).
#if defined(MBV3_ISA_AVX512)
  const __m512 inv = _mm512_set1_ps(inv_scale), top = _mm512_set1_ps(kQ8QuantizeMax);
  const __m512i z = _mm512_set1_epi32(zp), lo = _mm512_setzero_si512(), hi = _mm512_set1_epi32(255);
  for (; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? __mmask16(0xffff) : __mmask16((1u << (n - i)) - 1);
    const __m512 t = _mm512_min_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), inv), top);
    const __m512i q = _mm512_add_epi32(_mm512_cvtps_epi32(t), z);
    _mm_mask_storeu_epi8(y + i, m, _mm512_cvtepi32_epi8(_mm512_min_epi32(_mm512_max_epi32(q, lo), hi)));
  }
#elif defined(MBV3_ISA_AVX2)
  const __m256 inv = _mm256_set1_ps(inv_scale), top = _mm256_set1_ps(kQ8QuantizeMax);
  const __m256i z = _mm256_set1_epi32(zp), lo = _mm256_setzero_si256(), hi = _mm256_set1_epi32(255);
  for (; i + 8 <= n; i += 8) {
    const __m256 t = _mm256_min_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), inv), top);
    __m256i q = _mm256_add_epi32(_mm256_cvtps_epi32(t), z);
    q = _mm256_min_epi32(_mm256_max_epi32(q, lo), hi);
    const __m256i b = _mm256_packus_epi16(_mm256_packus_epi32(q, q), q);  // lane bytes 0..3 = its 4 values
    const __m256i g = _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 0, 0, 0, 0, 0, 0));
    _mm_storel_epi64(reinterpret_cast<__m128i*>(y + i), _mm256_castsi256_si128(g));
  }
#endif
  for (; i < n; ++i) y[i] = q8_quantize_value(x[i], inv_scale, zp);
}

// Pixels of NCHW float planes (element stride `plane` between channels, cin <= 4) quantized into
// one uint32 each, channel i in byte i (bytes past cin 0).
void q8_quantize_pixels(const float* x, int64_t plane, int cin, uint32_t* y, int64_t n, float inv_scale,
                        int32_t zp) {
  int64_t i = 0;
#if defined(MBV3_ISA_AVX512)
  const __m512 inv = _mm512_set1_ps(inv_scale), top = _mm512_set1_ps(kQ8QuantizeMax);
  const __m512i z = _mm512_set1_epi32(zp);
  // The 4 channels' int32 values to bytes by saturating packs (the clamp to [0, 255]): lane L then
  // holds channel c's pixels 4L..4L+3 in bytes 4c..4c+3, which vpshufb turns to pixel-major.
  const __m512i tr = _mm512_broadcast_i32x4(_mm_setr_epi8(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15));
  for (; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? __mmask16(0xffff) : __mmask16((1u << (n - i)) - 1);
    __m512i q[4];
#pragma GCC unroll 4
    for (int c = 0; c < 4; ++c) {
      if (c >= cin) {
        q[c] = _mm512_setzero_si512();
        continue;
      }
      const __m512 t = _mm512_min_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + c * plane + i), inv), top);
      q[c] = _mm512_add_epi32(_mm512_cvtps_epi32(t), z);
    }
    const __m512i b = _mm512_packus_epi16(_mm512_packs_epi32(q[0], q[1]), _mm512_packs_epi32(q[2], q[3]));
    const __m512i v = _mm512_shuffle_epi8(b, tr);
    if (m == 0xffff) _mm512_storeu_si512(y + i, v);
    else _mm512_mask_storeu_epi32(y + i, m, v);
  }
#endif
  for (; i < n; ++i) {
    uint32_t v = 0;
    for (int c = 0; c < cin; ++c) v |= uint32_t(q8_quantize_value(x[c * plane + i], inv_scale, zp)) << (8 * c);
    y[i] = v;
  }
}

}  // namespace MBV3_ISA_NS
}  // namespace mbv3
