// Definitions of the public entry points of fastrnn.hpp: argument checks, then dispatch from the
// runtime CellKind to the compile-time cell policy. Included by one .cpp per scalar type, which
// instantiates it explicitly, so that Eigen's templates are compiled once per type.
#pragma once

#include <stdexcept>
#include <string>

#include "fastrnn/cells.hpp"
#include "fastrnn/driver.hpp"
#include "fastrnn/stack.hpp"
#include "fastrnn/fastrnn.hpp"
#include "fastrnn/workspace.hpp"

namespace fastrnn {
namespace detail {

template <class F>
decltype(auto) with_cell(CellKind cell, F&& f) {
  switch (cell) {
    case CellKind::RnnTanh: return f(RnnCell<false>{});
    case CellKind::RnnRelu: return f(RnnCell<true>{});
    case CellKind::Lstm: return f(LstmCell{});
    case CellKind::Gru: return f(GruCell{});
    case CellKind::GruResetBefore: return f(GruResetBeforeCell{});
  }
  throw std::invalid_argument("cell: unknown cell kind " + std::to_string(static_cast<int>(cell)));
}

inline void check_dims(CellKind cell, const Dims& d) {
  if (d.T < 0 || d.B < 0) throw std::invalid_argument("dims: T and B must be >= 0");
  if (d.I < 1 || d.H < 1) throw std::invalid_argument("dims: I and H must be >= 1");
  if (d.L < 1) throw std::invalid_argument("num_layers: must be >= 1");
  if (d.D != 1 && d.D != 2) throw std::invalid_argument("directions: must be 1 or 2");
  if (d.P < 0 || d.P >= d.H) {
    throw std::invalid_argument("proj_size: must be >= 0 and smaller than hidden_size");
  }
  if (d.P > 0 && cell != CellKind::Lstm) {
    throw std::invalid_argument("proj_size: only LSTM layers have a projection");
  }
}

inline void require(const void* p, const char* name) {
  if (!p) throw std::invalid_argument(std::string(name) + ": required, got a null pointer");
}

template <class S>
void check_weights(const Weights<S>* w, const Dims& d) {
  require(w, "weights");
  const bool bias = w[0].b_ih != nullptr;
  for (index_t k = 0; k < d.L * d.D; ++k) {
    require(w[k].w_ih, "w_ih");
    require(w[k].w_hh, "w_hh");
    if ((w[k].b_ih == nullptr) != (w[k].b_hh == nullptr) || (w[k].b_ih != nullptr) != bias) {
      throw std::invalid_argument("b_ih, b_hh: give both biases or neither, in every layer");
    }
    if ((w[k].w_hr != nullptr) != (d.P > 0)) {
      throw std::invalid_argument("w_hr: required exactly when proj_size > 0");
    }
  }
}

}  // namespace detail

template <class S>
index_t workspace_size(CellKind cell, const Dims& dims) {
  detail::check_dims(cell, dims);
  return detail::with_cell(cell, [&](auto c) {
    using Cell = decltype(c);
    // room for dropout multipliers whenever there is more than one layer
    return detail::stack_layout<S>(Cell::kGates, Cell::kCellState, Cell::kExtra, dims,
                                   dims.L > 1)
        .total;
  });
}

template <class S>
void forward(CellKind cell, const Dims& dims, const ForwardArgs<S>& a) {
  detail::check_dims(cell, dims);
  detail::check_weights(a.weights, dims);
  if (dims.T * dims.B > 0) {
    detail::require(a.x, "x");
    detail::require(a.y, "y");
  }
  detail::require(a.h_n, "h_n");
  if (has_cell_state(cell)) detail::require(a.c_n, "c_n");
  Eigen::setNbThreads(1);  // parallelism is fastrnn's own, over fixed tiles (parallel.hpp)
  detail::with_cell(cell, [&](auto c) { detail::stack_forward<decltype(c)>(dims, a); });
}

template <class S>
void backward(CellKind cell, const Dims& dims, const BackwardArgs<S>& a) {
  detail::check_dims(cell, dims);
  detail::check_weights(a.weights, dims);
  detail::require(a.workspace, "workspace");
  detail::require(a.grads, "grads");
  if (dims.T * dims.B > 0) detail::require(a.x, "x");
  detail::require(a.dh0, "dh0");
  if (has_cell_state(cell)) detail::require(a.dc0, "dc0");
  for (index_t k = 0; k < dims.L * dims.D; ++k) {
    detail::require(a.grads[k].dw_ih, "dw_ih");
    detail::require(a.grads[k].dw_hh, "dw_hh");
    if (a.weights[k].b_ih) {
      detail::require(a.grads[k].db_ih, "db_ih");
      detail::require(a.grads[k].db_hh, "db_hh");
    }
    if (dims.P > 0) detail::require(a.grads[k].dw_hr, "dw_hr");
  }
  Eigen::setNbThreads(1);  // parallelism is fastrnn's own, over fixed tiles (parallel.hpp)
  detail::with_cell(cell, [&](auto c) { detail::stack_backward<decltype(c)>(dims, a); });
}

}  // namespace fastrnn
