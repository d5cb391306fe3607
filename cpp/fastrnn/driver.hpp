// The generic time-loop driver: one forward and one backward loop for every cell policy, for one
// layer and one direction (stack.hpp runs it over layers and directions).
//
// Forward, for all cells:
//   gates[0:T]  = x W_ih^T + b_ih (+ b_hh, see below)      one GEMM before the loop (in chunks of
//                                                          steps in inference, to bound memory)
//   each step:  gates[t] += h_{t-1} W_hh[:G1]^T            one recurrent GEMM; GRU's n block (r
//                                                          scales it) goes to its own buffer:
//                                                          hproj = h_{t-1} W_hn^T + b_hn
//               [stage 1; hproj2 = extra_t W_hh[G1:]^T + b_hh[G1:]]  two-stage cells only
//                                                          (GRU reset_before)
//               one fused pointwise pass over the gates    (the cell policy)
//   The GEMMs start from their bias (no pass of its own); the projection carries b_ih + b_hh for
//   the blocks whose recurrent product it receives.
// Backward:
//   each step:  one fused pointwise pass                   (the cell policy; gates -> dgates)
//               [dextra = dgates[G1:] W_hh[G1:]; stage 2]  two-stage cells only
//               dh_{t-1} += dgates_h[:G1] W_hh[:G1]        one GEMM
//   after:      dW_ih = dG^T x, dW_hh = dG_h^T h_{0..T-1} (one call, dG packed once for both),
//               dx = dG W_ih, biases = column sums
// Nothing is allocated inside the time loops: every buffer is the workspace or made before.
// Options: the reverse direction (steps in decreasing t), strided rows of y / dy (the directions
// of a bidirectional layer write their halves of one output), LSTM projection h = W_hr hc, and
// variable lengths as a per-step count of active rows: rows [0, active[t]) run step t, the
// others keep their state, output zeros and pass their gradient through unchanged.
#pragma once

#include "fastrnn/isa_namespace.hpp"  // first: only kernel units compile this

#include <Eigen/Core>
#include <algorithm>
#include <atomic>
#include <cstring>
#include <exception>
#include <initializer_list>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "fastrnn/cells.hpp"
#include "fastrnn/packed.hpp"
#include "fastrnn/parallel.hpp"
#include "fastrnn/workspace.hpp"

