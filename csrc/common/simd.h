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

#include "activation.h"
#include "bf16.h"

#if defined(MBV3_ISA_AVX512) || defined(MBV3_ISA_AVX2)
#include <immintrin.h>
#if !defined(__GNUC__) || defined(__clang__)
#error "the x86 ISA units are switched on with #pragma GCC target: build them with GCC"
#endif
#endif
#if defined(MBV3_ISA_AVX512) && defined(MBV3_WITH_AVX512BF16)  // the AVX512_BF16 units (vdpbf16ps)
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,fma,avx512bf16")
#elif defined(MBV3_ISA_AVX512) && defined(MBV3_WITH_AVX512VNNI)  // the int8 units (vpdpbusd)
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,fma,avx512vnni")
#elif defined(MBV3_ISA_AVX512)
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,fma")
#elif defined(MBV3_ISA_AVX2)
#pragma GCC target("avx2,fma")
#endif

#if defined(MBV3_ISA_AVX512)
// The same AVX-512 code twice: avx512, and avx512_bf16 (MBV3_WITH_AVX512BF16), whose bf16 stores
// round with one vcvtneps2bf16 and whose 1x1 convs may take the dot-product kernel.
#if defined(MBV3_WITH_AVX512BF16)
#define MBV3_ISA_NS avx512_bf16
#elif defined(MBV3_WITH_AVX512VNNI)
#define MBV3_ISA_NS avx512_vnni
#else
#define MBV3_ISA_NS avx512
#endif
namespace mbv3 { namespace MBV3_ISA_NS {
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
  // bf16 storage (bf16.h): widened on load, rounded to nearest even on store (NaN -> 0x7FC0).
  static inline Vec load(const bf16* p) { return widen(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))); }
  static inline Vec load_tail(const bf16* p, int n) {
    return widen(_mm256_maskz_loadu_epi16(static_cast<__mmask16>((1u << n) - 1u), p));
  }
  inline void store(bf16* p) const { _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), narrow()); }
  inline void store_tail(bf16* p, int n) const {
    _mm256_mask_storeu_epi16(p, static_cast<__mmask16>((1u << n) - 1u), narrow());
  }
  static inline Vec widen(__m256i h) { return {_mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16))}; }
#if defined(MBV3_WITH_AVX512BF16)
  // vcvtneps2bf16: nearest even, as below, in one instruction; but a NaN keeps its sign and top
  // payload bits (quieted) instead of becoming 0x7FC0, and float32 denormals flush to zero.
  inline __m256i narrow() const {
    const __m256bh h = _mm512_cvtneps_pbh(v);
    return reinterpret_cast<const __m256i&>(h);
  }
#else
  inline __m256i narrow() const {
    const __m512i u = _mm512_castps_si512(v);
    const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    __m512i r = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff))), 16);
    r = _mm512_mask_mov_epi32(r, _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), _mm512_set1_epi32(kBf16QuietNaN));
    return _mm512_cvtepi32_epi16(r);
  }
