// The training workspace: one caller-owned buffer of scalars, laid out as
//
//   [ header: 64 bytes | gates (T, B, G*H) | hs (T+1, B, H) | cs (T+1, B, H) | extra (T, B, H) ]
//                                               h_0..h_T       LSTM: c_0..c_T   GRU: W_hn h + b_hn
//                                                                               or r*h (reset_before)
//
// The header holds int64 fields (magic, cell, T, B, I, H, state) so that backward can refuse a
// workspace made for another cell or size, never filled, or already consumed.
#pragma once

#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>

#include "fastrnn/fastrnn.hpp"

namespace fastrnn::detail {

struct LstmCell;
struct GruCell;
struct GruResetBeforeCell;
template <bool kRelu>
struct RnnCell;

template <class Cell>
constexpr CellKind cell_kind_of();
template <>
constexpr CellKind cell_kind_of<RnnCell<false>>() { return CellKind::RnnTanh; }
template <>
constexpr CellKind cell_kind_of<RnnCell<true>>() { return CellKind::RnnRelu; }
template <>
constexpr CellKind cell_kind_of<LstmCell>() { return CellKind::Lstm; }
template <>
constexpr CellKind cell_kind_of<GruCell>() { return CellKind::Gru; }
template <>
constexpr CellKind cell_kind_of<GruResetBeforeCell>() { return CellKind::GruResetBefore; }

inline constexpr std::int64_t kHeaderBytes = 64;
inline constexpr std::int64_t kMagic = 0x3130535752524e46;  // "FNRRWS01" little-endian

enum class WorkspaceState : std::int64_t { Ready = 1, Consumed = 2 };

/// Offsets (in scalars) of the regions of the workspace, and its total size.
struct WorkspaceLayout {
  index_t gates = 0, hs = 0, cs = 0, extra = 0, total = 0;
};

template <class S>
WorkspaceLayout workspace_layout(int gates, bool cell_state, bool extra, const Dims& d) {
  static_assert(kHeaderBytes % sizeof(S) == 0);
  const index_t BH = d.B * d.H;
  WorkspaceLayout L;
  L.gates = kHeaderBytes / static_cast<index_t>(sizeof(S));
  L.hs = L.gates + d.T * d.B * gates * d.H;
  L.cs = L.hs + (d.T + 1) * BH;
  L.extra = L.cs + (cell_state ? (d.T + 1) * BH : 0);
  L.total = L.extra + (extra ? d.T * BH : 0);
  return L;
}

struct Header {
  std::int64_t magic, cell, T, B, I, H, state, scalar_size;
};
static_assert(sizeof(Header) == kHeaderBytes);

template <class S>
void write_header(S* ws, CellKind cell, const Dims& d, WorkspaceState state) {
  const Header h{kMagic, static_cast<std::int64_t>(cell), d.T, d.B, d.I, d.H,
                 static_cast<std::int64_t>(state), static_cast<std::int64_t>(sizeof(S))};
  std::memcpy(ws, &h, sizeof h);
}

/// Checks that the workspace was filled by a training forward of this cell and these sizes and
/// not yet used by a backward, then marks it consumed (before any of it is overwritten).
template <class S>
void check_and_consume_header(S* ws, CellKind cell, const Dims& d) {
  Header h;
  std::memcpy(&h, ws, sizeof h);
  if (h.magic != kMagic || h.scalar_size != static_cast<std::int64_t>(sizeof(S))) {
    throw std::invalid_argument(
        "workspace: not filled by a training-mode forward (wrong buffer or dtype)");
  }
  if (h.cell != static_cast<std::int64_t>(cell)) {
    throw std::invalid_argument(std::string("workspace: made by a forward of cell '") +
                                cell_name(static_cast<CellKind>(h.cell)) + "', not '" +
                                cell_name(cell) + "'");
  }
  if (h.T != d.T || h.B != d.B || h.I != d.I || h.H != d.H) {
    throw std::invalid_argument(
        "workspace: made by a forward with (T, B, I, H) = (" + std::to_string(h.T) + ", " +
        std::to_string(h.B) + ", " + std::to_string(h.I) + ", " + std::to_string(h.H) +
        "), not (" + std::to_string(d.T) + ", " + std::to_string(d.B) + ", " +
        std::to_string(d.I) + ", " + std::to_string(d.H) + ")");
  }
  if (h.state == static_cast<std::int64_t>(WorkspaceState::Consumed)) {
    throw std::invalid_argument(
        "workspace: already consumed by a backward; run forward again (backward overwrites "
        "the saved activations with their gradients)");
  }
  if (h.state != static_cast<std::int64_t>(WorkspaceState::Ready)) {
    throw std::invalid_argument("workspace: header is corrupt");
  }
  h.state = static_cast<std::int64_t>(WorkspaceState::Consumed);
  std::memcpy(ws, &h, sizeof h);
}

}  // namespace fastrnn::detail
