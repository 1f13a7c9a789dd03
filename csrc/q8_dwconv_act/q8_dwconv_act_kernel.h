// int8 depthwise conv + requantization over NHWC uint8, compiled once per ISA
// (q8_dwconv_act_<isa>.cpp).  Channels sit in SIMD lanes as int16 (x zero-extended, w int16);
// taps go in pairs: unpacking two taps' inputs interleaves them per channel, so one vpmaddwd
// (vpdpwssd with VNNI) adds both products into int32 lanes exactly.  The unpack splits a tile
// into "lo" (channels 8j..8j+3 of each 128-bit lane) and "hi" (8j+4..8j+7) halves; vpackssdw
// puts them back in order before the store, and the per-channel parameters are loaded in that
// split order.  NEON (ARMv8.0) needs no pairing: vmlal_s16 multiplies 16 channels' widened
// inputs by their weights, one tap at a time (SDOT, 4 taps at a time, where the CPU has
// FEAT_DotProd: see the NEON section).  Padding reads as x_zp (see Q8DwArgs), so border
// taps need no special sums.  The requantization mode (q8.h: Fbgemm or Onednn) is a template
// parameter OD of the tiles, picked once per call; in Onednn mode the clamp bounds are absolute
// and the zero point added after rounding is 0 (the rule adds it in float before rounding).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <type_traits>
#include <vector>

#include "q8_dwconv_act.h"
#include "common/simd.h"
#include "common/q8_table_avx512.h"


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
// q8_requantize's float steps, on 16 int32 lanes of sums that already hold the bias.
// The clamp in float only where fclamp (see float_clamp_needed); store_y clamps the int16 values.
template <bool OD>
inline VI requant(VI acc, VF bf, VF m, VF lo, VF hi, VI zp, VF src, VF inv, VF ozp, bool fclamp) {
  VF v;
  if constexpr (OD)
    v = _mm512_add_ps(_mm512_mul_ps(_mm512_add_ps(_mm512_mul_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(acc), src), m), bf), inv), ozp);
  else v = _mm512_mul_ps(_mm512_add_ps(_mm512_cvtepi32_ps(acc), bf), m);
  if (fclamp) v = _mm512_min_ps(_mm512_max_ps(v, lo), hi);
  return OD ? _mm512_cvtps_epi32(v) : _mm512_add_epi32(_mm512_cvtps_epi32(v), zp);  // zp is 0 in the Onednn mode
}
// The activation table on 32 int16 lanes (values 0..255): vpermt2w looks up 64 entries at a
// time from two registers; bits 6 and 7 of the value pick among the four results.
struct Lut {
  VI t[8];
  VI pk[4];  // the vpdpbusd path's: entries v and v + 64 in one int16 (low, high byte), v % 128 < 64
  VI b8[4];  // the vpdpbusd path's with AVX512_VBMI: entries 64i .. 64i + 63 as bytes
  explicit Lut(const int16_t* table) {
    for (int i = 0; i < 8; ++i) t[i] = _mm512_loadu_si512(table + 32 * i);
    alignas(64) uint8_t bytes[256];
    for (int i = 0; i < 256; ++i) bytes[i] = static_cast<uint8_t>(table[i]);
    for (int i = 0; i < 4; ++i) b8[i] = _mm512_load_si512(bytes + 64 * i);
    alignas(64) int16_t packed[128];
    for (int i = 0; i < 128; ++i) {
      const int v = i % 64 + (i / 64) * 128;
      packed[i] = static_cast<int16_t>(static_cast<uint16_t>(table[v] | table[v + 64] << 8));
    }
    for (int i = 0; i < 4; ++i) pk[i] = _mm512_load_si512(packed + 32 * i);
  }
  // The table on 32 int16 lanes (values 0..255), the result in each lane's low byte: 2 vpermt2w.
  VI low_bytes(VI v) const {
    const VI lo = _mm512_permutex2var_epi16(pk[0], v, pk[1]), hi = _mm512_permutex2var_epi16(pk[2], v, pk[3]);
    const VI r = _mm512_mask_blend_epi16(_mm512_test_epi16_mask(v, _mm512_set1_epi16(128)), lo, hi);
    return _mm512_mask_srli_epi16(r, _mm512_test_epi16_mask(v, _mm512_set1_epi16(64)), r, 8);
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
inline void store_y(uint8_t* p, VI qlo, VI qhi, VI lo16, VI hi16, Tail t, const Lut* lut) {
  VI v = _mm512_packs_epi32(qlo, qhi);  // 32 channels in order, int16
  if (!LUT) v = _mm512_min_epi16(_mm512_max_epi16(v, lo16), hi16);  // with the table: clamped in float (registers)
  if (LUT) v = lut->low_bytes(v);  // vpmovwb below keeps the low bytes
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
template <bool OD>
inline VI requant(VI acc, VF bf, VF m, VF lo, VF hi, VI zp, VF src, VF inv, VF ozp, bool fclamp) {
  VF v;
  if constexpr (OD)
    v = _mm256_add_ps(_mm256_mul_ps(_mm256_add_ps(_mm256_mul_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(acc), src), m), bf), inv), ozp);
  else v = _mm256_mul_ps(_mm256_add_ps(_mm256_cvtepi32_ps(acc), bf), m);
  if (fclamp) v = _mm256_min_ps(_mm256_max_ps(v, lo), hi);
  return OD ? _mm256_cvtps_epi32(v) : _mm256_add_epi32(_mm256_cvtps_epi32(v), zp);
}
struct Lut {
  const uint8_t* t;
};
template <bool LUT>
inline void store_y(uint8_t* p, VI qlo, VI qhi, VI lo16, VI hi16, Tail t, const Lut* lut) {
  VI w16 = _mm256_packs_epi32(qlo, qhi);  // 16 channels in order, int16
  if (!LUT) w16 = _mm256_min_epi16(_mm256_max_epi16(w16, lo16), hi16);  // with the table: clamped in float
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

// q8_requantize clamps in float before rounding; clamping the rounded value (saturated to int16)
// instead is the same as long as cvtps2dq cannot overflow: |v| < 2^30 from the sums' bound.
// Else (huge multipliers) the float clamp stays.
inline bool float_clamp_needed(const Q8DwArgs& p, int64_t c, int n, bool od) {
  bool fclamp = false;
  for (int i = 0; i < n; ++i) {
    const double sum = std::abs(double(p.r.bias_int[c + i])) + p.k * p.k * 255.0 * 128.0;
    const double bf_abs = std::abs(double(p.r.bias_float[c + i])), m_abs = std::abs(double(p.r.multiplier[c + i]));
    const double bound = od ? (sum * double(p.r.src_scale) * m_abs + bf_abs) * double(p.r.inv_scale) + 256.0
                            : (sum + bf_abs) * m_abs;
    fclamp |= !(bound < 1073741824.0);
  }
  return fclamp;
}

constexpr int kHalf = kTile / 2;
// Lane i of the "lo" half holds channel lo_channel(i); the "hi" half's lane i holds that + 4.
constexpr int lo_channel(int i) { return (i / 4) * 8 + i % 4; }

// One channel tile [c, c + n) for output rows [r0, r1).  K > 0: compile-time kernel size.
template <int K, bool LUT, bool OD>
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
  const int32_t zp = OD ? 0 : p.r.zp;  // added after rounding
  const VF lo = set1_f(static_cast<float>(p.r.lo - zp)), hi = set1_f(static_cast<float>(p.r.hi - zp));
  const VF src = set1_f(p.r.src_scale), inv = set1_f(p.r.inv_scale), ozp = set1_f(static_cast<float>(p.r.zp));
  const VI zp_out = set1_32(zp), zp_in = set1_16(p.x_zp);
  const VI lo16 = set1_16(p.r.lo), hi16 = set1_16(p.r.hi);
  const bool fclamp = LUT || float_clamp_needed(p, c, n, OD);

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
      VI alo = b0, ahi = b1;  // the bias, added in int32 as q8_requantize does
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
      store_y<LUT>(py, requant<OD>(alo, f0, m0, lo, hi, zp_out, src, inv, ozp, fclamp),
                   requant<OD>(ahi, f1, m1, lo, hi, zp_out, src, inv, ozp, fclamp), lo16, hi16, tail, lut);
    }
  }
}

