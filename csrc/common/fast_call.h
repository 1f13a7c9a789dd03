// What the models' fast calls share (mobilenet_v3/mobilenet_v3_call.cpp,
// q8_mobilenet_v3/q8_mobilenet_v3_call.cpp): whether a dispatcher call made from C++ runs as
// the Python op call would, and the GIL released around it.
#pragma once
#include <Python.h>
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

namespace mbv3 {

// No extra thread-local dispatch keys (dispatch modes, tracing), no torch-function mode, no CPU
// autocast, and not (grad mode on and x requiring grad): none of what the Python call would
// route differently.
bool plain_dispatch(const at::Tensor& x);

// A list or tuple of tensors / ints / floats appended to `out`, converted once when a model keeps
// them for its fast call.  On failure: false, with a Python TypeError set (`error` for the
// tensors, Python's own for the numbers).
bool tensors_from(PyObject* seq, std::vector<at::Tensor>& out, const char* error);
bool ints_from(PyObject* seq, std::vector<int64_t>& out);
bool floats_from(PyObject* seq, std::vector<double>& out);

// Releases the GIL for its scope, holding a reference to `keep` (the capsule whose tensors the
// call reads): another thread may drop the model's last reference meanwhile.
class NoGil {
 public:
  explicit NoGil(PyObject* keep) : keep_((Py_INCREF(keep), keep)), state_(PyEval_SaveThread()) {}
  ~NoGil() {
    PyEval_RestoreThread(state_);
    Py_DECREF(keep_);
  }
  NoGil(const NoGil&) = delete;
  NoGil& operator=(const NoGil&) = delete;

 private:
  PyObject* keep_;
  PyThreadState* state_;
};

}  // namespace mbv3