namespace fastrnn::detail {
inline namespace FASTRNN_ISA_NS {

template <class S>
using RowMat = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class S>
using Mat = Eigen::Map<RowMat<S>>;
template <class S>
using CMat = Eigen::Map<const RowMat<S>>;
template <class S>
using RowVec = Eigen::Map<Eigen::Matrix<S, 1, Eigen::Dynamic>>;
template <class S>
using CRowVec = Eigen::Map<const Eigen::Matrix<S, 1, Eigen::Dynamic>>;

/// Rows of the input projection computed per GEMM: enough for the GEMM to run at full speed, few
/// enough that inference memory stays O(B*G*H) whatever T is. Training uses the same chunks
/// (written straight into the workspace), so both modes give bit-identical outputs.
inline constexpr index_t kProjectionChunkRows = 512;

inline index_t projection_chunk_steps(index_t T, index_t B) {
  return std::clamp<index_t>(kProjectionChunkRows / std::max<index_t>(B, 1), 1,
                             std::max<index_t>(T, 1));
}

/// A scratch buffer of n scalars, NOT initialised (std::vector would zero-fill megabytes that
/// are overwritten anyway). Made before the time loop, freed after it.
template <class S>
class Scratch {
 public:
  explicit Scratch(index_t n) : buf_(n), n_(n) {}
  S* data() { return buf_.data(); }
  const S* data() const { return buf_.data(); }
  index_t size() const { return n_; }
  bool empty() const { return n_ == 0; }

 private:
  AlignedBuffer<S> buf_;  // reused across calls (BlockCache): no page faults per call
  index_t n_;
};

template <class S>
void copy_n(S* dst, const S* src, index_t n) {
  if (n > 0) std::memcpy(dst, src, sizeof(S) * static_cast<size_t>(n));
}

template <class S>
void copy_or_zero(S* dst, const S* src, index_t n) {
  if (src) {
    copy_n(dst, src, n);
  } else {
    std::fill(dst, dst + n, S(0));
  }
}

/// sum over rows of a row-major (rows, cols) matrix (leading dimension ld, default cols), in row
/// order (deterministic); blocks of columns are shared among threads (each column is summed by
/// one thread, in the same order)
template <class S>
void column_sums(const S* m, index_t rows, index_t cols, S* out, index_t ld = 0) {
  if (ld == 0) ld = cols;
  constexpr index_t kCols = 256;
  const index_t blocks = (cols + kCols - 1) / kCols;
  const int threads = rows * cols < kParallelMinWork
                          ? 1
                          : static_cast<int>(std::min<index_t>(num_threads(), blocks));
  parallel_for(blocks, threads, [&](index_t bi) {
    const index_t c0 = bi * kCols, n = std::min(kCols, cols - c0);
    RowVec<S> acc(out + c0, n);
    acc.setZero();
    for (index_t r = 0; r < rows; ++r) acc += CRowVec<S>(m + r * ld + c0, n);
  });
}

/// One layer, one direction: what forward_dir needs. Row (t, b) of y is y + (t*B + b)*ldy.
template <class S>
struct DirForward {
  Dims d;                             ///< T, B, H, P of the stack; I is this layer's input size
  const Weights<S>* w = nullptr;
  const S* x = nullptr;               ///< (T, B, I), padded rows zero
  const S* h0 = nullptr;              ///< (B, Hs) or nullptr
  const S* c0 = nullptr;              ///< (B, H) or nullptr
  S* y = nullptr;                     ///< rows of Hs values, stride ldy
  index_t ldy = 0;
  S* h_n = nullptr;                   ///< (B, Hs)
  S* c_n = nullptr;                   ///< (B, H)
  S* ws = nullptr;                    ///< this direction's region (DirLayout) or nullptr
  bool reverse = false;
  const index_t* active = nullptr;    ///< (T) rows running step t (a prefix), nullptr = all
};

template <class S>
struct DirBackward {
  Dims d;
  const Weights<S>* w = nullptr;
  const WeightGrads<S>* g = nullptr;
  const S* x = nullptr;               ///< (T, B, I) as in forward
  S* ws = nullptr;                    ///< this direction's region, consumed
  const S* dy = nullptr;              ///< rows of Hs values, stride lddy, or nullptr
  index_t lddy = 0;
  const S* dh_n = nullptr;            ///< (B, Hs) or nullptr
  const S* dc_n = nullptr;            ///< (B, H) or nullptr
  S* dx = nullptr;                    ///< (T, B, I), nullptr = not wanted
  bool accumulate_dx = false;         ///< dx += (the other direction wrote it already)
  S* dh0 = nullptr;                   ///< (B, Hs)
  S* dc0 = nullptr;                   ///< (B, H)
  bool reverse = false;
  const index_t* active = nullptr;
};

template <class S>
using StridedMat = Eigen::Map<RowMat<S>, 0, Eigen::OuterStride<>>;
template <class S>
using CStridedMat = Eigen::Map<const RowMat<S>, 0, Eigen::OuterStride<>>;

/// Threads for a direction's time loop: fastrnn's thread count, at most the parts each packed
/// product offers (an unused, empty product sets no limit), and 1 when a step's recurrent
/// product (step_work multiply-adds) is too small to share. (The split never changes a result,
/// see forward_dir below.)
inline int team_threads(index_t step_work, std::initializer_list<int> parts) {
  if (step_work < kParallelMinWork) return 1;
  int n = num_threads();
  for (int p : parts) n = std::min(n, p);
  return std::max(n, 1);
}

/// The units thread ti of nt owns: [u0, u1) of the cell's H (in every gate) and [v0, v1) of h's
/// Hs (the same units without a projection), as PackedGemm::multiply_part splits them.
struct TeamUnits {
  index_t u0, u1, v0, v1;
};

template <class S>
TeamUnits team_units(index_t H, index_t Hs, index_t ti, index_t nt) {
  using P = PackedGemm<S>;
  return {P::part_begin(H, ti, nt), P::part_begin(H, ti + 1, nt), P::part_begin(Hs, ti, nt),
          P::part_begin(Hs, ti + 1, nt)};
}

/// Stops a team between steps: thread 0 polls the interrupt hook (an exception must not leave
/// an OpenMP region), every thread reads the flag after the step's barrier, so all stop at the
/// same step; the caller rethrows after the team.
class TeamStop {
 public:
  void poll() noexcept {
    try {
      check_interrupt();
    } catch (...) {
      err_ = std::current_exception();
      stop_.store(true, std::memory_order_relaxed);
    }
  }
  bool stopped() const noexcept { return stop_.load(std::memory_order_relaxed); }
  void rethrow() const {
    if (err_) std::rethrow_exception(err_);
  }

 private:
  std::atomic<bool> stop_{false};
  std::exception_ptr err_;
};

/// The time loops run in one team of threads for the whole direction (run_team). Thread i of n
/// owns the hidden units [part_begin(H, i, n), part_begin(H, i + 1, n)) in every gate: it
/// computes those columns of the input projection and of each step's recurrent product
/// (PackedGemm::multiply_part, whose packed weight rows stay in that core's cache from step to
/// step), then the cell's pointwise pass on them, and writes those units of h. The next step's
/// product reads all of h, so the threads meet once per step (twice with a projection or a
/// two-stage cell, whose second product reads all of the first stage's output). Every element is
/// computed by the same code in the same order whatever the split: bit-identical results for
/// any thread count.
template <class Cell, class S>
void forward_dir(const DirForward<S>& a) {
  constexpr int G = Cell::kGates, G1 = Cell::kGates1;
  const Dims& d = a.d;
  const index_t T = d.T, B = d.B, I = d.I, H = d.H, Hs = d.hs(), GH = G * H;
  const index_t BH = B * H, BHs = B * Hs;
  const bool training = a.ws != nullptr, proj = d.P > 0;
  const Weights<S>& w = *a.w;
  const DirLayout L = dir_layout(G, Cell::kCellState, Cell::kExtra, d);

  // --- everything the loop needs, allocated before it ---
  // the first kIntoGates gate blocks: the recurrent product accumulates onto the gates, whose
  // projection then carries both biases; only the others (GRU: n) go through hproj
  constexpr int kInto = Cell::kIntoGates;
  static_assert(kInto >= 1 && kInto <= G1);
  std::vector<S> bias_sum;
  const S* b_proj = w.b_ih;
  if (w.b_ih) {
    bias_sum.assign(w.b_ih, w.b_ih + GH);
    for (index_t j = 0; j < kInto * H; ++j) bias_sum[static_cast<size_t>(j)] += w.b_hh[j];
    b_proj = bias_sum.data();
  }
  Scratch<S> hproj(B * (G1 - kInto) * H);
  Scratch<S> hproj2(G > G1 ? B * (G - G1) * H : 0);
  const index_t chunk = projection_chunk_steps(T, B);
  Scratch<S> gate_chunk(training ? 0 : chunk * B * GH);
  // inference keeps only the current and previous states (ping-pong), training all T+1 slots
  Scratch<S> state_buf(training ? 0 : 2 * BHs + (Cell::kCellState ? 2 * BH : 0));
  Scratch<S> step_buf(!training && (Cell::kExtra || proj) ? BH : 0);  // extra or hc of a step
  Scratch<S> hc_buf(!training && proj && Cell::kExtra ? BH : 0);

  S* gates = training ? a.ws + L.gates : nullptr;
  S* hs = training ? a.ws + L.states : state_buf.data();
  S* cs = !Cell::kCellState ? nullptr : training ? a.ws + L.cstates : state_buf.data() + 2 * BHs;
  S* ex = training && Cell::kExtra ? a.ws + L.extra : nullptr;
  S* hcs = training && proj ? a.ws + L.hc : nullptr;

  // state slots: training uses T+1 slots, inference two (k & 1)
  const index_t first_slot = training && a.reverse ? T : 0;
  copy_or_zero(hs + first_slot * BHs, a.h0, BHs);
  if constexpr (Cell::kCellState) copy_or_zero(cs + first_slot * BH, a.c0, BH);

  // the weights, packed once for the products of every step (packed.hpp), rows by gate
  // (the last argument: how many products each runs; a few small ones are not packed)
  const index_t chunks = (T + chunk - 1) / chunk;  // chunk >= 1
  PackedGemm<S> P_ih(w.w_ih, GH, I, I, /*row_major=*/true, chunk * B, G, chunks);
  PackedGemm<S> P_hh1(w.w_hh, G1 * H, Hs, Hs, true, B, G1, T);
  PackedGemm<S> P_hh2;
  if constexpr (G > G1) {
    P_hh2 = PackedGemm<S>(w.w_hh + G1 * H * Hs, (G - G1) * H, Hs, Hs, true, B, G - G1, T);
  }
  PackedGemm<S> P_hr;
  if (proj) P_hr = PackedGemm<S>(w.w_hr, Hs, H, H, true, B, 1, T);

  const int threads = team_threads(
      B * G * H * Hs, {P_ih.max_parts(), P_hh1.max_parts(), P_hh2.max_parts(), P_hr.max_parts()});
  TeamStop stop;

  run_team(threads, [&](index_t ti, index_t nt) {
    const auto [u0, u1, v0, v1] = team_units<S>(H, Hs, ti, nt);
    for (index_t k0 = 0; k0 < T; k0 += chunk) {
      const index_t n = std::min(chunk, T - k0);
      // the chunk's steps cover times [tlo, tlo + n) in either direction
      const index_t tlo = a.reverse ? T - k0 - n : k0;
      S* gbase = training ? gates + tlo * B * GH : gate_chunk.data();
      P_ih.multiply_part(gbase, GH, a.x + tlo * B * I, I, n * B, /*accumulate=*/false, ti, nt,
                         b_proj);

      for (index_t k = k0; k < k0 + n; ++k) {
        if (ti == 0) stop.poll();
        const index_t t = a.reverse ? T - 1 - k : k;
        const index_t Bt = a.active ? a.active[t] : B;
        const index_t rd = training ? (a.reverse ? t + 1 : t) : k & 1;
        const index_t wr = training ? (a.reverse ? t : t + 1) : rd ^ 1;
        S* h_prev = hs + rd * BHs;
        S* h_out = hs + wr * BHs;
        FwdStep<S> s{};
        s.B = Bt;
        s.H = H;
        s.units = H;
        s.gates = gbase + (t - tlo) * B * GH;
        s.hproj = hproj.empty() ? nullptr : hproj.data();
        s.hproj2 = hproj2.empty() ? nullptr : hproj2.data();
        s.h_prev = h_prev;
        if constexpr (Cell::kCellState) {
          s.c_prev = cs + rd * BH;
          s.c = cs + wr * BH;
        }
        S* hc = proj ? (training ? hcs + t * BH : step_buf.data()) : nullptr;
        s.h = proj ? hc : h_out;
        if constexpr (Cell::kExtra) {
          s.extra = training ? ex + t * BH : (proj ? hc_buf.data() : step_buf.data());
        }

        P_hh1.multiply_part(s.gates, GH, h_prev, Hs, Bt, /*accumulate=*/true, ti, nt, nullptr,
                            {kInto, hproj.data(), (G1 - kInto) * H, w.b_hh});
        if constexpr (G > G1) {
          Cell::forward_stage1(step_cols(s, u0, u1));
          team_barrier();  // the second product reads all of stage 1's extra
          P_hh2.multiply_part(hproj2.data(), (G - G1) * H, s.extra, H, Bt, false, ti, nt,
                              w.b_hh ? w.b_hh + G1 * H : nullptr);
        }
        Cell::forward(step_cols(s, u0, u1));
        if (proj) {
          team_barrier();  // h = W_hr hc reads all of hc
          P_hr.multiply_part(h_out, Hs, hc, H, Bt, false, ti, nt);
        }

        // finished (or not yet started) sequences keep their state; their saved per-step
        // values are zero, so the weight GEMMs ignore them
        for (index_t b = Bt; b < B; ++b) {
          copy_n(h_out + b * Hs + v0, static_cast<const S*>(h_prev + b * Hs + v0), v1 - v0);
          if constexpr (Cell::kCellState) {
            copy_n(cs + wr * BH + b * H + u0, static_cast<const S*>(cs + rd * BH + b * H + u0),
                   u1 - u0);
          }
          if (training && proj) std::fill(hc + b * H + u0, hc + b * H + u1, S(0));
          if constexpr (Cell::kExtra) {
            if (training) std::fill(s.extra + b * H + u0, s.extra + b * H + u1, S(0));
          }
        }
        // output rows: h for running sequences, zeros for the others
        S* yt = a.y + t * B * a.ldy;
        for (index_t b = 0; b < B; ++b) {
          S* yb = yt + b * a.ldy;
          if (b < Bt) {
            copy_n(yb + v0, static_cast<const S*>(h_out + b * Hs + v0), v1 - v0);
          } else {
            std::fill(yb + v0, yb + v1, S(0));
          }
        }
        team_barrier();  // the next step's product reads all of h
        if (stop.stopped()) return;
      }
    }
  });
  stop.rethrow();
  const index_t last = T == 0 ? first_slot : training ? (a.reverse ? 0 : T) : (T & 1);
  copy_n(a.h_n, static_cast<const S*>(hs + last * BHs), BHs);
  if constexpr (Cell::kCellState) copy_n(a.c_n, static_cast<const S*>(cs + last * BH), BH);
}

/// Backward in one team as forward: thread i owns the same units of the pointwise pass and
/// the units [part_begin(Hs, i, n), ...) of h in the product dh_{t-1} = dgates W_hh, which
/// reads all of the step's dgates (one barrier per step; two with a projection or a two-stage
/// cell). After the loop: the weight gradients in one gemm_tn call, dx as one tiled GEMM.
template <class Cell, class S>
void backward_dir(const DirBackward<S>& a) {
  constexpr int G = Cell::kGates, G1 = Cell::kGates1;
  const Dims& d = a.d;
  const index_t T = d.T, B = d.B, I = d.I, H = d.H, Hs = d.hs(), GH = G * H;
  const index_t BH = B * H, BHs = B * Hs;
  const bool proj = d.P > 0;
  const Weights<S>& w = *a.w;
  const WeightGrads<S>& g = *a.g;
  const DirLayout L = dir_layout(G, Cell::kCellState, Cell::kExtra, d);

  S* dG = a.ws + L.gates;  // saved gates, overwritten in place by their gradients
  const S* hs = a.ws + L.states;
  const S* cs = Cell::kCellState ? a.ws + L.cstates : nullptr;
  const S* ex = Cell::kExtra ? a.ws + L.extra : nullptr;
  const S* hcs = proj ? a.ws + L.hc : nullptr;

  // Gate blocks [0, kSame) have the same gradient on the input and the recurrent side (all of
  // them unless kHiddenGradDiffers; GRU reset_after: r and z). A cell whose blocks differ writes
  // the recurrent side of a step into one of two (B, G*H) step buffers (steps alternate: a
  // thread may start the next step while another still reads this one in the product), and
  // the driver keeps the blocks [kSame, G1) that differ, (B, DH) a step, for dW_hh and db_hh.
  constexpr int kSame = Cell::kHiddenGradDiffers ? Cell::kIntoGates : G;
  static_assert(!Cell::kHiddenGradDiffers || G == G1, "a two-stage cell's blocks are the same");
  const index_t DH = Cell::kHiddenGradDiffers ? (G1 - kSame) * H : 0;
  Scratch<S> dgh_step(Cell::kHiddenGradDiffers ? 2 * B * GH : 0);
  Scratch<S> dgh_keep(Cell::kHiddenGradDiffers ? T * B * DH : 0);
  Scratch<S> dh_carry(BHs), dh_cur(BHs);
  Scratch<S> dhc(proj ? BH : 0);
  Scratch<S> dh_direct(proj ? BH : 0);  // the LSTM cell's (zero) direct part, H wide; unused
  Scratch<S> dh_all(proj ? T * BHs : 0);  // dL/dh of every step, for dW_hr
  Scratch<S> dc(Cell::kCellState ? BH : 0);
  Scratch<S> dextra(G > G1 ? BH : 0);
  copy_or_zero(dh_carry.data(), a.dh_n, BHs);
  if constexpr (Cell::kCellState) copy_or_zero(dc.data(), a.dc_n, BH);

  // the transposed weights of the per-step products, packed once (packed.hpp)
  // (the last argument: how many products each runs; a few small ones are not packed)
  PackedGemm<S> P_hh1(w.w_hh, Hs, G1 * H, Hs, /*row_major=*/false, B, 1, T);  // A = W_hh1^T
  PackedGemm<S> P_hh2;
  if constexpr (G > G1) {
    P_hh2 = PackedGemm<S>(w.w_hh + G1 * H * Hs, H, (G - G1) * H, Hs, false, B, 1, T);
  }
  PackedGemm<S> P_hr;
  if (proj) P_hr = PackedGemm<S>(w.w_hr, H, Hs, H, false, B, 1, T);  // A = W_hr^T

  const int threads =
      team_threads(B * G * H * Hs, {P_hh1.max_parts(), P_hh2.max_parts(), P_hr.max_parts()});
  TeamStop stop;

  run_team(threads, [&](index_t ti, index_t nt) {
    const auto [u0, u1, v0, v1] = team_units<S>(H, Hs, ti, nt);
    for (index_t k = T - 1; k >= 0; --k) {  // the forward's steps, last first
      if (ti == 0) stop.poll();
      const index_t t = a.reverse ? T - 1 - k : k;
      const index_t Bt = a.active ? a.active[t] : B;
      const index_t rd = a.reverse ? t + 1 : t, wr = a.reverse ? t : t + 1;
      // dL/dh_t = dy_t + (what the next step sent back), for the running rows
      S* dh = dh_cur.data();
      for (index_t b = 0; b < Bt; ++b) {
        RowVec<S> out(dh + b * Hs + v0, v1 - v0);
        CRowVec<S> carry(dh_carry.data() + b * Hs + v0, v1 - v0);
        if (a.dy) {
          out = carry + CRowVec<S>(a.dy + (t * B + b) * a.lddy + v0, v1 - v0);
        } else {
          out = carry;
        }
      }
      BwdStep<S> s{};
      s.B = Bt;
      s.H = H;
      s.units = H;
      s.gates = dG + t * B * GH;
      s.dgh = Cell::kHiddenGradDiffers ? dgh_step.data() + (k % 2) * B * GH : nullptr;
      s.dh = dh;
      s.dh_prev = dh_carry.data();
      s.h_prev = hs + rd * BHs;
      if constexpr (Cell::kCellState) {
        s.dc = dc.data();
        s.c_prev = cs + rd * BH;
        s.c = cs + wr * BH;
      }
      if constexpr (Cell::kExtra) s.extra = ex + t * BH;
      if (proj) {  // h = W_hr hc:  dhc = dh W_hr, and dh is kept for dW_hr
        S* dht = dh_all.data() + t * BHs;
        for (index_t b = 0; b < B; ++b) {
          if (b < Bt) {
            copy_n(dht + b * Hs + v0, static_cast<const S*>(dh + b * Hs + v0), v1 - v0);
          } else {
            std::fill(dht + b * Hs + v0, dht + b * Hs + v1, S(0));
          }
        }
        team_barrier();  // the product reads all of dh
        P_hr.multiply_part(dhc.data(), H, dh, Hs, Bt, false, ti, nt);
        s.dh = dhc.data();
        // the LSTM cell writes its (zero) direct part in H columns; the carry has Hs
        s.dh_prev = dh_direct.data();
      }

      const S* dgh_t = Cell::kHiddenGradDiffers ? s.dgh : dG + t * B * GH;
      if constexpr (G > G1) {
        Cell::backward_stage1(step_cols(s, u0, u1));
        team_barrier();  // dL/d(extra) = dgates[:, G1:] W_hh[G1:] reads all of them
        P_hh2.multiply_part(dextra.data(), H, dgh_t + G1 * H, GH, Bt, false, ti, nt);
        s.dextra = dextra.data();
      }
      Cell::backward(step_cols(s, u0, u1));
      team_barrier();  // the product reads all of the step's gradients
      if (stop.stopped()) return;
      // dh_{t-1} = (direct part) + dgates[:, :G1] W_hh[:G1]
      // (with a projection the cell is an LSTM: no direct part, the product is all of it)
      P_hh1.multiply_part(dh_carry.data(), Hs, dgh_t, GH, Bt, /*accumulate=*/!proj, ti, nt);
      for (index_t b = Bt; b < B; ++b) {  // skipped rows: no gradient through the step's gates
        for (index_t gi = 0; gi < G; ++gi) {
          S* row = dG + (t * B + b) * GH + gi * H;
          std::fill(row + u0, row + u1, S(0));
        }
      }
      if constexpr (Cell::kHiddenGradDiffers) {  // keep the blocks that differ, zero if skipped
        for (index_t b = 0; b < B; ++b) {
          for (index_t gi = kSame; gi < G1; ++gi) {
            S* keep = dgh_keep.data() + (t * B + b) * DH + (gi - kSame) * H;
            if (b < Bt) {
              copy_n(keep + u0, static_cast<const S*>(dgh_t + b * GH + gi * H + u0), u1 - u0);
            } else {
              std::fill(keep + u0, keep + u1, S(0));
            }
          }
        }
      }
    }
  });
  stop.rethrow();

  copy_n(a.dh0, static_cast<const S*>(dh_carry.data()), BHs);
  if constexpr (Cell::kCellState) copy_n(a.dc0, static_cast<const S*>(dc.data()), BH);

  // --- the weight and input gradients: one GEMM each over all T*B rows ---
  const index_t R = T * B;
  const index_t first_in = a.reverse ? 1 : 0;  // the slots read by the T steps
  CMat<S> dGx_all(dG, R, GH);
  // dW_ih = dG^T x and dW_hh = dG^T h (the blocks [0, kSame)) in one call, sharing dG's packing;
  // a two-stage cell's last blocks take the extra as their recurrent input (an empty product,
  // rows [GH, GH), for the others)
  const S* h_in = hs + first_in * BHs;
  const index_t h_rows = std::min(kSame, G1) * H;
  gemm_tn(dG, GH, R,
          {TnProduct<S>{g.dw_ih, I, a.x, I, I, 0, GH},
           TnProduct<S>{g.dw_hh, Hs, h_in, Hs, Hs, 0, h_rows},
           TnProduct<S>{g.dw_hh + G1 * H * Hs, Hs, ex, H, H, G > G1 ? G1 * H : GH, GH}});
  if constexpr (Cell::kHiddenGradDiffers) {  // the blocks whose recurrent gradient differs (n)
    gemm_tn(g.dw_hh + kSame * H * Hs, Hs, dgh_keep.data(), DH, h_in, Hs, DH, Hs, R);
  }
  if (proj) gemm_tn(g.dw_hr, H, dh_all.data(), Hs, hcs, H, Hs, H, R);
  if (g.db_ih) column_sums(dG, R, GH, g.db_ih);
  if (g.db_hh) {  // with db_ih (both biases or neither, fastrnn.hpp)
    // the blocks with the same gradient on both sides have the same sums (LSTM, RNN: all)
    copy_n(g.db_hh, static_cast<const S*>(g.db_ih), kSame * H);
    if constexpr (Cell::kHiddenGradDiffers) {
      column_sums(dgh_keep.data(), R, DH, g.db_hh + kSame * H);
    }
  }
  if (a.dx) gemm(Mat<S>(a.dx, R, I), dGx_all, CMat<S>(w.w_ih, GH, I), a.accumulate_dx);
}

}  // namespace FASTRNN_ISA_NS
}  // namespace fastrnn::detail
