// The int8 1x1 conv kernel, compiled once per ISA (q8_pwconv_act_<isa>.cpp).
//
// GEMM y[M, Cout] = A[M, K] * W[K, Cout] over the packed weight (q8_pwconv_act.h), with
// sum (A - x_zp) * w = sum A * w - x_zp * colsum exact in int32; the binding folds
// bias_int - x_zp * colsum into one per-column term.  Epilogue in the float operations and order
// of q8.h (requantize, table, add), then the store.  The requantization mode (q8.h: Fbgemm or
// Onednn) is a template parameter of the tiles and epilogues, picked once per call; in Onednn
// mode the epilogue constants hold the absolute clamp bounds and a zero point of 0 (the rule
// adds the zero point in float before rounding).
//   avx512_vnni: vpdpbusd (u8 x s8, 4 products into int32), tile MR = 6 rows x 64 columns (a
//   last 8 by ymm; 8 rows of one 16-column vector), the sums starting at the per-column term;
//   each row's 64 results packed to bytes by saturating packs, which also do the clamps they
//   can, and stored at once; narrow rows (24 columns or fewer, or a last vector of 8 or fewer)
//   share the packs, the permutation and the store with their neighbours (epilogue_group,
//   epilogue_pair_wide), two rows' last 8 columns joined in one vector of float steps; the table
//   on those 64 bytes by vpermi2b where the CPU has AVX512_VBMI, else by vpermi2w per 16.  SE
//   scale: one exact fma per value from per-sample factors.
//   avx2: rows widened to int16, weights widened on load, vpmaddwd (exact), tile 6 x 8.
//   neon: rows widened to int16, vmlal_lane (ARMv8.0, exact); with FEAT_DotProd (run-time
//   hwcap) SDOT on A - 128 plus 128 * colsum; tile 4 x 16.
//   scalar: q8.h's functions element by element (the reference path).
// A is read in place when K % 4 == 0 and there is no SE scale; otherwise the call's rows are
// copied (SE-scaled, zero padded to whole groups of 4) into a per-thread buffer first.
#pragma once
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <type_traits>
#include <vector>


#include "common/simd.h"
#include "common/q8_table_avx512.h"
#include "q8_pwconv_act.h"

// GCC's partial redundancy elimination keeps a stack copy of the accumulator array, stored on
// every K step; without it the tile's sums stay in registers.
#define MBV3_Q8_TILE_OPT __attribute__((optimize("no-tree-pre")))

namespace mbv3 {
namespace MBV3_ISA_NS {
namespace {

inline int64_t sample_of(const Q8PwArgs& p, int64_t m) { return m / p.HW; }

#if defined(MBV3_ISA_AVX512)
constexpr int kMR = 6;

inline void plain_row(const Q8PwArgs& p, const uint8_t* x, uint8_t* out, int64_t K4) {
  std::memcpy(out, x, p.K);
  std::memset(out + p.K, 0, K4 * 4 - p.K);
}

// The epilogue's constants, broadcast once per call (memory operands in the loop).
struct Epi {
  Q8Table table;
  __m512 lo, hi, a_scale, a_offset, b_scale, b_offset, inv_scale, add_lo, add_hi, zpf;
  __m512 rq_src, rq_inv, rq_zpf;  // Onednn mode: its scales and the zero point, added before rounding
  __m512i zp, add_zp, a_mult, b_mult, zp_product, rem_mask, threshold;
  __m512i zpw, add_zpw, lo8, hi8, order;
  __m128i shift;
  bool float_add;
};

inline Epi make_epi(const Q8PwArgs& p) {
  const Q8Add& a = p.add;
  const int32_t mask = static_cast<int32_t>((1u << a.shift) - 1u);
  const bool od = p.rq.mode == Q8RequantMode::Onednn;
  const int32_t zp = od ? 0 : p.rq.zp;  // the zero point added after rounding
  Epi e{Q8Table(p.rq.lut), _mm512_set1_ps(static_cast<float>(p.rq.lo - zp)), _mm512_set1_ps(static_cast<float>(p.rq.hi - zp)),
        _mm512_set1_ps(a.a_scale), _mm512_set1_ps(a.a_offset), _mm512_set1_ps(a.b_scale),
        _mm512_set1_ps(a.b_offset), _mm512_set1_ps(a.inv_scale), _mm512_set1_ps(static_cast<float>(-a.zp)),
        _mm512_set1_ps(static_cast<float>(255 - a.zp)), _mm512_set1_ps(static_cast<float>(zp)),
        _mm512_set1_ps(p.rq.src_scale), _mm512_set1_ps(p.rq.inv_scale), _mm512_set1_ps(static_cast<float>(p.rq.zp)),
        _mm512_set1_epi32(zp), _mm512_set1_epi32(a.zp),
        _mm512_set1_epi32(a.a_mult), _mm512_set1_epi32(a.b_mult), _mm512_set1_epi32(a.zp_product),
        _mm512_set1_epi32(mask), _mm512_set1_epi32(mask >> 1),
        _mm512_set1_epi16(static_cast<int16_t>(zp)), _mm512_set1_epi16(static_cast<int16_t>(a.zp)),
        _mm512_set1_epi8(static_cast<char>(p.rq.lo)), _mm512_set1_epi8(static_cast<char>(p.rq.hi)),
        _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15),
        _mm_cvtsi32_si128(a.shift), a.mode == Q8AddMode::Float};
  return e;
}

// The table on 16 int32 values in [0, 255].
[[gnu::always_inline]] inline __m512i lookup(const Epi& e, __m512i q) {
  const __m512i idx = _mm512_castsi256_si512(_mm512_cvtepi32_epi16(q));  // upper half: unused lanes
  return _mm512_cvtepu16_epi32(_mm512_castsi512_si256(e.table.words(idx)));
}

// Four vectors of int32 to 64 bytes, + zpw (int16, saturating), saturated to [0, 255].  The packs
// work per 128-bit lane: dword 4L + j of the result holds vector j's values 4L..4L+3; e.order
// puts them back in column order (elementwise steps may come between).
// NV <= 2: only vectors 0 and 1 are used (bytes 32-63 are left over).
// NO_ZP: zpw is known to be 0 (the Onednn mode's fast epilogue), no adds.
template <int NV = 4, bool NO_ZP = false>
[[gnu::always_inline]] inline __m512i pack_bytes(const __m512i* q, __m512i zpw) {
  const __m512i ab = NO_ZP ? _mm512_packs_epi32(q[0], q[1]) : _mm512_adds_epi16(_mm512_packs_epi32(q[0], q[1]), zpw);
  const __m512i cd = NV <= 2 ? ab : NO_ZP ? _mm512_packs_epi32(q[2], q[3]) : _mm512_adds_epi16(_mm512_packs_epi32(q[2], q[3]), zpw);
  return _mm512_packus_epi16(ab, cd);
}

// The first nn bytes of b (in column order) to y: plain stores of 32 / 16 / 8 bytes, a masked one
// only for the last nn % 8 (masked stores cost more).
[[gnu::always_inline]] inline void store_bytes(uint8_t* y, __m512i b, int64_t nn) {
  if (nn >= 64) {
    _mm512_storeu_si512(y, b);
    return;
  }
  __m256i h = _mm512_castsi512_si256(b);
  if (nn >= 32) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(y), h);
    h = _mm512_extracti64x4_epi64(b, 1);
    y += 32, nn -= 32;
  }
  __m128i x = _mm256_castsi256_si128(h);
  if (nn >= 16) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y), x);
    x = _mm256_extracti128_si256(h, 1);
    y += 16, nn -= 16;
  }
  if (nn >= 8) {
    _mm_storel_epi64(reinterpret_cast<__m128i*>(y), x);
    x = _mm_srli_si128(x, 8);
    y += 8, nn -= 8;
  }
  if (nn > 0) _mm_mask_storeu_epi8(y, static_cast<__mmask16>((1u << nn) - 1u), x);
}

