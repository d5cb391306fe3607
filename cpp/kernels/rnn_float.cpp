// One variant's RNN kernels for float (compiled once per ISA variant, see CMakeLists.txt).
#include "fastrnn/entries.hpp"

namespace fastrnn::detail {
inline namespace FASTRNN_ISA_NS {
template index_t rnn_workspace_size<float>(CellKind, const Dims&);
template void rnn_forward<float>(CellKind, const Dims&, const ForwardArgs<float>&);
template void rnn_backward<float>(CellKind, const Dims&, const BackwardArgs<float>&);
}  // namespace FASTRNN_ISA_NS
}  // namespace fastrnn::detail