#endif
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
// An 8-lane (256-bit, AVX-512VL) vector with the same interface as Vec, for channel tails of
// at most 8 (72 = 64 + 8, ...): a masked 16-lane op on an 8-channel tail costs twice the
// 256-bit one on cores that split 512-bit ops.
struct Half {
  static constexpr int N = 8;
  __m256 v;
  static inline Half zero() { return {_mm256_setzero_ps()}; }
  static inline Half set1(float f) { return {_mm256_set1_ps(f)}; }
  static inline Half load(const float* p) { return {_mm256_loadu_ps(p)}; }
  static inline Half load_tail(const float* p, int n) {
    return {_mm256_maskz_loadu_ps(static_cast<__mmask8>((1u << n) - 1u), p)};
  }
  inline void store(float* p) const { _mm256_storeu_ps(p, v); }
  inline void store_tail(float* p, int n) const {
    _mm256_mask_storeu_ps(p, static_cast<__mmask8>((1u << n) - 1u), v);
  }
  static inline Half load(const bf16* p) { return widen(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
  static inline Half load_tail(const bf16* p, int n) {
    return widen(_mm_maskz_loadu_epi16(static_cast<__mmask8>((1u << n) - 1u), p));
  }
  inline void store(bf16* p) const { _mm_storeu_si128(reinterpret_cast<__m128i*>(p), narrow()); }
  inline void store_tail(bf16* p, int n) const {
    _mm_mask_storeu_epi16(p, static_cast<__mmask8>((1u << n) - 1u), narrow());
  }
  static inline Half widen(__m128i h) { return {_mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16))}; }
  // A Vec's low 8 lanes, and this Half as a Vec's low lanes (upper lanes undefined): both free
  // (register aliasing), for kernels that keep Vec tiles and run a last tail vector as a Half.
  static inline Half low(Vec a) { return {_mm512_castps512_ps256(a.v)}; }
  inline Vec as_vec() const { return {_mm512_castps256_ps512(v)}; }
#if defined(MBV3_WITH_AVX512BF16)
  inline __m128i narrow() const {
    const __m128bh h = _mm256_cvtneps_pbh(v);
    return reinterpret_cast<const __m128i&>(h);
  }
#else
  inline __m128i narrow() const {
    const __m256i u = _mm256_castps_si256(v);
    const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    __m256i r = _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7fff))), 16);
    r = _mm256_mask_mov_epi32(r, _mm256_cmp_ps_mask(v, v, _CMP_UNORD_Q), _mm256_set1_epi32(kBf16QuietNaN));
    return _mm256_cvtepi32_epi16(r);
  }
#endif
};
static inline Half fmadd(Half a, Half b, Half c) { return {_mm256_fmadd_ps(a.v, b.v, c.v)}; }
static inline Half add(Half a, Half b) { return {_mm256_add_ps(a.v, b.v)}; }
static inline Half mul(Half a, Half b) { return {_mm256_mul_ps(a.v, b.v)}; }
static inline Half max(Half a, Half b) { return {_mm256_max_ps(a.v, b.v)}; }
static inline Half min(Half a, Half b) { return {_mm256_min_ps(a.v, b.v)}; }
constexpr bool kHasHalf = true;
}}  // namespace mbv3::avx512 / avx512_bf16 / avx512_vnni

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
  // bf16 storage (bf16.h): widened on load, rounded to nearest even on store (NaN -> 0x7FC0).
  // AVX2 has no 16-bit masked memory ops: tails go through a stack buffer.
  static inline Vec load(const bf16* p) { return widen(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
  static inline Vec load_tail(const bf16* p, int n) {
    alignas(16) uint16_t b[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    std::memcpy(b, p, sizeof(bf16) * n);
    return widen(_mm_load_si128(reinterpret_cast<const __m128i*>(b)));
  }
  inline void store(bf16* p) const { _mm_storeu_si128(reinterpret_cast<__m128i*>(p), narrow()); }
  inline void store_tail(bf16* p, int n) const {
    alignas(16) uint16_t b[8];
    _mm_store_si128(reinterpret_cast<__m128i*>(b), narrow());
    std::memcpy(p, b, sizeof(bf16) * n);
  }
  static inline Vec widen(__m128i h) { return {_mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16))}; }
  inline __m128i narrow() const {
    const __m256i u = _mm256_castps_si256(v);
    const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    __m256i r = _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7fff))), 16);
    r = _mm256_blendv_epi8(r, _mm256_set1_epi32(kBf16QuietNaN), _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q)));
    // packus works per 128-bit lane: [r0..3 r0..3 | r4..7 r4..7]; qwords 0 and 2 are r0..7.
    return _mm256_castsi256_si128(_mm256_permute4x64_epi64(_mm256_packus_epi32(r, r), 0x08));
  }
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
struct Half { static constexpr int N = 0; };  // no narrower vector on this ISA
constexpr bool kHasHalf = false;
}}  // namespace mbv3::avx2

