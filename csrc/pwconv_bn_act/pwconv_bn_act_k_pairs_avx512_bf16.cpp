// The AVX512_BF16 build of the K-pair (dot-product) 1x1 kernel: vdpbf16ps, 16 lanes.
#define MBV3_ISA_AVX512
#define MBV3_WITH_AVX512BF16
#define MBV3_K_PAIRS_NS avx512_bf16
#include "common/simd.h"

namespace mbv3 {
namespace avx512_bf16 {
namespace {
using PairVec = __m512i;  // 16 x (bf16, bf16)
static inline PairVec load_pairs(const bf16* p) { return _mm512_loadu_si512(p); }
static inline PairVec bcast_pair(uint32_t pair) { return _mm512_set1_epi32(int(pair)); }
static inline PairVec low_halves(PairVec v) { return _mm512_and_si512(v, _mm512_set1_epi32(0xFFFF)); }
static inline Vec dot(Vec acc, PairVec a, PairVec b) {
  return {_mm512_dpbf16_ps(acc.v, reinterpret_cast<__m512bh&>(a), reinterpret_cast<__m512bh&>(b))};
}
// A column tail of at most 8 runs on the low 256 bits (the upper lanes are never stored): on
// cores that split 512-bit ops, a 256-bit vdpbf16ps costs half of a 512-bit one.
constexpr bool kHalfPairs = true;
static inline PairVec load_pairs_half(const bf16* p) {
  return _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
static inline Vec dot_half(Vec acc, PairVec a, PairVec b) {
  const __m256i a8 = _mm512_castsi512_si256(a), b8 = _mm512_castsi512_si256(b);
  return {_mm512_castps256_ps512(_mm256_dpbf16_ps(_mm512_castps512_ps256(acc.v), reinterpret_cast<const __m256bh&>(a8),
                                                  reinterpret_cast<const __m256bh&>(b8)))};
}
}  // namespace
}  // namespace avx512_bf16
}  // namespace mbv3

#include "pwconv_bn_act_k_pairs_kernel.h"
