#pragma once

#include <pybind11/pybind11.h>

namespace fastrnn::py_bind {
void register_rnn(pybind11::module_& m);
void register_train(pybind11::module_& m);
}  // namespace fastrnn::py_bind
