#include "cpu_isa.h"
#include "q8.h"

#include <atomic>
#include <cstdlib>
#include <stdexcept>
#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#endif

namespace mbv3 {
namespace {

bool cpu_has(Isa isa) {
  switch (isa) {
    case Isa::Scalar:
      return true;
#if defined(__x86_64__) || defined(_M_X64)
    case Isa::Avx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#if !defined(MBV3_NO_AVX512)  // see isa_dispatch.h
    case Isa::Avx512:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
    case Isa::Avx512Bf16:
      return cpu_has(Isa::Avx512) && __builtin_cpu_supports("avx512bf16");
#endif
#endif
#if defined(__aarch64__)
    case Isa::Neon:
      return true;  // Advanced SIMD is mandatory on AArch64.
    case Isa::NeonBf16:
#if defined(__linux__)
      return (getauxval(AT_HWCAP2) & (1UL << 14)) != 0;  // HWCAP2_BF16
#else
      return false;
#endif
#endif
    default:
      return false;
  }
}

Isa parse(const std::string& name) {
  if (name == "scalar") return Isa::Scalar;
  if (name == "avx2") return Isa::Avx2;
  if (name == "avx512") return Isa::Avx512;
  if (name == "neon") return Isa::Neon;
  if (name == "avx512_bf16") return Isa::Avx512Bf16;
  if (name == "neon_bf16") return Isa::NeonBf16;
  throw std::invalid_argument("unknown CPU ISA '" + name +
                              "': expected one of auto, scalar, avx2, avx512, avx512_bf16, neon, neon_bf16");
}

Isa resolve(const std::string& name) {
  if (name == "auto" || name.empty()) return best_isa();
  Isa isa = parse(name);
  if (!cpu_has(isa)) {
    throw std::invalid_argument(std::string("CPU ISA '") + name +
                                "' is not available on this CPU/build (available: " + [] {
                                  std::string s;
                                  for (Isa i : available_isas()) s += std::string(s.empty() ? "" : ", ") + isa_name(i);
                                  return s;
                                }() + ")");
  }
  return isa;
}

std::atomic<int>& current() {
  static std::atomic<int> isa{[] {
    const char* env = std::getenv("MBV3_FAST_CPU_ISA");
    return static_cast<int>(resolve(env ? env : "auto"));
  }()};
  return isa;
}

}  // namespace

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Scalar: return "scalar";
    case Isa::Avx2: return "avx2";
    case Isa::Avx512: return "avx512";
    case Isa::Neon: return "neon";
    case Isa::Avx512Bf16: return "avx512_bf16";
    case Isa::NeonBf16: return "neon_bf16";
  }
  return "?";
}

std::vector<Isa> available_isas() {
  std::vector<Isa> out;
  for (Isa isa : {Isa::Scalar, Isa::Neon, Isa::NeonBf16, Isa::Avx2, Isa::Avx512, Isa::Avx512Bf16})
    if (cpu_has(isa)) out.push_back(isa);
  return out;
}

Isa best_isa() { return available_isas().back(); }
Isa current_isa() { return static_cast<Isa>(current().load(std::memory_order_relaxed)); }
void set_current_isa(const std::string& name) {
  current().store(static_cast<int>(resolve(name)), std::memory_order_relaxed);
}

Q8Isa q8_isa(Isa isa) {
  switch (isa) {
#if MBV3_BUILD_X86
    case Isa::Avx512Bf16:
    case Isa::Avx512:
#if !defined(MBV3_NO_AVX512)
      if (__builtin_cpu_supports("avx512vnni")) return Q8Isa::Avx512Vnni;
#endif
      return Q8Isa::Avx2;
    case Isa::Avx2:
      return Q8Isa::Avx2;
#endif
#if MBV3_BUILD_NEON
    case Isa::NeonBf16:
    case Isa::Neon:
      return Q8Isa::Neon;
#endif
    default:
      return Q8Isa::Scalar;
  }
}

bool cpu_has_avx512_vnni() {
#if defined(__x86_64__) || defined(_M_X64)
  return __builtin_cpu_supports("avx512vnni");
#else
  return false;
#endif
}

const char* q8_isa_name(Q8Isa isa) {
  switch (isa) {
    case Q8Isa::Scalar: return "scalar";
    case Q8Isa::Avx2: return "avx2";
    case Q8Isa::Avx512Vnni: return "avx512_vnni";
    case Q8Isa::Neon: return "neon";
  }
  return "?";
}

}  // namespace mbv3
