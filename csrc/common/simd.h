// One tiny SIMD vocabulary, compiled once per ISA.
//
// A kernel source written against `Vec` is included by one .cpp per ISA (csrc/<op>/<op>_<isa>.cpp);
// each of those files defines exactly one MBV3_ISA_* macro before its includes.  The ISA's
// instruction set is switched on here, by `#pragma GCC target`, after the standard headers, so
// only this project's per-ISA code is compiled for it (the build passes no per-file flags, and
// std:: inline functions keep their baseline code).  Everything below is `static inline` inside
// a per-ISA namespace so that no symbol compiled for AVX-512 can be merged by the linker into
// code that runs on a lesser CPU.
#pragma once
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>
#include <vector>

#if defined(MBV3_ISA_AVX512) || defined(MBV3_ISA_AVX2)
#include <immintrin.h>
#if !defined(__GNUC__) || defined(__clang__)
#error "the x86 ISA units are switched on with #pragma GCC target: build them with GCC"
#endif
#endif
#if defined(MBV3_ISA_AVX512)
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,fma")
#elif defined(MBV3_ISA_AVX2)
#pragma GCC target("avx2,fma")
#endif

#if defined(MBV3_ISA_AVX512)
#define MBV3_ISA_NS avx512
namespace mbv3 { namespace avx512 {
struct Vec {
  static constexpr int N = 16;
  static constexpr int kRegs = 32;  // architectural vector registers
  __m512 v;
  static inline Vec zero() { return {_mm512_setzero_ps()}; }
  static inline Vec set1(float f) { return {_mm512_set1_ps(f)}; }
  static inline Vec load(const float* p) { return {_mm512_loadu_ps(p)}; }
  static inline Vec load_tail(const float* p, int n) {
    return {_mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << n) - 1u), p)};
  }
  inline void store(float* p) const { _mm512_storeu_ps(p, v); }
  inline void store_tail(float* p, int n) const {
    _mm512_mask_storeu_ps(p, static_cast<__mmask16>((1u << n) - 1u), v);
  }
};
static inline Vec fmadd(Vec a, Vec b, Vec c) { return {_mm512_fmadd_ps(a.v, b.v, c.v)}; }
static inline Vec add(Vec a, Vec b) { return {_mm512_add_ps(a.v, b.v)}; }
static inline Vec mul(Vec a, Vec b) { return {_mm512_mul_ps(a.v, b.v)}; }
static inline Vec max(Vec a, Vec b) { return {_mm512_max_ps(a.v, b.v)}; }
static inline Vec min(Vec a, Vec b) { return {_mm512_min_ps(a.v, b.v)}; }
static inline float reduce_add(Vec a) { return _mm512_reduce_add_ps(a.v); }
// out[0..3] = reduce_add(a), reduce_add(b), reduce_add(c), reduce_add(d), sharing the shuffles.
static inline __m256 fold_halves(__m512 a) {
  return _mm256_add_ps(_mm512_castps512_ps256(a),
                       _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1)));
}
static inline void reduce_add4(Vec a, Vec b, Vec c, Vec d, float* out) {
  const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(fold_halves(a.v), fold_halves(b.v)),
                                  _mm256_hadd_ps(fold_halves(c.v), fold_halves(d.v)));
  _mm_storeu_ps(out, _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1)));
}
}}  // namespace mbv3::avx512

#elif defined(MBV3_ISA_AVX2)
#define MBV3_ISA_NS avx2
namespace mbv3 { namespace avx2 {
static inline __m256i tail_mask8(int n) {
  // lanes [0, n) set: compare lane index < n.
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
struct Vec {
  static constexpr int N = 8;
  static constexpr int kRegs = 16;
  __m256 v;
  static inline Vec zero() { return {_mm256_setzero_ps()}; }
  static inline Vec set1(float f) { return {_mm256_set1_ps(f)}; }
  static inline Vec load(const float* p) { return {_mm256_loadu_ps(p)}; }
  static inline Vec load_tail(const float* p, int n) { return {_mm256_maskload_ps(p, tail_mask8(n))}; }
  inline void store(float* p) const { _mm256_storeu_ps(p, v); }
  inline void store_tail(float* p, int n) const { _mm256_maskstore_ps(p, tail_mask8(n), v); }
};
static inline Vec fmadd(Vec a, Vec b, Vec c) { return {_mm256_fmadd_ps(a.v, b.v, c.v)}; }
static inline Vec add(Vec a, Vec b) { return {_mm256_add_ps(a.v, b.v)}; }
static inline Vec mul(Vec a, Vec b) { return {_mm256_mul_ps(a.v, b.v)}; }
static inline Vec max(Vec a, Vec b) { return {_mm256_max_ps(a.v, b.v)}; }
static inline Vec min(Vec a, Vec b) { return {_mm256_min_ps(a.v, b.v)}; }
static inline float reduce_add(Vec a) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(a.v), _mm256_extractf128_ps(a.v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
// out[0..3] = reduce_add(a), reduce_add(b), reduce_add(c), reduce_add(d), sharing the shuffles.
static inline void reduce_add4(Vec a, Vec b, Vec c, Vec d, float* out) {
  const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(a.v, b.v), _mm256_hadd_ps(c.v, d.v));
  _mm_storeu_ps(out, _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1)));
}
}}  // namespace mbv3::avx2