template <int K, bool OD>
void tile_lut(const Q8DwArgs& p, int64_t r0, int64_t r1, int64_t c, int n, const Lut* lut) {
  if (lut) tile<K, true, OD>(p, r0, r1, c, n, lut);
  else tile<K, false, OD>(p, r0, r1, c, n, nullptr);
}


#if defined(MBV3_WITH_AVX512VNNI)
// The vpdpbusd path (see q8_dw_pack_dot): u8 inputs x s8 weights, 4 kernel rows per instruction.
// A band of R output rows needs input rows ih0 .. ih0 + (R - 1) * S + K - 1: they are split into
// G groups of 4 rows, each interleaved once per column into a scratch row (padding columns and
// rows read as x_zp); output row j of the band takes group gi with the weights for kernel-row
// offset delta = 4 gi - j S.  The column loop then has no border checks and no widening.
// PAIR (C = 16, stride 1): a tile's 32 lanes are two neighbouring output pixels' 16 channels; a
// scratch column holds input pixels iw and iw + 1, so output pixels ow, ow + 1 read it at tap kw.
// The loop is ALU bound (vpdpbusd and the float requantization share the vector pipes), so the
// steps cut instructions: k 3 takes two output columns per step (each weight vector loaded once),
// a tile of <= 8 channels runs 2 of its 4 groups, the table goes through vpermi2b on two rows'
// 64 bytes at once (AVX512_VBMI), and the clamp is done on the packed bytes.

// The table on 64 bytes: entries 0-127 and 128-255 by index bits 0-6, picked by bit 7.
[[gnu::always_inline]] inline __m512i lookup8(const Lut& t, __m512i b) {
  const __m512i lo = q8_permi2b(b, t.b8[0], t.b8[1]), hi = q8_permi2b(b, t.b8[2], t.b8[3]);
  return _mm512_mask_blend_epi8(_mm512_movepi8_mask(b), lo, hi);
}

template <int K, int S>
struct DotBand {
  static constexpr int R = K == 3 && S == 1 ? 2 : 4 / S;
  static constexpr int G = ((R - 1) * S + K + 3) / 4;
};

