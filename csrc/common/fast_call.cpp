#include "fast_call.h"

#include <ATen/PythonTorchFunctionTLS.h>
#include <ATen/autocast_mode.h>
#include <ATen/core/grad_mode.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <torch/csrc/autograd/python_variable.h>

namespace mbv3 {
namespace {

// f(item) for each item of a list or tuple, until f returns false.
template <class F>
bool each_item(PyObject* seq, F&& f) {
  if (!PyList_Check(seq) && !PyTuple_Check(seq)) {
    PyErr_SetString(PyExc_TypeError, "expected a list or tuple");
    return false;
  }
  PyObject** items = PySequence_Fast_ITEMS(seq);
  for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(seq); ++i)
    if (!f(items[i])) return false;
  return true;
}

}  // namespace

bool tensors_from(PyObject* seq, std::vector<at::Tensor>& out, const char* error) {
  return each_item(seq, [&](PyObject* o) {
    if (!THPVariable_Check(o)) return PyErr_SetString(PyExc_TypeError, error), false;
    out.push_back(THPVariable_Unpack(o));
    return true;
  });
}

bool ints_from(PyObject* seq, std::vector<int64_t>& out) {
  return each_item(seq, [&](PyObject* o) {
    out.push_back(PyLong_AsLongLong(o));
    return !PyErr_Occurred();
  });
}

bool floats_from(PyObject* seq, std::vector<double>& out) {
  return each_item(seq, [&](PyObject* o) {
    out.push_back(PyFloat_AsDouble(o));
    return !PyErr_Occurred();
  });
}

bool plain_dispatch(const at::Tensor& x) {
  const auto tls = c10::impl::tls_local_dispatch_key_set();
  if (!(tls.included_ - c10::default_included_set).empty() || at::impl::torch_function_mode_enabled() ||
      at::autocast::is_autocast_enabled(at::kCPU))
    return false;
  return !(at::GradMode::is_enabled() && x.requires_grad());
}

}  // namespace mbv3