[[gnu::always_inline]] inline void store_row(const Epi& e, uint8_t* y, __m512i b, int64_t nn) {
  store_bytes(y, _mm512_permutexvar_epi32(e.order, b), nn);
}

// q8_mul's product (x - a_zp) * (s - b_zp) as x * sb + nsb, one fma with sb = s - b_zp and
// nsb = -a_zp * sb per channel (float, once per sample): exact, as every value is an integer
// under 2^24 in magnitude.
inline void se_factors(const Q8PwArgs& p, const uint8_t* s, float* sb, float* nsb) {
  const __m512i bzp = _mm512_set1_epi32(p.mul.b_zp);
  const __m512 nazp = _mm512_set1_ps(static_cast<float>(-p.mul.a_zp));
  for (int64_t k = 0; k < p.K; k += 16) {
    const __mmask16 mk = static_cast<__mmask16>(p.K - k >= 16 ? 0xFFFFu : (1u << (p.K - k)) - 1u);
    const __m512 b = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(mk, s + k)), bzp));
    _mm512_mask_storeu_ps(sb + k, mk, b);
    _mm512_mask_storeu_ps(nsb + k, mk, _mm512_mul_ps(b, nazp));
  }
}

// One row of A = q8_mul(x, se) into out (K4 * 4 bytes, padding zero), 64 values per store.  The
// lower clamp (-zp) is left to the saturating packs, as in epilogue_row.
inline void scale_row(const Q8PwArgs& p, const uint8_t* x, const float* sb, const float* nsb, uint8_t* out, int64_t K4) {
  const __m512 mult = _mm512_set1_ps(p.mul.multiplier), hi = _mm512_set1_ps(static_cast<float>(255 - p.mul.zp));
  const __m512i zpw = _mm512_set1_epi16(static_cast<int16_t>(p.mul.zp));
  const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  for (int64_t k = 0; k < K4 * 4; k += 64) {
    __m512i q[4];
#pragma GCC unroll 4
    for (int v = 0; v < 4; ++v) {
      const int64_t kv = k + 16 * v, left = p.K - kv;
      const __mmask16 mk = static_cast<__mmask16>(left >= 16 ? 0xFFFFu : left > 0 ? (1u << left) - 1u : 0u);
      const __m512 a = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(mk, x + kv)));
      const __m512 c = _mm512_fmadd_ps(a, _mm512_maskz_loadu_ps(mk, sb + kv), _mm512_maskz_loadu_ps(mk, nsb + kv));
      q[v] = _mm512_cvtps_epi32(_mm512_min_ps(_mm512_mul_ps(c, mult), hi));
    }
    const __m512i bytes = _mm512_permutexvar_epi32(order, pack_bytes(q, zpw));
    const int64_t valid = std::min<int64_t>(64, p.K - k), size = std::min<int64_t>(64, K4 * 4 - k);
    _mm512_mask_storeu_epi8(out + k, _cvtu64_mask64(size >= 64 ? ~0ull : (1ull << size) - 1ull),
                            _mm512_maskz_mov_epi8(_cvtu64_mask64(valid >= 64 ? ~0ull : (1ull << valid) - 1ull), bytes));
  }
}

// The epilogue kinds: no residual and no table; no residual and the table by vpermi2b; any other
// (residual, or the table without VBMI).  kInRange, with kPlain or kLut8: no float value can
// reach 2^30 (sums_in_range), so cvtps2dq needs no clamp before it.
// kOnednn: the Onednn requantization mode (q8.h), with any of the others.
enum Kind : int { kPlain = 0, kLut8 = 1, kGeneral = 2, kInRange = 4, kOnednn = 8 };

// The requantized value before rounding (the zero point included in Onednn mode), in q8.h's
// float operations and order.
template <int KIND>
[[gnu::always_inline]] inline __m512 requant_v(const Epi& e, __m512i acc, __m512 bf, __m512 m) {
  if constexpr ((KIND & kOnednn) != 0) {
    const __m512 a = _mm512_mul_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(acc), e.rq_src), m);
    return _mm512_add_ps(_mm512_mul_ps(_mm512_add_ps(a, bf), e.rq_inv), e.rq_zpf);
  } else {
    return _mm512_mul_ps(_mm512_add_ps(_mm512_cvtepi32_ps(acc), bf), m);
  }
}

// Whether |(float(sum) + bias_float) * multiplier| (Onednn: |(sum * multiplier + bias_float) *
// inv_scale + zp|) < 2^30 for every sum the layer can make (|sum| <= 255 * 128 * K +
// |bias_int|), with a wide margin for the float roundings.
inline bool sums_in_range(const Q8PwArgs& p) {
  if (p.rq.mode == Q8RequantMode::Onednn) {
    const double s = 255.0 * 128.0 * static_cast<double>(p.K);
    for (int64_t n = 0; n < p.Cout; ++n) {
      const double v = ((s + std::abs(double(p.rq.bias_int[n]))) * double(p.rq.src_scale) *
                            std::abs(double(p.rq.multiplier[n])) +
                        std::abs(double(p.rq.bias_float[n]))) * double(p.rq.inv_scale) + 256.0;
      if (!(v < 0x1p29)) return false;  // also NaN / inf
    }
    return true;
  }
  const __m512 s = _mm512_set1_ps(255.0f * 128.0f * static_cast<float>(p.K)), limit = _mm512_set1_ps(0x1p30f);
  __mmask16 out = 0;
  for (int64_t n = 0; n < p.Cout; n += 16) {
    const __mmask16 mk = static_cast<__mmask16>(p.Cout - n >= 16 ? 0xFFFFu : (1u << (p.Cout - n)) - 1u);
    const __m512 bi = _mm512_cvtepi32_ps(_mm512_abs_epi32(_mm512_maskz_loadu_epi32(mk, p.rq.bias_int + n)));
    const __m512 v = _mm512_mul_ps(_mm512_add_ps(_mm512_add_ps(s, bi), _mm512_abs_ps(_mm512_maskz_loadu_ps(mk, p.rq.bias_float + n))),
                                   _mm512_abs_ps(_mm512_maskz_loadu_ps(mk, p.rq.multiplier + n)));
    out |= _mm512_mask_cmp_ps_mask(mk, v, limit, _CMP_NLT_UQ);  // also NaN / inf
  }
  return out == 0;
}

