// Python helper for the model's folded-weight cache (mbv3_fast/model.py): one C call checks
// whether any source tensor changed since the weights were folded.
#pragma once
#include <Python.h>

namespace mbv3 {
// Adds _C._tensor_state(tensors: tuple, state: bytearray) -> int to the extension module.
int add_tensor_state_methods(PyObject* module);
}  // namespace mbv3
