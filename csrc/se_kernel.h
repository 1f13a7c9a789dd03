// Fused squeeze-excitation phases over float32, written once against `Vec` and compiled once
// per ISA (se_<isa>.cpp).  Channels (or FC outputs) sit in SIMD lanes; a block of up to
// kBlockVecs vectors (+ one masked tail) is held in registers while its loop streams past:
//   pool (NHWC):  block of channels outer, the chunk's pixels inner (stride C), sums in regs;
//   pool (NCHW):  one contiguous plane at a time, kPlaneAcc vector accumulators;
//   FC, by_output: block of outputs in regs, one broadcast input per step (axpy);
//   FC, by rows:   four dot products at a time sharing the input loads;
//   apply (NHWC): block of scales in regs, pixels inner; (NCHW): one broadcast per plane.
#pragma once
#include <algorithm>
#include <type_traits>

#include "se.h"
#include "simd.h"

namespace mbv3 {
namespace MBV3_ISA_NS {
namespace {

constexpr int kBlockVecs = 8;
constexpr int kPlaneAcc = 4;

template <int V>
using Int = std::integral_constant<int, V>;

// V full vectors and, when TAIL, one more holding `tail` (< Vec::N) lanes.
template <int V, bool TAIL>
struct Block {
  static constexpr int K = V + (TAIL ? 1 : 0);
  static inline Vec load(const float* p, int k, int tail) {
    return (TAIL && k == V) ? Vec::load_tail(p + k * Vec::N, tail) : Vec::load(p + k * Vec::N);
  }
  static inline void store(float* p, int k, int tail, Vec v) {
    if (TAIL && k == V) v.store_tail(p + k * Vec::N, tail);
    else v.store(p + k * Vec::N);
  }
};

// Splits [begin, end) into register blocks; body(Block<V, TAIL>{}, offset, tail).
template <class Body>
inline void for_blocks(int64_t begin, int64_t end, Body&& body) {
  constexpr int64_t B = int64_t(kBlockVecs) * Vec::N;
  int64_t c = begin;
  for (; c + B <= end; c += B) body(Block<kBlockVecs, false>{}, c, 0);
  const int64_t rem = end - c;
  if (rem <= 0) return;
  const int nfull = int(rem / Vec::N), tail = int(rem % Vec::N);
  auto go = [&](auto v) {
    constexpr int V = decltype(v)::value;
    if (tail) body(Block<V, true>{}, c, tail);
    else if constexpr (V > 0) body(Block<V, false>{}, c, 0);
  };
  static_assert(kBlockVecs == 8, "extend the switch below");
  switch (nfull) {
    case 0: go(Int<0>{}); break;
    case 1: go(Int<1>{}); break;
    case 2: go(Int<2>{}); break;
    case 3: go(Int<3>{}); break;
    case 4: go(Int<4>{}); break;
    case 5: go(Int<5>{}); break;
    case 6: go(Int<6>{}); break;
    default: go(Int<7>{}); break;
  }
}

inline Vec load_any(const float* p, int64_t n) { return n >= Vec::N ? Vec::load(p) : Vec::load_tail(p, int(n)); }
inline void store_any(float* p, int64_t n, Vec v) {
  if (n >= Vec::N) v.store(p);
  else v.store_tail(p, int(n));
}

// Sum of n contiguous floats, kPlaneAcc independent accumulators (also shortens the chains
// the rounding error grows along).
inline float sum_contiguous(const float* x, int64_t n) {
  Vec acc[kPlaneAcc];
  for (int a = 0; a < kPlaneAcc; ++a) acc[a] = Vec::zero();
  int64_t i = 0;
  for (; i + kPlaneAcc * Vec::N <= n; i += kPlaneAcc * Vec::N)
    for (int a = 0; a < kPlaneAcc; ++a) acc[a] = add(acc[a], Vec::load(x + i + a * Vec::N));
  for (int a = 0; i < n; i += Vec::N, ++a) acc[a] = add(acc[a], load_any(x + i, n - i));
  return reduce_add(add(add(acc[0], acc[1]), add(acc[2], acc[3])));
}

// out[o] = sum_i W(o, i) in[i] for o in [o_begin, o_end)  (no bias, no activation).
inline void matvec(const SeMatrix& m, const float* in, int64_t nin, int64_t o_begin, int64_t o_end,
                   float* out) {
  if (m.by_output) {
    for_blocks(o_begin, o_end, [&](auto blk, int64_t o0, int tail) {
      using B = decltype(blk);
      Vec acc[B::K];
#pragma GCC unroll 16
      for (int k = 0; k < B::K; ++k) acc[k] = Vec::zero();
      const float* w = m.w + o0;
      for (int64_t i = 0; i < nin; ++i, w += m.ld) {
        const Vec xi = Vec::set1(in[i]);
#pragma GCC unroll 16
        for (int k = 0; k < B::K; ++k) acc[k] = fmadd(B::load(w, k, tail), xi, acc[k]);
      }
#pragma GCC unroll 16
      for (int k = 0; k < B::K; ++k) B::store(out + o0, k, tail, acc[k]);
    });
    return;
  }
  int64_t o = o_begin;
  for (; o + 4 <= o_end; o += 4) {
    const float* w0 = m.w + o * m.ld;
    const float *w1 = w0 + m.ld, *w2 = w1 + m.ld, *w3 = w2 + m.ld;
    Vec a0 = Vec::zero(), a1 = Vec::zero(), a2 = Vec::zero(), a3 = Vec::zero();
    int64_t i = 0;
    for (; i + Vec::N <= nin; i += Vec::N) {
      const Vec xv = Vec::load(in + i);
      a0 = fmadd(Vec::load(w0 + i), xv, a0);
      a1 = fmadd(Vec::load(w1 + i), xv, a1);
      a2 = fmadd(Vec::load(w2 + i), xv, a2);
      a3 = fmadd(Vec::load(w3 + i), xv, a3);
    }
    if (i < nin) {
      const int t = int(nin - i);
      const Vec xv = Vec::load_tail(in + i, t);
      a0 = fmadd(Vec::load_tail(w0 + i, t), xv, a0);
      a1 = fmadd(Vec::load_tail(w1 + i, t), xv, a1);
      a2 = fmadd(Vec::load_tail(w2 + i, t), xv, a2);
      a3 = fmadd(Vec::load_tail(w3 + i, t), xv, a3);
    }
    out[o] = reduce_add(a0);
    out[o + 1] = reduce_add(a1);
    out[o + 2] = reduce_add(a2);
    out[o + 3] = reduce_add(a3);
  }
  for (; o < o_end; ++o) {
    const float* w0 = m.w + o * m.ld;
    Vec a0 = Vec::zero();
    for (int64_t i = 0; i < nin; i += Vec::N) a0 = fmadd(load_any(w0 + i, nin - i), load_any(in + i, nin - i), a0);
    out[o] = reduce_add(a0);
  }
}

// v[o] = act(v[o] + bias[o]) over [begin, end).
template <class Act>
inline void bias_act(float* v, const float* bias, int64_t begin, int64_t end, Act act) {
  for (int64_t o = begin; o < end; o += Vec::N) {
    const int64_t n = end - o;
    store_any(v + o, n, act(add(load_any(v + o, n), load_any(bias + o, n))));
  }
}

// NHWC: the pixels [hw0, hw1) of sample row base `x` (already offset to pixel hw0), all
// channels, summed per channel into `sum`.
inline void pool_nhwc_chunk(const float* x, int64_t C, int64_t npix, float* sum) {
  for_blocks(0, C, [&](auto blk, int64_t c0, int tail) {
    using B = decltype(blk);
    Vec acc[B::K];
#pragma GCC unroll 16
    for (int k = 0; k < B::K; ++k) acc[k] = Vec::zero();
    const float* px = x + c0;
    for (int64_t i = 0; i < npix; ++i, px += C) {
#pragma GCC unroll 16
      for (int k = 0; k < B::K; ++k) acc[k] = add(acc[k], B::load(px, k, tail));
    }
#pragma GCC unroll 16
    for (int k = 0; k < B::K; ++k) B::store(sum + c0, k, tail, acc[k]);
  });
}

// NHWC: y = x * scale over npix pixel rows starting at x / y (same sample).
inline void apply_nhwc_rows(const float* x, float* y, const float* scale, int64_t C, int64_t npix) {
  for_blocks(0, C, [&](auto blk, int64_t c0, int tail) {
    using B = decltype(blk);
    Vec s[B::K];
#pragma GCC unroll 16
    for (int k = 0; k < B::K; ++k) s[k] = B::load(scale + c0, k, tail);
    const float* px = x + c0;
    float* py = y + c0;
    for (int64_t i = 0; i < npix; ++i, px += C, py += C) {
#pragma GCC unroll 16
      for (int k = 0; k < B::K; ++k) B::store(py, k, tail, mul(B::load(px, k, tail), s[k]));
    }
  });
}

inline void apply_plane(const float* x, float* y, float scale, int64_t n) {
  const Vec s = Vec::set1(scale);
  int64_t i = 0;
  for (; i + 4 * Vec::N <= n; i += 4 * Vec::N) {
    mul(Vec::load(x + i), s).store(y + i);
    mul(Vec::load(x + i + Vec::N), s).store(y + i + Vec::N);
    mul(Vec::load(x + i + 2 * Vec::N), s).store(y + i + 2 * Vec::N);
    mul(Vec::load(x + i + 3 * Vec::N), s).store(y + i + 3 * Vec::N);
  }
  for (; i < n; i += Vec::N) store_any(y + i, n - i, mul(load_any(x + i, n - i), s));
}

}  // namespace

void se_pool(const SeParams& p, int64_t u_begin, int64_t u_end, float* part) {
  if (!p.nhwc) {  // unit = one (n, c) plane
    for (int64_t u = u_begin; u < u_end; ++u) part[u] = sum_contiguous(p.x + u * p.HW, p.HW);
    return;
  }
  const int64_t chunks = se_num_chunks(p);
  for (int64_t u = u_begin; u < u_end; ++u) {
    const int64_t n = u / chunks, k = u % chunks, hw0 = k * p.chunk;
    const int64_t npix = std::min(p.chunk, p.HW - hw0);
    pool_nhwc_chunk(p.x + (n * p.HW + hw0) * p.C, p.C, npix, part + u * p.C);
  }
}

void se_mean(const SeParams& p, const float* part_n, float* mean) {
  const int64_t chunks = p.nhwc ? se_num_chunks(p) : 1, C = p.C;
  const Vec inv = Vec::set1(1.f / float(p.HW));
  for (int64_t c = 0; c < C; c += Vec::N) {
    const int64_t n = C - c;
    Vec acc = load_any(part_n + c, n);
    for (int64_t k = 1; k < chunks; ++k) acc = add(acc, load_any(part_n + k * C + c, n));
    store_any(mean + c, n, mul(acc, inv));
  }
}

void se_fc1(const SeParams& p, const float* mean, float* h, int64_t s_begin, int64_t s_end) {
  matvec(p.w1, mean, p.C, s_begin, s_end, h);
  bias_act(h, p.b1, s_begin, s_end, [](Vec v) { return relu(v); });
}

void se_fc2(const SeParams& p, const float* h, float* scale, int64_t c_begin, int64_t c_end) {
  matvec(p.w2, h, p.S, c_begin, c_end, scale);
  bias_act(scale, p.b2, c_begin, c_end, [](Vec v) { return hardsigmoid(v); });
}

void se_apply(const SeParams& p, const float* scale, int64_t u_begin, int64_t u_end) {
  if (!p.nhwc) {  // unit = one (n, c) plane; scale is [N][C] = one float per plane
    for (int64_t u = u_begin; u < u_end; ++u)
      apply_plane(p.x + u * p.HW, p.y + u * p.HW, scale[u], p.HW);
    return;
  }
  // unit = one pixel; runs of pixels within one sample share that sample's scales.
  for (int64_t u = u_begin; u < u_end;) {
    const int64_t n = u / p.HW, run = std::min(u_end, (n + 1) * p.HW) - u;
    apply_nhwc_rows(p.x + u * p.C, p.y + u * p.C, scale + n * p.C, p.C, run);
    u += run;
  }
}

}  // namespace MBV3_ISA_NS
}  // namespace mbv3
