// The avx512_bf16 depthwise for bf16 (included by dwconv_bn_act_kernel.h in that unit only):
// 3x3 / 5x5, stride 1 / 2, dilation 1, finite weights, channel tiles of 32 (zmm) and 16 (ymm).
//
// Kernel rows are taken in pairs: vpunpck{l,h}wd of the same column of two input rows gives
// (row a, row b) bf16 pairs per channel, and one vdpbf16ps against the pair of taps (w[a][kw],
// w[b][kw]) adds both products: half the multiply instructions of the widening kernel, and no
// widening of the pairs.  The odd last kernel row pairs its taps along the row instead (columns
// t and t + 1 of that row, taps (kw, kw + 1)), and its last tap is widened with the same unpack
// (zero low half: exact float32) and takes an FMA.  Every product of a pair is a real tap of the
// same output, so an inf or NaN input reaches exactly the outputs PyTorch's does; a padding row
// of a pair reads as zero (times a finite weight).
//
// The unpacks interleave channels within 128-bit lanes: the "lo" vector holds channels
// {0-3, 8-11, 16-19, 24-27} of the tile, "hi" {4-7, 12-15, ...}.  Weights (unpacked the same
// way) and the bias are brought into that order once per call; the store puts the channels back
// (vcvtne2ps2bf16 of lo and hi, then one 64-bit permute).
//
// vdpbf16ps flushes denormal inputs and rounds after each of its two products, so this path is
// held to the tolerance rule, not to bit equality with float32 (README, bfloat16).
#pragma once
#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "dwconv_bn_act.h"
#include "common/simd.h"

