// One variant's RNN entry points: from the runtime CellKind to the compile-time cell policy, then
// the stack driver. The arguments were checked before (cpp/api.cpp). Included by the kernel units
// of one scalar type each (cpp/kernels/rnn_float.cpp, rnn_double.cpp), which instantiate it
// explicitly, so that Eigen's templates are compiled once per type and variant; the table unit
// sees the declarations and the extern templates only.
#pragma once

#include "fastrnn/isa_namespace.hpp"  // first: only kernel units compile this

#include <Eigen/Core>
#include <stdexcept>
#include <string>

#include "fastrnn/cells.hpp"
#include "fastrnn/fastrnn.hpp"
#include "fastrnn/stack.hpp"
#include "fastrnn/workspace.hpp"

namespace fastrnn::detail {
inline namespace FASTRNN_ISA_NS {

template <class F>
decltype(auto) with_cell(CellKind cell, F&& f) {
  switch (cell) {
    case CellKind::RnnTanh: return f(RnnCell<false>{});
    case CellKind::RnnRelu: return f(RnnCell<true>{});
    case CellKind::Lstm: return f(LstmCell{});
    case CellKind::Gru: return f(GruCell{});
    case CellKind::GruResetBefore: return f(GruResetBeforeCell{});
    case CellKind::LstmPeephole: return f(LstmPeepholeCell{});
    case CellKind::LayerNormLstm: return f(LnLstmCell{});
    case CellKind::LayerNormGru: return f(LnGruCell{});
  }
  throw std::invalid_argument("cell: unknown cell kind " + std::to_string(static_cast<int>(cell)));
}

template <class S>
index_t rnn_workspace_size(CellKind cell, const Dims& dims) {
  return with_cell(cell, [&](auto c) {
    using Cell = decltype(c);
    // room for dropout multipliers whenever there is more than one layer
    return stack_layout<S>(Cell::kGates, Cell::kCellState, Cell::kExtra, Cell::kNorm, dims,
                           dims.L > 1)
        .total;
  });
}

template <class S>
void rnn_forward(CellKind cell, const Dims& dims, const ForwardArgs<S>& a) {
  Eigen::setNbThreads(1);  // parallelism is fastrnn's own, over fixed tiles (parallel.hpp)
  with_cell(cell, [&](auto c) { stack_forward<decltype(c)>(dims, a); });
}

template <class S>
void rnn_backward(CellKind cell, const Dims& dims, const BackwardArgs<S>& a) {
  Eigen::setNbThreads(1);
  with_cell(cell, [&](auto c) { stack_backward<decltype(c)>(dims, a); });
}

/// The entry points of one scalar type, each declaration after `prefix`: `extern template` here,
/// `template` (the explicit instantiation) in the kernel unit of that type.
#define FASTRNN_RNN_ENTRIES(prefix, S)                                      \
  prefix index_t rnn_workspace_size<S>(CellKind, const Dims&);              \
  prefix void rnn_forward<S>(CellKind, const Dims&, const ForwardArgs<S>&); \
  prefix void rnn_backward<S>(CellKind, const Dims&, const BackwardArgs<S>&);
FASTRNN_RNN_ENTRIES(extern template, float)
FASTRNN_RNN_ENTRIES(extern template, double)

}  // namespace FASTRNN_ISA_NS
}  // namespace fastrnn::detail

/// Instantiates the entry points of one scalar type (at global scope, in its kernel unit).
#define FASTRNN_INSTANTIATE_RNN(S)  \
  namespace fastrnn::detail {       \
  inline namespace FASTRNN_ISA_NS { \
  FASTRNN_RNN_ENTRIES(template, S)  \
  }                                 \
  }