// kGeneral's values for 16 lanes from the requantized f: clamp, table / rne, the add with the
// residual bytes rb, in q8.h's float steps.  The add's lower clamp is left to the saturating
// packs (see epilogue_row); the float add's zp comes with them too (general_zpw).
template <int KIND>
[[gnu::always_inline]] inline __m512i general_q(const Q8PwArgs& p, const Epi& e, __m512 f, __m128i rb) {
  f = _mm512_min_ps(_mm512_max_ps(f, e.lo), e.hi);
  if (!p.residual) return lookup(e, _mm512_add_epi32(_mm512_cvtps_epi32(f), e.zp));  // the table alone (without VBMI)
  // The block's output as float: rne in float plus zp is exact (small integers).  Onednn mode:
  // zp is 0 there and f >= lo >= +0 after the clamp (no -0), so the add is left out.
  __m512 qf;
  if (p.lut32) qf = _mm512_cvtepi32_ps(lookup(e, _mm512_add_epi32(_mm512_cvtps_epi32(f), e.zp)));
  else if constexpr ((KIND & kOnednn) != 0) qf = _mm512_roundscale_ps(f, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  else qf = _mm512_add_ps(_mm512_roundscale_ps(f, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), e.zpf);
  const __m512i b = _mm512_cvtepu8_epi32(rb);
  if (e.float_add) {
    const __m512 da = _mm512_fmadd_ps(qf, e.a_scale, e.a_offset);
    const __m512 db = _mm512_fmadd_ps(_mm512_cvtepi32_ps(b), e.b_scale, e.b_offset);
    return _mm512_cvtps_epi32(_mm512_min_ps(_mm512_mul_ps(_mm512_add_ps(da, db), e.inv_scale), e.add_hi));
  }
  const __m512i t = _mm512_add_epi32(
      _mm512_add_epi32(_mm512_mullo_epi32(_mm512_cvtps_epi32(qf), e.a_mult), _mm512_mullo_epi32(b, e.b_mult)),
      e.zp_product);
  const __m512i rem = _mm512_add_epi32(_mm512_and_si512(t, e.rem_mask), _mm512_srai_epi32(t, 31));
  const __m512i r = _mm512_add_epi32(_mm512_sra_epi32(t, e.shift), e.add_zp);
  return _mm512_mask_add_epi32(r, _mm512_cmpgt_epi32_mask(rem, e.threshold), r, _mm512_set1_epi32(1));
}

// Float add: + its zp in the packs; otherwise the values are final (the packs saturate to [0, 255]).
inline __m512i general_zpw(const Q8PwArgs& p, const Epi& e) {
  return p.residual && e.float_add ? e.add_zpw : _mm512_setzero_si512();
}

// Up to 16 residual bytes (cnt valid; only read where p.residual).
[[gnu::always_inline]] inline __m128i load16(const uint8_t* r, int64_t cnt) {
  return cnt >= 16 ? _mm_loadu_si128(reinterpret_cast<const __m128i*>(r))
                   : _mm_maskz_loadu_epi8(static_cast<__mmask16>((1u << cnt) - 1u), r);
}

// Two rows' cnt <= 8 residual bytes into the two halves.
[[gnu::always_inline]] inline __m128i load8x2(const uint8_t* r0, const uint8_t* r1, int64_t cnt) {
  if (cnt >= 8)
    return _mm_unpacklo_epi64(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(r0)),
                              _mm_loadl_epi64(reinterpret_cast<const __m128i*>(r1)));
  const __mmask16 k = static_cast<__mmask16>((1u << cnt) - 1u);
  return _mm_unpacklo_epi64(_mm_maskz_loadu_epi8(k, r0), _mm_maskz_loadu_epi8(k, r1));
}

// Several rows' outputs through one pack, permute and store, where a row's are 24 bytes or fewer:
//   G4: NV = 1, 9..16 columns: 4 rows, one vector each;
//   P4: NV = 1, 8 columns or fewer (HALF): 4 rows in 2 vectors, 2 rows' 8 columns per vector;
//   P2: NV = 2, 17..24 columns (HALF): 2 rows in 3 vectors, both rows' last 8 columns in one.
// The packed dword 4L + j holds vector j's values 4L..4L+3 (pack_bytes); the permutation puts the
// rows one after another, either back to back (the rows fill y contiguously: Cout == nn == 16, 8
// or 24: one store) or each in its own 16 / 16 / 32-byte part (stored row by row).
enum Group : int { kG4 = 0, kP4 = 1, kP2 = 2 };

template <int G>
constexpr int group_rows() { return G == kP2 ? 2 : 4; }
template <int G>
constexpr int64_t group_row_bytes() { return G == kG4 ? 16 : G == kP4 ? 8 : 24; }

template <int G>
[[gnu::always_inline]] inline __m512i group_order(bool tight) {
  if constexpr (G == kG4) return _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  if constexpr (G == kP4)
    return tight ? _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 0, 0, 0, 0, 0, 0, 0, 0)
                 : _mm512_setr_epi32(0, 4, 0, 0, 8, 12, 0, 0, 1, 5, 0, 0, 9, 13, 0, 0);
  return tight ? _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 2, 6, 10, 14, 9, 13, 0, 0, 0, 0)
               : _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 0, 0, 2, 6, 10, 14, 9, 13, 0, 0);
}

// The low 8 columns of a row r0 and of a row r1 in one vector.
[[gnu::always_inline]] inline __m512i join8(__m512i r0, __m512i r1) {
  return _mm512_inserti64x4(r0, _mm512_castsi512_si256(r1), 1);
}
[[gnu::always_inline]] inline __m512 dup8(const float* v) { return _mm512_broadcast_f32x8(_mm256_loadu_ps(v)); }

// NQ <= 4 vectors of sums (their per-column terms bfv / mv, residual bytes rb) to 64 bytes (pack_bytes'
// order), every step of the row epilogues but the permutation and the store.
template <int NQ, int KIND>
[[gnu::always_inline]] inline __m512i group_bytes(const Q8PwArgs& p, const Epi& e, const __m512i* v, const __m512* bfv,
                                                  const __m512* mv, const __m128i* rb) {
  constexpr bool kGen = (KIND & 3) == kGeneral;
  __m512i q[4];
#pragma GCC unroll 4
  for (int i = 0; i < 4; ++i) {
    if (i >= NQ) {
      q[i] = _mm512_setzero_si512();
      continue;
    }
    const __m512 f = requant_v<KIND>(e, v[i], bfv[i], mv[i]);
    if constexpr (kGen) q[i] = general_q<KIND>(p, e, f, rb[i]);
    else q[i] = _mm512_cvtps_epi32(KIND & kInRange ? f : _mm512_min_ps(f, e.hi));
  }
  if constexpr (kGen) return pack_bytes<NQ>(q, general_zpw(p, e));
  __m512i b = _mm512_max_epu8(pack_bytes<NQ, (KIND & kOnednn) != 0>(q, e.zpw), e.lo8);
  if constexpr ((KIND & kInRange) != 0) b = _mm512_min_epu8(b, e.hi8);
  if constexpr ((KIND & 3) == kLut8) b = e.table.bytes(b);
  return b;
}

// One row of NV vectors (acc holds fold already): its per-column terms and residual bytes
// loaded, group_bytes, one store.  In kPlain / kLut8, only the upper clamp is done in float: it
// keeps cvtps2dq in range; a value under lo - zp converts to an int32 that the saturating packs
// and the max with lo bring to lo (clamping before or after rne is the same).
template <int NV, int KIND>
[[gnu::always_inline]] inline void epilogue_row(const Q8PwArgs& p, const Epi& e, const __m512i* acc, int64_t m,
                                                int64_t n0, int64_t nn) {
  __m512 bfv[4], mv[4];
  __m128i rb[4];
#pragma GCC unroll 4
  for (int v = 0; v < NV; ++v) {
    const int64_t c = n0 + 16 * v;
    bfv[v] = _mm512_loadu_ps(p.rq.bias_float + c), mv[v] = _mm512_loadu_ps(p.rq.multiplier + c);
    rb[v] = (KIND & 3) == kGeneral && p.residual ? load16(p.residual + m * p.Cout + c, v + 1 < NV ? 16 : nn - 16 * v)
                                                 : _mm_setzero_si128();
  }
  store_row(e, p.y + m * p.Cout + n0, group_bytes<NV, KIND>(p, e, acc, bfv, mv, rb), nn);
}

// Where column quad L of slot s lands after group_bytes of slots 0-3 (dwords 0-15) and 4-7 (16-31).
constexpr int slot_dword(int s, int L) { return 16 * (s / 4) + 4 * L + s % 4; }

// The vpermt2d indices of a wide pair (below): row 0's or row 1's dwords in column order.
template <int F>
struct PairOrder {
  alignas(64) int32_t idx[2][16];
  constexpr PairOrder() : idx{} {
    for (int r = 0; r < 2; ++r) {
      for (int v = 0; v < F; ++v)
        for (int L = 0; L < 4; ++L) idx[r][4 * v + L] = slot_dword(r ? F + 1 + v : v, L);
      idx[r][4 * F] = slot_dword(F, 2 * r);
      idx[r][4 * F + 1] = slot_dword(F, 2 * r + 1);
    }
  }
};

