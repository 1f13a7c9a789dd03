// Picks an op's per-ISA entry point for the path in force (cpu_isa.h).  Each op passes its
// own functions; paths not compiled into this build are never named.
#pragma once
#include "cpu_isa.h"

#if defined(__x86_64__) || defined(_M_X64)
#define MBV3_BUILD_X86 1
#else
#define MBV3_BUILD_X86 0
#endif
#if defined(__aarch64__)
#define MBV3_BUILD_NEON 1
#else
#define MBV3_BUILD_NEON 0
#endif

// MBV3_NO_AVX512: the AVX-512 units are left out of this build (setup.py does so for a
// sanitized build on a CPU that cannot run them).
#if MBV3_BUILD_X86 && !defined(MBV3_NO_AVX512)
#define MBV3_X86_CASES(fn)             \
  case ::mbv3::Isa::Avx512Bf16:        \
    return ::mbv3::avx512_bf16::fn;    \
  case ::mbv3::Isa::Avx512:            \
    return ::mbv3::avx512::fn;         \
  case ::mbv3::Isa::Avx2:              \
    return ::mbv3::avx2::fn;
#elif MBV3_BUILD_X86
#define MBV3_X86_CASES(fn)             \
  case ::mbv3::Isa::Avx2:              \
    return ::mbv3::avx2::fn;
#else
#define MBV3_X86_CASES(fn)
#endif
// NeonBf16 runs an op's neon unit, unless the op has a FEAT_BF16 unit of its own (the SE and
// the head, whose bf16 FC rows take BFDOT): MBV3_ISA_SELECT_NEON_BF16_AS names neon_bf16 there.
#if MBV3_BUILD_NEON
#define MBV3_NEON_CASES(fn)   \
  case ::mbv3::Isa::NeonBf16: \
  case ::mbv3::Isa::Neon:     \
    return ::mbv3::neon::fn;
#define MBV3_NEON_BF16_CASES(fn)       \
  case ::mbv3::Isa::NeonBf16:          \
    return ::mbv3::neon_bf16::fn;      \
  case ::mbv3::Isa::Neon:              \
    return ::mbv3::neon::fn;
#else
#define MBV3_NEON_CASES(fn)
#define MBV3_NEON_BF16_CASES(fn)
#endif

// Usage: auto* kernel = MBV3_ISA_SELECT(pwconv_tile, isa);
// Entry points overloaded by element type (float, bf16) name the one they want by its function
// type: auto* kernel = MBV3_ISA_SELECT_AS(DwConvFn<T>, dwconv_bn_act, isa);
#define MBV3_ISA_SELECT_WITH(neon_cases, Sig, fn, isa) \
  [&]() -> Sig* {                                      \
    switch (isa) {                                     \
      MBV3_X86_CASES(fn)                               \
      neon_cases(fn)                                   \
      default:                                         \
        return ::mbv3::scalar::fn;                     \
    }                                                  \
  }()
#define MBV3_ISA_SELECT_AS(Sig, fn, isa) MBV3_ISA_SELECT_WITH(MBV3_NEON_CASES, Sig, fn, isa)
#define MBV3_ISA_SELECT_NEON_BF16_AS(Sig, fn, isa) MBV3_ISA_SELECT_WITH(MBV3_NEON_BF16_CASES, Sig, fn, isa)
#define MBV3_ISA_SELECT(fn, isa) MBV3_ISA_SELECT_AS(decltype(::mbv3::scalar::fn), fn, isa)