#elif defined(MBV3_ISA_NEON)
#if defined(MBV3_WITH_NEON_BF16)  // the FEAT_BF16 units (BFDOT): Armv8.2 + bf16, e.g. Neoverse V1/N2
#pragma GCC target("arch=armv8.2-a+bf16")
#endif
#include <arm_neon.h>
#if defined(__linux__)
#include <sys/auxv.h>
#endif
// The FEAT_BF16 units get their own namespace: the same inline code built for another target
// must not be merged with the plain NEON build's at link time.
#if defined(MBV3_WITH_NEON_BF16)
#define MBV3_ISA_NS neon_bf16
#else
#define MBV3_ISA_NS neon
#endif
namespace mbv3 { namespace MBV3_ISA_NS {
// FEAT_DotProd (SDOT), read once from the kernel's hwcap: Cortex-A76 and later, not the ARMv8.0
// A53/A55.  The int8 kernels pick their SDOT tiles with it.
inline bool has_dotprod() {
#if defined(__linux__)
  static const bool v = (getauxval(AT_HWCAP) & (1ul << 20)) != 0;  // HWCAP_ASIMDDP
  return v;
#else
  return false;
#endif
}
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
  // bf16 storage (bf16.h): widened on load, rounded to nearest even on store (NaN -> 0x7FC0).
  static inline Vec load(const bf16* p) { return widen(vld1_u16(reinterpret_cast<const uint16_t*>(p))); }
  static inline Vec load_tail(const bf16* p, int n) {
    uint16_t b[4] = {0, 0, 0, 0};
    std::memcpy(b, p, sizeof(bf16) * n);
    return widen(vld1_u16(b));
  }
  inline void store(bf16* p) const { vst1_u16(reinterpret_cast<uint16_t*>(p), narrow()); }
  inline void store_tail(bf16* p, int n) const {
    uint16_t b[4];
    vst1_u16(b, narrow());
    std::memcpy(p, b, sizeof(bf16) * n);
  }
  static inline Vec widen(uint16x4_t h) { return {vreinterpretq_f32_u32(vshll_n_u16(h, 16))}; }
  inline uint16x4_t narrow() const {
    const uint32x4_t u = vreinterpretq_u32_f32(v);
    const uint32x4_t lsb = vandq_u32(vshrq_n_u32(u, 16), vdupq_n_u32(1));
    const uint32x4_t r = vaddq_u32(u, vaddq_u32(lsb, vdupq_n_u32(0x7fff)));
    return vshrn_n_u32(vbslq_u32(vceqq_f32(v, v), r, vdupq_n_u32(uint32_t(kBf16QuietNaN) << 16)), 16);
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
struct Half { static constexpr int N = 0; };  // no narrower vector on this ISA
constexpr bool kHasHalf = false;
}}  // namespace mbv3::MBV3_ISA_NS (neon or neon_bf16)

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
  static inline Vec load(const bf16* p) { return {bf16_to_float(*p)}; }
  static inline Vec load_tail(const bf16* p, int) { return {bf16_to_float(*p)}; }
  inline void store(bf16* p) const { *p = float_to_bf16(v); }
  inline void store_tail(bf16* p, int) const { *p = float_to_bf16(v); }
};
static inline Vec fmadd(Vec a, Vec b, Vec c) { return {std::fma(a.v, b.v, c.v)}; }
static inline Vec add(Vec a, Vec b) { return {a.v + b.v}; }
static inline Vec mul(Vec a, Vec b) { return {a.v * b.v}; }
// x86 semantics (see max/min below): b unless a is strictly beyond it, so a NaN operand yields b.
static inline Vec max(Vec a, Vec b) { return {a.v > b.v ? a.v : b.v}; }
static inline Vec min(Vec a, Vec b) { return {a.v < b.v ? a.v : b.v}; }
static inline float reduce_add(Vec a) { return a.v; }
static inline void reduce_add4(Vec a, Vec b, Vec c, Vec d, float* out) {
  out[0] = a.v; out[1] = b.v; out[2] = c.v; out[3] = d.v;
}
struct Half { static constexpr int N = 0; };  // no narrower vector on this ISA
constexpr bool kHasHalf = false;
}}  // namespace mbv3::scalar

