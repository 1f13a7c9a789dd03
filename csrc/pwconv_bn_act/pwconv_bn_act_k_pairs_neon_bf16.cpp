// The NEON + FEAT_BF16 build of the K-pair (dot-product) 1x1 kernel: BFDOT, 4 lanes.
#define MBV3_ISA_NEON
#define MBV3_WITH_NEON_BF16
#define MBV3_K_PAIRS_NS neon_bf16
#include "common/simd.h"

namespace mbv3 {
namespace neon_bf16 {
namespace {
using PairVec = uint32x4_t;  // 4 x (bf16, bf16)
static inline PairVec load_pairs(const bf16* p) {
  return vreinterpretq_u32_u16(vld1q_u16(reinterpret_cast<const uint16_t*>(p)));
}
static inline PairVec bcast_pair(uint32_t pair) { return vdupq_n_u32(pair); }
static inline PairVec low_halves(PairVec v) { return vandq_u32(v, vdupq_n_u32(0xFFFF)); }
static inline Vec dot(Vec acc, PairVec a, PairVec b) {
  return {vbfdotq_f32(acc.v, vreinterpretq_bf16_u32(a), vreinterpretq_bf16_u32(b))};
}
// No narrower vector pays here: column tails take the full-width ops (kHalfPairs false).
constexpr bool kHalfPairs = false;
static inline PairVec load_pairs_half(const bf16* p) { return load_pairs(p); }
static inline Vec dot_half(Vec acc, PairVec a, PairVec b) { return dot(acc, a, b); }
}  // namespace
}  // namespace neon_bf16
}  // namespace mbv3

#include "pwconv_bn_act_k_pairs_kernel.h"
