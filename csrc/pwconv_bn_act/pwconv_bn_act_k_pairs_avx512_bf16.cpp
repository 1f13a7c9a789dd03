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
}  // namespace
}  // namespace avx512_bf16
}  // namespace mbv3

#include "pwconv_bn_act_k_pairs_kernel.h"
