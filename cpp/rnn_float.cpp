// Explicit instantiation of the kernels for float (see fastrnn/dispatch.hpp).
#include "fastrnn/dispatch.hpp"

namespace fastrnn {
template index_t workspace_size<float>(CellKind, const Dims&);
template void forward<float>(CellKind, const Dims&, const ForwardArgs<float>&);
template void backward<float>(CellKind, const Dims&, const BackwardArgs<float>&);
}  // namespace fastrnn
