// Fused squeeze-excitation phases over float32 or bf16 x / y / weights (float32 sums, means,
// hidden and scale), written once against `Vec` and compiled once per ISA (se_<isa>.cpp).  Channels (or FC outputs) sit in SIMD lanes; a block of up to
// kBlockVecs vectors (+ one masked tail) is held in registers while its loop streams past:
//   pool (NHWC):  block of channels outer, the chunk's pixels inner (stride C), sums in regs;
//   pool (NCHW):  contiguous planes, four at a time, summed pairwise;
//   FC, by_output: block of outputs in regs, one broadcast input per step (axpy);
//   FC, by rows:   one row's dot product at a time (the weights stream in order);
//   apply (NHWC): block of scales in regs, pixels inner; (NCHW): one broadcast per plane.
#pragma once
#include <algorithm>
#include <type_traits>

#include "se.h"  // before the ISA target is switched on (common/simd.h)
#include "common/pool_fc_kernel.h"

namespace mbv3 {
namespace MBV3_ISA_NS {
namespace {

// NHWC: y = x * scale over npix pixel rows starting at x / y (same sample).
// T: float or bf16 (x widened on load, y rounded on store; the scale is float32).
template <class T>
inline void apply_nhwc_rows(const T* x, T* y, const float* scale, int64_t C, int64_t npix) {
  for_blocks(0, C, [&](auto blk, int64_t c0, int tail) {
    using B = decltype(blk);
    Vec s[B::K];
#pragma GCC unroll 16
    for (int k = 0; k < B::K; ++k) s[k] = B::load(scale + c0, k, tail);
    const T* px = x + c0;
    T* py = y + c0;
    for (int64_t i = 0; i < npix; ++i, px += C, py += C) {
#pragma GCC unroll 16
      for (int k = 0; k < B::K; ++k) B::store(py, k, tail, mul(B::load(px, k, tail), s[k]));
    }
  });
}

template <class T>
inline void apply_plane(const T* x, T* y, float scale, int64_t n) {
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

template <class T>
void pool(const SeArgs<T>& p, int64_t u_begin, int64_t u_end, float* part) {
  if (!p.nhwc) {  // unit = one (n, c) plane; planes are consecutive in memory
    int64_t u = u_begin;
    for (; u + 4 <= u_end; u += 4) sum_planes4(p.x + u * p.HW, p.HW, part + u);
    for (; u < u_end; ++u) part[u] = reduce_add(sum_lanes(p.x + u * p.HW, p.HW));
    return;
  }
  const int64_t chunks = se_num_chunks(p);
  for (int64_t u = u_begin; u < u_end; ++u) {
    const int64_t n = u / chunks, k = u % chunks, hw0 = k * p.chunk;
    const int64_t npix = std::min(p.chunk, p.HW - hw0);
    pool_nhwc_chunk(p.x + (n * p.HW + hw0) * p.C, p.C, npix, part + u * p.C);
  }
}

template <class T>
void sample_mean(const SeArgs<T>& p, const float* part_n, float* mean) {
  const int64_t chunks = p.nhwc ? se_num_chunks(p) : 1, C = p.C;
  const Vec inv = Vec::set1(1.f / float(p.HW));
  for (int64_t c = 0; c < C; c += Vec::N) {
    const int64_t n = C - c;
    // The chunks' partial sums, two levels deep (groups of 16 chunks) like everything else.
    Vec total = Vec::zero();
    for (int64_t k0 = 0; k0 < chunks; k0 += 16) {
      Vec g = load_any(part_n + k0 * C + c, n);
      for (int64_t k = k0 + 1, k1 = std::min(chunks, k0 + 16); k < k1; ++k)
        g = add(g, load_any(part_n + k * C + c, n));
      total = add(total, g);
    }
    store_any(mean + c, n, mul(total, inv));
  }
}

static_assert(kSeFcSamples == kFcMaxSamples, "fc_layer takes up to kSeFcSamples samples");

template <class T>
void fc1(const SeArgs<T>& p, int64_t nb, const float* mean, float* h, int64_t s_begin, int64_t s_end) {
  fc_layer(p.w1, p.b1, nb, mean, p.C, p.C, s_begin, s_end, h, p.S, [](Vec v) { return relu(v); });
}

template <class T>
void fc2(const SeArgs<T>& p, int64_t nb, const float* h, float* scale, int64_t c_begin, int64_t c_end) {
  fc_layer(p.w2, p.b2, nb, h, p.S, p.S, c_begin, c_end, scale, p.C, [](Vec v) { return hardsigmoid(v); });
}

template <class T>
void apply(const SeArgs<T>& p, const float* scale, int64_t u_begin, int64_t u_end) {
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

}  // namespace

#define MBV3_DEFINE_SE_T(P)                                                                         \
  void se_pool(const P& p, int64_t u_begin, int64_t u_end, float* part) { pool(p, u_begin, u_end, part); } \
  void se_mean(const P& p, const float* part_n, float* m) { sample_mean(p, part_n, m); }                \
  void se_fc1(const P& p, int64_t nb, const float* m, float* h, int64_t s_begin, int64_t s_end) {  \
    fc1(p, nb, m, h, s_begin, s_end);                                                              \
  }                                                                                                 \
  void se_fc2(const P& p, int64_t nb, const float* h, float* scale, int64_t c_begin, int64_t c_end) { \
    fc2(p, nb, h, scale, c_begin, c_end);                                                          \
  }                                                                                                 \
  void se_apply(const P& p, const float* scale, int64_t u_begin, int64_t u_end) {                  \
    apply(p, scale, u_begin, u_end);                                                               \
  }
MBV3_DEFINE_SE_T(SeParams)
MBV3_DEFINE_SE_T(SeParamsBf16)
#undef MBV3_DEFINE_SE_T

}  // namespace MBV3_ISA_NS
}  // namespace mbv3