#elif defined(MBV3_ISA_NEON)
#include <arm_neon.h>
#define MBV3_ISA_NS neon
namespace mbv3 { namespace neon {
struct Vec {
  static constexpr int N = 4;
  static constexpr int kRegs = 32;
  float32x4_t v;
  static inline Vec zero() { return {vdupq_n_f32(0.f)}; }
  static inline Vec set1(float f) { return {vdupq_n_f32(f)}; }
  static inline Vec load(const float* p) { return {vld1q_f32(p)}; }
  // NEON has no masked memory ops: go through a stack buffer (tails only).
  static inline Vec load_tail(const float* p, int n) {
    float b[4] = {0.f, 0.f, 0.f, 0.f};
    std::memcpy(b, p, sizeof(float) * n);
    return {vld1q_f32(b)};
  }
  inline void store(float* p) const { vst1q_f32(p, v); }
  inline void store_tail(float* p, int n) const {
    float b[4];
    vst1q_f32(b, v);
    std::memcpy(p, b, sizeof(float) * n);
  }
};
static inline Vec fmadd(Vec a, Vec b, Vec c) { return {vfmaq_f32(c.v, a.v, b.v)}; }
static inline Vec add(Vec a, Vec b) { return {vaddq_f32(a.v, b.v)}; }
static inline Vec mul(Vec a, Vec b) { return {vmulq_f32(a.v, b.v)}; }
static inline Vec max(Vec a, Vec b) { return {vmaxq_f32(a.v, b.v)}; }
static inline Vec min(Vec a, Vec b) { return {vminq_f32(a.v, b.v)}; }
static inline float reduce_add(Vec a) { return vaddvq_f32(a.v); }
// out[0..3] = reduce_add(a), reduce_add(b), reduce_add(c), reduce_add(d), sharing the shuffles.
static inline void reduce_add4(Vec a, Vec b, Vec c, Vec d, float* out) {
  vst1q_f32(out, vpaddq_f32(vpaddq_f32(a.v, b.v), vpaddq_f32(c.v, d.v)));
}
}}  // namespace mbv3::neon

#elif defined(MBV3_ISA_SCALAR)
#include <cmath>
#define MBV3_ISA_NS scalar
namespace mbv3 { namespace scalar {
// One lane: the portable reference path.  fmaf keeps its rounding close to the FMA paths.
struct Vec {
  static constexpr int N = 1;
  static constexpr int kRegs = 16;
  float v;
  static inline Vec zero() { return {0.f}; }
  static inline Vec set1(float f) { return {f}; }
  static inline Vec load(const float* p) { return {*p}; }
  static inline Vec load_tail(const float* p, int) { return {*p}; }
  inline void store(float* p) const { *p = v; }
  inline void store_tail(float* p, int) const { *p = v; }
};
static inline Vec fmadd(Vec a, Vec b, Vec c) { return {std::fma(a.v, b.v, c.v)}; }
static inline Vec add(Vec a, Vec b) { return {a.v + b.v}; }
static inline Vec mul(Vec a, Vec b) { return {a.v * b.v}; }
// NaN-propagating like PyTorch's max/min is not needed: inputs are finite by contract.
static inline Vec max(Vec a, Vec b) { return {a.v > b.v ? a.v : b.v}; }
static inline Vec min(Vec a, Vec b) { return {a.v < b.v ? a.v : b.v}; }
static inline float reduce_add(Vec a) { return a.v; }
static inline void reduce_add4(Vec a, Vec b, Vec c, Vec d, float* out) {
  out[0] = a.v; out[1] = b.v; out[2] = c.v; out[3] = d.v;
}
}}  // namespace mbv3::scalar

#else
#error "compile this header with exactly one MBV3_ISA_* macro defined"
#endif

namespace mbv3 { namespace MBV3_ISA_NS {
// Activations shared by every fused epilogue; same formulas as PyTorch's:
// hardswish(v) = v * relu6(v + 3) / 6,  hardsigmoid(v) = relu6(v + 3) / 6.
static inline Vec relu(Vec a) { return max(a, Vec::zero()); }
static inline Vec relu6_plus3(Vec a) {
  return min(max(add(a, Vec::set1(3.f)), Vec::zero()), Vec::set1(6.f));
}
// Multiplying by 1/6 instead of dividing: 6 * float(1/6) rounds to exactly 1, so both are exact
// in saturation (hardswish(v >= 3) == v), and within an ulp of PyTorch's division in between.
static inline Vec hardsigmoid(Vec a) { return mul(relu6_plus3(a), Vec::set1(1.f / 6.f)); }
static inline Vec hardswish(Vec a) { return mul(a, hardsigmoid(a)); }
}}  // namespace mbv3::MBV3_ISA_NS
