// Minimal binary I/O for the NEON harnesses (run under qemu-aarch64): a case file is a stream
// of little-endian int64 headers and float32 arrays, written by tests/neon_harness.py.
#pragma once
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

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
