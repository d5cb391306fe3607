// The training workspace: one caller-owned buffer of scalars (see StackLayout and DirLayout).
// Its header holds int64 fields (magic, cell, sizes, bias, a hash of the lengths, state) so that
// backward can refuse a workspace made for another cell or size, never filled, or already
// consumed.
#pragma once

#include "fastrnn/isa_namespace.hpp"  // first: only kernel units compile this

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>

#include "fastrnn/fastrnn.hpp"

namespace fastrnn::detail {
inline namespace FASTRNN_ISA_NS {

inline constexpr std::int64_t kMagic = 0x3130535752524e46;  // "FNRRWS01" little-endian

enum class WorkspaceState : std::int64_t { Ready = 1, Consumed = 2 };

[[noreturn]] inline void throw_too_large() {
  throw std::invalid_argument("dims: sizes too large (the workspace size overflows int64)");
}
/// a * b, or std::invalid_argument if it overflows int64
inline index_t checked_mul(index_t a, index_t b) {
  index_t r;
#if defined(__GNUC__) || defined(__clang__)
  if (__builtin_mul_overflow(a, b, &r)) throw_too_large();
#else  // sizes are >= 0 here (check_dims)
  if (a < 0 || b < 0 || (a != 0 && b > INT64_MAX / a)) throw_too_large();
  r = a * b;
#endif
  return r;
}
inline index_t checked_add(index_t a, index_t b) {
  index_t r;
#if defined(__GNUC__) || defined(__clang__)
  if (__builtin_add_overflow(a, b, &r)) throw_too_large();
#else
  if (a < 0 || b < 0 || b > INT64_MAX - a) throw_too_large();
  r = a + b;
#endif
  return r;
}

/// Offsets (in scalars, from the start of its region) of the saved arrays of one layer and
/// direction, and the region's size.
///   gates (T, B, G*H) | states (T+1, B, Hs) | cstates (T+1, B, H) LSTM | extra (T, B, H) GRU |
///   hc (T, B, H) LSTM with projection: o*tanh(c) before W_hr |
///   layer-normalised cells (norm): xhat_ih, xhat_hh (T, B, G*H) the normalised input projection
///   and recurrent product | chat (T, B, H) the normalised c_t | rstd (T, B, 3) the three rows'
///   1/sqrt(var + eps) (chat: cells with a cell state)
/// States live in T+1 slots: the forward direction reads slot t and writes slot t+1 at step t,
/// the reverse direction reads slot t+1 and writes slot t, so that for both the inputs of the T
/// steps are one contiguous block (one GEMM for dW_hh).
struct DirLayout {
  index_t gates = 0, states = 0, cstates = 0, extra = 0, hc = 0, xhat_ih = 0, xhat_hh = 0, chat = 0,
          rstd = 0, total = 0;
};

inline DirLayout dir_layout(int gates, bool cell_state, bool extra, bool norm, const Dims& d) {
  const index_t BH = checked_mul(d.B, d.H);
  const index_t TBH = checked_mul(d.T, BH);
  const index_t slots = checked_add(d.T, 1);
  DirLayout L;
  L.gates = 0;
  L.states = checked_mul(TBH, gates);
  L.cstates = checked_add(L.states, checked_mul(slots, checked_mul(d.B, d.hs())));
  L.extra = checked_add(L.cstates, cell_state ? checked_mul(slots, BH) : 0);
  L.hc = checked_add(L.extra, extra ? TBH : 0);
  L.xhat_ih = checked_add(L.hc, d.P > 0 ? TBH : 0);
  L.xhat_hh = checked_add(L.xhat_ih, norm ? checked_mul(TBH, gates) : 0);
  L.chat = checked_add(L.xhat_hh, norm ? checked_mul(TBH, gates) : 0);
  L.rstd = checked_add(L.chat, norm && cell_state ? TBH : 0);
  L.total = checked_add(L.rstd, norm ? checked_mul(checked_mul(d.T, d.B), 3) : 0);
  return L;
}

/// The whole workspace:
///   [ header | (layer, direction) regions, l*D + d | outputs of layers 0..L-2 (T, B, D*Hs),
///     after dropout (the inputs of layers 1..L-1) | dropout multipliers (L-1, T, B, D*Hs) ]
struct StackLayout {
  index_t header = 0, dirs = 0, dir_size = 0, outputs = 0, masks = 0, total = 0;
  index_t dir(index_t l, index_t d, index_t D) const { return dirs + (l * D + d) * dir_size; }
};

inline constexpr std::int64_t kHeaderBytes = 128;

template <class S>
StackLayout stack_layout(int gates, bool cell_state, bool extra, bool norm, const Dims& d,
                         bool dropout) {
  static_assert(kHeaderBytes % sizeof(S) == 0);
  StackLayout L;
  L.header = 0;
  L.dirs = kHeaderBytes / static_cast<index_t>(sizeof(S));
  L.dir_size = dir_layout(gates, cell_state, extra, norm, d).total;
  const index_t layer_out = checked_mul(checked_mul(d.T, d.B), checked_mul(d.D, d.hs()));
  L.outputs = checked_add(L.dirs, checked_mul(checked_mul(d.L, d.D), L.dir_size));
  L.masks = checked_add(L.outputs, checked_mul(d.L - 1, layer_out));
  L.total = checked_add(L.masks, dropout ? checked_mul(d.L - 1, layer_out) : 0);
  checked_mul(L.total, static_cast<index_t>(sizeof(S)));  // the byte size must fit too
  return L;
}

struct Header {
  std::int64_t magic, cell, T, B, I, H, P, L, D, state, info, lengths_hash;
  double clip;
  std::int64_t reserved[3];
};
static_assert(sizeof(Header) == kHeaderBytes);

inline constexpr std::int64_t kInfoReverse = 1 << 14, kInfoInputForget = 1 << 15,
                              kInfoZoneoutH = 1 << 16, kInfoZoneoutC = 1 << 17;

/// info: sizeof(S) | has_bias << 8 | has_dropout << 9 | compute << 10 | reverse << 14 |
/// input_forget << 15 (and the header's `clip`: CellOptions::clip's bits)
inline std::int64_t header_info(size_t scalar_size, bool has_bias, bool has_dropout,
                                Compute compute, bool reverse, bool input_forget) {
  return static_cast<std::int64_t>(scalar_size) | (has_bias ? 256 : 0) | (has_dropout ? 512 : 0) |
         (static_cast<std::int64_t>(compute) << 10) | (reverse ? kInfoReverse : 0) |
         (input_forget ? kInfoInputForget : 0);
}

inline const char* compute_name(Compute c) {
  return c == Compute::Bf16 ? "bfloat16" : "the arrays' dtype";
}

/// FNV-1a over the lengths (0 when there are none), to check backward gets forward's lengths.
inline std::int64_t lengths_hash(const index_t* lengths, index_t B) {
  if (!lengths) return 0;
  std::uint64_t h = 1469598103934665603ULL;
  for (index_t b = 0; b < B; ++b) {
    h = (h ^ static_cast<std::uint64_t>(lengths[b])) * 1099511628211ULL;
  }
  return static_cast<std::int64_t>(h | 1);
}

struct HeaderFacts {
  CellKind cell;
  Dims d;
  bool has_bias, has_dropout;
  std::int64_t lengths_hash;
  Compute compute;
  CellOptions options;
  bool zoneout_h = false, zoneout_c = false;
};

template <class S>
void write_header(S* ws, const HeaderFacts& f, WorkspaceState state) {
  Header h{};
  h.magic = kMagic;
  h.cell = static_cast<std::int64_t>(f.cell);
  h.T = f.d.T;
  h.B = f.d.B;
  h.I = f.d.I;
  h.H = f.d.H;
  h.P = f.d.P;
  h.L = f.d.L;
  h.D = f.d.D;
  h.state = static_cast<std::int64_t>(state);
  h.info = header_info(sizeof(S), f.has_bias, f.has_dropout, f.compute, f.d.reverse,
                       f.options.input_forget) |
           (f.zoneout_h ? kInfoZoneoutH : 0) | (f.zoneout_c ? kInfoZoneoutC : 0);
  h.lengths_hash = f.lengths_hash;
  h.clip = f.options.clip;
  std::memcpy(ws, &h, sizeof h);
}

inline std::string dims_str(std::int64_t T, std::int64_t B, std::int64_t I, std::int64_t H,
                            std::int64_t P, std::int64_t L, std::int64_t D) {
  return "(T, B, I, H, P, L, D) = (" + std::to_string(T) + ", " + std::to_string(B) + ", " +
         std::to_string(I) + ", " + std::to_string(H) + ", " + std::to_string(P) + ", " +
         std::to_string(L) + ", " + std::to_string(D) + ")";
}

/// Checks that the workspace was filled by a training forward of this cell, sizes, bias and
/// lengths, and not yet used by a backward; returns whether it holds dropout multipliers.
/// Does not modify it.
template <class S>
bool check_header(const S* ws, const HeaderFacts& f) {
  if (reinterpret_cast<std::uintptr_t>(ws) % alignof(std::int64_t) != 0) {
    throw std::invalid_argument("workspace: misaligned; pass the array that forward returned");
  }
  Header h;
  std::memcpy(&h, ws, sizeof h);
  if (h.magic != kMagic || (h.info & 255) != static_cast<std::int64_t>(sizeof(S))) {
    throw std::invalid_argument(
        "workspace: not filled by a training-mode forward (wrong buffer or dtype)");
  }
  if (h.cell != static_cast<std::int64_t>(f.cell)) {
    throw std::invalid_argument(std::string("workspace: made by a forward of cell '") +
                                cell_name(static_cast<CellKind>(h.cell)) + "', not '" +
                                cell_name(f.cell) + "'");
  }
  const Dims& d = f.d;
  if (h.T != d.T || h.B != d.B || h.I != d.I || h.H != d.H || h.P != d.P || h.L != d.L ||
      h.D != d.D) {
    throw std::invalid_argument("workspace: made by a forward with " +
                                dims_str(h.T, h.B, h.I, h.H, h.P, h.L, h.D) + ", not " +
                                dims_str(d.T, d.B, d.I, d.H, d.P, d.L, d.D));
  }
  const bool ws_bias = (h.info & 256) != 0;
  if (ws_bias != f.has_bias) {
    throw std::invalid_argument(std::string("workspace: made by a forward ") +
                                (f.has_bias ? "without" : "with") + " biases, not " +
                                (f.has_bias ? "with" : "without"));
  }
  const auto ws_compute = static_cast<Compute>((h.info >> 10) & 15);
  if (ws_compute != f.compute) {
    throw std::invalid_argument(std::string("compute: the forward of this workspace ran its "
                                            "products in ") +
                                compute_name(ws_compute) + ", this backward asks for " +
                                compute_name(f.compute));
  }
  const bool ws_reverse = (h.info & kInfoReverse) != 0;
  if (ws_reverse != d.reverse) {
    throw std::invalid_argument(std::string("reverse: the forward of this workspace ran ") +
                                (ws_reverse ? "reverse-only" : "forward in time") +
                                ", this backward asks for " +
                                (d.reverse ? "reverse-only" : "forward in time"));
  }
  const bool ws_coupled = (h.info & kInfoInputForget) != 0;
  if (ws_coupled != f.options.input_forget || h.clip != f.options.clip) {
    throw std::invalid_argument(
        "clip, input_forget: this backward's (" + std::to_string(f.options.clip) + ", " +
        (f.options.input_forget ? "true" : "false") + ") are not the forward's (" +
        std::to_string(h.clip) + ", " + (ws_coupled ? "true" : "false") + ")");
  }
  if (((h.info & kInfoZoneoutH) != 0) != f.zoneout_h ||
      ((h.info & kInfoZoneoutC) != 0) != f.zoneout_c) {
    throw std::invalid_argument(
        "zoneout_h, zoneout_c: give the backward the zoneout multipliers its forward had");
  }
  if (h.lengths_hash != f.lengths_hash) {
    throw std::invalid_argument("lengths: not the lengths the forward of this workspace used");
  }
  if (h.state == static_cast<std::int64_t>(WorkspaceState::Consumed)) {
    throw std::invalid_argument(
        "workspace: already consumed by a backward; run forward again (backward overwrites "
        "the saved activations with their gradients)");
  }
  if (h.state != static_cast<std::int64_t>(WorkspaceState::Ready)) {
    throw std::invalid_argument("workspace: header is corrupt");
  }
  return (h.info & 512) != 0;
}

/// Marks a checked workspace consumed, atomically, so that of two concurrent backward calls on
/// one workspace exactly one proceeds and the other gets the "already consumed" error.
template <class S>
void claim_workspace(S* ws) {
  auto* state =
      reinterpret_cast<std::int64_t*>(reinterpret_cast<char*>(ws) + offsetof(Header, state));
  std::int64_t expected = static_cast<std::int64_t>(WorkspaceState::Ready);
  if (!__atomic_compare_exchange_n(state, &expected,
                                   static_cast<std::int64_t>(WorkspaceState::Consumed), false,
                                   __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
    throw std::invalid_argument(
        "workspace: already consumed by a backward; run forward again (backward overwrites "
        "the saved activations with their gradients)");
  }
}

}  // namespace FASTRNN_ISA_NS
}  // namespace fastrnn::detail