// 32 requantized int16 values (two 8-channel halves per 128-bit lane, as packs_epi32 leaves them)
// plus the output zero point, clamped to [lo, hi] (then through the table) -> 32 uint8 in order.
template <bool LUT>
inline __m256i dot_out(__m256i v01, __m256i v23, __m256i lo, __m256i hi, const Lut* lut) {
  if (!LUT)  // packus: channels 16L + 0..7, 16L + 8..15 per lane, in order
    return _mm256_min_epu8(_mm256_max_epu8(_mm256_packus_epi16(v01, v23), lo), hi);
  __m512i z = _mm512_inserti64x4(_mm512_castsi256_si512(v01), v23, 1);
  z = _mm512_shuffle_i64x2(z, z, _MM_SHUFFLE(3, 1, 2, 0));  // channels 0..31 in order
  z = lut->low_bytes(_mm512_min_epi16(_mm512_max_epi16(z, _mm512_broadcastw_epi16(_mm256_castsi256_si128(lo))),
                                      _mm512_broadcastw_epi16(_mm256_castsi256_si128(hi))));
  return _mm512_cvtepi16_epi8(z);  // truncates: the low bytes
}

// NG: the groups in use (4; 2 for a tile of <= 8 channels, which sit in groups 0 and 1).
// V8 (with LUT): the table by lookup8 on two outputs' 32 bytes at once (AVX512_VBMI).
template <int K, int S, bool LUT, bool PAIR, bool OD, int NG, bool V8>
void dot_tile(const Q8DwArgs& p, int64_t r0, int64_t r1, int64_t c, int n, const Lut* lut, uint8_t* scratch) {
  static_assert(!PAIR || S == 1, "pixel pairs need stride 1");
  constexpr int R = DotBand<K, S>::R, G = DotBand<K, S>::G;
  const int64_t C = p.C, H = p.H, W = p.W, OH = p.OH, OW = p.OW, WP = W + 2 * p.pad;
  const __mmask32 m = n >= 32 ? ~__mmask32(0) : (__mmask32(1) << n) - 1;
  const int8_t* wt = p.w8 + c / kQ8DwDotTile * (K * (K + 3) * 128);
  alignas(32) int8_t wpair[PAIR ? K * (K + 3) * 128 : 1];
  if (PAIR) {  // lanes 16..31 (the second pixel) take channels 0..15's weights
    for (int i = 0; i < K * (K + 3) * 128; ++i) wpair[i] = wt[i & ~16];
    wt = wpair;
  }
  // Per-channel parameters in the groups' lane order: lane 4L + j of group g is channel 16L + 4g + j.
  alignas(32) int32_t bias[4][8];
  alignas(32) float bf[4][8], mul[4][8];
  for (int g = 0; g < 4; ++g)
    for (int i = 0; i < 8; ++i) {
      const int j = ((i / 4) * 16 + 4 * g + i % 4) % (PAIR ? 16 : 32);
      const bool ok = j < n;
      bias[g][i] = ok ? p.r.bias_int[c + j] : 0;
      bf[g][i] = ok ? p.r.bias_float[c + j] : 0.f;
      mul[g][i] = ok ? p.r.multiplier[c + j] : 0.f;
    }
  const bool fclamp = float_clamp_needed(p, c, n, OD);
  const int32_t zp = OD ? 0 : p.r.zp;  // added after rounding
  const __m256 lo = _mm256_set1_ps(static_cast<float>(p.r.lo - zp));
  const __m256 hi = _mm256_set1_ps(static_cast<float>(p.r.hi - zp));
  const __m256 src = _mm256_set1_ps(p.r.src_scale), inv = _mm256_set1_ps(p.r.inv_scale);
  const __m256 ozp = _mm256_set1_ps(static_cast<float>(p.r.zp));
  const __m256i zp_out = _mm256_set1_epi16(static_cast<int16_t>(zp));
  constexpr bool L16 = LUT && !V8;  // the table on int16 lanes (dot_out)
  const __m256i lo_i = L16 ? _mm256_set1_epi16(static_cast<int16_t>(p.r.lo)) : _mm256_set1_epi8(static_cast<char>(p.r.lo));
  const __m256i hi_i = L16 ? _mm256_set1_epi16(static_cast<int16_t>(p.r.hi)) : _mm256_set1_epi8(static_cast<char>(p.r.hi));
  const __m256i zp_in = _mm256_set1_epi8(static_cast<char>(p.x_zp));
  const int64_t pad = p.pad;
  int64_t tag[G];  // which group (image, first input row) each scratch slot holds, -1: none
  for (int t = 0; t < G; ++t) tag[t] = -1;

  for (int64_t row = r0; row < r1;) {
    const int64_t b = row / OH, oh = row % OH;
    const int nr = static_cast<int>(std::min<int64_t>({R, OH - oh, r1 - row}));
    const int64_t ih0 = oh * S - pad;
    // The band's groups of 4 input rows, interleaved into scratch slots (slot * WP + col) * 128 + 32 g.
    // Where R * S = 4 a band's first group is the previous band's last: that slot is kept.
    int slot[G];
    for (int gi = 0; gi < G; ++gi) {
      slot[gi] = -1;
      for (int t = 0; t < G; ++t)
        if (tag[t] == b * (H + 2 * pad + 16) + ih0 + 4 * gi + pad + 8) slot[gi] = t;
    }
    for (int gi = 0; gi < G; ++gi) {
      if (slot[gi] >= 0) continue;
      for (int t = 0; t < G && slot[gi] < 0; ++t) {
        bool used = false;
        for (int u = 0; u < G; ++u) used |= slot[u] == t;
        if (!used) slot[gi] = t;
      }
      tag[slot[gi]] = b * (H + 2 * pad + 16) + ih0 + 4 * gi + pad + 8;
      const uint8_t* src[4];
      for (int q = 0; q < 4; ++q) {
        const int64_t ih = ih0 + 4 * gi + q;
        src[q] = ih >= 0 && ih < H ? p.x + (b * H + ih) * W * C + c : nullptr;
      }
      uint8_t* dst = scratch + slot[gi] * WP * 128;
      for (int64_t col = 0; col < WP; ++col, dst += 128) {
        const int64_t iw = col - pad;
        __m256i v[4];
        if (iw < (PAIR ? -1 : 0) || iw >= W) {
          v[0] = v[1] = v[2] = v[3] = zp_in;
        } else {
          __m256i x[4];
          for (int q = 0; q < 4; ++q)
            if (!src[q]) x[q] = zp_in;
            else if (n == 32 || (PAIR && iw >= 0 && iw + 1 < W))
              x[q] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src[q] + iw * C));
            else if (!PAIR) x[q] = _mm256_maskz_loadu_epi8(m, src[q] + iw * C);
            else  // one pixel of the pair is padding
              x[q] = _mm256_mask_loadu_epi8(zp_in, iw < 0 ? 0xFFFF0000u : 0x0000FFFFu, src[q] + iw * C);
          const __m256i a0 = _mm256_unpacklo_epi8(x[0], x[1]), a1 = _mm256_unpackhi_epi8(x[0], x[1]);
          const __m256i b0 = _mm256_unpacklo_epi8(x[2], x[3]), b1 = _mm256_unpackhi_epi8(x[2], x[3]);
          v[0] = _mm256_unpacklo_epi16(a0, b0);
          v[1] = _mm256_unpackhi_epi16(a0, b0);
          v[2] = _mm256_unpacklo_epi16(a1, b1);
          v[3] = _mm256_unpackhi_epi16(a1, b1);
        }
        for (int g = 0; g < NG; ++g) _mm256_store_si256(reinterpret_cast<__m256i*>(dst + 32 * g), v[g]);
      }
    }
    uint8_t* yrow = p.y + (row * OW) * C + c;
    // NP output columns (pixel pairs under PAIR) per step, each weight vector loaded once for all
    // of them: with R = 2 the loads, not the vpdpbusd, bound the loop.
    auto columns = [&](int64_t ow, auto np) __attribute__((always_inline)) {
      constexpr int NP = decltype(np)::value, step = PAIR ? 2 : 1;
      // One base register for the weights: else GCC keeps each of the up to 160 addresses in a
      // stack slot and reloads it before every vpdpbusd.
      const int8_t* wb = wt;
      asm("" : "+r"(wb));
      __m256i acc[NP][R][4];
#pragma GCC unroll 2
      for (int i = 0; i < NP; ++i)
#pragma GCC unroll 4
        for (int j = 0; j < R; ++j)
#pragma GCC unroll 4
          for (int g = 0; g < NG; ++g) acc[i][j][g] = _mm256_load_si256(reinterpret_cast<const __m256i*>(bias[g]));
#pragma GCC unroll 5
      for (int kw = 0; kw < K; ++kw) {
#pragma GCC unroll 2
        for (int gi = 0; gi < G; ++gi) {
          __m256i xv[NP][4];
#pragma GCC unroll 2
          for (int i = 0; i < NP; ++i) {
            const uint8_t* v = scratch + (slot[gi] * WP + (ow + i * step) * S + kw) * 128;
#pragma GCC unroll 4
            for (int g = 0; g < NG; ++g) xv[i][g] = _mm256_load_si256(reinterpret_cast<const __m256i*>(v + 32 * g));
          }
#pragma GCC unroll 4
          for (int j = 0; j < R; ++j) {
            const int delta = 4 * gi - j * S;
            if (delta <= -4 || delta >= K) continue;
            const int8_t* w = wb + (kw * (K + 3) + delta + 3) * 128;
#pragma GCC unroll 4
            for (int g = 0; g < NG; ++g) {
              // loadu: the unpacked weight's w8 (a std::vector) need not be 32-byte aligned
              const __m256i wv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 32 * g));
#pragma GCC unroll 2
              for (int i = 0; i < NP; ++i) acc[i][j][g] = _mm256_dpbusd_epi32(acc[i][j][g], xv[i][g], wv);
            }
          }
        }
      }
      // Row j of column i: q8_requantize's float steps (the bias is in acc), packed to 32 bytes.
      auto requant_row = [&](const __m256i* a) __attribute__((always_inline)) {
        __m256i q[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(),
                        _mm256_setzero_si256()};
#pragma GCC unroll 4
        for (int g = 0; g < NG; ++g) {
          __m256 v;
          if constexpr (OD) {
            v = _mm256_mul_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(a[g]), src), _mm256_load_ps(mul[g]));
            v = _mm256_add_ps(_mm256_mul_ps(_mm256_add_ps(v, _mm256_load_ps(bf[g])), inv), ozp);
          } else {
            v = _mm256_add_ps(_mm256_cvtepi32_ps(a[g]), _mm256_load_ps(bf[g]));
            v = _mm256_mul_ps(v, _mm256_load_ps(mul[g]));
          }
          if (fclamp) v = _mm256_min_ps(_mm256_max_ps(v, lo), hi);
          q[g] = _mm256_cvtps_epi32(v);
        }
        __m256i q01 = _mm256_packs_epi32(q[0], q[1]), q23 = _mm256_packs_epi32(q[2], q[3]);
        if constexpr (!OD) {  // zp_out is 0 in the Onednn mode
          q01 = _mm256_adds_epi16(q01, zp_out);
          q23 = _mm256_adds_epi16(q23, zp_out);
        }
        return dot_out<L16>(q01, q23, lo_i, hi_i, lut);
      };
      auto store = [&](int i, int j, __m256i out) __attribute__((always_inline)) {
        const int64_t o = ow + i * step;
        uint8_t* py = yrow + (j * OW + o) * C;
        if (PAIR ? o + 1 < OW : n == 32) _mm256_storeu_si256(reinterpret_cast<__m256i*>(py), out);
        else _mm256_mask_storeu_epi8(py, PAIR ? 0xFFFFu : m, out);
      };
      static_assert(R % 2 == 0, "rows go through the table in pairs");