// Two rows of NV = 3 or 4 vectors whose last holds 8 columns or fewer (HALF: 40, 56 columns):
// both rows' last 8 columns joined in one vector, 2 * NV - 1 vectors in all (slots: row 0's
// full vectors, the joined one, row 1's full vectors), packed as two groups of 4 and put in
// column order per row by vpermt2d.
template <int NV, int KIND>
[[gnu::always_inline]] inline void epilogue_pair_wide(const Q8PwArgs& p, const Epi& e, const __m512i (*acc)[NV], int64_t m,
                                                      int64_t n0, int64_t nn) {
  constexpr int F = NV - 1, NS = 2 * NV - 1;
  static constexpr PairOrder<F> kOrder{};
  const float* bf = p.rq.bias_float + n0;
  const float* mu = p.rq.multiplier + n0;
  const int64_t C = p.Cout;
  const uint8_t* res = p.residual ? p.residual + m * C + n0 : nullptr;
  constexpr bool kGen = (KIND & 3) == kGeneral;
  __m512i v[8];
  __m512 bfv[8], mv[8];
  __m128i rb[8];
#pragma GCC unroll 8
  for (int s = 0; s < 8; ++s) {
    rb[s] = _mm_setzero_si128();
    if (s >= NS) {
      v[s] = _mm512_setzero_si512(), bfv[s] = mv[s] = _mm512_setzero_ps();
      continue;
    }
    if (s == F) {
      v[s] = join8(acc[0][F], acc[1][F]), bfv[s] = dup8(bf + 16 * F), mv[s] = dup8(mu + 16 * F);
      if (kGen && res) rb[s] = load8x2(res + 16 * F, res + C + 16 * F, nn - 16 * F);
      continue;
    }
    const int r = s < F ? 0 : 1, c = s < F ? s : s - F - 1;
    v[s] = acc[r][c], bfv[s] = _mm512_loadu_ps(bf + 16 * c), mv[s] = _mm512_loadu_ps(mu + 16 * c);
    if (kGen && res) rb[s] = load16(res + r * C + 16 * c, 16);
  }
  const __m512i a = group_bytes<4, KIND>(p, e, v, bfv, mv, rb);
  const __m512i b = group_bytes<NS - 4, KIND>(p, e, v + 4, bfv + 4, mv + 4, rb + 4);
  uint8_t* y = p.y + m * C + n0;
  store_bytes(y, _mm512_permutex2var_epi32(a, _mm512_load_si512(kOrder.idx[0]), b), nn);
  store_bytes(y + C, _mm512_permutex2var_epi32(a, _mm512_load_si512(kOrder.idx[1]), b), nn);
}

template <int G, int NV, int KIND>
[[gnu::always_inline]] inline void epilogue_group(const Q8PwArgs& p, const Epi& e, const __m512i (*acc)[NV], int64_t m,
                                                  int64_t n0, int64_t nn) {
  constexpr int NQ = G == kG4 ? 4 : G == kP4 ? 2 : 3;
  const float* bf = p.rq.bias_float + n0;
  const float* mu = p.rq.multiplier + n0;
  const int64_t C = p.Cout;
  const uint8_t* res = p.residual ? p.residual + m * C + n0 : nullptr;
  constexpr bool kGen = (KIND & 3) == kGeneral;
  __m512i v[4];
  __m512 bfv[4], mv[4];
  __m128i rb[4] = {_mm_setzero_si128(), _mm_setzero_si128(), _mm_setzero_si128(), _mm_setzero_si128()};
  if constexpr (G == kG4) {
#pragma GCC unroll 4
    for (int r = 0; r < 4; ++r) {
      v[r] = acc[r][0], bfv[r] = _mm512_loadu_ps(bf), mv[r] = _mm512_loadu_ps(mu);
      if (kGen && res) rb[r] = load16(res + r * C, nn);
    }
  } else if constexpr (G == kP4) {
#pragma GCC unroll 2
    for (int i = 0; i < 2; ++i) {
      v[i] = join8(acc[2 * i][0], acc[2 * i + 1][0]), bfv[i] = dup8(bf), mv[i] = dup8(mu);
      if (kGen && res) rb[i] = load8x2(res + 2 * i * C, res + (2 * i + 1) * C, nn);
    }
  } else {
    v[0] = acc[0][0], v[1] = join8(acc[0][1], acc[1][1]), v[2] = acc[1][0];
    bfv[0] = bfv[2] = _mm512_loadu_ps(bf), mv[0] = mv[2] = _mm512_loadu_ps(mu);
    bfv[1] = dup8(bf + 16), mv[1] = dup8(mu + 16);
    if (kGen && res) rb[0] = load16(res, 16), rb[2] = load16(res + C, 16), rb[1] = load8x2(res + 16, res + C + 16, nn - 16);
  }
  __m512i b = group_bytes<NQ, KIND>(p, e, v, bfv, mv, rb);
  constexpr int R = group_rows<G>();
  constexpr int64_t RB = group_row_bytes<G>();
  uint8_t* y = p.y + m * C + n0;
  const bool tight = nn == RB && C == RB;
  b = _mm512_permutexvar_epi32(group_order<G>(tight), b);
  if (tight) {
    store_bytes(y, b, R * RB);
    return;
  }
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) {
    if constexpr (G == kP2) store_bytes(y + r * C, _mm512_castsi256_si512(r ? _mm512_extracti64x4_epi64(b, 1) : _mm512_castsi512_si256(b)), nn);
    else store_bytes(y + r * C, _mm512_castsi128_si512(_mm512_extracti32x4_epi32(b, r)), nn);
  }
}

// MR rows (a: the first row's A, row stride lda) x NV vectors of 16 columns from n0, nn valid.
// The sums start at fold (bias_int - x_zp * colsum).  HALF: the last vector holds 8 columns
// (Cout = 24, 40, 72, ...): its products by ymm vpdpbusd, half the work where the CPU splits
// 512-bit operations (Zen 4); the epilogue runs on the whole vector, its upper lanes unused.
template <int MR, int NV, bool HALF, int KIND>
[[gnu::noinline]] MBV3_Q8_TILE_OPT void tile(const Q8PwArgs& p, const Epi& e, const uint8_t* a, int64_t lda, int64_t m, int64_t n0, int64_t nn) {
  __m512i acc[MR][NV];
#pragma GCC unroll 8
  for (int v = 0; v < NV; ++v) {
    const __m512i f = _mm512_loadu_si512(p.fold + n0 + 16 * v);
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) acc[r][v] = f;
  }
  const int64_t K4 = (p.K + 3) / 4, step = 4 * p.ldw;
  const int8_t* w = p.w + 4 * n0;
  for (int64_t k4 = 0; k4 < K4; ++k4, w += step) {
    __m512i wv[NV];
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v)
      wv[v] = HALF && v == NV - 1 ? _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 64 * v)))
                                  : _mm512_loadu_si512(w + 64 * v);
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      int32_t av;
      std::memcpy(&av, a + r * lda + 4 * k4, 4);
      const __m512i b = _mm512_set1_epi32(av);
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) {
        if (HALF && v == NV - 1)
          acc[r][v] = _mm512_castsi256_si512(_mm256_dpbusd_epi32(
              _mm512_castsi512_si256(acc[r][v]), _mm512_castsi512_si256(b), _mm512_castsi512_si256(wv[v])));
        else
          acc[r][v] = _mm512_dpbusd_epi32(acc[r][v], b, wv[v]);
      }
    }
  }
  constexpr int G = NV == 1 ? (HALF ? kP4 : kG4) : kP2;
  constexpr bool kGrouped = NV == 1 || (NV == 2 && HALF), kWide = NV > 2 && HALF;
  constexpr int GR = kGrouped ? group_rows<G>() : kWide ? 2 : MR + 1;
#pragma GCC unroll 8
  for (int r = 0; r + GR <= MR; r += GR) {
    if constexpr (kWide) epilogue_pair_wide<NV, KIND>(p, e, acc + r, m + r, n0, nn);
    else epilogue_group<G, NV, KIND>(p, e, acc + r, m + r, n0, nn);
  }
#pragma GCC unroll 8
  for (int r = MR / GR * GR; r < MR; ++r) {
    epilogue_row<NV, KIND>(p, e, acc[r], m + r, n0, nn);
  }
}

// Rows per tile: 8 for one vector of columns (two groups of 4), else 6.
template <int NV>
constexpr int tile_rows() { return NV == 1 ? 8 : kMR; }

