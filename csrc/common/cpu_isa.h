// Which CPU code path runs: detected once, overridable by MBV3_FAST_CPU_ISA or at run time.
#pragma once
#include <string>
#include <vector>

namespace mbv3 {

// Avx512Bf16 is Avx512 plus AVX512_BF16: every op's AVX-512 source compiled once more with it
// (bf16 stores round with vcvtneps2bf16), and bf16 1x1 convs with weights packed in K pairs
// take the dot-product kernel (vdpbf16ps), as do bf16 FC weights read by rows (SE, head:
// fc_dot_products below).
// NeonBf16 is Neon on a CPU with FEAT_BF16: every op runs its NEON code, and bf16 1x1 convs with
// weights in K pairs take the BFDOT kernel, as do bf16 FC weights read by rows (SE, head).
enum class Isa : int { Scalar = 0, Avx2 = 1, Avx512 = 2, Neon = 3, Avx512Bf16 = 4, NeonBf16 = 5 };

const char* isa_name(Isa isa);
// Paths both compiled into this build and supported by this CPU, best last.
std::vector<Isa> available_isas();
Isa best_isa();
// The path every op uses now (MBV3_FAST_CPU_ISA at load, else the best).
Isa current_isa();
// Throws std::invalid_argument for an unknown name or a path this CPU/build lacks.
void set_current_isa(const std::string& name);

// Whether the path sums bf16 FC weights read by [out, in] rows (the SE's and the head's, in the
// layout the model keeps) with bf16 dot products, on inputs rounded to bf16
// (common/pool_fc_kernel.h); elsewhere bf16 FC weights are widened to float32.
inline bool fc_dot_products(Isa isa) { return isa == Isa::Avx512Bf16 || isa == Isa::NeonBf16; }

}  // namespace mbv3