#pragma GCC unroll 2
      for (int i = 0; i < NP; ++i)
#pragma GCC unroll 2
        for (int j = 0; j < R; j += 2) {  // rows j, j + 1 (j + 1 past the band: computed, not stored)
          if (j >= nr) break;
          __m256i y0 = requant_row(acc[i][j]), y1 = requant_row(acc[i][j + 1]);
          if constexpr (V8) {
            const __m512i z = lookup8(*lut, _mm512_inserti64x4(_mm512_castsi256_si512(y0), y1, 1));
            y0 = _mm512_castsi512_si256(z);
            y1 = _mm512_extracti64x4_epi64(z, 1);
          }
          store(i, j, y0);
          if (j + 1 < nr) store(i, j + 1, y1);
        }
    };
    constexpr int NP = K == 3 && R == 2 ? 2 : 1, step = PAIR ? 2 : 1;
    int64_t ow = 0;
    for (; NP == 1 ? ow < OW : ow + NP * step <= OW; ow += NP * step) columns(ow, std::integral_constant<int, NP>{});
    if constexpr (NP > 1)
      for (; ow < OW; ow += step) columns(ow, std::integral_constant<int, 1>{});
    row += nr;
  }
}

template <int K, int S, bool PAIR, bool OD, int NG>
void dot_tile_lut(const Q8DwArgs& p, int64_t r0, int64_t r1, int64_t c, int n, const Lut* lut, uint8_t* s) {
  if (!lut) dot_tile<K, S, false, PAIR, OD, NG, false>(p, r0, r1, c, n, nullptr, s);
  else if (q8_has_vbmi()) dot_tile<K, S, true, PAIR, OD, NG, true>(p, r0, r1, c, n, lut, s);
  else dot_tile<K, S, true, PAIR, OD, NG, false>(p, r0, r1, c, n, lut, s);
}