template <int NV, bool HALF, int KIND>
inline void rows(const Q8PwArgs& p, const Epi& e, const uint8_t* a, int64_t lda, int64_t m0, int64_t m1, int64_t n0, int64_t nn) {
  constexpr int MR = tile_rows<NV>();
  int64_t m = m0;
  for (; m + MR <= m1; m += MR) tile<MR, NV, HALF, KIND>(p, e, a + (m - m0) * lda, lda, m, n0, nn);
  const uint8_t* at = a + (m - m0) * lda;
  switch (m1 - m) {
    case 7: if constexpr (MR > 7) tile<7, NV, HALF, KIND>(p, e, at, lda, m, n0, nn); break;
    case 6: if constexpr (MR > 6) tile<6, NV, HALF, KIND>(p, e, at, lda, m, n0, nn); break;
    case 5: tile<5, NV, HALF, KIND>(p, e, at, lda, m, n0, nn); break;
    case 4: tile<4, NV, HALF, KIND>(p, e, at, lda, m, n0, nn); break;
    case 3: tile<3, NV, HALF, KIND>(p, e, at, lda, m, n0, nn); break;
    case 2: tile<2, NV, HALF, KIND>(p, e, at, lda, m, n0, nn); break;
    case 1: tile<1, NV, HALF, KIND>(p, e, at, lda, m, n0, nn); break;
    default: break;
  }
}

template <int NV, int KIND>
inline void rows_nv(const Q8PwArgs& p, const Epi& e, const uint8_t* a, int64_t lda, int64_t m0, int64_t m1, int64_t n0, int64_t nn) {
  if (nn - 16 * (NV - 1) <= 8) rows<NV, true, KIND>(p, e, a, lda, m0, m1, n0, nn);
  else rows<NV, false, KIND>(p, e, a, lda, m0, m1, n0, nn);
}

template <int KIND>
inline void gemm_kind(const Q8PwArgs& p, const Epi& e, const uint8_t* a, int64_t lda, int64_t m0, int64_t m1,
                      int64_t n_begin, int64_t n_end) {
  for (int64_t n0 = n_begin; n0 < n_end; n0 += 64) {
    const int64_t nn = std::min<int64_t>(64, n_end - n0);
    switch ((nn + 15) / 16) {
      case 4: rows_nv<4, KIND>(p, e, a, lda, m0, m1, n0, nn); break;
      case 3: rows_nv<3, KIND>(p, e, a, lda, m0, m1, n0, nn); break;
      case 2: rows_nv<2, KIND>(p, e, a, lda, m0, m1, n0, nn); break;
      default: rows_nv<1, KIND>(p, e, a, lda, m0, m1, n0, nn); break;
    }
  }
}

template <int MODE>  // 0 or kOnednn
inline void gemm_mode(const Q8PwArgs& p, const Epi& e, const uint8_t* a, int64_t lda, int64_t m0, int64_t m1,
                      int64_t n_begin, int64_t n_end) {
  if (p.residual || (p.lut32 && !q8_has_vbmi())) {
    gemm_kind<kGeneral | MODE>(p, e, a, lda, m0, m1, n_begin, n_end);
    return;
  }
  const bool in_range = sums_in_range(p);
  if (p.lut32) {
    if (in_range) gemm_kind<kLut8 | kInRange | MODE>(p, e, a, lda, m0, m1, n_begin, n_end);
    else gemm_kind<kLut8 | MODE>(p, e, a, lda, m0, m1, n_begin, n_end);
  } else {
    if (in_range) gemm_kind<kPlain | kInRange | MODE>(p, e, a, lda, m0, m1, n_begin, n_end);
    else gemm_kind<kPlain | MODE>(p, e, a, lda, m0, m1, n_begin, n_end);
  }
}

inline void gemm(const Q8PwArgs& p, const uint8_t* a, int64_t lda, int64_t m0, int64_t m1, int64_t n_begin,
                 int64_t n_end) {
  const Epi e = make_epi(p);
  if (p.rq.mode == Q8RequantMode::Onednn) gemm_mode<kOnednn>(p, e, a, lda, m0, m1, n_begin, n_end);
  else gemm_mode<0>(p, e, a, lda, m0, m1, n_begin, n_end);
}

#elif defined(MBV3_ISA_AVX2)
constexpr int kMR = 6;

// One row of A (q8_mul(x, se) with se) widened to int16 into out (K4 * 4 values, padding zero).
inline void widen_row(const Q8PwArgs& p, const uint8_t* x, const uint8_t* s, int16_t* out, int64_t K4) {
  int64_t k = 0;
  if (s) {
    const __m256i azp = _mm256_set1_epi32(p.mul.a_zp), bzp = _mm256_set1_epi32(p.mul.b_zp);
    const __m256i zp = _mm256_set1_epi32(p.mul.zp);
    const __m256 mult = _mm256_set1_ps(p.mul.multiplier), lo = _mm256_set1_ps(static_cast<float>(-p.mul.zp)),
                 hi = _mm256_set1_ps(static_cast<float>(255 - p.mul.zp));
    for (; k + 8 <= p.K; k += 8) {
      __m128i xa, sb;
      xa = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(x + k));
      sb = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(s + k));
      const __m256i c = _mm256_mullo_epi32(_mm256_sub_epi32(_mm256_cvtepu8_epi32(xa), azp),
                                           _mm256_sub_epi32(_mm256_cvtepu8_epi32(sb), bzp));
      __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(c), mult);
      v = _mm256_min_ps(_mm256_max_ps(v, lo), hi);
      const __m256i q = _mm256_add_epi32(_mm256_cvtps_epi32(v), zp);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(out + k),
                       _mm_packs_epi32(_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1)));
    }
    for (; k < p.K; ++k) out[k] = q8_mul(x[k], s[k], p.mul);
  } else {
    for (; k + 16 <= p.K; k += 16)
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + k),
                          _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + k))));
    for (; k < p.K; ++k) out[k] = x[k];
  }
  for (; k < K4 * 4; ++k) out[k] = 0;
}

// The epilogue's constants, broadcast once per call (memory operands in the loop).
struct Epi {
  __m256 lo, hi, a_scale, a_offset, b_scale, b_offset, inv_scale, add_lo, add_hi;
  __m256 rq_src, rq_inv, rq_zpf;  // Onednn mode: its scales and the zero point, added before rounding
  __m256i zp, add_zp, a_mult, b_mult, zp_product, rem_mask, threshold;
  __m128i shift;
  bool float_add;
};

inline Epi make_epi(const Q8PwArgs& p) {
  const Q8Add& a = p.add;
  const int32_t mask = static_cast<int32_t>((1u << a.shift) - 1u);
  const int32_t zp = p.rq.mode == Q8RequantMode::Onednn ? 0 : p.rq.zp;  // added after rounding
  return Epi{_mm256_set1_ps(static_cast<float>(p.rq.lo - zp)), _mm256_set1_ps(static_cast<float>(p.rq.hi - zp)),
             _mm256_set1_ps(a.a_scale), _mm256_set1_ps(a.a_offset), _mm256_set1_ps(a.b_scale),
             _mm256_set1_ps(a.b_offset), _mm256_set1_ps(a.inv_scale), _mm256_set1_ps(static_cast<float>(-a.zp)),
             _mm256_set1_ps(static_cast<float>(255 - a.zp)), _mm256_set1_ps(p.rq.src_scale), _mm256_set1_ps(p.rq.inv_scale),
             _mm256_set1_ps(static_cast<float>(p.rq.zp)), _mm256_set1_epi32(zp), _mm256_set1_epi32(a.zp),
             _mm256_set1_epi32(a.a_mult), _mm256_set1_epi32(a.b_mult), _mm256_set1_epi32(a.zp_product),
             _mm256_set1_epi32(mask), _mm256_set1_epi32(mask >> 1), _mm_cvtsi32_si128(a.shift),
             a.mode == Q8AddMode::Float};
}

