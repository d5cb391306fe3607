// Layers and directions: runs the per-direction driver (driver.hpp) over a stack, as
// torch.nn.RNN/LSTM/GRU do, in one call.
//
//   x --> layer 0 (forward -> y[:, :, :Hs], reverse -> y[:, :, Hs:]) --dropout--> layer 1 ...
//
// Variable lengths: the batch is put in order of decreasing length (a stable sort), so that the
// sequences running at step t are the first active[t] rows; x is gathered in that order with its
// padded steps zeroed (so that no padding value, not even NaN, reaches a GEMM), and the results
// are scattered back. Without lengths nothing is copied or permuted.
#pragma once

#include "fastrnn/isa_namespace.hpp"  // first: only kernel units compile this

#include <algorithm>
#include <cassert>
#include <numeric>
#include <vector>

#include "fastrnn/driver.hpp"
#include "fastrnn/workspace.hpp"

namespace fastrnn::detail {
inline namespace FASTRNN_ISA_NS {

/// The batch order and per-step active counts for variable lengths.
struct LengthPlan {
  bool any = false;             ///< lengths were given
  std::vector<index_t> order;   ///< order[i] = the caller's row at sorted row i
  std::vector<index_t> active;  ///< (T) rows running step t
};

/// lengths: every entry in [0, T] (checked before the kernels are called: cpp/api.cpp)
inline LengthPlan plan_lengths(const index_t* lengths, index_t T, index_t B) {
  LengthPlan p;
  if (!lengths) return p;
  for (index_t b = 0; b < B; ++b) assert(lengths[b] >= 0 && lengths[b] <= T);
  p.any = true;
  p.order.resize(static_cast<size_t>(B));
  std::iota(p.order.begin(), p.order.end(), index_t(0));
  std::stable_sort(p.order.begin(), p.order.end(),
                   [&](index_t a, index_t b) { return lengths[a] > lengths[b]; });
  p.active.assign(static_cast<size_t>(T), 0);
  for (index_t i = 0; i < B; ++i) {
    for (index_t t = 0; t < lengths[p.order[static_cast<size_t>(i)]]; ++t)
      ++p.active[static_cast<size_t>(t)];
  }
  return p;
}

/// dst (T, B, W) = src rows in sorted order; with `lengths`, rows past a sequence's length zero.
template <class S>
void gather_rows(const LengthPlan& p, const index_t* lengths, const S* src, S* dst, index_t T,
                 index_t B, index_t W) {
  for (index_t t = 0; t < T; ++t) {
    for (index_t i = 0; i < B; ++i) {
      const index_t b = p.order[static_cast<size_t>(i)];
      S* out = dst + (t * B + i) * W;
      if (lengths && t >= lengths[b]) {
        std::fill(out, out + W, S(0));
      } else {
        copy_n(out, src + (t * B + b) * W, W);
      }
    }
  }
}

/// dst rows in the caller's order from sorted src: (N, B, W) blocks
template <class S>
void scatter_rows(const LengthPlan& p, const S* src, S* dst, index_t N, index_t B, index_t W) {
  for (index_t n = 0; n < N; ++n) {
    for (index_t i = 0; i < B; ++i) {
      copy_n(dst + (n * B + p.order[static_cast<size_t>(i)]) * W, src + (n * B + i) * W, W);
    }
  }
}

template <class S>
void gather_states(const LengthPlan& p, const S* src, S* dst, index_t N, index_t B, index_t W) {
  for (index_t n = 0; n < N; ++n) {
    for (index_t i = 0; i < B; ++i) {
      copy_n(dst + (n * B + i) * W, src + (n * B + p.order[static_cast<size_t>(i)]) * W, W);
    }
  }
}

/// `src` (N, B, W) in sorted row order: gathered into `buf` with lengths, else `src` itself.
template <class S>
const S* sorted_states(const LengthPlan& p, const S* src, Scratch<S>& buf, index_t N, index_t B,
                       index_t W) {
  if (!p.any || !src) return src;
  gather_states(p, src, buf.data(), N, B, W);
  return buf.data();
}

/// `src` (T, B, W) in sorted row order with padded steps zeroed, or `src` without lengths.
template <class S>
const S* sorted_steps(const LengthPlan& p, const index_t* lengths, const S* src, Scratch<S>& buf,
                      index_t T, index_t B, index_t W) {
  if (!p.any || !src) return src;
  gather_rows(p, lengths, src, buf.data(), T, B, W);
  return buf.data();
}

/// Zoneout multipliers (L*D, T, B, W) in sorted row order: gathered into `buf` with lengths,
/// else `src` itself (nullptr: none).
template <class S>
const S* sorted_multipliers(const LengthPlan& p, const S* src, Scratch<S>& buf, index_t LD,
                            index_t T, index_t B, index_t W) {
  if (!p.any || !src) return src;
  for (index_t k = 0; k < LD; ++k) {
    gather_rows(p, static_cast<const index_t*>(nullptr), src + k * T * B * W,
                buf.data() + k * T * B * W, T, B, W);
  }
  return buf.data();
}

/// What the driver needs of layer l, direction dir (entry l*D + dir) in both passes: the sizes
/// with this layer's input size, its weights, the direction and the running rows per step.
template <class DirArgs, class S>
DirArgs dir_args(const Dims& d, const Weights<S>* weights, index_t l, index_t dir,
                 const index_t* active) {
  DirArgs r;
  r.d = d;
  r.d.I = d.input_size(l);
  r.w = &weights[l * d.D + dir];
  r.reverse = dir == 1 || d.reverse;  // (reverse: D is 1)
  r.active = active;
  return r;
}

/// Entry k of an (L*D, B, W) array of states (size = B*W), nullptr for none.
template <class P>
P state_entry(P states, index_t k, index_t size) {
  return states ? states + k * size : nullptr;
}

template <class Cell, class S>
void stack_forward(const Dims& d, const ForwardArgs<S>& a) {
  const index_t T = d.T, B = d.B, Hs = d.hs(), H = d.H, LD = d.L * d.D, DHs = d.D * Hs;
  const bool training = a.workspace != nullptr;
  const bool dropout = a.dropout != nullptr && d.L > 1;
  const StackLayout SL = stack_layout<S>(Cell::kGates, Cell::kCellState, Cell::kExtra, Cell::kNorm,
                                         d, dropout && training);
  const LengthPlan plan = plan_lengths(a.lengths, T, B);
  const index_t* active = plan.any ? plan.active.data() : nullptr;

  // inputs and outputs in sorted order (copies only with lengths)
  Scratch<S> x_sorted(plan.any ? T * B * d.I : 0);
  Scratch<S> h0_sorted(plan.any && a.h0 ? LD * B * Hs : 0);
  Scratch<S> c0_sorted(plan.any && a.c0 && Cell::kCellState ? LD * B * H : 0);
  Scratch<S> y_sorted(plan.any ? T * B * DHs : 0);
  Scratch<S> hn_sorted(plan.any ? LD * B * Hs : 0);
  Scratch<S> cn_sorted(plan.any && Cell::kCellState ? LD * B * H : 0);
  Scratch<S> zh_sorted(plan.any && a.zoneout_h ? LD * T * B * Hs : 0);
  Scratch<S> zc_sorted(plan.any && a.zoneout_c && Cell::kCellState ? LD * T * B * H : 0);
  const S* zh = sorted_multipliers(plan, a.zoneout_h, zh_sorted, LD, T, B, Hs);
  const S* zc =
      Cell::kCellState ? sorted_multipliers(plan, a.zoneout_c, zc_sorted, LD, T, B, H) : nullptr;
  const S* x = sorted_steps(plan, a.lengths, a.x, x_sorted, T, B, d.I);
  const S* h0 = sorted_states(plan, a.h0, h0_sorted, LD, B, Hs);
  const S* c0 = Cell::kCellState ? sorted_states(plan, a.c0, c0_sorted, LD, B, H) : nullptr;
  S* y = plan.any ? y_sorted.data() : a.y;
  S* h_n = plan.any ? hn_sorted.data() : a.h_n;
  S* c_n = !Cell::kCellState ? nullptr : plan.any ? cn_sorted.data() : a.c_n;
  // inference: the outputs of inner layers in two ping-pong buffers
  Scratch<S> inner(training || d.L == 1 ? 0 : (d.L > 2 ? 2 : 1) * T * B * DHs);
  const index_t layer_out = T * B * DHs;

  const S* in = x;
  for (index_t l = 0; l < d.L; ++l) {
    S* out = l == d.L - 1 ? y
             : training   ? a.workspace + SL.outputs + l * layer_out
                          : inner.data() + (l % 2) * layer_out;
    for (index_t dir = 0; dir < d.D; ++dir) {
      const index_t k = l * d.D + dir;
      auto f = dir_args<DirForward<S>>(d, a.weights, l, dir, active);
      f.x = in;
      f.h0 = state_entry(h0, k, B * Hs);
      f.c0 = state_entry(c0, k, B * H);
      f.y = out + dir * Hs;
      f.ldy = DHs;
      f.h_n = state_entry(h_n, k, B * Hs);
      f.c_n = state_entry(c_n, k, B * H);
      f.ws = training ? a.workspace + SL.dir(l, dir, d.D) : nullptr;
      f.compute = a.compute;
      f.options = a.options;
      f.zoneout_h = zh ? zh + k * T * B * Hs : nullptr;
      f.zoneout_c = zc ? zc + k * T * B * H : nullptr;
      forward_dir<Cell>(f);
    }
    if (dropout && l < d.L - 1) {  // inverted dropout between layers (training only)
      // the multipliers in sorted row order, kept in the workspace for backward when training
      const S* mask = a.dropout + l * layer_out;
      Scratch<S> sorted_mask(plan.any && !training ? layer_out : 0);
      S* keep = training ? a.workspace + SL.masks + l * layer_out : sorted_mask.data();
      if (plan.any) {
        gather_rows(plan, static_cast<const index_t*>(nullptr), mask, keep, T, B, DHs);
        mask = keep;
      } else if (training) {
        copy_n(keep, mask, layer_out);
      }
      Eigen::Map<Eigen::Array<S, Eigen::Dynamic, 1>>(out, layer_out) *=
          Eigen::Map<const Eigen::Array<S, Eigen::Dynamic, 1>>(mask, layer_out);
    }
    in = out;
  }

  if (plan.any) {
    scatter_rows(plan, static_cast<const S*>(y), a.y, T, B, DHs);
    scatter_rows(plan, static_cast<const S*>(h_n), a.h_n, LD, B, Hs);
    if constexpr (Cell::kCellState) scatter_rows(plan, static_cast<const S*>(c_n), a.c_n, LD, B, H);
  }
  if (training) {
    write_header<S>(a.workspace,
                    HeaderFacts{Cell::kKind, d, a.weights[0].b_ih != nullptr, dropout,
                                lengths_hash(a.lengths, B), a.compute, a.options,
                                a.zoneout_h != nullptr, zc != nullptr},
                    WorkspaceState::Ready);
  }
}

template <class Cell, class S>
void stack_backward(const Dims& d, const BackwardArgs<S>& a) {
  const index_t T = d.T, B = d.B, Hs = d.hs(), H = d.H, LD = d.L * d.D, DHs = d.D * Hs;
  const HeaderFacts facts{Cell::kKind,
                          d,
                          a.weights[0].b_ih != nullptr,
                          false,
                          lengths_hash(a.lengths, B),
                          a.compute,
                          a.options,
                          a.zoneout_h != nullptr,
                          Cell::kCellState && a.zoneout_c != nullptr};
  const bool dropout = check_header<S>(a.workspace, facts);
  const StackLayout SL =
      stack_layout<S>(Cell::kGates, Cell::kCellState, Cell::kExtra, Cell::kNorm, d, dropout);
  const LengthPlan plan = plan_lengths(a.lengths, T, B);
  const index_t* active = plan.any ? plan.active.data() : nullptr;
  const index_t layer_out = T * B * DHs;

  // --- everything allocated before the workspace is claimed ---
  Scratch<S> x_sorted(plan.any ? T * B * d.I : 0);
  Scratch<S> dy_sorted(plan.any && a.dy ? layer_out : 0);
  Scratch<S> dhn_sorted(plan.any && a.dh_n ? LD * B * Hs : 0);
  Scratch<S> dcn_sorted(plan.any && a.dc_n && Cell::kCellState ? LD * B * H : 0);
  Scratch<S> dx_sorted(plan.any && a.dx ? T * B * d.I : 0);
  Scratch<S> dh0_sorted(plan.any ? LD * B * Hs : 0);
  Scratch<S> dc0_sorted(plan.any && Cell::kCellState ? LD * B * H : 0);
  Scratch<S> dinner(d.L > 1 ? (d.L > 2 ? 2 : 1) * layer_out : 0);
  Scratch<S> zh_sorted(plan.any && a.zoneout_h ? LD * T * B * Hs : 0);
  Scratch<S> zc_sorted(plan.any && a.zoneout_c && Cell::kCellState ? LD * T * B * H : 0);
  claim_workspace(a.workspace);
  const S* zh = sorted_multipliers(plan, a.zoneout_h, zh_sorted, LD, T, B, Hs);
  const S* zc =
      Cell::kCellState ? sorted_multipliers(plan, a.zoneout_c, zc_sorted, LD, T, B, H) : nullptr;

  const S* x = sorted_steps(plan, a.lengths, a.x, x_sorted, T, B, d.I);
  const S* dy = sorted_steps(plan, a.lengths, a.dy, dy_sorted, T, B, DHs);
  const S* dh_n = sorted_states(plan, a.dh_n, dhn_sorted, LD, B, Hs);
  const S* dc_n = Cell::kCellState ? sorted_states(plan, a.dc_n, dcn_sorted, LD, B, H) : nullptr;
  S* dx = plan.any && a.dx ? dx_sorted.data() : a.dx;
  S* dh0 = plan.any ? dh0_sorted.data() : a.dh0;
  S* dc0 = !Cell::kCellState ? nullptr : plan.any ? dc0_sorted.data() : a.dc0;

  const S* dout = dy;  // gradient w.r.t. this layer's output (nullptr = zeros)
  for (index_t l = d.L - 1; l >= 0; --l) {
    const S* in = l == 0 ? x : a.workspace + SL.outputs + (l - 1) * layer_out;
    S* din = l == 0 ? dx : dinner.data() + ((l - 1) % 2) * layer_out;
    for (index_t dir = 0; dir < d.D; ++dir) {
      const index_t k = l * d.D + dir;
      auto b = dir_args<DirBackward<S>>(d, a.weights, l, dir, active);
      b.g = &a.grads[k];
      b.x = in;
      b.ws = a.workspace + SL.dir(l, dir, d.D);
      b.dy = dout ? dout + dir * Hs : nullptr;  // this direction's half of each row
      b.lddy = DHs;
      b.dh_n = state_entry(dh_n, k, B * Hs);
      b.dc_n = state_entry(dc_n, k, B * H);
      b.dx = din;
      b.accumulate_dx = dir > 0;
      b.dh0 = state_entry(dh0, k, B * Hs);
      b.dc0 = state_entry(dc0, k, B * H);
      b.compute = a.compute;
      b.options = a.options;
      b.zoneout_h = zh ? zh + k * T * B * Hs : nullptr;
      b.zoneout_c = zc ? zc + k * T * B * H : nullptr;
      backward_dir<Cell>(b);
    }
    if (l > 0 && dropout) {  // through the dropout that made this layer's input
      Eigen::Map<Eigen::Array<S, Eigen::Dynamic, 1>>(din, layer_out) *=
          Eigen::Map<const Eigen::Array<S, Eigen::Dynamic, 1>>(
              a.workspace + SL.masks + (l - 1) * layer_out, layer_out);
    }
    dout = din;
  }

  if (plan.any) {
    // padded steps of x get zero gradient: dx_sorted has zeros there already (zero gates)
    if (a.dx) scatter_rows(plan, static_cast<const S*>(dx), a.dx, T, B, d.I);
    scatter_rows(plan, static_cast<const S*>(dh0), a.dh0, LD, B, Hs);
    if constexpr (Cell::kCellState) scatter_rows(plan, static_cast<const S*>(dc0), a.dc0, LD, B, H);
  }
}

}  // namespace FASTRNN_ISA_NS
}  // namespace fastrnn::detail
