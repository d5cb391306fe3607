// The training workspace: one caller-owned buffer of scalars, laid out as
//
//   [ header: 64 bytes | gates (T, B, G*H) | hs (T+1, B, H) | cs (T+1, B, H) | extra (T, B, H) ]
//                                               h_0..h_T       LSTM: c_0..c_T   GRU: W_hn h + b_hn
//                                                                               or r*h (reset_before)
//
// The header holds int64 fields (magic, cell, T, B, I, H, state) so that backward can refuse a
// workspace made for another cell or size, never filled, or already consumed.
#pragma once

#include <cstddef>
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

/// a * b, or std::invalid_argument if it overflows int64
inline index_t checked_mul(index_t a, index_t b) {
  index_t r;
  if (__builtin_mul_overflow(a, b, &r)) {
    throw std::invalid_argument("dims: sizes too large (the workspace size overflows int64)");
  }
  return r;
}
inline index_t checked_add(index_t a, index_t b) {
  index_t r;
  if (__builtin_add_overflow(a, b, &r)) {
    throw std::invalid_argument("dims: sizes too large (the workspace size overflows int64)");
  }
  return r;
}

/// Offsets (in scalars) of the regions of the workspace, and its total size.
struct WorkspaceLayout {
  index_t gates = 0, hs = 0, cs = 0, extra = 0, total = 0;
};

template <class S>
WorkspaceLayout workspace_layout(int gates, bool cell_state, bool extra, const Dims& d) {
  static_assert(kHeaderBytes % sizeof(S) == 0);
  const index_t BH = checked_mul(d.B, d.H);
  const index_t steps_BH = checked_mul(d.T, BH);
  const index_t states = checked_add(steps_BH, BH);  // (T+1) * B * H
  WorkspaceLayout L;
  L.gates = kHeaderBytes / static_cast<index_t>(sizeof(S));
  L.hs = checked_add(L.gates, checked_mul(steps_BH, gates));
  L.cs = checked_add(L.hs, states);
  L.extra = checked_add(L.cs, cell_state ? states : 0);
  L.total = checked_add(L.extra, extra ? steps_BH : 0);
  // the largest byte offset must fit too
  checked_mul(L.total, static_cast<index_t>(sizeof(S)));
  return L;
}

struct Header {
  std::int64_t magic, cell, T, B, I, H, state, info;  // info: sizeof(S) | has_bias << 8
};
static_assert(sizeof(Header) == kHeaderBytes);

inline std::int64_t header_info(size_t scalar_size, bool has_bias) {
  return static_cast<std::int64_t>(scalar_size) | (has_bias ? 256 : 0);
}

template <class S>
void write_header(S* ws, CellKind cell, const Dims& d, bool has_bias, WorkspaceState state) {
  const Header h{kMagic, static_cast<std::int64_t>(cell), d.T, d.B, d.I, d.H,
                 static_cast<std::int64_t>(state), header_info(sizeof(S), has_bias)};
  std::memcpy(ws, &h, sizeof h);
}

/// Checks that the workspace was filled by a training forward of this cell, sizes and bias, and
/// not yet used by a backward. Does not modify it.
template <class S>
void check_header(const S* ws, CellKind cell, const Dims& d, bool has_bias) {
  if (reinterpret_cast<std::uintptr_t>(ws) % alignof(std::int64_t) != 0) {
    throw std::invalid_argument("workspace: misaligned; pass the array that forward returned");
  }
  Header h;
  std::memcpy(&h, ws, sizeof h);
  if (h.magic != kMagic || (h.info & 255) != static_cast<std::int64_t>(sizeof(S))) {
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
  if (h.info != header_info(sizeof(S), has_bias)) {
    throw std::invalid_argument(std::string("workspace: made by a forward ") +
                                (has_bias ? "without" : "with") + " biases, not " +
                                (has_bias ? "with" : "without"));
  }
  if (h.state == static_cast<std::int64_t>(WorkspaceState::Consumed)) {
    throw std::invalid_argument(
        "workspace: already consumed by a backward; run forward again (backward overwrites "
        "the saved activations with their gradients)");
  }
  if (h.state != static_cast<std::int64_t>(WorkspaceState::Ready)) {
    throw std::invalid_argument("workspace: header is corrupt");
  }
}

/// Marks a checked workspace consumed, atomically, so that of two concurrent backward calls on
/// one workspace exactly one proceeds and the other gets the "already consumed" error.
template <class S>
void claim_workspace(S* ws) {
  auto* state = reinterpret_cast<std::int64_t*>(reinterpret_cast<char*>(ws) +
                                                offsetof(Header, state));
  std::int64_t expected = static_cast<std::int64_t>(WorkspaceState::Ready);
  if (!__atomic_compare_exchange_n(state, &expected,
                                   static_cast<std::int64_t>(WorkspaceState::Consumed), false,
                                   __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
    throw std::invalid_argument(
        "workspace: already consumed by a backward; run forward again (backward overwrites "
        "the saved activations with their gradients)");
  }
}

}  // namespace fastrnn::detail