// Requantize, table, add, store: 8 columns (cnt valid) of one row.  OD: the Onednn mode.
template <bool OD>
[[gnu::always_inline]] inline void epilogue(const Q8PwArgs& p, const Epi& e, __m256i acc, int64_t m, int64_t c, int64_t cnt) {
  const __m256i s = _mm256_add_epi32(acc, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p.fold + c)));
  __m256 f;
  if constexpr (OD) {
    f = _mm256_mul_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(s), e.rq_src), _mm256_loadu_ps(p.rq.multiplier + c));
    f = _mm256_add_ps(_mm256_mul_ps(_mm256_add_ps(f, _mm256_loadu_ps(p.rq.bias_float + c)), e.rq_inv), e.rq_zpf);
  } else {
    f = _mm256_add_ps(_mm256_cvtepi32_ps(s), _mm256_loadu_ps(p.rq.bias_float + c));
    f = _mm256_mul_ps(f, _mm256_loadu_ps(p.rq.multiplier + c));
  }
  f = _mm256_min_ps(_mm256_max_ps(f, e.lo), e.hi);
  __m256i q = _mm256_add_epi32(_mm256_cvtps_epi32(f), e.zp);
  if (p.lut32) q = _mm256_i32gather_epi32(p.lut32, q, 4);
  uint8_t* y = p.y + m * p.Cout + c;
  if (p.residual) {
    int64_t rb8 = 0;
    std::memcpy(&rb8, p.residual + m * p.Cout + c, cnt);
    const __m256i b = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(rb8));
    if (e.float_add) {
      const __m256 da = _mm256_fmadd_ps(_mm256_cvtepi32_ps(q), e.a_scale, e.a_offset);
      const __m256 db = _mm256_fmadd_ps(_mm256_cvtepi32_ps(b), e.b_scale, e.b_offset);
      __m256 v = _mm256_mul_ps(_mm256_add_ps(da, db), e.inv_scale);
      v = _mm256_min_ps(_mm256_max_ps(v, e.add_lo), e.add_hi);
      q = _mm256_add_epi32(_mm256_cvtps_epi32(v), e.add_zp);
    } else {
      const __m256i t = _mm256_add_epi32(
          _mm256_add_epi32(_mm256_mullo_epi32(q, e.a_mult), _mm256_mullo_epi32(b, e.b_mult)), e.zp_product);
      const __m256i rem = _mm256_add_epi32(_mm256_and_si256(t, e.rem_mask), _mm256_srai_epi32(t, 31));
      q = _mm256_add_epi32(_mm256_sra_epi32(t, e.shift), e.add_zp);
      q = _mm256_sub_epi32(q, _mm256_cmpgt_epi32(rem, e.threshold));  // true = -1
    }
    q = _mm256_min_epi32(_mm256_max_epi32(q, _mm256_setzero_si256()), _mm256_set1_epi32(255));
  }
  const __m128i w16 = _mm_packus_epi32(_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1));
  const __m128i b8 = _mm_packus_epi16(w16, w16);
  if (cnt == 8) {
    _mm_storel_epi64(reinterpret_cast<__m128i*>(y), b8);
  } else {
    const int64_t v = _mm_cvtsi128_si64(b8);
    std::memcpy(y, &v, cnt);
  }
}

// MR rows of widened A (row stride lda) x 8 columns from n0, nn valid.  vpmaddwd of a group
// of 4 columns x 4 k gives pair sums (lane 2j: column j, k 0-1; 2j + 1: k 2-3), added at the end.
template <int MR, bool OD>
[[gnu::noinline]] MBV3_Q8_TILE_OPT void tile(const Q8PwArgs& p, const Epi& e, const int16_t* a, int64_t lda, int64_t m, int64_t n0, int64_t nn) {
  __m256i lo[MR], hi[MR];
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) lo[r] = hi[r] = _mm256_setzero_si256();
  const int64_t K4 = (p.K + 3) / 4, step = 4 * p.ldw;
  const int8_t* w = p.w + 4 * n0;
  for (int64_t k4 = 0; k4 < K4; ++k4, w += step) {
    const __m256i w0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w)));
    const __m256i w1 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + 16)));
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      long long av;
      std::memcpy(&av, a + r * lda + 4 * k4, 8);
      const __m256i b = _mm256_set1_epi64x(av);
      lo[r] = _mm256_add_epi32(lo[r], _mm256_madd_epi16(w0, b));
      hi[r] = _mm256_add_epi32(hi[r], _mm256_madd_epi16(w1, b));
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) {
    // hadd: [c0 c1 c4 c5 | c2 c3 c6 c7] -> 64-bit chunks reordered 0, 2, 1, 3
    const __m256i s = _mm256_permute4x64_epi64(_mm256_hadd_epi32(lo[r], hi[r]), 0xD8);
    epilogue<OD>(p, e, s, m + r, n0, nn);
  }
}

template <bool OD>
inline void gemm_mode(const Q8PwArgs& p, const Epi& e, const int16_t* a, int64_t lda, int64_t m0, int64_t m1,
                      int64_t n_begin, int64_t n_end) {
  for (int64_t n0 = n_begin; n0 < n_end; n0 += 8) {
    const int64_t nn = std::min<int64_t>(8, n_end - n0);
    int64_t m = m0;
    for (; m + kMR <= m1; m += kMR) tile<kMR, OD>(p, e, a + (m - m0) * lda, lda, m, n0, nn);
    const int16_t* at = a + (m - m0) * lda;
    switch (m1 - m) {
      case 5: tile<5, OD>(p, e, at, lda, m, n0, nn); break;
      case 4: tile<4, OD>(p, e, at, lda, m, n0, nn); break;
      case 3: tile<3, OD>(p, e, at, lda, m, n0, nn); break;
      case 2: tile<2, OD>(p, e, at, lda, m, n0, nn); break;
      case 1: tile<1, OD>(p, e, at, lda, m, n0, nn); break;
      default: break;
    }
  }
}

inline void gemm(const Q8PwArgs& p, const int16_t* a, int64_t lda, int64_t m0, int64_t m1, int64_t n_begin,
                 int64_t n_end) {
  const Epi e = make_epi(p);
  if (p.rq.mode == Q8RequantMode::Onednn) gemm_mode<true>(p, e, a, lda, m0, m1, n_begin, n_end);
  else gemm_mode<false>(p, e, a, lda, m0, m1, n_begin, n_end);
}

#elif defined(MBV3_ISA_NEON)
constexpr int kMR = 4;

// q8_mul on 8 values: (x - a_zp) * (s - b_zp) exact in int32, then q8.h's float steps.
inline uint8x8_t mul8(const Q8PwArgs& p, uint8x8_t x8, uint8x8_t s8) {
  const int16x8_t a = vsubq_s16(vreinterpretq_s16_u16(vmovl_u8(x8)), vdupq_n_s16(static_cast<int16_t>(p.mul.a_zp)));
  const int16x8_t b = vsubq_s16(vreinterpretq_s16_u16(vmovl_u8(s8)), vdupq_n_s16(static_cast<int16_t>(p.mul.b_zp)));
  const float32x4_t lo = vdupq_n_f32(static_cast<float>(-p.mul.zp)), hi = vdupq_n_f32(static_cast<float>(255 - p.mul.zp));
  const int32x4_t c[2] = {vmull_s16(vget_low_s16(a), vget_low_s16(b)), vmull_high_s16(a, b)};
  int32x4_t q[2];
  for (int h = 0; h < 2; ++h) {
    const float32x4_t f = vminq_f32(vmaxq_f32(vmulq_f32(vcvtq_f32_s32(c[h]), vdupq_n_f32(p.mul.multiplier)), lo), hi);
    q[h] = vaddq_s32(vcvtnq_s32_f32(f), vdupq_n_s32(p.mul.zp));
  }
  return vqmovn_u16(vcombine_u16(vqmovun_s32(q[0]), vqmovun_s32(q[1])));
}

