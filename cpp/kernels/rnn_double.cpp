// One variant's RNN kernels for double (compiled once per ISA variant, see CMakeLists.txt).
#include "fastrnn/entries.hpp"

FASTRNN_INSTANTIATE_RNN(double)