template <int K, int S, bool OD>
void dot_tiles(const Q8DwArgs& p, int64_t r0, int64_t r1, int64_t c0, int64_t c1, const Lut* lut) {
  constexpr int G = DotBand<K, S>::G;
  const size_t bytes = static_cast<size_t>(G * (p.W + 2 * p.pad) * 128);
  struct alignas(64) Block {
    uint8_t b[64];
  };
  thread_local std::vector<Block> scratch;
  if (scratch.size() * 64 < bytes) scratch.resize(bytes / 64 + 1);
  uint8_t* s = reinterpret_cast<uint8_t*>(scratch.data());
  for (int64_t c = c0; c < c1; c += kQ8DwDotTile) {
    const int n = static_cast<int>(std::min<int64_t>(kQ8DwDotTile, c1 - c));
    if constexpr (S == 1)
      if (p.C == 16) {
        dot_tile_lut<K, S, true, OD, 4>(p, r0, r1, c, n, lut, s);
        continue;
      }
    if (n <= 8) {  // 72 and 200 channels end in 8
      dot_tile_lut<K, S, false, OD, 2>(p, r0, r1, c, n, lut, s);
      continue;
    }
    dot_tile_lut<K, S, false, OD, 4>(p, r0, r1, c, n, lut, s);
  }
}

// True when the vpdpbusd path took the call.
template <bool OD>
inline bool dot_path(const Q8DwArgs& p, int64_t r0, int64_t r1, int64_t c0, int64_t c1, const Lut* lut) {
  if (!p.w8 || !q8_dw_dot_geometry(p.k, p.stride, p.dil)) return false;
  if (p.k == 3) dot_tiles<3, 1, OD>(p, r0, r1, c0, c1, lut);
  else (p.stride == 1 ? dot_tiles<5, 1, OD> : dot_tiles<5, 2, OD>)(p, r0, r1, c0, c1, lut);
  return true;
}
#endif  // MBV3_WITH_AVX512VNNI

#elif defined(MBV3_ISA_NEON)

