// Per-core arithmetic peak: independent accumulator chains of one instruction, long enough
// that the loop's overhead vanishes.  Prints GFLOP/s (a dot product counts 2 FLOP per pair
// element: vdpbf16ps = 16 lanes x 2 products x 2 = 64 FLOP; vfmadd231ps zmm = 32 FLOP, ymm = 16;
// vpdpbusd = 16 lanes x 4 u8*s8 products x 2 = 128 OP).  The ymm FMA is the AVX2 path's peak,
// and on CPUs without AVX-512 the only line.
// Built and run by bench/peak.py.
#include <immintrin.h>
#include <stdio.h>
#include <time.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + 1e-9 * t.tv_nsec;
}

#define ITERS 20000000L

__attribute__((target("avx512f"))) static double fma_f32(void) {
  __m512 a[16], b = _mm512_set1_ps(1e-8f), c = _mm512_set1_ps(0.999f);
  for (int i = 0; i < 16; ++i) a[i] = _mm512_set1_ps((float)i);
  const double t0 = now();
  for (long it = 0; it < ITERS; ++it)
#pragma GCC unroll 16
    for (int i = 0; i < 16; ++i) a[i] = _mm512_fmadd_ps(a[i], c, b);
  const double dt = now() - t0;
  float s = 0;
  for (int i = 0; i < 16; ++i) s += _mm512_reduce_add_ps(a[i]);
  if (s == 12345.f) printf("!");
  return ITERS * 16.0 * 32 / dt / 1e9;
}

// AVX2 has 16 ymm registers: 12 chains (8 would cover latency x throughput), so that the
// chains and the two constants stay in registers.
__attribute__((target("avx2,fma"))) static double fma_f32_avx2(void) {
  __m256 a[12], b = _mm256_set1_ps(1e-8f), c = _mm256_set1_ps(0.999f);
  for (int i = 0; i < 12; ++i) a[i] = _mm256_set1_ps((float)i);
  const double t0 = now();
  for (long it = 0; it < ITERS; ++it)
#pragma GCC unroll 12
    for (int i = 0; i < 12; ++i) a[i] = _mm256_fmadd_ps(a[i], c, b);
  const double dt = now() - t0;
  float s[8] = {0};
  for (int i = 0; i < 12; ++i) _mm256_storeu_ps(s, _mm256_add_ps(_mm256_loadu_ps(s), a[i]));
  if (s[0] == 12345.f) printf("!");
  return ITERS * 12.0 * 16 / dt / 1e9;
}

__attribute__((target("avx512f,avx512bf16"))) static double dp_bf16(void) {
  __m512 a[16];
  const __m512i x = _mm512_set1_epi32(0x3f803f80), y = _mm512_set1_epi32(0x33003300);  // bf16 1.0, tiny
  for (int i = 0; i < 16; ++i) a[i] = _mm512_set1_ps((float)i);
  const double t0 = now();
  for (long it = 0; it < ITERS; ++it)
#pragma GCC unroll 16
    for (int i = 0; i < 16; ++i) a[i] = _mm512_dpbf16_ps(a[i], (__m512bh)x, (__m512bh)y);
  const double dt = now() - t0;
  float s = 0;
  for (int i = 0; i < 16; ++i) s += _mm512_reduce_add_ps(a[i]);
  if (s == 12345.f) printf("!");
  return ITERS * 16.0 * 64 / dt / 1e9;
}

__attribute__((target("avx512f,avx512vnni"))) static double dp_u8s8(void) {
  __m512i a[16];
  const __m512i x = _mm512_set1_epi8(3), y = _mm512_set1_epi8(-2);
  for (int i = 0; i < 16; ++i) a[i] = _mm512_set1_epi32(i);
  const double t0 = now();
  for (long it = 0; it < ITERS; ++it)
#pragma GCC unroll 16
    for (int i = 0; i < 16; ++i) a[i] = _mm512_dpbusd_epi32(a[i], x, y);
  const double dt = now() - t0;
  int s = 0;
  for (int i = 0; i < 16; ++i) s += _mm512_reduce_add_epi32(a[i]);
  if (s == 12345) printf("!");
  return ITERS * 16.0 * 128 / dt / 1e9;
}

int main(void) {
  if (__builtin_cpu_supports("avx512f")) printf("fp32_fma_gflops %.1f\n", fma_f32());
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    printf("fp32_fma_avx2_gflops %.1f\n", fma_f32_avx2());
  if (__builtin_cpu_supports("avx512bf16")) printf("bf16_dot_gflops %.1f\n", dp_bf16());
  if (__builtin_cpu_supports("avx512vnni")) printf("int8_dot_gops %.1f\n", dp_u8s8());
  return 0;
}
