// Definitions of the public entry points of fastrnn.hpp: argument checks, then dispatch from the
// runtime CellKind to the compile-time cell policy. Included by one .cpp per scalar type, which
// instantiates it explicitly, so that Eigen's templates are compiled once per type.
#pragma once

#include <stdexcept>
#include <string>

#include "fastrnn/cells.hpp"
#include "fastrnn/driver.hpp"
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

inline void check_dims(const Dims& d) {
  if (d.T < 0 || d.B < 0) throw std::invalid_argument("dims: T and B must be >= 0");
  if (d.I < 1 || d.H < 1) throw std::invalid_argument("dims: I and H must be >= 1");
}

inline void require(const void* p, const char* name) {
  if (!p) throw std::invalid_argument(std::string(name) + ": required, got a null pointer");
}

template <class S>
void check_weights(const Weights<S>& w) {
  require(w.w_ih, "w_ih");
  require(w.w_hh, "w_hh");
  if ((w.b_ih == nullptr) != (w.b_hh == nullptr)) {
    throw std::invalid_argument("b_ih, b_hh: give both biases or neither");
  }
}

}  // namespace detail

template <class S>
index_t workspace_size(CellKind cell, const Dims& dims) {
  detail::check_dims(dims);
  return detail::with_cell(cell, [&](auto c) {
    using Cell = decltype(c);
    return detail::workspace_layout<S>(Cell::kGates, Cell::kCellState, Cell::kExtra, dims).total;
  });
}

template <class S>
void forward(CellKind cell, const Dims& dims, const Weights<S>& w, const ForwardArgs<S>& a) {
  detail::check_dims(dims);
  detail::check_weights(w);
  if (dims.T * dims.B > 0) detail::require(a.x, "x");
  detail::require(a.y, "y");
  detail::require(a.h_n, "h_n");
  if (has_cell_state(cell)) detail::require(a.c_n, "c_n");
  detail::with_cell(cell, [&](auto c) { detail::forward_loop<decltype(c)>(dims, w, a); });
}

template <class S>
void backward(CellKind cell, const Dims& dims, const Weights<S>& w, const BackwardArgs<S>& a) {
  detail::check_dims(dims);
  detail::check_weights(w);
  detail::require(a.workspace, "workspace");
  if (dims.T * dims.B > 0) {
    detail::require(a.x, "x");
    detail::require(a.dx, "dx");
  }
  detail::require(a.dh0, "dh0");
  detail::require(a.dw_ih, "dw_ih");
  detail::require(a.dw_hh, "dw_hh");
  if (w.b_ih) {
    detail::require(a.db_ih, "db_ih");
    detail::require(a.db_hh, "db_hh");
  }
  if (has_cell_state(cell)) detail::require(a.dc0, "dc0");
  detail::with_cell(cell, [&](auto c) { detail::backward_loop<decltype(c)>(dims, w, a); });
}

}  // namespace fastrnn
