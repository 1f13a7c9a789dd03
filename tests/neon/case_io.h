// Minimal binary I/O for the NEON harnesses (run under qemu-aarch64): a case file is a stream
// of little-endian int64 headers and float32 arrays, written by tests/neon_harness.py.
#pragma once
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "common/bf16.h"

// The element type a harness runs: float32, or bf16 when run with a third argument "bf16" (or
// "k_pairs": bf16 through the 1x1 dot-product kernel; "bf16_dot": bf16 through the op's FEAT_BF16
// unit, whose FC rows or conv tap pairs take BFDOT).  The case file stays float32 either way:
// the test sends values already rounded to bf16 (converted exactly here) and gets the bf16
// outputs back widened to float32 (exactly).
inline bool mode_is(int argc, char** argv, const char* mode) { return argc == 4 && std::strcmp(argv[3], mode) == 0; }
inline bool bf16_requested(int argc, char** argv) {
  return mode_is(argc, argv, "bf16") || mode_is(argc, argv, "k_pairs") || mode_is(argc, argv, "bf16_dot");
}
inline bool usage_ok(int argc, char** argv) {
  if (argc == 3 || bf16_requested(argc, argv) || mode_is(argc, argv, "panels")) return true;
  std::fprintf(stderr, "usage: %s cases.bin out.bin [bf16|k_pairs|bf16_dot|panels]\n", argv[0]);
  return false;
}
inline std::vector<mbv3::bf16> to_bf16(const std::vector<float>& v) {
  std::vector<mbv3::bf16> h(v.size());
  for (size_t i = 0; i < v.size(); ++i) h[i] = mbv3::float_to_bf16(v[i]);
  return h;
}
inline std::vector<float> to_float(const std::vector<mbv3::bf16>& h) {
  std::vector<float> v(h.size());
  for (size_t i = 0; i < h.size(); ++i) v[i] = mbv3::bf16_to_float(h[i]);
  return v;
}

struct CaseReader {
  FILE* f;
  explicit CaseReader(const char* path) : f(std::fopen(path, "rb")) {
    if (!f) { std::perror(path); std::exit(2); }
  }
  ~CaseReader() { std::fclose(f); }
  int64_t i64() {
    int64_t v;
    if (std::fread(&v, sizeof v, 1, f) != 1) { std::fprintf(stderr, "short read\n"); std::exit(2); }
    return v;
  }
  // n int64 values as T (the harnesses' integer tensors).
  template <class T>
  std::vector<T> ints(int64_t n) {
    std::vector<T> v(static_cast<size_t>(n));
    for (auto& e : v) e = static_cast<T>(i64());
    return v;
  }
  std::vector<float> floats(int64_t n) {
    std::vector<float> v(static_cast<size_t>(n));
    if (n && std::fread(v.data(), sizeof(float), v.size(), f) != v.size()) {
      std::fprintf(stderr, "short read\n");
      std::exit(2);
    }
    return v;
  }
};

struct CaseWriter {
  FILE* f;
  explicit CaseWriter(const char* path) : f(std::fopen(path, "wb")) {
    if (!f) { std::perror(path); std::exit(2); }
  }
  ~CaseWriter() { std::fclose(f); }
  void floats(const std::vector<float>& v) { std::fwrite(v.data(), sizeof(float), v.size(), f); }
};
