// The int8 GEMV of q8_se / q8_classifier_head (q8_se.h), compiled once per ISA by
// q8_se_<isa>.cpp.  Sums are exact int32 on every path: scalar; avx2 widens both sides to int16
// (x - x_zp in [-255, 255]) and multiplies with vpmaddwd (no vpmaddubsw saturation);
// avx512_vnni takes dot(x, w) with vpdpbusd (u8 x s8) and subtracts x_zp * sum(w), itself a
// vpdpbusd of the bytes x_zp in the same pass (all exact: int32 wraps back into range); neon
// widens like avx2 and multiply-accumulates with vmlal_s16 (ARMv8.0, exact), or, where the CPU
// has FEAT_DotProd, takes SDOT of x - 128 (int8) and adds (128 - x_zp) * sum(w), the sum an SDOT
// against ones in the same pass.
// Rows go 4 at a time so each x load serves 4 weight rows; the weight rows stay in L1 while
// every sample passes over them.
// q8_se.h comes first: its inline functions (q8.h's requantization) stay baseline code, which
// the linker may share between the units.
#include "q8_se.h"

#include <algorithm>
#include "common/simd.h"

namespace mbv3 {
namespace MBV3_ISA_NS {
namespace {

constexpr int kRows = 4;

#if !defined(MBV3_ISA_SCALAR)
// At batch 1 the weights are read once per forward and arrive from L3 or DRAM (the head's
// 2.5 MB), faster when requested well ahead than by the hardware prefetcher alone: every line of
// the rows 16 KB further on, while these rows compute.
constexpr int64_t kPrefetchAhead = 16384;

inline void prefetch_ahead(const Q8Fc& p, int64_t n, int rows) {
  const int64_t from = n * p.K + kPrefetchAhead, to = std::min(from + rows * p.K, p.Cout * p.K);
  for (int64_t o = from; o < to; o += 64) __builtin_prefetch(p.w + o, 0, 3);
}
#endif

#if defined(MBV3_ISA_AVX512)
inline int32_t hsum(__m512i v) { return _mm512_reduce_add_epi32(v); }

// acc[j][r] = sum_k (x[j][k] - zp) * w[r][k] for J samples: vpdpbusd's u8 x s8 dot minus
// zs[r] = zp * sum_k w[r][k], itself a vpdpbusd of the bytes zp, taken in the same pass (Sums)
// or reused; each weight load serves J samples, each x load R rows.
template <int R, int J, bool Sums>
inline void dots(const uint8_t* const* x, const int8_t* const* w, int64_t K, int32_t zp, int32_t (*acc)[R],
                 __m512i* zs) {
  __m512i a[J][R], z[R];  // locals: registers in the loop
  for (int r = 0; r < R; ++r) {
    z[r] = Sums ? _mm512_setzero_si512() : zs[r];
    for (int j = 0; j < J; ++j) a[j][r] = _mm512_setzero_si512();
  }
  const __m512i vzp = _mm512_set1_epi8(static_cast<char>(zp));
  auto step = [&](__mmask64 m, int64_t k) {
    __m512i xv[J];
    for (int j = 0; j < J; ++j) xv[j] = _mm512_maskz_loadu_epi8(m, x[j] + k);
    for (int r = 0; r < R; ++r) {
      const __m512i wv = _mm512_maskz_loadu_epi8(m, w[r] + k);
      for (int j = 0; j < J; ++j) a[j][r] = _mm512_dpbusd_epi32(a[j][r], xv[j], wv);
      if (Sums) z[r] = _mm512_dpbusd_epi32(z[r], vzp, wv);
    }
  };
  int64_t k = 0;
  for (; k + 64 <= K; k += 64) step(~0ull, k);
  if (k < K) step(~0ull >> (64 - (K - k)), k);
  for (int r = 0; r < R; ++r) {
    zs[r] = z[r];
    for (int j = 0; j < J; ++j) acc[j][r] = hsum(_mm512_sub_epi32(a[j][r], z[r]));
  }
}

// Samples in pairs; the weights' zp sums come with the first call.
template <int R>
inline void rows(const Q8Fc& p, int64_t n) {
  const int8_t* w[R];
  for (int r = 0; r < R; ++r) w[r] = p.w + (n + r) * p.K;
  prefetch_ahead(p, n, R);
  __m512i zs[R];
  int32_t acc[2][R];
  auto store = [&](int64_t i, int j) {
    for (int r = 0; r < R; ++r) q8_fc_store(p, i, n + r, acc[j][r]);
  };
  int64_t i = 0;
  for (; i + 2 <= p.N; i += 2) {
    const uint8_t* x[2] = {p.x + i * p.K, p.x + (i + 1) * p.K};
    if (i == 0)
      dots<R, 2, true>(x, w, p.K, p.x_zp, acc, zs);
    else
      dots<R, 2, false>(x, w, p.K, p.x_zp, acc, zs);
    store(i, 0);
    store(i + 1, 1);
  }
  if (i < p.N) {
    const uint8_t* x[1] = {p.x + i * p.K};
    if (i == 0)
      dots<R, 1, true>(x, w, p.K, p.x_zp, acc, zs);
    else
      dots<R, 1, false>(x, w, p.K, p.x_zp, acc, zs);
    store(i, 0);
  }
}

#elif defined(MBV3_ISA_AVX2)
inline int32_t hsum(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
  return _mm_cvtsi128_si32(s);
}

// acc[r] = sum_k (x[k] - zp) * w[r][k], 16 k at a time in int16, pairs summed by vpmaddwd.
template <int R>
inline void dots(const uint8_t* x, int32_t zp, const int8_t* const* w, int64_t K, int32_t* acc) {
  __m256i a[R];
  for (int r = 0; r < R; ++r) a[r] = _mm256_setzero_si256();
  const __m256i vzp = _mm256_set1_epi16(static_cast<int16_t>(zp));
  int64_t k = 0;
  for (; k + 16 <= K; k += 16) {
    const __m256i xv =
        _mm256_sub_epi16(_mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + k))), vzp);
    for (int r = 0; r < R; ++r) {
      const __m256i wv = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w[r] + k)));
      a[r] = _mm256_add_epi32(a[r], _mm256_madd_epi16(xv, wv));
    }
  }
  for (int r = 0; r < R; ++r) {
    int32_t t = hsum(a[r]);
    for (int64_t j = k; j < K; ++j) t += (static_cast<int32_t>(x[j]) - zp) * w[r][j];
    acc[r] = t;
  }
}