// ARMv8.0: 16 channels per step, x widened to int16 (vmovl_u8) times the int16 weights with
// vmlal_s16 / vmlal_high_s16 into 4 int32x4 accumulators (exact; no pairing of taps needed).
// FEAT_DotProd (SDOT; Cortex-A76 and later): 4 taps per int32 lane.  x - 128 (int8; the bias
// takes 128 * the channel's weight sum back) of 4 taps, interleaved per channel by two zip
// levels, times the weights repacked per tile the same way.
constexpr int kTile = 16;
constexpr int kMaxGroups = (kQ8DwMaxK * kQ8DwMaxK + 3) / 4;  // SDOT's groups of 4 taps
struct Lut {
  const uint8_t* t;
};

// The table on 16 bytes: vqtbl4q looks up 64 entries; each next quarter (index - 64 i, wrapping
// past 255 for the smaller ones) fills in with vqtbx4q, which keeps lanes whose index is >= 64.
inline uint8x16_t lookup(const uint8_t* t, uint8x16_t v) {
  uint8x16x4_t q = {{vld1q_u8(t), vld1q_u8(t + 16), vld1q_u8(t + 32), vld1q_u8(t + 48)}};
  uint8x16_t r = vqtbl4q_u8(q, v);
  for (int i = 1; i < 4; ++i) {
    const uint8_t* b = t + 64 * i;
    q = {{vld1q_u8(b), vld1q_u8(b + 16), vld1q_u8(b + 32), vld1q_u8(b + 48)}};
    r = vqtbx4q_u8(r, q, vsubq_u8(v, vdupq_n_u8(static_cast<uint8_t>(64 * i))));
  }
  return r;
}

// A tile's per-channel parameters (zeros past its n channels; the weight rows are zero there)
// and the output clamp.  Accumulator v holds channels 4v .. 4v + 3.
struct Epi {
  int32x4_t b[4];
  float32x4_t f[4], m[4], lo, hi, src, inv, ozp;
  int32x4_t zp;
  Epi(const Q8DwArgs& p, int64_t c, int n, bool od) {
    alignas(16) int32_t bias[kTile];
    alignas(16) float bf[kTile], mul[kTile];
    for (int i = 0; i < kTile; ++i) {
      const bool ok = i < n;
      bias[i] = ok ? p.r.bias_int[c + i] : 0;
      bf[i] = ok ? p.r.bias_float[c + i] : 0.f;
      mul[i] = ok ? p.r.multiplier[c + i] : 0.f;
    }
    for (int v = 0; v < 4; ++v) {
      b[v] = vld1q_s32(bias + 4 * v);
      f[v] = vld1q_f32(bf + 4 * v);
      m[v] = vld1q_f32(mul + 4 * v);
    }
    const int32_t z = od ? 0 : p.r.zp;  // added after rounding
    lo = vdupq_n_f32(static_cast<float>(p.r.lo - z));
    hi = vdupq_n_f32(static_cast<float>(p.r.hi - z));
    zp = vdupq_n_s32(z);
    src = vdupq_n_f32(p.r.src_scale);
    inv = vdupq_n_f32(p.r.inv_scale);
    ozp = vdupq_n_f32(static_cast<float>(p.r.zp));
  }
};

// NT: a tile's channel count when 16 or 8 (8-byte loads and half the work: 72, 120, 184 and 200
// channels end in 8), else 0 (n channels through a stack buffer).
template <int NT>
inline int vecs() { return NT == 8 ? 2 : 4; }  // int32x4 accumulators in use

template <int NT>
inline uint8x16_t load_x(const uint8_t* q, int n) {
  if (NT == 16) return vld1q_u8(q);
  if (NT == 8) return vcombine_u8(vld1_u8(q), vdup_n_u8(0));
  uint8_t buf[kTile] = {};
  std::memcpy(buf, q, static_cast<size_t>(n));
  return vld1q_u8(buf);
}

// q8_requantize's float steps on the sums (which hold the bias): + bias_float, * multiplier,
// clamp, round to nearest even, + zp; then the table; n channels stored.
template <bool LUT, int NT, bool OD>
inline void store_y(uint8_t* py, const int32x4_t* acc, const Epi& e, int n, const Lut* lut) {
  uint16x4_t q16[4] = {vdup_n_u16(0), vdup_n_u16(0), vdup_n_u16(0), vdup_n_u16(0)};
  for (int v = 0; v < vecs<NT>(); ++v) {
    float32x4_t x;
    if constexpr (OD)
      x = vaddq_f32(vmulq_f32(vaddq_f32(vmulq_f32(vmulq_f32(vcvtq_f32_s32(acc[v]), e.src), e.m[v]), e.f[v]), e.inv), e.ozp);
    else x = vmulq_f32(vaddq_f32(vcvtq_f32_s32(acc[v]), e.f[v]), e.m[v]);
    x = vminq_f32(vmaxq_f32(x, e.lo), e.hi);
    q16[v] = vqmovun_s32(vaddq_s32(vcvtnq_s32_f32(x), e.zp));  // in [lo, hi]: no saturation
  }
  uint8x16_t q = vcombine_u8(vqmovn_u16(vcombine_u16(q16[0], q16[1])), vqmovn_u16(vcombine_u16(q16[2], q16[3])));
  if (LUT) q = lookup(lut->t, q);
  if (NT == 16) {
    vst1q_u8(py, q);
  } else if (NT == 8) {
    vst1_u8(py, vget_low_u8(q));
  } else {
    uint8_t buf[kTile];
    vst1q_u8(buf, q);
    std::memcpy(py, buf, static_cast<size_t>(n));
  }
}

