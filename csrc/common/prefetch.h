// Software prefetch of a strided block into L2, spread over the work that precedes its use.
#pragma once
#include <cstdint>

namespace mbv3 {

// Rows [r0, r1) of a matrix with `stride` bytes between rows, `bytes` bytes from `base` in each:
// every cache line of those spans is requested into L2 (prefetcht1).  For weights that are read
// once per layer at batch 1 (cold in L2), issued one panel ahead so the fetch overlaps compute.
inline void prefetch_rows_l2(const void* base, int64_t stride, int64_t r0, int64_t r1, int64_t bytes) {
  if (bytes <= 0) return;
  const char* row = static_cast<const char*>(base) + r0 * stride;
  for (int64_t r = r0; r < r1; ++r, row += stride) {
    // Lines that hold [row, row + bytes): step from the line of the first byte.
    const uintptr_t first = reinterpret_cast<uintptr_t>(row) & ~uintptr_t(63);
    const uintptr_t last = reinterpret_cast<uintptr_t>(row + bytes - 1);
    for (uintptr_t a = first; a <= last; a += 64) __builtin_prefetch(reinterpret_cast<const void*>(a), 0, 2);
  }
}

}  // namespace mbv3
