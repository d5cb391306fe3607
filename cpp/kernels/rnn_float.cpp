// One variant's RNN kernels for float (compiled once per ISA variant, see CMakeLists.txt).
#include "fastrnn/entries.hpp"

FASTRNN_INSTANTIATE_RNN(float)
