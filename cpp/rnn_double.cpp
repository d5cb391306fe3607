// Explicit instantiation of the kernels for double (see fastrnn/dispatch.hpp).
#include "fastrnn/dispatch.hpp"

namespace fastrnn {
template index_t workspace_size<double>(CellKind, const Dims&);
template void forward<double>(CellKind, const Dims&, const ForwardArgs<double>&);
template void backward<double>(CellKind, const Dims&, const BackwardArgs<double>&);
}  // namespace fastrnn