// One row of A (q8_mul(x, se) with se) into out (K4 * 4 values, padding zero): int16 for the
// baseline kernel, or a - 128 as int8 for SDOT (the 128 * colsum correction restores it).
template <class T>
inline void prepare_row(const Q8PwArgs& p, const uint8_t* x, const uint8_t* s, T* out, int64_t K4) {
  constexpr bool kDot = sizeof(T) == 1;
  uint8_t* tmp = nullptr;
  uint8_t local[256];
  const uint8_t* a = x;
  if (s) {
    tmp = p.K <= 256 ? local : new uint8_t[p.K];
    int64_t k = 0;
    for (; k + 8 <= p.K; k += 8) vst1_u8(tmp + k, mul8(p, vld1_u8(x + k), vld1_u8(s + k)));
    for (; k < p.K; ++k) tmp[k] = q8_mul(x[k], s[k], p.mul);
    a = tmp;
  }
  int64_t k = 0;
  for (; k + 16 <= p.K; k += 16) {
    const uint8x16_t v = vld1q_u8(a + k);
    if constexpr (kDot) {
      vst1q_s8(reinterpret_cast<int8_t*>(out + k), vreinterpretq_s8_u8(veorq_u8(v, vdupq_n_u8(0x80))));
    } else {
      vst1q_s16(reinterpret_cast<int16_t*>(out + k), vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(v))));
      vst1q_s16(reinterpret_cast<int16_t*>(out + k + 8), vreinterpretq_s16_u16(vmovl_high_u8(v)));
    }
  }
  for (; k < p.K; ++k) out[k] = kDot ? static_cast<T>(static_cast<int32_t>(a[k]) - 128) : static_cast<T>(a[k]);
  for (; k < K4 * 4; ++k) out[k] = static_cast<T>(kDot ? -128 : 0);  // times zero weights
  if (tmp && tmp != local) delete[] tmp;
}

// Requantize, table, add, store: 16 columns (cnt valid) of one row, acc[v] = columns 4v..4v+3.
// OD: the Onednn mode (the zero point added in float before rounding).
template <bool OD>
inline void epilogue(const Q8PwArgs& p, const int32x4_t* acc, int64_t m, int64_t c, int64_t cnt) {
  const int32_t zp = OD ? 0 : p.rq.zp;
  const float32x4_t lo = vdupq_n_f32(static_cast<float>(p.rq.lo - zp));
  const float32x4_t hi = vdupq_n_f32(static_cast<float>(p.rq.hi - zp));
  int32x4_t q[4];
  for (int v = 0; v < 4; ++v) {
    const int32x4_t s = vaddq_s32(acc[v], vld1q_s32(p.fold + c + 4 * v));
    float32x4_t f;
    if constexpr (OD) {
      f = vmulq_f32(vmulq_f32(vcvtq_f32_s32(s), vdupq_n_f32(p.rq.src_scale)), vld1q_f32(p.rq.multiplier + c + 4 * v));
      f = vaddq_f32(vmulq_f32(vaddq_f32(f, vld1q_f32(p.rq.bias_float + c + 4 * v)), vdupq_n_f32(p.rq.inv_scale)),
                    vdupq_n_f32(static_cast<float>(p.rq.zp)));
    } else {
      f = vaddq_f32(vcvtq_f32_s32(s), vld1q_f32(p.rq.bias_float + c + 4 * v));
      f = vmulq_f32(f, vld1q_f32(p.rq.multiplier + c + 4 * v));
    }
    f = vminq_f32(vmaxq_f32(f, lo), hi);
    q[v] = vaddq_s32(vcvtnq_s32_f32(f), vdupq_n_s32(zp));
  }
  if (p.rq.lut) {
    int32_t t[16];
    for (int v = 0; v < 4; ++v) vst1q_s32(t + 4 * v, q[v]);
    for (int i = 0; i < 16; ++i) t[i] = p.rq.lut[t[i]];
    for (int v = 0; v < 4; ++v) q[v] = vld1q_s32(t + 4 * v);
  }
  if (p.residual) {
    const Q8Add& a = p.add;
    uint8_t rb[16] = {0};
    std::memcpy(rb, p.residual + m * p.Cout + c, cnt);
    const uint8x16_t r8 = vld1q_u8(rb);
    const uint16x8_t r16[2] = {vmovl_u8(vget_low_u8(r8)), vmovl_high_u8(r8)};
    for (int v = 0; v < 4; ++v) {
      const uint16x8_t h = r16[v / 2];
      const int32x4_t b = vreinterpretq_s32_u32(v % 2 ? vmovl_high_u16(h) : vmovl_u16(vget_low_u16(h)));
      int32x4_t r;
      if (a.mode == Q8AddMode::Float) {
        const float32x4_t da = vfmaq_f32(vdupq_n_f32(a.a_offset), vcvtq_f32_s32(q[v]), vdupq_n_f32(a.a_scale));
        const float32x4_t db = vfmaq_f32(vdupq_n_f32(a.b_offset), vcvtq_f32_s32(b), vdupq_n_f32(a.b_scale));
        float32x4_t f = vmulq_f32(vaddq_f32(da, db), vdupq_n_f32(a.inv_scale));
        f = vminq_f32(vmaxq_f32(f, vdupq_n_f32(static_cast<float>(-a.zp))), vdupq_n_f32(static_cast<float>(255 - a.zp)));
        r = vaddq_s32(vcvtnq_s32_f32(f), vdupq_n_s32(a.zp));
      } else {
        const int32_t mask = static_cast<int32_t>((1u << a.shift) - 1u);
        const int32x4_t t = vmlaq_n_s32(vmlaq_n_s32(vdupq_n_s32(a.zp_product), q[v], a.a_mult), b, a.b_mult);
        const int32x4_t rem = vaddq_s32(vandq_s32(t, vdupq_n_s32(mask)), vshrq_n_s32(t, 31));
        r = vaddq_s32(vshlq_s32(t, vdupq_n_s32(-a.shift)), vdupq_n_s32(a.zp));
        r = vsubq_s32(r, vreinterpretq_s32_u32(vcgtq_s32(rem, vdupq_n_s32(mask >> 1))));  // true = -1
      }
      q[v] = vminq_s32(vmaxq_s32(r, vdupq_n_s32(0)), vdupq_n_s32(255));
    }
  }
  const uint16x8_t lo16 = vcombine_u16(vqmovun_s32(q[0]), vqmovun_s32(q[1]));
  const uint16x8_t hi16 = vcombine_u16(vqmovun_s32(q[2]), vqmovun_s32(q[3]));
  const uint8x16_t out = vcombine_u8(vqmovn_u16(lo16), vqmovn_u16(hi16));
  uint8_t* y = p.y + m * p.Cout + c;
  if (cnt == 16) {
    vst1q_u8(y, out);
  } else {
    uint8_t b[16];
    vst1q_u8(b, out);
    std::memcpy(y, b, cnt);
  }
}

// Baseline ARMv8.0: MR rows of int16 A x 16 columns.  vld4 splits a K-quad's 16 x 4 weights into
// k = 0..3 vectors of 16 columns, widened to int16; vmlal_lane (int16 x int16 -> int32, exact).
template <int MR, bool OD>
[[gnu::noinline]] MBV3_Q8_TILE_OPT void tile(const Q8PwArgs& p, const int16_t* a, int64_t lda, int64_t m, int64_t n0, int64_t nn) {
  int32x4_t acc[MR][4];
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < 4; ++v) acc[r][v] = vdupq_n_s32(0);
  const int64_t K4 = (p.K + 3) / 4, step = 4 * p.ldw;
  const int8_t* w = p.w + 4 * n0;
  for (int64_t k4 = 0; k4 < K4; ++k4, w += step) {
    const int8x16x4_t wv = vld4q_s8(w);
    int16x8_t wl[4], wh[4];
    for (int j = 0; j < 4; ++j) {
      wl[j] = vmovl_s8(vget_low_s8(wv.val[j]));
      wh[j] = vmovl_high_s8(wv.val[j]);
    }
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      const int16x4_t av = vld1_s16(a + r * lda + 4 * k4);
#define MBV3_Q8_K(j)                                                         \
  acc[r][0] = vmlal_lane_s16(acc[r][0], vget_low_s16(wl[j]), av, j);        \
  acc[r][1] = vmlal_high_lane_s16(acc[r][1], wl[j], av, j);                 \
  acc[r][2] = vmlal_lane_s16(acc[r][2], vget_low_s16(wh[j]), av, j);        \
  acc[r][3] = vmlal_high_lane_s16(acc[r][3], wh[j], av, j);
      MBV3_Q8_K(0) MBV3_Q8_K(1) MBV3_Q8_K(2) MBV3_Q8_K(3)
#undef MBV3_Q8_K
    }
  }
  for (int r = 0; r < MR; ++r) epilogue<OD>(p, acc[r], m + r, n0, nn);
}

