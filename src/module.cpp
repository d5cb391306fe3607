// The extension module fastrnn._core. One register_* function per area, as the module grows.
#include <pybind11/pybind11.h>

#include "register.hpp"

#ifndef FASTRNN_VERSION
#define FASTRNN_VERSION "dev"
#endif

PYBIND11_MODULE(_core, m) {
  m.doc() = "fastrnn's compiled kernels. Private: use the fastrnn package.";
  m.attr("__version__") = FASTRNN_VERSION;
  fastrnn::py_bind::register_rnn(m);
  fastrnn::py_bind::register_train(m);
}
