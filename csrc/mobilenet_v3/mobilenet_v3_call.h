// The eager model's fast call (mobilenet_v3_call.cpp), for the extension module.
#pragma once
#include <Python.h>

namespace mbv3 {
// Adds _C._mobilenet_v3_guard and _C._mobilenet_v3_call to the extension module.
int add_mobilenet_v3_call_methods(PyObject* module);
}  // namespace mbv3
