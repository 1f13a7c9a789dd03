// A fully connected layer's [out, in] weight as the kernels read it in place (torch-free).
#pragma once
#include <cstdint>

namespace mbv3 {

// Element (o, i) of the [out, in] matrix is at w[o * ld + i] (by_output == false: one dot
// product per output) or at w[i * ld + o] (by_output == true: outputs in SIMD lanes, one
// broadcast per input).  The bindings pick whichever the caller's strides already are, so
// torchvision's [out, in] (or [out, in, 1, 1]) weights and a transposed view of a pre-packed
// [in, out] buffer both cost nothing.
// panel > 0 (by_output, ld == panel): the outputs in panels of `panel`, each an [in, panel]
// block and the panels in order ([ceil(out / panel), in, panel], the last one zero-padded:
// mbv3_fast.ops.pack_pw_weight_panels), so a block of outputs streams one contiguous buffer.
// T: float or bf16 (common/bf16.h).
template <class T>
struct FcMatrixT {
  const T* w;
  int64_t ld;
  bool by_output;
  int64_t panel = 0;
};
using FcMatrix = FcMatrixT<float>;

}  // namespace mbv3
