// Fused depthwise conv + bias + activation over NHWC float32, written once against `Vec` and
// compiled once per ISA (dwconv_bn_act_<isa>.cpp).  XNNPACK-style: channels in SIMD lanes,
// masked channel tails, accumulators started from the bias, padding handled by skipping taps
// (never by a padded copy), activation applied on the way to the store.
//
// Loop order per output row: channel tile (one vector) outer, output column inner, so the
// k*k weight vectors of the tile are loaded once and stay in registers (25 of AVX-512's 32
// for 5x5) while the row streams past.  Interior columns need no bounds checks; only the
// pad-wide borders test each tap.
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

// K > 0: kernel size known at compile time (fully unrolled); K == 0: generic, p.k at run time.
// TAIL: this channel tile holds fewer than Vec::N channels (masked loads/stores).
template <int K, Act A, bool TAIL>
inline void channel_tile(const DwConvParams& p, const float* const* rows, float* yrow, int64_t c,
                         int nc, int64_t ow_lo, int64_t ow_hi) {
  const int k = K > 0 ? K : p.k;
  const int64_t C = p.C, W = p.W, s = p.stride, pad = p.pad, dil = p.dil;
  auto ld = [nc](const float* ptr) { return TAIL ? Vec::load_tail(ptr, nc) : Vec::load(ptr); };

  Vec w[(K > 0 ? K : kMaxK) * (K > 0 ? K : kMaxK)];
  for (int t = 0; t < k * k; ++t) w[t] = ld(p.w + t * C + c);
  const Vec bias = ld(p.b + c);

  auto store = [&](int64_t ow, Vec acc) {
    acc = activate<A>(acc);
    if (TAIL) acc.store_tail(yrow + ow * C + c, nc);
    else acc.store(yrow + ow * C + c);
  };
  // Columns whose taps may fall into the left/right padding.
  auto border = [&](int64_t ow) {
    Vec acc = bias;
    const int64_t iw0 = ow * s - pad;
    for (int kh = 0; kh < k; ++kh) {
      if (!rows[kh]) continue;
      for (int kw = 0; kw < k; ++kw) {
        const int64_t iw = iw0 + kw * dil;
        if (iw < 0 || iw >= W) continue;
        acc = fmadd(ld(rows[kh] + iw * C + c), w[kh * k + kw], acc);
      }
    }
    store(ow, acc);
  };

  for (int64_t ow = 0; ow < ow_lo; ++ow) border(ow);
  for (int64_t ow = ow_lo; ow < ow_hi; ++ow) {
    Vec acc = bias;
    const int64_t off = (ow * s - pad) * C + c;
    for (int kh = 0; kh < k; ++kh) {
      if (!rows[kh]) continue;  // same for the whole row: predicted
      const float* px = rows[kh] + off;
      for (int kw = 0; kw < k; ++kw) acc = fmadd(ld(px + kw * dil * C), w[kh * k + kw], acc);
    }
    store(ow, acc);
  }
  for (int64_t ow = std::max(ow_hi, ow_lo); ow < p.OW; ++ow) border(ow);
}

template <int K, Act A>
void rows_kernel(const DwConvParams& p, int64_t row_begin, int64_t row_end, int64_t c_begin,
                 int64_t c_end) {
  const int k = K > 0 ? K : p.k;
  const int64_t s = p.stride, pad = p.pad, dil = p.dil, span = int64_t(k - 1) * dil;
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
      channel_tile<K, A, false>(p, rows, yrow, c, Vec::N, ow_lo, ow_hi);
    if (c < c_end) channel_tile<K, A, true>(p, rows, yrow, c, int(c_end - c), ow_lo, ow_hi);
  }
}

using RowsFn = void (*)(const DwConvParams&, int64_t, int64_t, int64_t, int64_t);

template <int K>
RowsFn pick_act(Act act) {
  switch (act) {
    case Act::Relu: return rows_kernel<K, Act::Relu>;
    case Act::Hardswish: return rows_kernel<K, Act::Hardswish>;
    default: return rows_kernel<K, Act::None>;
  }
}

}  // namespace

void dwconv_bn_act(const DwConvParams& p, int64_t row_begin, int64_t row_end, int64_t c_begin,
                   int64_t c_end) {
  // 3x3 and 5x5 are MobileNetV3's; everything else (odd k <= 7) takes the generic loop.
  const RowsFn fn = p.k == 3 ? pick_act<3>(p.act) : p.k == 5 ? pick_act<5>(p.act) : pick_act<0>(p.act);
  fn(p, row_begin, row_end, c_begin, c_end);
}

}  // namespace MBV3_ISA_NS
}  // namespace mbv3