// The k input rows of output row `row` (null: padding); true when all are inside.
inline bool input_rows(const Q8DwArgs& p, int64_t row, int64_t c, int k, const uint8_t** rows) {
  const int64_t b = row / p.OH, ih0 = (row % p.OH) * p.stride - p.pad;
  bool all = true;
  for (int kh = 0; kh < k; ++kh) {
    const int64_t ih = ih0 + kh * p.dil;
    const bool ok = ih >= 0 && ih < p.H;
    rows[kh] = ok ? p.x + ((b * p.H + ih) * p.W) * p.C + c : nullptr;
    all &= ok;
  }
  return all;
}

// One channel tile [c, c + n) for output rows [r0, r1), vmlal_s16.  K > 0: compile-time k.
template <int K, bool LUT, int NT, bool OD>
void tile(const Q8DwArgs& p, int64_t r0, int64_t r1, int64_t c, int n, const Lut* lut) {
  const int k = K > 0 ? K : p.k, taps = k * k;
  const int64_t C = p.C, W = p.W, s = p.stride, d = p.dil, Cpad = p.Cpad;
  const Epi e(p, c, n, OD);
  const uint8x16_t zp_in = vdupq_n_u8(static_cast<uint8_t>(p.x_zp));
  const int16_t* wc = p.w + c;
  const uint8_t* rows[kQ8DwMaxK];
  for (int64_t row = r0; row < r1; ++row) {
    const bool all_rows = input_rows(p, row, c, k, rows);
    uint8_t* yrow = p.y + row * p.OW * C + c;
    for (int64_t ow = 0; ow < p.OW; ++ow) {
      const int64_t iw0 = ow * s - p.pad;
      const bool inside = all_rows && iw0 >= 0 && iw0 + (k - 1) * d < W;
      int32x4_t a[4] = {e.b[0], e.b[1], e.b[2], e.b[3]};  // the bias, added in int32 as q8_requantize does
      // Interior columns: every tap is a plain load.  Border columns: checked, padding = x_zp.
      auto sum = [&](auto checked) {
#pragma GCC unroll 25
        for (int t = 0; t < taps; ++t) {
          const int kh = t / k, kw = t % k;
          const int64_t iw = iw0 + kw * d;
          const uint8x16_t xv = !decltype(checked)::value || (rows[kh] && iw >= 0 && iw < W)
                                    ? load_x<NT>(rows[kh] + iw * C, n) : zp_in;
          const int16x8_t xl = vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(xv)));
          const int16x8_t wl = vld1q_s16(wc + t * Cpad);
          a[0] = vmlal_s16(a[0], vget_low_s16(xl), vget_low_s16(wl));
          a[1] = vmlal_high_s16(a[1], xl, wl);
          if (NT == 8) continue;
          const int16x8_t xh = vreinterpretq_s16_u16(vmovl_high_u8(xv));
          const int16x8_t wh = vld1q_s16(wc + t * Cpad + 8);
          a[2] = vmlal_s16(a[2], vget_low_s16(xh), vget_low_s16(wh));
          a[3] = vmlal_high_s16(a[3], xh, wh);
        }
      };
      if (inside) sum(std::false_type{});
      else sum(std::true_type{});
      store_y<LUT, NT, OD>(yrow + ow * C, a, e, n, lut);
    }
  }
}