#elif defined(MBV3_ISA_NEON)
// acc[r] = sum_k (x[k] - zp) * w[r][k], 16 k at a time in int16, vmlal_s16 into int32.
template <int R>
inline void dots(const uint8_t* x, int32_t zp, const int8_t* const* w, int64_t K, int32_t* acc) {
  int32x4_t a[R];
  for (int r = 0; r < R; ++r) a[r] = vdupq_n_s32(0);
  const int16x8_t vzp = vdupq_n_s16(static_cast<int16_t>(zp));
  int64_t k = 0;
  for (; k + 16 <= K; k += 16) {
    const uint8x16_t xb = vld1q_u8(x + k);
    const int16x8_t x0 = vsubq_s16(vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(xb))), vzp);
    const int16x8_t x1 = vsubq_s16(vreinterpretq_s16_u16(vmovl_high_u8(xb)), vzp);
    for (int r = 0; r < R; ++r) {
      const int8x16_t wb = vld1q_s8(w[r] + k);
      const int16x8_t w0 = vmovl_s8(vget_low_s8(wb)), w1 = vmovl_high_s8(wb);
      a[r] = vmlal_s16(a[r], vget_low_s16(x0), vget_low_s16(w0));
      a[r] = vmlal_high_s16(a[r], x0, w0);
      a[r] = vmlal_s16(a[r], vget_low_s16(x1), vget_low_s16(w1));
      a[r] = vmlal_high_s16(a[r], x1, w1);
    }
  }
  for (int r = 0; r < R; ++r) {
    int32_t t = vaddvq_s32(a[r]);
    for (int64_t j = k; j < K; ++j) t += (static_cast<int32_t>(x[j]) - zp) * w[r][j];
    acc[r] = t;
  }
}
#endif

