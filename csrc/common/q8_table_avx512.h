// The int8 ops' 256-entry activation tables (q8.h: hardswish, hardsigmoid) on AVX-512 vectors,
// for the AVX-512 units of the q8 kernels (after common/simd.h, inside the unit's ISA namespace).
#pragma once
#include <cstdint>
#include <cstdlib>

#include "common/simd.h"

#if defined(MBV3_ISA_AVX512)
namespace mbv3 {
namespace MBV3_ISA_NS {

// AVX512_VBMI (vpermi2b: a table on 64 bytes at once), read once: Cascade Lake has VNNI without
// it.  MBV3_Q8_NO_VBMI=1 turns it off, so that the tests run the other paths too.
inline bool q8_has_vbmi() {
  static const bool v = __builtin_cpu_supports("avx512vbmi") && !std::getenv("MBV3_Q8_NO_VBMI");
  return v;
}

// vpermi2b, written out: the units are not compiled for VBMI (q8_has_vbmi() guards every use).
[[gnu::always_inline]] inline __m512i q8_permi2b(__m512i idx, __m512i t0, __m512i t1) {
  asm("vpermi2b %2, %1, %0" : "+v"(idx) : "v"(t0), "v"(t1));
  return idx;
}

// One table held in registers, loaded once per call; a null table loads zeros.
struct Q8Table {
  __m512i w[8];  // as 256 uint16, 64 per register pair (vpermi2w)
  __m512i b[4];  // as 256 bytes (vpermi2b)
  explicit Q8Table(const uint8_t* table) {
    for (int i = 0; i < 8; ++i) {
      w[i] = table ? _mm512_cvtepu8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(table + 32 * i)))
                   : _mm512_setzero_si512();
      if (i < 4) b[i] = table ? _mm512_loadu_si512(table + 64 * i) : _mm512_setzero_si512();
    }
  }
  // 32 uint16 lanes with values 0..255: 4 vpermi2w (64 entries each) picked by index bits 6 and
  // 7, instead of a gather (vpgatherdd: ~2x a whole 1x1 epilogue's time).
  [[gnu::always_inline]] __m512i words(__m512i idx) const {
    const __m512i r0 = _mm512_permutex2var_epi16(w[0], idx, w[1]), r1 = _mm512_permutex2var_epi16(w[2], idx, w[3]);
    const __m512i r2 = _mm512_permutex2var_epi16(w[4], idx, w[5]), r3 = _mm512_permutex2var_epi16(w[6], idx, w[7]);
    const __mmask32 b6 = _mm512_test_epi16_mask(idx, _mm512_set1_epi16(64));
    const __mmask32 b7 = _mm512_test_epi16_mask(idx, _mm512_set1_epi16(128));
    return _mm512_mask_blend_epi16(b7, _mm512_mask_blend_epi16(b6, r0, r1), _mm512_mask_blend_epi16(b6, r2, r3));
  }
  // 64 bytes: entries 0-127 and 128-255 by index bits 0-6, picked by bit 7.  Only where
  // q8_has_vbmi().
  [[gnu::always_inline]] __m512i bytes(__m512i v) const {
    return _mm512_mask_blend_epi8(_mm512_movepi8_mask(v), q8_permi2b(v, b[0], b[1]), q8_permi2b(v, b[2], b[3]));
  }
};

}  // namespace MBV3_ISA_NS
}  // namespace mbv3
#endif