namespace mbv3 {
namespace MBV3_ISA_NS {
namespace {

struct Dp512 {
  static constexpr int N = 32;  // channels per tile
  using I = __m512i;
  using F = __m512;
  using V = Vec;
  static I load(const bf16* p) { return _mm512_loadu_si512(p); }
  static I zero_i() { return _mm512_setzero_si512(); }
  static F zero() { return _mm512_setzero_ps(); }
  static I lo(I a, I b) { return _mm512_unpacklo_epi16(a, b); }
  static I hi(I a, I b) { return _mm512_unpackhi_epi16(a, b); }
  static F dot(F acc, I x, I w) {
    return _mm512_dpbf16_ps(acc, reinterpret_cast<__m512bh&>(x), reinterpret_cast<__m512bh&>(w));
  }
  static F fma(F acc, I x, I w) { return _mm512_fmadd_ps(_mm512_castsi512_ps(x), _mm512_castsi512_ps(w), acc); }
  static F add(F a, F b) { return _mm512_add_ps(a, b); }
  // The tile's bias in lo / hi channel order (index = channel: < 16 from b0, else b1).
  static void bias(const float* b, F& lo_out, F& hi_out) {
    const F b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16);
    lo_out = _mm512_permutex2var_ps(b0, _mm512_setr_epi32(0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27), b1);
    hi_out = _mm512_permutex2var_ps(b0, _mm512_setr_epi32(4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31), b1);
  }
  static void store(bf16* p, F lo_v, F hi_v) {
    const __m512bh h = _mm512_cvtne2ps_pbh(hi_v, lo_v);  // words: lo's 16 lanes, then hi's
    const __m512i r = _mm512_permutexvar_epi64(_mm512_setr_epi64(0, 4, 1, 5, 2, 6, 3, 7),
                                               reinterpret_cast<const __m512i&>(h));
    _mm512_storeu_si512(p, r);
  }
};

struct Dp256 {
  static constexpr int N = 16;
  using I = __m256i;
  using F = __m256;
  using V = Half;
  static I load(const bf16* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
  static I zero_i() { return _mm256_setzero_si256(); }
  static F zero() { return _mm256_setzero_ps(); }
  static I lo(I a, I b) { return _mm256_unpacklo_epi16(a, b); }
  static I hi(I a, I b) { return _mm256_unpackhi_epi16(a, b); }
  static F dot(F acc, I x, I w) {
    return _mm256_dpbf16_ps(acc, reinterpret_cast<__m256bh&>(x), reinterpret_cast<__m256bh&>(w));
  }
  static F fma(F acc, I x, I w) { return _mm256_fmadd_ps(_mm256_castsi256_ps(x), _mm256_castsi256_ps(w), acc); }
  static F add(F a, F b) { return _mm256_add_ps(a, b); }
  static void bias(const float* b, F& lo_out, F& hi_out) {
    const F b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
    lo_out = _mm256_permutex2var_ps(b0, _mm256_setr_epi32(0, 1, 2, 3, 8, 9, 10, 11), b1);
    hi_out = _mm256_permutex2var_ps(b0, _mm256_setr_epi32(4, 5, 6, 7, 12, 13, 14, 15), b1);
  }
  static void store(bf16* p, F lo_v, F hi_v) {
    const __m256bh h = _mm256_cvtne2ps_pbh(hi_v, lo_v);  // quadwords: lo 0-3, lo 4-7, hi 0-3, hi 4-7
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p),
                        _mm256_permute4x64_epi64(reinterpret_cast<const __m256i&>(h), 0xD8));
  }
};

// A last tile of 17..31 channels: Dp512 with masked loads (zeros beyond the tile) and a masked
// store.  One masked zmm tile costs about what a 32-channel one does, a 16-channel tile plus a
// widening tail of 1..15 about 1.5x that (120 and 184 channels: 3 or 5 x 32 + 24).
struct Dp512Tail : Dp512 {
  __mmask32 m;  // the tile's channels
  I load(const bf16* p) const { return _mm512_maskz_loadu_epi16(m, p); }
  void bias(const float* b, F& lo_out, F& hi_out) const {
    const F b0 = _mm512_maskz_loadu_ps(__mmask16(m), b), b1 = _mm512_maskz_loadu_ps(__mmask16(m >> 16), b + 16);
    lo_out = _mm512_permutex2var_ps(b0, _mm512_setr_epi32(0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27), b1);
    hi_out = _mm512_permutex2var_ps(b0, _mm512_setr_epi32(4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31), b1);
  }
  void store(bf16* p, F lo_v, F hi_v) const {
    const __m512bh h = _mm512_cvtne2ps_pbh(hi_v, lo_v);
    const __m512i r = _mm512_permutexvar_epi64(_mm512_setr_epi64(0, 4, 1, 5, 2, 6, 3, 7),
                                               reinterpret_cast<const __m512i&>(h));
    _mm512_mask_storeu_epi16(p, m, r);
  }
};

// NB adjacent output columns, one channel tile.  wp: the (K / 2) row pairs' taps,
// [pair][kw][lo, hi]; ws: the last row's, (K / 2) pairs along it [q][lo, hi] (taps 2q, 2q + 1),
// then its last tap widened [lo, hi].  One accumulator per
// output half, starting from the bias: no zeroing and no epilogue adds (a float32 chain of at
// most 15 steps for 5x5, far below the bf16 rounding on store).  Two accumulators per output
// (pairs vs the last row, bias added last) measured slower.  Input columns [0, L) and
// [kCols - R, kCols) are known at compile time to lie in the padding (row edges): skipped
// without a test, so the accumulators stay in registers (CHECKED tests every column at run
// time: it kept them on the stack).
template <class D, int K, int S, Act A, int NB, bool CHECKED, int L = 0, int R = 0>
inline void dp_block(D d, const DwConvArgs<bf16>& p, const bf16* const* rows, bf16* yrow, int64_t c, int64_t ow,
                     const typename D::I* wp, const typename D::I* ws, typename D::F b_lo,
                     typename D::F b_hi) {
  using I = typename D::I;
  using F = typename D::F;
  constexpr int kCols = (NB - 1) * S + K;
  const int64_t C = p.C, iw0 = ow * S - p.pad;
  F acc[NB][2];
  for (int j = 0; j < NB; ++j) acc[j][0] = b_lo, acc[j][1] = b_hi;
#pragma GCC unroll 4
  for (int pr = 0; pr < K / 2; ++pr) {
    const bf16* ra = rows[2 * pr];
    const bf16* rb = rows[2 * pr + 1];
    if (!ra && !rb) continue;
#pragma GCC unroll 16
    for (int i = 0; i < kCols; ++i) {
      if (i < L || i >= kCols - R || (CHECKED && (iw0 + i < 0 || iw0 + i >= p.W))) continue;
      const int64_t off = (iw0 + i) * C + c;
      const I xa = ra ? d.load(ra + off) : D::zero_i();
      const I xb = rb ? d.load(rb + off) : D::zero_i();
      const I lo = D::lo(xa, xb), hi = D::hi(xa, xb);
#pragma GCC unroll 8
      for (int kw = 0; kw < K; ++kw) {
        if (i - kw < 0 || (i - kw) % S != 0 || (i - kw) / S >= NB) continue;
        const int j = (i - kw) / S;
        acc[j][0] = D::dot(acc[j][0], lo, wp[(pr * K + kw) * 2]);
        acc[j][1] = D::dot(acc[j][1], hi, wp[(pr * K + kw) * 2 + 1]);
      }
    }
  }
  if (const bf16* rl = rows[K - 1]) {
    // The last row: taps (kw, kw + 1) for even kw < K - 1 paired along the row (vpunpck of
    // columns t and t + 1, one vdpbf16ps), the last tap widened (FMA).
    I x[kCols];
#pragma GCC unroll 16
    for (int i = 0; i < kCols; ++i)
      x[i] = i < L || i >= kCols - R || (CHECKED && (iw0 + i < 0 || iw0 + i >= p.W)) ? D::zero_i()
                                                                                     : d.load(rl + (iw0 + i) * C + c);
#pragma GCC unroll 8
    for (int j = 0; j < NB; ++j) {
#pragma GCC unroll 4
      for (int q = 0; q < K / 2; ++q) {
        const int t = j * S + 2 * q;
        if (t + 1 < L || t >= kCols - R) continue;  // both columns padding
        acc[j][0] = D::dot(acc[j][0], D::lo(x[t], x[t + 1]), ws[q * 2]);
        acc[j][1] = D::dot(acc[j][1], D::hi(x[t], x[t + 1]), ws[q * 2 + 1]);
      }
      const int t = j * S + K - 1;
      if (t < L || t >= kCols - R) continue;
      acc[j][0] = D::fma(acc[j][0], D::lo(D::zero_i(), x[t]), ws[(K / 2) * 2]);
      acc[j][1] = D::fma(acc[j][1], D::hi(D::zero_i(), x[t]), ws[(K / 2) * 2 + 1]);
    }
  }
  using V = typename D::V;
  for (int j = 0; j < NB; ++j) {
    const F lo = activate<A>(V{acc[j][0]}).v;
    const F hi = activate<A>(V{acc[j][1]}).v;
    d.store(yrow + (ow + j) * C + c, lo, hi);
  }
}

// A tile's taps and bias in lo / hi order (the layout dp_block reads): the (K / 2) row pairs'
// taps [pair][kw][lo, hi], the last row's (K + 1 of its 2 * K slots, see dp_block), then the
// bias (lo, hi).
template <class D, int K>
constexpr int64_t dp_tile_bytes() {
  return int64_t((K / 2) * K * 2 + K * 2) * sizeof(typename D::I) + 2 * sizeof(typename D::F);
}
template <class D, int K>
void dp_pack_tile(D d, const DwConvArgs<bf16>& p, int64_t c, char* out) {
  using I = typename D::I;
  using F = typename D::F;
  const int64_t C = p.C;
  I* wp = reinterpret_cast<I*>(out);
  I* ws = wp + (K / 2) * K * 2;
  for (int pr = 0; pr < K / 2; ++pr)
    for (int kw = 0; kw < K; ++kw) {
      const I a = d.load(p.w + ((2 * pr) * K + kw) * C + c);
      const I b = d.load(p.w + ((2 * pr + 1) * K + kw) * C + c);
      wp[(pr * K + kw) * 2] = D::lo(a, b);
      wp[(pr * K + kw) * 2 + 1] = D::hi(a, b);
    }
  const bf16* wl = p.w + (K - 1) * K * C + c;  // the last row: pairs along it, then its last tap
  for (int q = 0; q < K / 2; ++q) {
    const I a = d.load(wl + 2 * q * C), b = d.load(wl + (2 * q + 1) * C);
    ws[q * 2] = D::lo(a, b);
    ws[q * 2 + 1] = D::hi(a, b);
  }
  const I w = d.load(wl + (K - 1) * C);
  ws[(K / 2) * 2] = D::lo(D::zero_i(), w);
  ws[(K / 2) * 2 + 1] = D::hi(D::zero_i(), w);
  F* b = reinterpret_cast<F*>(ws + K * 2);
  d.bias(p.b + c, b[0], b[1]);
}

// Calls f(D, c) for the tiles of channels [c_begin, c_end): 32-channel ones, then a masked one
// for 17..31 left or a 16-channel one for 16; returns where the rest (fewer than 16 channels,
// for the widening kernel) begins.  (An 8-channel dp tile would split into two 4-lane halves:
// more instructions than the widening kernel's one 8-lane vector; a masked 16- or 32-channel
// tile for 8 measured slower than that vector too.)
template <class F>
int64_t for_each_dp_tile(int64_t c_begin, int64_t c_end, F&& f) {
  int64_t c = c_begin;
  for (; c + Dp512::N <= c_end; c += Dp512::N) f(Dp512{}, c);
  if (c_end - c > Dp256::N) {
    f(Dp512Tail{{}, __mmask32((1ull << (c_end - c)) - 1)}, c);
    c = c_end;
  } else if (c + Dp256::N <= c_end) {
    f(Dp256{}, c), c += Dp256::N;
  }
  return c;
}

// Packs the taps of every tile of [c_begin, c_end) once per call (rows share them) into a
// per-thread buffer, and returns it.
template <int K>
const char* dp_pack(const DwConvArgs<bf16>& p, int64_t c_begin, int64_t c_end) {
  thread_local std::vector<char> buf;  // aligned by hand below: the packed vectors are stored aligned
  int64_t bytes = 0;
  for_each_dp_tile(c_begin, c_end, [&](auto d, int64_t) { bytes += dp_tile_bytes<decltype(d), K>(); });
  if (buf.size() < size_t(bytes + 64)) buf.resize(size_t(bytes + 64));
  char* const base = buf.data() + (64 - reinterpret_cast<uintptr_t>(buf.data()) % 64) % 64;
  char* out = base;
  for_each_dp_tile(c_begin, c_end, [&](auto d, int64_t c) {
    using D = decltype(d);
    dp_pack_tile<D, K>(d, p, c, out);
    out += dp_tile_bytes<D, K>();
  });
  return base;
}

// Output columns per block (`wide`: for rows of 28 columns or more).  16-channel tiles (ymm,
// half the registers per accumulator): 8.  32-channel ones: 4, or 6 for wide 3x3 stride-1 rows
// (72x56x56); 6 lost on the 14-wide rows (6 + 6 + 2), on 5x5 and stride 2, 8 on nearly all.
template <class D, int K, int S>
constexpr int dp_block_width(bool wide) {
  return D::N == 16 ? 8 : (wide && K == 3 && S == 1) ? 6 : 4;
}

// One output row of one channel tile, from its packed taps: blocks of BW columns, then the
// row's last (fewer than BW) in a block of 4 and one of 1..3.
template <class D, int K, int S, Act A, int BW>
inline void dp_tile(D d, const DwConvArgs<bf16>& p, const bf16* const* rows, bf16* yrow, int64_t c,
                    int64_t ow_lo, int64_t ow_hi, const char* packed) {
  using I = typename D::I;
  using F = typename D::F;
  const I* wp = reinterpret_cast<const I*>(packed);
  const I* ws = wp + (K / 2) * K * 2;
  const F* b = reinterpret_cast<const F*>(ws + K * 2);
  const F b_lo = b[0], b_hi = b[1];
  int64_t ow = 0;
  if constexpr (K == 3) {
    // Padding 1 (MobileNetV3's 3x3): the first block reads one padding column (L = 1), the
    // row's last block reads R = 0 or 1 past its end, every block between them is interior.
    if (p.pad == 1 && ow_lo == 1 && BW <= ow_hi) {
      dp_block<D, K, S, A, BW, false, 1>(d, p, rows, yrow, c, 0, wp, ws, b_lo, b_hi);
      for (ow = BW; ow + BW <= ow_hi; ow += BW)
        dp_block<D, K, S, A, BW, false>(d, p, rows, yrow, c, ow, wp, ws, b_lo, b_hi);
      int64_t n = p.OW - ow;
      const bool r1 = (p.OW - 1) * S + 1 >= p.W;  // the last output's right tap is padding
      auto last = [&](auto nb) {
        constexpr int NB = decltype(nb)::value;
        if (r1) dp_block<D, K, S, A, NB, false, 0, 1>(d, p, rows, yrow, c, ow, wp, ws, b_lo, b_hi);
        else dp_block<D, K, S, A, NB, false>(d, p, rows, yrow, c, ow, wp, ws, b_lo, b_hi);
      };
      if constexpr (BW > 4) {
        if (n == BW) return last(std::integral_constant<int, BW>{});
        if (n > 4) dp_block<D, K, S, A, 4, false>(d, p, rows, yrow, c, ow, wp, ws, b_lo, b_hi), ow += 4, n -= 4;
      }
      if (n == 4) last(std::integral_constant<int, 4>{});
      else if (n == 3) last(std::integral_constant<int, 3>{});
      else if (n == 2) last(std::integral_constant<int, 2>{});
      else if (n == 1) last(std::integral_constant<int, 1>{});
      return;
    }
  }
  for (; ow + BW <= p.OW; ow += BW) {
    if (ow >= ow_lo && ow + BW <= ow_hi)
      dp_block<D, K, S, A, BW, false>(d, p, rows, yrow, c, ow, wp, ws, b_lo, b_hi);
    else
      dp_block<D, K, S, A, BW, true>(d, p, rows, yrow, c, ow, wp, ws, b_lo, b_hi);
  }
  if constexpr (BW > 4)
    for (; ow + 4 <= p.OW; ow += 4) dp_block<D, K, S, A, 4, true>(d, p, rows, yrow, c, ow, wp, ws, b_lo, b_hi);
  const int64_t n = p.OW - ow;
  if (n == 3) dp_block<D, K, S, A, 3, true>(d, p, rows, yrow, c, ow, wp, ws, b_lo, b_hi);
  else if (n == 2) dp_block<D, K, S, A, 2, true>(d, p, rows, yrow, c, ow, wp, ws, b_lo, b_hi);
  else if (n == 1) dp_block<D, K, S, A, 1, true>(d, p, rows, yrow, c, ow, wp, ws, b_lo, b_hi);
}

// Channels [c_begin, c_end) of one output row in the tiles of for_each_dp_tile (taps packed by
// dp_pack); returns where the rest begins.
template <int K, int S, Act A>
int64_t dp_row(const DwConvArgs<bf16>& p, const bf16* const* rows, bf16* yrow, int64_t c_begin,
               int64_t c_end, int64_t ow_lo, int64_t ow_hi, const char* packed) {
  return for_each_dp_tile(c_begin, c_end, [&](auto d, int64_t c) {
    using D = decltype(d);
    constexpr int kWide = dp_block_width<D, K, S>(true), kNarrow = dp_block_width<D, K, S>(false);
    if (kWide != kNarrow && p.OW >= 28) dp_tile<D, K, S, A, kWide>(d, p, rows, yrow, c, ow_lo, ow_hi, packed);
    else dp_tile<D, K, S, A, kNarrow>(d, p, rows, yrow, c, ow_lo, ow_hi, packed);
    packed += dp_tile_bytes<D, K>();
  });
}

}  // namespace
}  // namespace MBV3_ISA_NS
}  // namespace mbv3
