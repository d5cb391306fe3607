// One variant's RNN kernels for double (compiled once per ISA variant, see CMakeLists.txt).
#include "fastrnn/entries.hpp"

namespace fastrnn::detail {
inline namespace FASTRNN_ISA_NS {
template index_t rnn_workspace_size<double>(CellKind, const Dims&);
template void rnn_forward<double>(CellKind, const Dims&, const ForwardArgs<double>&);
template void rnn_backward<double>(CellKind, const Dims&, const BackwardArgs<double>&);
}  // namespace FASTRNN_ISA_NS
}  // namespace fastrnn::detail