#else
#error "compile this header with exactly one MBV3_ISA_* macro defined"
#endif

namespace mbv3 { namespace MBV3_ISA_NS {
// max(a, b) / min(a, b) follow x86's maxps/minps on every ISA but NEON: when either operand is
// NaN the result is b.  So an activation puts its constant first and the value second, and a
// NaN (or inf) input comes out as PyTorch's does: relu(NaN) = NaN, hardsigmoid(NaN) = NaN.
// (NEON's vmaxq/vminq return NaN for either operand, which gives the same result here.)

// Activations shared by every fused epilogue; same formulas as PyTorch's:
// hardswish(v) = v * relu6(v + 3) / 6,  hardsigmoid(v) = relu6(v + 3) / 6.
// V is Vec or Half.
template <class V>
static inline V relu(V a) { return max(V::zero(), a); }
template <class V>
static inline V relu6_plus3(V a) {
  return min(V::set1(6.f), max(V::zero(), add(a, V::set1(3.f))));
}
// Multiplying by 1/6 instead of dividing: 6 * float(1/6) rounds to exactly 1, so both are exact
// in saturation (hardswish(v >= 3) == v), and within an ulp of PyTorch's division in between.
template <class V>
static inline V hardsigmoid(V a) { return mul(relu6_plus3(a), V::set1(1.f / 6.f)); }
template <class V>
static inline V hardswish(V a) { return mul(a, hardsigmoid(a)); }

// The one activation helper of the fused epilogues: compile-time (activate<A>(v)) and the
// dispatch from the run-time code (with_act(act, f) calls f(ActC<A>{}) with A a constant).
template <Act A>
using ActC = std::integral_constant<Act, A>;
template <Act A, class V>
static inline V activate(V v) {
  if constexpr (A == Act::Relu) return relu(v);
  else if constexpr (A == Act::Hardswish) return hardswish(v);
  else return v;
}
template <class F>
[[gnu::always_inline]] static inline decltype(auto) with_act(Act act, F&& f) {
  switch (act) {
    case Act::Relu: return f(ActC<Act::Relu>{});
    case Act::Hardswish: return f(ActC<Act::Hardswish>{});
    default: return f(ActC<Act::None>{});
  }
}

// Run-time activation, for epilogues not specialised by activation (the stem conv).
template <class V>
static inline V activate(V v, Act act) {
  return with_act(act, [v](auto a) { return activate<decltype(a)::value>(v); });
}

// The one masked-tail type: a full vector V (TAIL false) or its first n lanes (TAIL true:
// masked loads read zeros beyond n, masked stores leave memory beyond n untouched).  V is Vec,
// or Half for tails of at most Half::N.
template <class V_, bool TAIL>
struct Lanes {
  using V = V_;
  static constexpr bool kMasked = TAIL;
  int n;
  // T: float or bf16 (widened on load, rounded on store).
  template <class T>
  inline V load(const T* p) const { return TAIL ? V::load_tail(p, n) : V::load(p); }
  template <class T>
  inline void store(T* p, V v) const {
    if (TAIL) v.store_tail(p, n);
    else v.store(p);
  }
};
// The first n lanes of one Vec at run time (n >= Vec::N: all of them); T: float or bf16.
template <class T>
static inline Vec load_any(const T* p, int64_t n) {
  return n >= Vec::N ? Vec::load(p) : Vec::load_tail(p, int(n));
}
template <class T>
static inline void store_any(T* p, int64_t n, Vec v) {
  if (n >= Vec::N) v.store(p);
  else v.store_tail(p, int(n));
}
// Runs f(lanes) for a channel tail of n (1..Vec::N-1) lanes with the narrowest lanes that
// cover it.
template <class F>
static inline void with_tail_lanes(int n, F&& f) {
  if constexpr (kHasHalf) {
    if (n == Half::N) return f(Lanes<Half, false>{n});
    if (n < Half::N) return f(Lanes<Half, true>{n});
  }
  f(Lanes<Vec, true>{n});
}
}}  // namespace mbv3::MBV3_ISA_NS
