// The extension module fastrnn._core. One register_* function per area, as the module grows.
#include <pybind11/pybind11.h>

#include "fastrnn/fastrnn.hpp"
#include "register.hpp"

#ifndef FASTRNN_VERSION
#define FASTRNN_VERSION "dev"
#endif

PYBIND11_MODULE(_core, m) {
  m.doc() = "fastrnn's compiled kernels. Private: use the fastrnn package.";
  // Choose the kernel variant now (FASTRNN_ISA, else the best this CPU runs), so that a bad
  // FASTRNN_ISA, or a CPU that can run none of the variants, is an ImportError naming the
  // choices, raised before any kernel code runs (pybind11 turns the exception into ImportError).
  (void)fastrnn::isa();
  m.attr("__version__") = FASTRNN_VERSION;
  fastrnn::py_bind::register_rnn(m);
  fastrnn::py_bind::register_train(m);
}
