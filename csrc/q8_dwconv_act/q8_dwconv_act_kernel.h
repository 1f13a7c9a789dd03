// int8 depthwise conv + requantization over NHWC uint8, compiled once per ISA
// (q8_dwconv_act_<isa>.cpp).  Channels sit in SIMD lanes as int16 (x zero-extended, w int16);
// taps go in pairs: unpacking two taps' inputs interleaves them per channel, so one vpmaddwd
// (vpdpwssd with VNNI) adds both products into int32 lanes exactly.  The unpack splits a tile
// into "lo" (channels 8j..8j+3 of each 128-bit lane) and "hi" (8j+4..8j+7) halves; vpackssdw
// puts them back in order before the store, and the per-channel parameters are loaded in that
// split order.  Padding reads as x_zp (see Q8DwArgs), so border taps need no special sums.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "q8_dwconv_act.h"
#include "common/simd.h"

namespace mbv3 {
namespace MBV3_ISA_NS {
namespace {

#if defined(MBV3_ISA_AVX512) || defined(MBV3_ISA_AVX2)

#if defined(MBV3_ISA_AVX512)
constexpr int kTile = 32;  // channels per tile: 32 int16 lanes
using VI = __m512i;
using VF = __m512;
struct Tail {
  __mmask32 m;
  explicit Tail(int n) : m(n >= 32 ? ~__mmask32(0) : (__mmask32(1) << n) - 1) {}
};
inline VI load_x(const uint8_t* p, Tail t) { return _mm512_cvtepu8_epi16(_mm256_maskz_loadu_epi8(t.m, p)); }
inline VI load_w(const int16_t* p) { return _mm512_loadu_si512(p); }
inline VI set1_16(int v) { return _mm512_set1_epi16(static_cast<int16_t>(v)); }
inline VI zero_i() { return _mm512_setzero_si512(); }
inline VI unpack_lo(VI a, VI b) { return _mm512_unpacklo_epi16(a, b); }
inline VI unpack_hi(VI a, VI b) { return _mm512_unpackhi_epi16(a, b); }
inline VI dot(VI acc, VI a, VI b) {
#if defined(MBV3_WITH_AVX512VNNI)
  return _mm512_dpwssd_epi32(acc, a, b);
#else
  return _mm512_add_epi32(acc, _mm512_madd_epi16(a, b));
#endif
}
inline VI load_i32(const int32_t* p) { return _mm512_loadu_si512(p); }
inline VF load_f(const float* p) { return _mm512_loadu_ps(p); }
inline VF set1_f(float v) { return _mm512_set1_ps(v); }
inline VI set1_32(int32_t v) { return _mm512_set1_epi32(v); }
// q8_requantize's float steps, on 16 int32 lanes.
inline VI requant(VI acc, VI b, VF bf, VF m, VF lo, VF hi, VI zp) {
  VF v = _mm512_add_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(acc, b)), bf);
  v = _mm512_mul_ps(v, m);
  v = _mm512_min_ps(_mm512_max_ps(v, lo), hi);
  return _mm512_add_epi32(_mm512_cvtps_epi32(v), zp);
}
// The activation table on 32 int16 lanes (values 0..255): vpermt2w looks up 64 entries at a
// time from two registers; bits 6 and 7 of the value pick among the four results.
struct Lut {
  VI t[8];
  explicit Lut(const int16_t* table) {
    for (int i = 0; i < 8; ++i) t[i] = _mm512_loadu_si512(table + 32 * i);
  }
  VI operator()(VI v) const {
    const VI r0 = _mm512_permutex2var_epi16(t[0], v, t[1]), r1 = _mm512_permutex2var_epi16(t[2], v, t[3]);
    const VI r2 = _mm512_permutex2var_epi16(t[4], v, t[5]), r3 = _mm512_permutex2var_epi16(t[6], v, t[7]);
    const __mmask32 b6 = _mm512_test_epi16_mask(v, _mm512_set1_epi16(64));
    const __mmask32 b7 = _mm512_test_epi16_mask(v, _mm512_set1_epi16(128));
    return _mm512_mask_blend_epi16(b7, _mm512_mask_blend_epi16(b6, r0, r1), _mm512_mask_blend_epi16(b6, r2, r3));
  }
};
template <bool LUT>
inline void store_y(uint8_t* p, VI qlo, VI qhi, Tail t, const Lut* lut) {
  VI v = _mm512_packs_epi32(qlo, qhi);  // 32 channels in order, int16
  if (LUT) v = (*lut)(v);
  _mm256_mask_storeu_epi8(p, t.m, _mm512_cvtepi16_epi8(v));
}
#else  // AVX2
constexpr int kTile = 16;
using VI = __m256i;
using VF = __m256;
struct Tail {
  int n;
  explicit Tail(int n_) : n(std::min(n_, 16)) {}
};
inline VI load_x(const uint8_t* p, Tail t) {
  if (t.n == 16) return _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  if (t.n == 8) return _mm256_cvtepu8_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));  // 72 = 4 * 16 + 8
  alignas(16) uint8_t b[16] = {};
  std::memcpy(b, p, t.n);
  return _mm256_cvtepu8_epi16(_mm_load_si128(reinterpret_cast<const __m128i*>(b)));
}
inline VI load_w(const int16_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
inline VI set1_16(int v) { return _mm256_set1_epi16(static_cast<int16_t>(v)); }
inline VI zero_i() { return _mm256_setzero_si256(); }
inline VI unpack_lo(VI a, VI b) { return _mm256_unpacklo_epi16(a, b); }
inline VI unpack_hi(VI a, VI b) { return _mm256_unpackhi_epi16(a, b); }
inline VI dot(VI acc, VI a, VI b) { return _mm256_add_epi32(acc, _mm256_madd_epi16(a, b)); }
inline VI load_i32(const int32_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
inline VF load_f(const float* p) { return _mm256_loadu_ps(p); }
inline VF set1_f(float v) { return _mm256_set1_ps(v); }
inline VI set1_32(int32_t v) { return _mm256_set1_epi32(v); }
inline VI requant(VI acc, VI b, VF bf, VF m, VF lo, VF hi, VI zp) {
  VF v = _mm256_add_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(acc, b)), bf);
  v = _mm256_mul_ps(v, m);
  v = _mm256_min_ps(_mm256_max_ps(v, lo), hi);
  return _mm256_add_epi32(_mm256_cvtps_epi32(v), zp);
}
struct Lut {
  const uint8_t* t;
};
template <bool LUT>
inline void store_y(uint8_t* p, VI qlo, VI qhi, Tail t, const Lut* lut) {
  const VI w16 = _mm256_packs_epi32(qlo, qhi);  // 16 channels in order, int16
  const __m128i b = _mm256_castsi256_si128(_mm256_permute4x64_epi64(_mm256_packus_epi16(w16, w16), 0x08));
  if (!LUT && t.n == 16) return _mm_storeu_si128(reinterpret_cast<__m128i*>(p), b);
  if (!LUT && t.n == 8) return _mm_storel_epi64(reinterpret_cast<__m128i*>(p), b);
  alignas(16) uint8_t tmp[16];
  _mm_store_si128(reinterpret_cast<__m128i*>(tmp), b);
  if (LUT)
    for (int i = 0; i < 16; ++i) tmp[i] = lut->t[tmp[i]];
  std::memcpy(p, tmp, t.n);
}
#endif

