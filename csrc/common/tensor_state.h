// Python helper for the model's folded-weight cache (mbv3_fast/model.py): one C call checks
// whether any source tensor changed since the weights were folded (the model's fast call,
// mobilenet_v3/mobilenet_v3_call.cpp, records the same state).
#pragma once
#include <Python.h>
#include <ATen/core/Tensor.h>

#include <cstdint>

namespace mbv3 {
// What _tensor_state records of t: version counter, data pointer, dtype / device / layout.
void record_tensor_state(const at::Tensor& t, int64_t out[3]);
// Adds _C._tensor_state(tensors: tuple, state: bytearray) -> int to the extension module.
int add_tensor_state_methods(PyObject* module);
}  // namespace mbv3
