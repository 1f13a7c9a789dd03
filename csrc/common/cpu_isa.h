// Which CPU code path runs: detected once, overridable by MBV3_FAST_CPU_ISA or at run time.
#pragma once
#include <string>
#include <vector>

namespace mbv3 {

enum class Isa : int { Scalar = 0, Avx2 = 1, Avx512 = 2, Neon = 3 };

const char* isa_name(Isa isa);
// Paths both compiled into this build and supported by this CPU, best last.
std::vector<Isa> available_isas();
Isa best_isa();
// The path every op uses now (MBV3_FAST_CPU_ISA at load, else the best).
Isa current_isa();
// Throws std::invalid_argument for an unknown name or a path this CPU/build lacks.
void set_current_isa(const std::string& name);

}  // namespace mbv3