#if defined(MBV3_ISA_NEON)
// FEAT_DotProd (called only where has_dotprod()): sum (x - zp) w = sum (x - 128) w
// + (128 - zp) sum w, x - 128 an int8 (x ^ 0x80), both sums by SDOT; the K tail as dots<R>.
template <int R>
[[gnu::noinline]] __attribute__((target("arch=armv8.2-a+dotprod"))) void rows_dot(const Q8Fc& p, int64_t n) {
  const int8_t* w[R];
  for (int r = 0; r < R; ++r) w[r] = p.w + (n + r) * p.K;
  prefetch_ahead(p, n, R);
  const int8x16_t ones = vdupq_n_s8(1);
  const uint8x16_t sign = vdupq_n_u8(0x80);
  for (int64_t i = 0; i < p.N; ++i) {
    const uint8_t* x = p.x + i * p.K;
    int32x4_t a[R], s[R];
    for (int r = 0; r < R; ++r) a[r] = s[r] = vdupq_n_s32(0);
    int64_t k = 0;
    for (; k + 16 <= p.K; k += 16) {
      const int8x16_t xs = vreinterpretq_s8_u8(veorq_u8(vld1q_u8(x + k), sign));
      for (int r = 0; r < R; ++r) {
        const int8x16_t wb = vld1q_s8(w[r] + k);
        a[r] = vdotq_s32(a[r], xs, wb);
        s[r] = vdotq_s32(s[r], ones, wb);
      }
    }
    for (int r = 0; r < R; ++r) {
      int32_t t = vaddvq_s32(a[r]) + (128 - p.x_zp) * vaddvq_s32(s[r]);
      for (int64_t j = k; j < p.K; ++j) t += (static_cast<int32_t>(x[j]) - p.x_zp) * w[r][j];
      q8_fc_store(p, i, n + r, t);
    }
  }
}
#endif

#if defined(MBV3_ISA_AVX2) || defined(MBV3_ISA_NEON)
template <int R>
inline void rows(const Q8Fc& p, int64_t n) {
#if defined(MBV3_ISA_NEON)
  if (has_dotprod()) return rows_dot<R>(p, n);
#endif
  const int8_t* w[R];
  for (int r = 0; r < R; ++r) w[r] = p.w + (n + r) * p.K;
  prefetch_ahead(p, n, R);
  int32_t acc[R];
  for (int64_t i = 0; i < p.N; ++i) {
    dots<R>(p.x + i * p.K, p.x_zp, w, p.K, acc);
    for (int r = 0; r < R; ++r) q8_fc_store(p, i, n + r, acc[r]);
  }
}

#elif defined(MBV3_ISA_SCALAR)
template <int R>
inline void rows(const Q8Fc& p, int64_t n) {
  for (int r = 0; r < R; ++r) {
    const int8_t* w = p.w + (n + r) * p.K;
    for (int64_t i = 0; i < p.N; ++i) {
      const uint8_t* x = p.x + i * p.K;
      int32_t acc = 0;
      for (int64_t k = 0; k < p.K; ++k) acc += (static_cast<int32_t>(x[k]) - p.x_zp) * w[k];
      q8_fc_store(p, i, n + r, acc);
    }
  }
}
#endif

// Channels c..c+B of an NHWC sample: 16-bit partial sums in registers over runs of 257 pixels
// (257 * 255 < 65536).  B is a compile-time width so the compiler vectorizes it whole.
template <int B>
inline void pool_block(const uint8_t* x, int64_t HW, int64_t C, int64_t c, int32_t* sums) {
  constexpr int64_t kRun = 257;
  for (int j = 0; j < B; ++j) sums[c + j] = 0;
  for (int64_t s0 = 0; s0 < HW; s0 += kRun) {
    uint16_t part[B] = {};
    const int64_t s1 = std::min(HW, s0 + kRun);
    for (int64_t s = s0; s < s1; ++s) {
      const uint8_t* row = x + s * C + c;
      for (int j = 0; j < B; ++j) part[j] = static_cast<uint16_t>(part[j] + row[j]);
    }
    for (int j = 0; j < B; ++j) sums[c + j] += part[j];
  }
}

}  // namespace

// Plain loops, vectorized by the compiler for the unit's ISA.
void q8_pool_sums(const uint8_t* x, int64_t HW, int64_t C, bool nhwc, int32_t* sums) {
  if (!nhwc) {
    for (int64_t c = 0; c < C; ++c) {
      const uint8_t* plane = x + c * HW;
      int32_t t = 0;
      for (int64_t s = 0; s < HW; ++s) t += plane[s];
      sums[c] = t;
    }
    return;
  }
  int64_t c = 0;
  for (; c + 64 <= C; c += 64) pool_block<64>(x, HW, C, c, sums);
  for (; c + 16 <= C; c += 16) pool_block<16>(x, HW, C, c, sums);
  for (; c < C; ++c) pool_block<1>(x, HW, C, c, sums);
}

void q8_fc(const Q8Fc& p, int64_t n_begin, int64_t n_end) {
  int64_t n = n_begin;
  for (; n + kRows <= n_end; n += kRows) rows<kRows>(p, n);
  for (; n < n_end; ++n) rows<1>(p, n);
}

}  // namespace MBV3_ISA_NS
}  // namespace mbv3