constexpr int kHalf = kTile / 2;
// Lane i of the "lo" half holds channel lo_channel(i); the "hi" half's lane i holds that + 4.
constexpr int lo_channel(int i) { return (i / 4) * 8 + i % 4; }

// One channel tile [c, c + n) for output rows [r0, r1).  K > 0: compile-time kernel size.
template <int K, bool LUT>
void tile(const Q8DwArgs& p, int64_t r0, int64_t r1, int64_t c, int n, const Lut* lut) {
  const int k = K > 0 ? K : p.k, taps = k * k, pairs = (taps + 1) / 2;
  constexpr int kMaxPairs = ((K > 0 ? K * K : kQ8DwMaxK * kQ8DwMaxK) + 1) / 2;
  const int64_t C = p.C, W = p.W, s = p.stride, d = p.dil;
  const Tail tail(n);
  VI wlo[kMaxPairs], whi[kMaxPairs];
  for (int q = 0; q < pairs; ++q) {
    const VI a = load_w(p.w + (2 * q) * p.Cpad + c);
    const VI b = 2 * q + 1 < taps ? load_w(p.w + (2 * q + 1) * p.Cpad + c) : zero_i();
    wlo[q] = unpack_lo(a, b);
    whi[q] = unpack_hi(a, b);
  }
  // Per-channel parameters in the split order (zeros past the tile's n channels).
  alignas(64) int32_t bias[2][kHalf];
  alignas(64) float bf[2][kHalf], mul[2][kHalf];
  for (int h = 0; h < 2; ++h)
    for (int i = 0; i < kHalf; ++i) {
      const int j = lo_channel(i) + 4 * h;
      const bool ok = j < n;
      bias[h][i] = ok ? p.r.bias_int[c + j] : 0;
      bf[h][i] = ok ? p.r.bias_float[c + j] : 0.f;
      mul[h][i] = ok ? p.r.multiplier[c + j] : 0.f;
    }
  const VI b0 = load_i32(bias[0]), b1 = load_i32(bias[1]);
  const VF f0 = load_f(bf[0]), f1 = load_f(bf[1]), m0 = load_f(mul[0]), m1 = load_f(mul[1]);
  const VF lo = set1_f(static_cast<float>(p.r.lo - p.r.zp)), hi = set1_f(static_cast<float>(p.r.hi - p.r.zp));
  const VI zp_out = set1_32(p.r.zp), zp_in = set1_16(p.x_zp);

  const uint8_t* rows[kQ8DwMaxK];
  for (int64_t row = r0; row < r1; ++row) {
    const int64_t b = row / p.OH, oh = row % p.OH, ih0 = oh * s - p.pad;
    bool all_rows = true;
    for (int kh = 0; kh < k; ++kh) {
      const int64_t ih = ih0 + kh * d;
      const bool ok = ih >= 0 && ih < p.H;
      rows[kh] = ok ? p.x + (b * p.H + ih) * W * C + c : nullptr;
      all_rows &= ok;
    }
    uint8_t* yrow = p.y + row * p.OW * C + c;
    for (int64_t ow = 0; ow < p.OW; ++ow) {
      const int64_t iw0 = ow * s - p.pad;
      const bool inside = all_rows && iw0 >= 0 && iw0 + (k - 1) * d < W;
      VI alo = zero_i(), ahi = zero_i();
      // Interior columns: every tap is a plain load.  Border columns: checked, padding = x_zp.
      auto sum = [&](auto checked) {
        auto tap = [&](int t) -> VI {
          const int kh = t / k, kw = t % k;
          const int64_t iw = iw0 + kw * d;
          if (!decltype(checked)::value || (rows[kh] && iw >= 0 && iw < W)) return load_x(rows[kh] + iw * C, tail);
          return zp_in;
        };
#pragma GCC unroll 25
        for (int q = 0; q < pairs; ++q) {
          const VI xa = tap(2 * q);
          const VI xb = 2 * q + 1 < taps ? tap(2 * q + 1) : zp_in;  // its weight is 0
          alo = dot(alo, unpack_lo(xa, xb), wlo[q]);
          ahi = dot(ahi, unpack_hi(xa, xb), whi[q]);
        }
      };
      if (inside) sum(std::false_type{});
      else sum(std::true_type{});
      uint8_t* py = yrow + ow * C;
      store_y<LUT>(py, requant(alo, b0, f0, m0, lo, hi, zp_out), requant(ahi, b1, f1, m1, lo, hi, zp_out), tail,
                   lut);
    }
  }
}

