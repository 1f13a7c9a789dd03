// The int8 model's fast call (q8_mobilenet_v3_call.cpp), for the extension module.
#pragma once
#include <Python.h>

namespace mbv3 {
// Adds _C._q8_mobilenet_v3_pack and _C._q8_mobilenet_v3_call to the extension module.
int add_q8_mobilenet_v3_call_methods(PyObject* module);
}  // namespace mbv3