// Everything up to pop_options may use SDOT: called only where has_dotprod().
#pragma GCC push_options
#pragma GCC target("arch=armv8.2-a+dotprod")
template <int K, bool LUT, int NT, bool OD>
[[gnu::noinline]] void tile_dot(const Q8DwArgs& p, int64_t r0, int64_t r1, int64_t c, int n, const Lut* lut) {
  const int k = K > 0 ? K : p.k, taps = k * k, groups = (taps + 3) / 4;
  const int64_t C = p.C, W = p.W, s = p.stride, d = p.dil, Cpad = p.Cpad;
  Epi e(p, c, n, OD);
  // Group g's weights, vector v: byte 4i + q = w[tap 4g + q][channel c + 4v + i], 0 past the taps;
  // sum (x - 128) w = sum x w - 128 sum w, so the bias gets 128 sum w.
  int8x16_t wv[K > 0 ? (K * K + 3) / 4 : kMaxGroups][4];
  alignas(16) int8_t wb[kTile];
  alignas(16) int32_t corr[kTile] = {};
  for (int g = 0; g < groups; ++g)
    for (int v = 0; v < 4; ++v) {
      for (int i = 0; i < 4; ++i)
        for (int q = 0; q < 4; ++q) {
          const int t = 4 * g + q;
          const int16_t w = t < taps ? p.w[t * Cpad + c + 4 * v + i] : int16_t(0);
          wb[4 * i + q] = static_cast<int8_t>(w);
          corr[4 * v + i] += 128 * w;
        }
      wv[g][v] = vld1q_s8(wb);
    }
  for (int v = 0; v < 4; ++v) e.b[v] = vaddq_s32(e.b[v], vld1q_s32(corr + 4 * v));
  const uint8x16_t zp_in = vdupq_n_u8(static_cast<uint8_t>(p.x_zp)), flip = vdupq_n_u8(0x80);
  const uint8_t* rows[kQ8DwMaxK];
  for (int64_t row = r0; row < r1; ++row) {
    const bool all_rows = input_rows(p, row, c, k, rows);
    uint8_t* yrow = p.y + row * p.OW * C + c;
    for (int64_t ow = 0; ow < p.OW; ++ow) {
      const int64_t iw0 = ow * s - p.pad;
      const bool inside = all_rows && iw0 >= 0 && iw0 + (k - 1) * d < W;
      int32x4_t a[4] = {e.b[0], e.b[1], e.b[2], e.b[3]};
      auto sum = [&](auto checked) {
#pragma GCC unroll 13
        for (int g = 0; g < groups; ++g) {
          uint8x16_t x[4];
          for (int q = 0; q < 4; ++q) {
            const int t = 4 * g + q, kh = t / k, kw = t % k;
            const int64_t iw = iw0 + kw * d;
            x[q] = t < taps && (!decltype(checked)::value || (rows[kh] && iw >= 0 && iw < W))
                       ? load_x<NT>(rows[kh] + iw * C, n) : zp_in;  // past the taps: weight 0
          }
          // Bytes x0[i] x1[i] x2[i] x3[i] per channel i: channels 4v .. 4v + 3 in vector v.
          const uint16x8_t l01 = vreinterpretq_u16_u8(vzip1q_u8(x[0], x[1]));
          const uint16x8_t l23 = vreinterpretq_u16_u8(vzip1q_u8(x[2], x[3]));
          const uint16x8_t h01 = vreinterpretq_u16_u8(vzip2q_u8(x[0], x[1]));
          const uint16x8_t h23 = vreinterpretq_u16_u8(vzip2q_u8(x[2], x[3]));
          const uint16x8_t z[4] = {vzip1q_u16(l01, l23), vzip2q_u16(l01, l23), vzip1q_u16(h01, h23),
                                   vzip2q_u16(h01, h23)};
          for (int v = 0; v < vecs<NT>(); ++v)
            a[v] = vdotq_s32(a[v], vreinterpretq_s8_u8(veorq_u8(vreinterpretq_u8_u16(z[v]), flip)), wv[g][v]);
        }
      };
      if (inside) sum(std::false_type{});
      else sum(std::true_type{});
      store_y<LUT, NT, OD>(yrow + ow * C, a, e, n, lut);
    }
  }
}
#pragma GCC pop_options

template <int K, bool LUT, int NT, bool OD>
void tile_isa(const Q8DwArgs& p, int64_t r0, int64_t r1, int64_t c, int n, const Lut* lut) {
  if (has_dotprod()) tile_dot<K, LUT, NT, OD>(p, r0, r1, c, n, lut);
  else tile<K, LUT, NT, OD>(p, r0, r1, c, n, lut);
}

template <int K, bool OD>
void tile_lut(const Q8DwArgs& p, int64_t r0, int64_t r1, int64_t c, int n, const Lut* lut) {
  if (n == 16) {
    if (lut) tile_isa<K, true, 16, OD>(p, r0, r1, c, n, lut);
    else tile_isa<K, false, 16, OD>(p, r0, r1, c, n, nullptr);
  } else if (n == 8) {
    if (lut) tile_isa<K, true, 8, OD>(p, r0, r1, c, n, lut);
    else tile_isa<K, false, 8, OD>(p, r0, r1, c, n, nullptr);
  } else {
    if (lut) tile_isa<K, true, 0, OD>(p, r0, r1, c, n, lut);
    else tile_isa<K, false, 0, OD>(p, r0, r1, c, n, nullptr);
  }
}

#else  // scalar

struct Lut {};
template <int K, bool OD>  // q8_requantize reads the mode
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
  const bool od = p.r.mode == Q8RequantMode::Onednn;
#if defined(MBV3_ISA_AVX512)
  alignas(64) int16_t table[256] = {};
  if (p.r.lut)
    for (int i = 0; i < 256; ++i) table[i] = p.r.lut[i];
  const Lut lut_v(table);
  if (p.r.lut) lut = &lut_v;
#if defined(MBV3_WITH_AVX512VNNI)
  if (od ? dot_path<true>(p, row_begin, row_end, c_begin, c_end, lut)
         : dot_path<false>(p, row_begin, row_end, c_begin, c_end, lut))
    return;
#endif
#elif defined(MBV3_ISA_AVX2)
  const Lut lut_v{p.r.lut};
  if (p.r.lut) lut = &lut_v;
#elif defined(MBV3_ISA_NEON)
  const Lut lut_v{p.r.lut};
  if (p.r.lut) lut = &lut_v;
#endif
  for (int64_t c = c_begin; c < c_end; c += kTile) {
    const int n = static_cast<int>(std::min<int64_t>(kTile, c_end - c));
    if (p.k == 3) (od ? tile_lut<3, true> : tile_lut<3, false>)(p, row_begin, row_end, c, n, lut);
    else if (p.k == 5) (od ? tile_lut<5, true> : tile_lut<5, false>)(p, row_begin, row_end, c, n, lut);
    else (od ? tile_lut<0, true> : tile_lut<0, false>)(p, row_begin, row_end, c, n, lut);
  }
}

}  // namespace MBV3_ISA_NS
}  // namespace mbv3
