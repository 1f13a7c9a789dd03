// bfloat16 storage, torch-free and ISA-free: the upper 16 bits of an IEEE float32.
//
// The kernels widen bf16 to float32 on load, compute and accumulate in float32, and round on
// store.  Rounding is round-to-nearest-even with every NaN stored as 0x7FC0, the same bits as
// c10::BFloat16 (so a kernel's store equals PyTorch's `.to(torch.bfloat16)` of the same float).
// The per-ISA vector versions live in simd.h and follow these two functions bit for bit, but for
// avx512_bf16, whose vcvtneps2bf16 keeps a NaN's sign and top payload bits (quieted) and flushes
// float32 denormals to zero, as oneDNN's bf16 kernels do.
#pragma once
#include <cstdint>
#include <cstring>

namespace mbv3 {

struct bf16 {
  uint16_t bits;
};
static_assert(sizeof(bf16) == 2, "bf16 is two bytes, as at::BFloat16");

inline float bf16_to_float(bf16 h) {
  const uint32_t u = uint32_t(h.bits) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

constexpr uint16_t kBf16QuietNaN = 0x7FC0;

inline bf16 float_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return {kBf16QuietNaN};
  return {uint16_t((u + 0x7fffu + ((u >> 16) & 1u)) >> 16)};
}

// The element types a kernel streams: float32 or bf16.  to_f32 reads one element as float.
inline float to_f32(float f) { return f; }
inline float to_f32(bf16 h) { return bf16_to_float(h); }

}  // namespace mbv3