// FEAT_DotProd: MR rows of A - 128 (int8) x 16 columns, SDOT on each K-quad (4 columns per vector),
// then + 128 * colsum (the packed weight's tail) to undo the shift.
template <int MR, bool OD>
[[gnu::noinline]] __attribute__((target("arch=armv8.2-a+dotprod"))) MBV3_Q8_TILE_OPT void tile_dot(
    const Q8PwArgs& p, const int8_t* a, int64_t lda, int64_t m, int64_t n0, int64_t nn) {
  int32x4_t acc[MR][4];
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < 4; ++v) acc[r][v] = vdupq_n_s32(0);
  const int64_t K4 = (p.K + 3) / 4, step = 4 * p.ldw;
  const int8_t* w = p.w + 4 * n0;
  for (int64_t k4 = 0; k4 < K4; ++k4, w += step) {
    int8x16_t wv[4];
    for (int v = 0; v < 4; ++v) wv[v] = vld1q_s8(w + 16 * v);
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      int32_t av;
      std::memcpy(&av, a + r * lda + 4 * k4, 4);
      const int8x16_t b = vreinterpretq_s8_s32(vdupq_n_s32(av));
      for (int v = 0; v < 4; ++v) acc[r][v] = vdotq_s32(acc[r][v], wv[v], b);
    }
  }
  const int8_t* colsum = p.w + K4 * step + 4 * n0;
  for (int v = 0; v < 4; ++v) {
    const int32x4_t corr = vshlq_n_s32(vreinterpretq_s32_s8(vld1q_s8(colsum + 16 * v)), 7);
    for (int r = 0; r < MR; ++r) acc[r][v] = vaddq_s32(acc[r][v], corr);
  }
  for (int r = 0; r < MR; ++r) epilogue<OD>(p, acc[r], m + r, n0, nn);
}

template <class T, bool OD>
inline void gemm_mode(const Q8PwArgs& p, const T* a, int64_t lda, int64_t m0, int64_t m1, int64_t n_begin,
                      int64_t n_end) {
  auto run = [&](auto mr, const T* at, int64_t m, int64_t n0, int64_t nn) {
    constexpr int R = decltype(mr)::value;
    if constexpr (sizeof(T) == 1) tile_dot<R, OD>(p, at, lda, m, n0, nn);
    else tile<R, OD>(p, at, lda, m, n0, nn);
  };
  for (int64_t n0 = n_begin; n0 < n_end; n0 += 16) {
    const int64_t nn = std::min<int64_t>(16, n_end - n0);
    int64_t m = m0;
    for (; m + kMR <= m1; m += kMR) run(std::integral_constant<int, kMR>{}, a + (m - m0) * lda, m, n0, nn);
    const T* at = a + (m - m0) * lda;
    switch (m1 - m) {
      case 3: run(std::integral_constant<int, 3>{}, at, m, n0, nn); break;
      case 2: run(std::integral_constant<int, 2>{}, at, m, n0, nn); break;
      case 1: run(std::integral_constant<int, 1>{}, at, m, n0, nn); break;
      default: break;
    }
  }
}

template <class T>
inline void gemm(const Q8PwArgs& p, const T* a, int64_t lda, int64_t m0, int64_t m1, int64_t n_begin, int64_t n_end) {
  if (p.rq.mode == Q8RequantMode::Onednn) gemm_mode<T, true>(p, a, lda, m0, m1, n_begin, n_end);
  else gemm_mode<T, false>(p, a, lda, m0, m1, n_begin, n_end);
}

#else  // scalar
constexpr int kMR = 1;
#endif

}  // namespace

int q8_pwconv_mr() { return kMR; }

void q8_pwconv_act(const Q8PwArgs& p, int64_t m_begin, int64_t m_end, int64_t n_begin, int64_t n_end) {
  if (m_begin >= m_end || n_begin >= n_end) return;
  const int64_t K4 = (p.K + 3) / 4;
#if defined(MBV3_ISA_AVX512)
  if (!p.se && p.K % 4 == 0) {
    gemm(p, p.x + m_begin * p.K, p.K, m_begin, m_end, n_begin, n_end);
    return;
  }
  thread_local std::vector<uint8_t> buf;
  thread_local std::vector<float> factors;
  const int64_t lda = K4 * 4;
  buf.resize(static_cast<size_t>((m_end - m_begin) * lda));
  if (p.se) factors.resize(static_cast<size_t>(2 * p.K));
  int64_t sample = -1;
  for (int64_t m = m_begin; m < m_end; ++m) {
    uint8_t* out = buf.data() + (m - m_begin) * lda;
    if (!p.se) {
      plain_row(p, p.x + m * p.K, out, K4);
      continue;
    }
    if (sample_of(p, m) != sample) {
      sample = sample_of(p, m);
      se_factors(p, p.se + sample * p.K, factors.data(), factors.data() + p.K);
    }
    scale_row(p, p.x + m * p.K, factors.data(), factors.data() + p.K, out, K4);
  }
  gemm(p, buf.data(), lda, m_begin, m_end, n_begin, n_end);
#elif defined(MBV3_ISA_AVX2)
  thread_local std::vector<int16_t> buf;
  const int64_t lda = K4 * 4;
  buf.resize(static_cast<size_t>((m_end - m_begin) * lda));
  for (int64_t m = m_begin; m < m_end; ++m)
    widen_row(p, p.x + m * p.K, p.se ? p.se + sample_of(p, m) * p.K : nullptr, buf.data() + (m - m_begin) * lda, K4);
  gemm(p, buf.data(), lda, m_begin, m_end, n_begin, n_end);
#elif defined(MBV3_ISA_NEON)
  const int64_t lda = K4 * 4;
  auto prepare_and_run = [&](auto* buf_ptr) {
    using T = std::remove_pointer_t<decltype(buf_ptr)>;
    thread_local std::vector<T> buf;
    buf.resize(static_cast<size_t>((m_end - m_begin) * lda));
    for (int64_t m = m_begin; m < m_end; ++m)
      prepare_row(p, p.x + m * p.K, p.se ? p.se + sample_of(p, m) * p.K : nullptr, buf.data() + (m - m_begin) * lda, K4);
    gemm(p, buf.data(), lda, m_begin, m_end, n_begin, n_end);
  };
  if (has_dotprod()) prepare_and_run(static_cast<int8_t*>(nullptr));
  else prepare_and_run(static_cast<int16_t*>(nullptr));
#else
  (void)K4;
  for (int64_t m = m_begin; m < m_end; ++m) {
    const uint8_t* x = p.x + m * p.K;
    const uint8_t* s = p.se ? p.se + sample_of(p, m) * p.K : nullptr;
    for (int64_t n = n_begin; n < n_end; ++n) {
      int32_t acc = 0;
      for (int64_t k = 0; k < p.K; ++k) {
        const int32_t a = s ? q8_mul(x[k], s[k], p.mul) : x[k];
        acc += (a - p.x_zp) * static_cast<int32_t>(p.w[(k / 4) * 4 * p.ldw + 4 * n + k % 4]);
      }
      uint8_t q = q8_requantize(acc, n, p.rq);
      if (p.residual) q = q8_add(q, p.residual[m * p.Cout + n], p.add);
      p.y[m * p.Cout + n] = q;
    }
  }
#endif
}

}  // namespace MBV3_ISA_NS
}  // namespace mbv3
