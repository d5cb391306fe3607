// The gate layout: where unit j of gate g lives. Every array with a gate axis -- the weights'
// rows, the biases, a step's gates and their gradients, the saved activations -- stacks the G
// gate blocks PyTorch's way (the picture in fastrnn.hpp): gate 0's H units, then gate 1's, ...
// (TensorFlow's lstm_ops has the same kind of helper for its i, c, f, o blocks.) The kernels ask
// this type for gate offsets instead of writing g * H + j themselves.
#pragma once

#include "fastrnn/isa_namespace.hpp"  // first: only kernel units compile this

#include "fastrnn/fastrnn.hpp"

namespace fastrnn::detail {
inline namespace FASTRNN_ISA_NS {

/// Gate blocks of H units each, side by side in a row (or, for a weight matrix, in its rows).
struct GateLayout {
  index_t H;  ///< units per gate block

  /// Offset of unit j of gate g in a row of gates (for a weight matrix: its row index).
  constexpr index_t at(index_t g, index_t j = 0) const { return g * H + j; }
  /// Values in `gates` whole gate blocks (the width of a row of G gates: size(G)).
  constexpr index_t size(index_t gates) const { return gates * H; }
};

}  // namespace FASTRNN_ISA_NS
}  // namespace fastrnn::detail
