// The int8 weights' packed layout (Compute::Int8, fastrnn.hpp), the same for every variant: what
// pack_int8 writes and the int8 kernels (int8_kernel.hpp) read.
//
//   header   128 bytes: magic, version, rows m, depth k, gates, panels per gate, quads
//   panels   gate g's units in panels of 16 (the last zero-padded); panel p of gate g holds, for
//            each quad i of the depth (4 values), 16 rows x 4 bytes:
//                byte (i * 16 + r) * 4 + j  =  q(g*U + 16p + r, 4i + j)
//            zero past the depth; `quads` = ceil(k / 4) rounded up to 16 (whole AMX tile steps of
//            64 bytes of depth), so a panel is quads * 64 bytes (the kernels read it unaligned:
//            a copied array may lose any alignment but its scalars')
//   scales   float per padded row (g * panels * 16 + u), zero on pad rows
//   sums     int32 per padded row: the sum of the row's int8 values (for the kernels that read
//            the activations as unsigned, x + 128: sum q x = sum q (x + 128) - 128 * sum q)
// One 16 x 4 block is what one vpdpbusd multiplies by a broadcast quad of x (16 int32 sums), two
// 32-byte halves for AVX2, and 16 of them are one AMX tile of the second operand.
#pragma once

#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>

#include "fastrnn/fastrnn.hpp"

namespace fastrnn::detail {

inline constexpr index_t kI8Rows = 16;       ///< rows per panel
inline constexpr index_t kI8TileQuads = 16;  ///< quads per AMX tile step: the depth's padding
/// The deepest product: the int32 sums of the kernels stay below 2^31 (at most
/// (255 + 128) * 127 * k in magnitude, the unsigned kernels' worst case).
inline constexpr index_t kI8MaxDepth = 32768;
inline constexpr char kI8Magic[8] = {'F', 'R', 'N', 'N', 'Q', 'I', '8', '\0'};
inline constexpr std::int32_t kI8Version = 1;

struct Int8Header {
  char magic[8];
  std::int32_t version, reserved;
  std::int64_t rows, depth, gates, panels, quads;
  std::int64_t pad[9];
};
static_assert(sizeof(Int8Header) == 128);

/// The sizes of a packed matrix and where its parts are (offsets from the start, in bytes).
struct Int8Sizes {
  index_t rows, depth, gates, units, panels, quads;
  index_t panel_bytes() const { return quads * 64; }
  index_t padded_rows() const { return gates * panels * kI8Rows; }
  index_t scales_at() const { return 128 + gates * panels * panel_bytes(); }
  index_t sums_at() const { return scales_at() + padded_rows() * 4; }
  index_t bytes() const { return sums_at() + padded_rows() * 4; }

  static Int8Sizes of(index_t m, index_t k, index_t gates) {
    const index_t U = gates > 0 ? m / gates : 0;
    const index_t q = (k + 3) / 4;
    return {m,
            k,
            gates,
            U,
            (U + kI8Rows - 1) / kI8Rows,
            (q + kI8TileQuads - 1) / kI8TileQuads * kI8TileQuads};
  }
};

/// A packed matrix as the kernels read it, or a run of its gate blocks.
struct Int8View {
  const std::int8_t* panels = nullptr;  ///< gate 0's first panel
  const float* scale = nullptr;         ///< per padded row, from gate 0
  const std::int32_t* sums = nullptr;   ///< per padded row, from gate 0
  index_t rows = 0, depth = 0, gates = 0, units = 0, panels_per_gate = 0, quads = 0;

  index_t panel_bytes() const { return quads * 64; }
  /// panel p of gate g
  const std::int8_t* panel(index_t g, index_t p) const {
    return panels + (g * panels_per_gate + p) * panel_bytes();
  }
  /// the padded row of unit u of gate g (scale, sums)
  index_t prow(index_t g, index_t u) const { return g * panels_per_gate * kI8Rows + u; }
  /// quads holding values of the depth (the rest are padding)
  index_t depth_quads() const { return (depth + 3) / 4; }
  /// the gate blocks [g0, g1)
  Int8View gate_blocks(index_t g0, index_t g1) const {
    Int8View v = *this;
    v.panels = panel(g0, 0);
    v.scale = scale + prow(g0, 0);
    v.sums = sums + prow(g0, 0);
    v.gates = g1 - g0;
    v.rows = v.gates * units;
    return v;
  }
};

/// The view of a packed matrix that must stand for an (m, k) matrix of `gates` gate blocks;
/// std::invalid_argument naming `what` if the buffer is not that (or not a packing at all).
inline Int8View int8_view(const Int8Matrix& a, index_t m, index_t k, index_t gates,
                          const std::string& what) {
  if (!a.data) throw std::invalid_argument(what + ": required (packed int8 weights), got null");
  Int8Header h;
  if (a.bytes < static_cast<index_t>(sizeof h)) {
    throw std::invalid_argument(what + ": not packed int8 weights (too short)");
  }
  std::memcpy(&h, a.data, sizeof h);
  if (std::memcmp(h.magic, kI8Magic, sizeof kI8Magic) != 0 || h.version != kI8Version) {
    throw std::invalid_argument(what + ": not packed int8 weights (pack them with pack_int8)");
  }
  const Int8Sizes z = Int8Sizes::of(m, k, gates);
  if (h.rows != m || h.depth != k || h.gates != gates || h.panels != z.panels ||
      h.quads != z.quads || a.bytes != z.bytes()) {
    throw std::invalid_argument(what + ": packed for a (" + std::to_string(h.rows) + ", " +
                                std::to_string(h.depth) + ") matrix of " + std::to_string(h.gates) +
                                " gates, expected (" + std::to_string(m) + ", " +
                                std::to_string(k) + ") of " + std::to_string(gates));
  }
  Int8View v;
  if (reinterpret_cast<std::uintptr_t>(a.data) % 4 != 0) {  // the scales' and sums' alignment
    throw std::invalid_argument(what + ": packed int8 weights must be 4-byte aligned");
  }
  v.panels = reinterpret_cast<const std::int8_t*>(a.data + 128);
  v.scale = reinterpret_cast<const float*>(a.data + z.scales_at());
  v.sums = reinterpret_cast<const std::int32_t*>(a.data + z.sums_at());
  v.rows = m;
  v.depth = k;
  v.gates = gates;
  v.units = z.units;
  v.panels_per_gate = z.panels;
  v.quads = z.quads;
  return v;
}

}  // namespace fastrnn::detail
