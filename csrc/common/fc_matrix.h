// A fully connected layer's [out, in] weight as the kernels read it in place (torch-free).
#pragma once
#include <cstdint>

namespace mbv3 {

// Element (o, i) of the [out, in] matrix is at w[o * ld + i] (by_output == false: one dot
// product per output) or at w[i * ld + o] (by_output == true: outputs in SIMD lanes, one
// broadcast per input).  The bindings pick whichever the caller's strides already are, so
// torchvision's [out, in] (or [out, in, 1, 1]) weights and a transposed view of a pre-packed
// [in, out] buffer both cost nothing.
// T: float or bf16 (common/bf16.h).
template <class T>
struct FcMatrixT {
  const T* w;
  int64_t ld;
  bool by_output;
};
using FcMatrix = FcMatrixT<float>;

}  // namespace mbv3