template <int K>
void tile_lut(const Q8DwArgs& p, int64_t r0, int64_t r1, int64_t c, int n, const Lut* lut) {
  if (lut) tile<K, true>(p, r0, r1, c, n, lut);
  else tile<K, false>(p, r0, r1, c, n, nullptr);
}

#else  // scalar

struct Lut {};
template <int K>
void tile_lut(const Q8DwArgs& p, int64_t r0, int64_t r1, int64_t c0, int n, const Lut*) {
  const int k = p.k;
  const int64_t C = p.C, W = p.W, s = p.stride, d = p.dil;
  for (int64_t row = r0; row < r1; ++row) {
    const int64_t b = row / p.OH, oh = row % p.OH;
    for (int64_t ow = 0; ow < p.OW; ++ow)
      for (int64_t c = c0; c < c0 + n; ++c) {
        int32_t acc = 0;
        for (int kh = 0; kh < k; ++kh)
          for (int kw = 0; kw < k; ++kw) {
            const int64_t ih = oh * s - p.pad + kh * d, iw = ow * s - p.pad + kw * d;
            const int32_t xv = ih >= 0 && ih < p.H && iw >= 0 && iw < W ? p.x[((b * p.H + ih) * W + iw) * C + c]
                                                                          : p.x_zp;
            acc += xv * p.w[(kh * k + kw) * p.Cpad + c];
          }
        p.y[(row * p.OW + ow) * C + c] = q8_requantize(acc, c, p.r);
      }
  }
}
constexpr int kTile = 32;

#endif

}  // namespace

void q8_dwconv_act(const Q8DwArgs& p, int64_t row_begin, int64_t row_end, int64_t c_begin, int64_t c_end) {
  const Lut* lut = nullptr;
#if defined(MBV3_ISA_AVX512)
  alignas(64) int16_t table[256] = {};
  if (p.r.lut)
    for (int i = 0; i < 256; ++i) table[i] = p.r.lut[i];
  const Lut lut_v(table);
  if (p.r.lut) lut = &lut_v;
#elif defined(MBV3_ISA_AVX2)
  const Lut lut_v{p.r.lut};
  if (p.r.lut) lut = &lut_v;
#endif
  for (int64_t c = c_begin; c < c_end; c += kTile) {
    const int n = static_cast<int>(std::min<int64_t>(kTile, c_end - c));
    if (p.k == 3) tile_lut<3>(p, row_begin, row_end, c, n, lut);
    else if (p.k == 5) tile_lut<5>(p, row_begin, row_end, c, n, lut);
    else tile_lut<0>(p, row_begin, row_end, c, n, lut);
  }
}

}  // namespace MBV3_ISA_NS
}  // namespace mbv3
