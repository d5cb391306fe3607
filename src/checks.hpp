// Argument checking shared by the bindings: arrays checked (type, dtype, shape, C order,
// alignment, writeability) with errors naming the argument, and the GIL release around C++ work.
// Header-only: inline functions and templates.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "fastrnn/fastrnn.hpp"

namespace fastrnn::py_bind {
namespace py = pybind11;

inline std::string shape_str(const std::vector<index_t>& s) {
  std::ostringstream os;
  os << "(";
  for (size_t k = 0; k < s.size(); ++k) os << (k ? ", " : "") << s[k];
  os << (s.size() == 1 ? ",)" : ")");
  return os.str();
}

inline std::string shape_of(const py::array& a) {
  std::vector<index_t> s(a.shape(), a.shape() + a.ndim());
  return shape_str(s);
}

/// An array argument that may be absent (None). Note that a default-constructed py::array is
/// an empty array, not "no array": absence must be explicit.
using Opt = std::optional<py::array>;

/// `obj` as a numpy array of dtype S (any shape), or a TypeError naming the argument.
template <class S>
py::array typed_array(const py::object& obj, const char* name) {
  if (!py::isinstance<py::array>(obj)) {
    throw py::type_error(std::string(name) + ": expected a numpy.ndarray, got " +
                         std::string(py::str(py::type::of(obj).attr("__name__"))));
  }
  auto a = py::reinterpret_borrow<py::array>(obj);
  if (!a.dtype().equal(py::dtype::of<S>())) {
    throw py::type_error(std::string(name) + ": expected dtype " +
                         std::string(py::str(py::dtype::of<S>())) + ", got " +
                         std::string(py::str(a.dtype())));
  }
  return a;
}

/// The array behind `obj`, checked against the expected dtype and shape, or nullopt when
/// `obj` is None and the argument is optional.
template <class S>
Opt checked(const py::object& obj, const char* name, const std::vector<index_t>& shape,
            bool optional = false, bool writeable = false) {
  if (obj.is_none()) {
    if (optional) return std::nullopt;
    throw py::type_error(std::string(name) + ": required, got None");
  }
  py::array a = typed_array<S>(obj, name);
  bool ok = a.ndim() == static_cast<py::ssize_t>(shape.size());
  for (size_t k = 0; ok && k < shape.size(); ++k) ok = a.shape(k) == shape[k];
  if (!ok) {
    throw py::value_error(std::string(name) + ": expected shape " + shape_str(shape) + ", got " +
                          shape_of(a));
  }
  if (!(a.flags() & py::array::c_style)) {
    throw py::value_error(std::string(name) + ": must be C-contiguous");
  }
  if (reinterpret_cast<std::uintptr_t>(a.data()) % alignof(S) != 0) {
    throw py::value_error(std::string(name) + ": must be aligned to its dtype");
  }
  if (writeable && !a.writeable()) {
    throw py::value_error(std::string(name) + ": must be writeable");
  }
  return a;
}

template <class S>
const S* ptr(const Opt& a) {
  return a ? static_cast<const S*>(a->data()) : nullptr;
}
template <class S>
S* mut_ptr(Opt& a) {
  return a ? static_cast<S*>(a->mutable_data()) : nullptr;
}
inline py::object or_none(const Opt& a) { return a ? py::object(*a) : py::object(py::none()); }

/// The interrupt hook of calls from Python: with the GIL taken back for a moment, run Python's
/// signal handlers (Ctrl-C raises KeyboardInterrupt there); a pending exception stops the call.
inline bool python_signals_pending(void*) {
  py::gil_scoped_acquire gil;
  return PyErr_CheckSignals() != 0;
}

/// Runs the compute with the GIL released and the interrupt hook installed; a KeyboardInterrupt
/// (or any exception a signal handler raised) is re-raised once the C++ call has unwound.
template <class F>
void run_released(F&& compute) {
  bool interrupted = false;
  {
    py::gil_scoped_release release;  // raw buffers only from here, see the file comment
    ScopedInterruptHook hook(&python_signals_pending, nullptr);
    try {
      compute();
    } catch (const Interrupted&) {
      interrupted = true;
    }
  }
  if (interrupted) throw py::error_already_set();
}

}  // namespace fastrnn::py_bind
