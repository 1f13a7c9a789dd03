// Fused depthwise conv + bias + activation over NHWC float32, written once against `Vec` and
// compiled once per ISA (dwconv_bn_act_<isa>.cpp).  XNNPACK-style: channels in SIMD lanes,
// masked channel tails, accumulators started from the bias, padding handled by skipping taps
// (never by a padded copy), activation applied on the way to the store.
//
// Loop order per output row: channel tile (one vector) outer, output column inner, so the
// k*k weight vectors of the tile are loaded once per row and stay in registers (or L1) while
// the row streams past.  Interior columns need no bounds checks; only the pad-wide borders
// test each tap.
//
// Accuracy: each output sums its even and odd kernel rows in separate accumulators, adding
// them and then the bias at the end.  Halving the serial chain keeps the rounding error at or
// below PyTorch's own (conv then BatchNorm) on k = 5 and 7, as tests/tolerance.py demands.
#pragma once
#include <algorithm>

#include "dwconv_bn_act.h"
#include "simd.h"

namespace mbv3 {
namespace MBV3_ISA_NS {
namespace {

constexpr int kMaxK = 7;

template <Act A>
inline Vec activate(Vec v) {
  if constexpr (A == Act::Relu) return relu(v);
  else if constexpr (A == Act::Hardswish) return hardswish(v);
  else return v;
}

// Compile-time geometry of the specialised paths; 0 = read it from the params at run time.
template <int K, int S, int D>
struct Geometry {
  static_assert(K > 0 || (S == 0 && D == 0), "the generic kernel size has generic stride/dilation");
  const int k, s, d;
  explicit Geometry(const DwConvParams& p)
      : k(K > 0 ? K : p.k), s(S > 0 ? S : p.stride), d(D > 0 ? D : p.dil) {}
};

// One channel tile (one vector; TAIL = fewer than Vec::N channels, masked) of one output row.
// The interior computes kBlock adjacent output columns at a time: with compile-time stride and
// dilation the shared input columns are loaded once (stride 1, k = 3: 6 loads feed 12 FMAs)
// and the kBlock accumulator chains hide the FMA latency.
template <int K, int S, int D, Act A, bool TAIL>
inline void channel_tile(const DwConvParams& p, const float* const* rows, float* yrow, int64_t c,
                         int nc, int64_t ow_lo, int64_t ow_hi) {
  constexpr int kBlock = 4;
  constexpr int KW = K > 0 ? K : kMaxK;
  const Geometry<K, S, D> g(p);
  const int k = g.k;
  const int64_t C = p.C, W = p.W, s = g.s, dil = g.d, pad = p.pad;
  auto ld = [nc](const float* ptr) { return TAIL ? Vec::load_tail(ptr, nc) : Vec::load(ptr); };

  Vec w[KW * KW];
  for (int t = 0; t < k * k; ++t) w[t] = ld(p.w + t * C + c);
  const Vec bias = ld(p.b + c);

  auto store = [&](int64_t ow, Vec acc) {
    acc = activate<A>(add(acc, bias));
    if (TAIL) acc.store_tail(yrow + ow * C + c, nc);
    else acc.store(yrow + ow * C + c);
  };
  // Columns whose taps may fall into the left/right padding test each tap.
  auto one_column = [&](int64_t ow, bool checked) {
    Vec acc[2] = {Vec::zero(), Vec::zero()};  // even / odd kernel rows (see the file comment)
    const int64_t iw0 = ow * s - pad;
    for (int kh = 0; kh < k; ++kh) {
      if (!rows[kh]) continue;  // padding row: the same for the whole output row, predicted
      for (int kw = 0; kw < k; ++kw) {
        const int64_t iw = iw0 + kw * dil;
        if (checked && (iw < 0 || iw >= W)) continue;
        acc[kh & 1] = fmadd(ld(rows[kh] + iw * C + c), w[kh * k + kw], acc[kh & 1]);
      }
    }
    store(ow, add(acc[0], acc[1]));
  };

  for (int64_t ow = 0; ow < ow_lo; ++ow) one_column(ow, true);
  int64_t ow = ow_lo;
  if constexpr (K > 0 && S > 0 && D > 0) {
    constexpr int kCols = (kBlock - 1) * S + (K - 1) * D + 1;  // input columns one block reads
    for (; ow + kBlock <= ow_hi; ow += kBlock) {
      Vec acc[2][kBlock];
      for (int j = 0; j < kBlock; ++j) acc[0][j] = acc[1][j] = Vec::zero();
      const int64_t off = (ow * S - pad) * C + c;
      for (int kh = 0; kh < K; ++kh) {
        if (!rows[kh]) continue;
        Vec in[kCols];
        for (int i = 0; i < kCols; ++i) in[i] = ld(rows[kh] + off + i * C);
        for (int kw = 0; kw < K; ++kw)
          for (int j = 0; j < kBlock; ++j)
            acc[kh & 1][j] = fmadd(in[j * S + kw * D], w[kh * K + kw], acc[kh & 1][j]);
      }
      for (int j = 0; j < kBlock; ++j) store(ow + j, add(acc[0][j], acc[1][j]));
    }
  }
  for (; ow < ow_hi; ++ow) one_column(ow, false);
  for (ow = std::max(ow_hi, ow_lo); ow < p.OW; ++ow) one_column(ow, true);
}

template <int K, int S, int D, Act A>
void rows_kernel(const DwConvParams& p, int64_t row_begin, int64_t row_end, int64_t c_begin,
                 int64_t c_end) {
  const Geometry<K, S, D> g(p);
  const int k = g.k;
  const int64_t s = g.s, pad = p.pad, dil = g.d, span = int64_t(k - 1) * dil;
  // Interior columns [ow_lo, ow_hi): every tap inside the input row.
  const int64_t ow_lo = std::min<int64_t>(p.OW, (pad + s - 1) / s);
  const int64_t last = p.W - 1 + pad - span;  // largest ow*s with the last tap in bounds
  const int64_t ow_hi = last < 0 ? ow_lo : std::max(ow_lo, std::min<int64_t>(p.OW, last / s + 1));
  for (int64_t r = row_begin; r < row_end; ++r) {
    const int64_t n = r / p.OH, oh = r % p.OH;
    const float* rows[kMaxK];
    for (int kh = 0; kh < k; ++kh) {
      const int64_t ih = oh * s - pad + kh * dil;
      rows[kh] = (ih >= 0 && ih < p.H) ? p.x + (n * p.H + ih) * p.W * p.C : nullptr;
    }
    float* yrow = p.y + r * p.OW * p.C;
    int64_t c = c_begin;
    for (; c + Vec::N <= c_end; c += Vec::N)
      channel_tile<K, S, D, A, false>(p, rows, yrow, c, Vec::N, ow_lo, ow_hi);
    if (c < c_end) channel_tile<K, S, D, A, true>(p, rows, yrow, c, int(c_end - c), ow_lo, ow_hi);
  }
}

using RowsFn = void (*)(const DwConvParams&, int64_t, int64_t, int64_t, int64_t);

template <int K, int S, int D>
RowsFn pick_act(Act act) {
  switch (act) {
    case Act::Relu: return rows_kernel<K, S, D, Act::Relu>;
    case Act::Hardswish: return rows_kernel<K, S, D, Act::Hardswish>;
    default: return rows_kernel<K, S, D, Act::None>;
  }
}

// MobileNetV3's depthwise layers are 3x3 / 5x5, stride 1 / 2, dilation 1: fully specialised.
// Every other geometry (dilation 2, stride 3+, k = 1 or 7) takes the generic loop.
template <int K>
RowsFn pick_geometry(const DwConvParams& p) {
  if (p.dil == 1 && p.stride == 1) return pick_act<K, 1, 1>(p.act);
  if (p.dil == 1 && p.stride == 2) return pick_act<K, 2, 1>(p.act);
  return pick_act<0, 0, 0>(p.act);
}

}  // namespace

void dwconv_bn_act(const DwConvParams& p, int64_t row_begin, int64_t row_end, int64_t c_begin,
                   int64_t c_end) {
  // 3x3 and 5x5 are MobileNetV3's; everything else (odd k <= 7) takes the generic loop.
  const RowsFn fn = p.k == 3 ? pick_geometry<3>(p) : p.k == 5 ? pick_geometry<5>(p) : pick_act<0, 0, 0>(p.act);
  fn(p, row_begin, row_end, c_begin, c_end);
}

}  // namespace MBV3_ISA_NS
}  // namespace mbv3
