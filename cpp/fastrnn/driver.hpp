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
// Layer-normalised cells (Cell::kNorm): each row of the projection is normalised once, before
// the loop (gates = g_ih*LN(x W_ih^T) + biases); each step's recurrent product goes whole into
// hproj, and the cell's pass runs in a phase of its own on whole rows (a part: its rows), so
// that it can reduce over a row (its layer norms); in backward the cell's pass (rows) gives
// dR = dL/d(h W_hh^T), the next phase's product dh_{t-1} = dR W_hh (units), and after the loop
// dL/d(x W_ih^T) comes from the gates' gradients through the projection's layer norm.
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
#include <utility>
#include <vector>

#include "fastrnn/cells.hpp"
#include "fastrnn/gemm_tn.hpp"
#include "fastrnn/kernel_table.hpp"  // check_interrupt
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
  Dims d;  ///< T, B, H, P of the stack; I is this layer's input size
  const Weights<S>* w = nullptr;
  const S* x = nullptr;   ///< (T, B, I), padded rows zero
  const S* h0 = nullptr;  ///< (B, Hs) or nullptr
  const S* c0 = nullptr;  ///< (B, H) or nullptr
  S* y = nullptr;         ///< rows of Hs values, stride ldy
  index_t ldy = 0;
  S* h_n = nullptr;  ///< (B, Hs)
  S* c_n = nullptr;  ///< (B, H)
  S* ws = nullptr;   ///< this direction's region (DirLayout) or nullptr
  bool reverse = false;
  const index_t* active = nullptr;   ///< (T) rows running step t (a prefix), nullptr = all
  Compute compute = Compute::Exact;  ///< the products' precision
  CellOptions options;               ///< the cells' clip and input_forget
  const S* zoneout_h = nullptr;      ///< (T, B, Hs) this direction's multipliers, sorted rows
  const S* zoneout_c = nullptr;      ///< (T, B, H)
};

template <class S>
struct DirBackward {
  Dims d;
  const Weights<S>* w = nullptr;
  const WeightGrads<S>* g = nullptr;
  const S* x = nullptr;   ///< (T, B, I) as in forward
  S* ws = nullptr;        ///< this direction's region, consumed
  const S* dy = nullptr;  ///< rows of Hs values, stride lddy, or nullptr
  index_t lddy = 0;
  const S* dh_n = nullptr;     ///< (B, Hs) or nullptr
  const S* dc_n = nullptr;     ///< (B, H) or nullptr
  S* dx = nullptr;             ///< (T, B, I), nullptr = not wanted
  bool accumulate_dx = false;  ///< dx += (the other direction wrote it already)
  S* dh0 = nullptr;            ///< (B, Hs)
  S* dc0 = nullptr;            ///< (B, H)
  bool reverse = false;
  const index_t* active = nullptr;
  Compute compute = Compute::Exact;
  CellOptions options;
  const S* zoneout_h = nullptr;  ///< as DirForward's
  const S* zoneout_c = nullptr;
};

/// Zoneout of a (B, W) state after a step: s = m*prev + (1 - m)*s on the rows [b0, b1) and the
/// columns [c0, c1); m the step's (B, W) multipliers.
template <class S>
void zoneout_rows(S* s, const S* prev, const S* m, index_t W, index_t b0, index_t b1, index_t c0,
                  index_t c1) {
  using A = Eigen::Map<Eigen::Array<S, Eigen::Dynamic, 1>>;
  using CA = Eigen::Map<const Eigen::Array<S, Eigen::Dynamic, 1>>;
  for (index_t b = b0; b < b1; ++b) {
    const index_t o = b * W + c0, n = c1 - c0;
    A v(s + o, n);
    const CA mk(m + o, n);
    v = mk * CA(prev + o, n) + (S(1) - mk) * v;
  }
}

/// dst rows (leading dimension ldd) = src rows (leading dimension lds) for the running rows
/// b < Bt, zeros for the others up to B; the columns [c0, c1) only (a part's units).
template <class S>
void copy_running_rows(S* dst, index_t ldd, const S* src, index_t lds, index_t B, index_t Bt,
                       index_t c0, index_t c1) {
  for (index_t b = 0; b < B; ++b) {
    S* row = dst + b * ldd;
    if (b < Bt) {
      copy_n(row + c0, src + b * lds + c0, c1 - c0);
    } else {
      std::fill(row + c0, row + c1, S(0));
    }
  }
}

/// Multiply-adds of a step's recurrent product below which a time loop runs on one thread, by
/// the products' precision: on AMX tiles a step's product runs ~5x faster than in float32 while
/// the team's meeting per step costs the same (measured, 1 vs 2 threads, AMX: an RNN step of
/// 64x256x256 ran slower on two, 3.3 -> 4.4 ms for S1; an LSTM step of 64x1024x256 faster).
/// int8: a step's product is ~4x faster than float32's (far more on AMX), so what the threads
/// share is mostly the cell's pointwise pass: an RNN's (one gate, no transcendental but tanh)
/// pays for the meeting only at large steps, an LSTM's or GRU's from small ones (measured, 1 vs
/// 2 threads: RNN int8 slower on two at 64x256x256 (S1, 3.0 -> 4.1 ms) and 32x512x512 (S2),
/// GRU faster at 1x768x256 (S3, 0.87 -> 0.70 ms), LSTM at 1x1024x256 (S3, 1.13 -> 0.80 ms)).
inline index_t team_min_work(Compute c, int gates) {
  if (c == Compute::Int8) return gates == 1 ? index_t(16) << 20 : index_t(128) << 10;
  return c == Compute::Bf16 && kBf16OnAmx ? index_t(8) << 20 : kParallelMinWork;
}

/// Threads for a direction's time loop: fastrnn's thread count, at most the parts each packed
/// product offers (an unused, empty product sets no limit), and 1 when a step's recurrent
/// product (step_work multiply-adds of a cell of `gates` gates) is too small to share
/// (team_min_work). (The split never changes a result, see forward_dir below.)
inline int team_threads(index_t step_work, int gates, Compute c, std::initializer_list<int> parts) {
  if (step_work < team_min_work(c, gates)) return 1;
  int n = num_threads();
  for (int p : parts) n = std::min(n, p);
  return std::max(n, 1);
}

/// The units part i of n owns: [u0, u1) of the cell's H (in every gate) and [v0, v1) of h's
/// Hs (the same units without a projection), as PackedGemm::multiply_part splits them.
struct TeamUnits {
  index_t u0, u1, v0, v1;
};

template <class S>
TeamUnits team_units(index_t H, index_t Hs, Part part) {
  using P = PackedGemm<S>;
  const index_t i = part.index, n = part.count;
  return {P::part_begin(H, i, n), P::part_begin(H, i + 1, n), P::part_begin(Hs, i, n),
          P::part_begin(Hs, i + 1, n)};
}

/// The rows [b0, b1) of B that part i of n takes in a layer-normalised cell's pass: whole blocks
/// of kNormRowBlock rows (cells.hpp), whatever the split.
inline std::pair<index_t, index_t> norm_rows(index_t B, Part part) {
  const index_t blocks = (B + kNormRowBlock - 1) / kNormRowBlock;
  const index_t k0 = blocks * part.index / part.count, k1 = blocks * (part.index + 1) / part.count;
  return {std::min(B, k0 * kNormRowBlock), std::min(B, k1 * kNormRowBlock)};
}

/// The sizes of one layer and direction as the time loops use them (G gates of H units).
struct DirSizes {
  DirSizes(const Dims& d, int G)
      : T(d.T),
        B(d.B),
        I(d.I),
        H(d.H),
        Hs(d.hs()),
        GH(G * d.H),
        BH(d.B * d.H),
        BHs(d.B * d.hs()),
        proj(d.P > 0),
        gates{d.H} {}

  index_t T, B, I, H, Hs;
  index_t GH;        ///< a row of gates
  index_t BH, BHs;   ///< a step's c (or hc, extra) and h
  bool proj;         ///< LSTM projection h = W_hr hc
  GateLayout gates;  ///< where gate g's units are in a row of gates or in the weights' rows
};

/// The input projection's bias: b_ih, plus b_hh on the first kInto gate blocks (whose recurrent
/// product the driver adds straight onto the gates); empty without biases.
template <class S>
std::vector<S> projection_bias(const Weights<S>& w, const GateLayout& gates, int G, int kInto) {
  std::vector<S> bias;
  if (!w.b_ih) return bias;
  bias.assign(w.b_ih, w.b_ih + gates.size(G));
  for (index_t j = 0; j < gates.size(kInto); ++j) bias[static_cast<size_t>(j)] += w.b_hh[j];
  return bias;
}

/// One direction's forward (forward_dir runs it): everything its time loop needs, made before
/// the loop (nothing is allocated inside it), and the steps of the loop, each cut into the
/// team's parts (a part: its own units).
template <class Cell, class S>
class ForwardLoop {
 public:
  static constexpr int G = Cell::kGates, G1 = Cell::kGates1;
  /// The first kInto gate blocks: the recurrent product accumulates onto the gates, whose
  /// projection then carries both biases; only the others (GRU: n) go through hproj.
  static constexpr int kInto = Cell::kIntoGates;
  static_assert(kInto >= 1 && kInto <= G1);

  /// The steps [k0, k0 + n) of one chunk of the input projection: times [tlo, tlo + n) in
  /// either direction, whose (n*B, G*H) gates start at `gates`.
  struct Chunk {
    index_t k0, n, tlo;
    S* gates;
  };

  explicit ForwardLoop(const DirForward<S>& a)
      : a_(a),
        z_(a.d, G),
        training_(a.ws != nullptr),
        L_(dir_layout(G, Cell::kCellState, Cell::kExtra, Cell::kNorm, a.d)),
        bias_(projection_bias(*a.w, z_.gates, G, kInto)),
        chunk_(projection_chunk_steps(z_.T, z_.B)),
        hproj_(z_.B * z_.gates.size(Cell::kNorm ? G : G1 - kInto)),
        hproj2_(G > G1 ? z_.B * z_.gates.size(G - G1) : 0),
        gate_chunk_(training_ ? 0 : chunk_ * z_.B * z_.GH),
        // inference keeps only the current and previous states (ping-pong), training T+1 slots
        state_buf_(training_ ? 0 : 2 * z_.BHs + (Cell::kCellState ? 2 * z_.BH : 0)),
        step_buf_(!training_ && (Cell::kExtra || z_.proj) ? z_.BH : 0),  // extra or hc
        hc_buf_(!training_ && z_.proj && Cell::kExtra ? z_.BH : 0),
        // inference, layer-normalised cells: a step's normalised values (not kept)
        norm_buf_(!training_ && Cell::kNorm ? z_.B * (z_.GH + z_.H + 3) : 0) {
    place_states();
    pack_weights();
  }

  index_t chunk_steps() const { return chunk_; }
  int threads() const {
    return team_threads(
        z_.B * G * z_.H * z_.Hs, G, a_.compute,
        {P_ih_.max_parts(), P_hh1_.max_parts(), P_hh2_.max_parts(), P_hr_.max_parts()});
  }

  Chunk chunk(index_t k0) {
    const index_t n = std::min(chunk_, z_.T - k0);
    const index_t tlo = a_.reverse ? z_.T - k0 - n : k0;
    return {k0, n, tlo, training_ ? gates_ + tlo * z_.B * z_.GH : gate_chunk_.data()};
  }

  /// Whether the input projection reads rows quantized in a phase of their own
  /// (quantize_inputs): int8 products, each row quantized once rather than by every part.
  bool quantized_inputs() const { return !xq_.empty(); }

  /// Int8: the part's share of the chunk's rows of x quantized, for every part's projection.
  void quantize_inputs(const Chunk& c, Part part) {
    const index_t n = c.n * z_.B;
    P_ih_.quantize_rows(Rows<S>{a_.x + c.tlo * z_.B * z_.I, z_.I, n}, n * part.index / part.count,
                        n * (part.index + 1) / part.count, xq_.data(), xs_.data());
  }

  /// The chunk's input projection gates = x W_ih^T + bias, the part's units of every gate.
  void project_inputs(const Chunk& c, Part part) {
    const S* bias = Cell::kNorm || bias_.empty() ? nullptr : bias_.data();  // kNorm: after LN
    const Dest<S> to = Dest<S>::set(c.gates, z_.GH, bias);
    if (quantized_inputs()) {
      using Q = typename PackedGemm<S>::QuantRows;
      P_ih_.multiply_part(Q{xq_.data(), xs_.data(), c.n * z_.B}, to, part);
    } else {
      P_ih_.multiply_part(Rows<S>{a_.x + c.tlo * z_.B * z_.I, z_.I, c.n * z_.B}, to, part);
    }
  }

  /// Layer-normalised cells: the part's rows of the chunk's projection normalised, gates =
  /// g_ih*xhat + b_ih + b_hh (training: xhat and 1/sqrt(var + eps) saved for backward).
  void normalize_inputs(const Chunk& c, Part part) {
    const index_t n = c.n * z_.B, GH = z_.GH;
    const S* gain = a_.w->cell_params;  // g_ih: the first G blocks
    const S* bias = bias_.empty() ? nullptr : bias_.data();
    for (index_t r = n * part.index / part.count; r < n * (part.index + 1) / part.count; ++r) {
      const index_t row = c.tlo * z_.B + r;  // (t, b) of the whole sequence
      S* v = c.gates + r * GH;
      S* xh = training_ ? a_.ws + L_.xhat_ih + row * GH : v;
      const S rstd = layer_norm(static_cast<const S*>(v), GH, xh);
      if (training_) a_.ws[L_.rstd + row * 3] = rstd;
      Eigen::Map<Eigen::Array<S, Eigen::Dynamic, 1>> out(v, GH);
      const Eigen::Map<const Eigen::Array<S, Eigen::Dynamic, 1>> g(gain, GH), x(xh, GH);
      if (bias) {
        out = g * x + Eigen::Map<const Eigen::Array<S, Eigen::Dynamic, 1>>(bias, GH);
      } else {
        out = g * x;
      }
    }
  }

  /// Zoneout of c after the cell (LSTM cells), rows [b0, b1) < Bt, units [u0, u1).
  void zoneout_c(const FwdStep<S>& s, index_t t, index_t Bt, index_t b0, index_t b1, index_t u0,
                 index_t u1) const {
    if constexpr (Cell::kCellState) {
      if (a_.zoneout_c) {
        zoneout_rows(s.c, s.c_prev, a_.zoneout_c + t * z_.BH, z_.H, b0, std::min(b1, Bt), u0, u1);
      }
    }
  }

  /// Step k of a layer-normalised cell: hproj = h_{t-1} W_hh^T (the part's units), then the
  /// cell on the part's rows, which also writes y's rows (or holds the finished ones).
  template <class TeamT>
  void norm_step(const FwdStep<S>& s, index_t t, index_t k, S* h_out, const TeamT& team) {
    const index_t Bt = s.B;
    team.run([&](Part part) {
      if (from_zero_state(k)) {
        set_bias(hproj_.data(), z_.GH, nullptr, G, Bt, part);
      } else {
        P_hh1_.multiply_part(Rows<S>{s.h_prev, z_.Hs, Bt}, Dest<S>::set(hproj_.data(), z_.GH),
                             part);
      }
    });
    team.run([&](Part part) {
      const auto [b0, b1] = norm_rows(z_.B, part);
      FwdStep<S> r = s;
      r.b0 = std::min(b0, Bt);
      r.B = std::min(b1, Bt);
      Cell::forward(r);
      zoneout_c(s, t, Bt, r.b0, r.B, 0, z_.H);
      if (a_.zoneout_h) {
        zoneout_rows(h_out, s.h_prev, a_.zoneout_h + t * z_.B * z_.Hs, z_.Hs, r.b0, r.B, 0, z_.Hs);
      }
      for (index_t b = b0; b < b1; ++b) {
        if (b >= Bt) {  // finished (or not started): keep the state, save zeros
          copy_n(h_out + b * z_.Hs, s.h_prev + b * z_.Hs, z_.Hs);
          if constexpr (Cell::kCellState) copy_n(s.c + b * z_.H, s.c_prev + b * z_.H, z_.H);
          if (training_) {
            std::fill(s.norm_h + b * z_.GH, s.norm_h + (b + 1) * z_.GH, S(0));
            if constexpr (Cell::kCellState) {
              std::fill(s.norm_c + b * z_.H, s.norm_c + (b + 1) * z_.H, S(0));
            }
            if constexpr (Cell::kExtra)
              std::fill(s.extra + b * z_.H, s.extra + (b + 1) * z_.H, S(0));
            std::fill(s.rstd + b * 3 + 1, s.rstd + b * 3 + 3, S(0));
          }
        }
        if (!h_in_y_) {  // y: h of running rows, zeros for the others
          S* yrow = a_.y + (t * z_.B + b) * a_.ldy;
          if (b < Bt) {
            copy_n(yrow, static_cast<const S*>(h_out + b * z_.Hs), z_.Hs);
          } else {
            std::fill(yrow, yrow + z_.Hs, S(0));
          }
        }
      }
    });
  }

  /// Step k of the loop (time t) in the team's phases: gates += h_{t-1} W_hh^T (blocks [kInto,
  /// G1): hproj = h_{t-1} W_hh^T + b_hh) and the cell [a two-stage cell: stage 1, then hproj2 =
  /// extra W_hh[G1:]^T + b_hh[G1:] and the rest], [h = hc W_hr^T]; then the rows that do not
  /// run the step and the output rows. A phase ends where the next product reads all of what
  /// the phase wrote; a part's cell reads only the columns of its own units.
  template <class TeamT>
  void step(const Chunk& c, index_t k, const TeamT& team) {
    const index_t t = a_.reverse ? z_.T - 1 - k : k;
    const index_t Bt = a_.active ? a_.active[t] : z_.B;
    const Slots sl = slots(t, k);
    const FwdStep<S> s = step_args(c, t, k, Bt, sl);
    S* h_out = h_write(t, sl);
    if constexpr (Cell::kNorm) {
      norm_step(s, t, k, h_out, team);
      return;
    }
    const index_t BHs = z_.B * z_.Hs, BH = z_.BH;
    auto finish = [&](const TeamUnits& u) {
      if (a_.zoneout_h) {  // h_t = m*h_{t-1} + (1-m)*h~_t, running rows
        zoneout_rows(h_out, s.h_prev, a_.zoneout_h + t * BHs, z_.Hs, 0, Bt, u.v0, u.v1);
      }
      if (h_in_y_) return;  // h is y's row already (and every row runs)
      hold_finished_rows(s, h_out, u);
      copy_running_rows(a_.y + t * z_.B * a_.ldy, a_.ldy, static_cast<const S*>(h_out), z_.Hs, z_.B,
                        Bt, u.v0, u.v1);  // y: h of running rows, zeros for the others
    };
    team.run([&](Part part) {
      const TeamUnits u = units(part);
      recurrent_product(s, k, part);
      if constexpr (G > G1) {
        Cell::forward_stage1(step_cols(s, u.u0, u.u1));
      } else {
        Cell::forward(step_cols(s, u.u0, u.u1));
        zoneout_c(s, t, Bt, 0, Bt, u.u0, u.u1);
        if (!z_.proj) finish(u);
      }
    });
    if constexpr (G > G1) {
      team.run([&](Part part) {  // the second product reads all of stage 1's extra
        const TeamUnits u = units(part);
        second_product(s, k, part);
        Cell::forward(step_cols(s, u.u0, u.u1));
        if (!z_.proj) finish(u);
      });
    }
    if (z_.proj) {
      team.run([&](Part part) {  // h = W_hr hc reads all of hc
        P_hr_.multiply_part(Rows<S>{s.h, z_.H, s.B}, Dest<S>::set(h_out, z_.Hs), part);
        finish(units(part));
      });
    }
  }

  /// h_n (and c_n): the states the last step wrote.
  void write_final_states() const {
    const index_t T = z_.T;
    const index_t last = T == 0 ? first_slot_ : training_ ? (a_.reverse ? 0 : T) : (T & 1);
    const S* h = h_in_y_ && T > 0 ? a_.y + (a_.reverse ? 0 : T - 1) * z_.BHs : hs_ + last * z_.BHs;
    copy_n(a_.h_n, h, z_.BHs);
    if constexpr (Cell::kCellState) {
      copy_n(a_.c_n, static_cast<const S*>(cs_ + last * z_.BH), z_.BH);
    }
  }

 private:
  /// The state slots a step reads and writes.
  struct Slots {
    index_t rd, wr;
  };

  /// Training keeps T+1 slots (the forward direction reads slot t and writes t+1 at time t, the
  /// reverse t+1 and t: workspace.hpp); inference two, alternating with the step count k.
  Slots slots(index_t t, index_t k) const {
    if (training_) return a_.reverse ? Slots{t + 1, t} : Slots{t, t + 1};
    return {k & 1, (k & 1) ^ 1};
  }

  /// Where step k (time t) writes h: y's row t when h_in_y_, else its state slot.
  S* h_write(index_t t, const Slots& sl) const {
    return h_in_y_ ? a_.y + t * z_.BHs : hs_ + sl.wr * z_.BHs;
  }
  /// Where step k reads h_{t-1}: the previous step's row of y when h_in_y_ (the initial state
  /// at the first step), else its slot.
  const S* h_read(index_t t, index_t k, const Slots& sl) const {
    if (h_in_y_ && k > 0) return a_.y + (a_.reverse ? t + 1 : t - 1) * z_.BHs;
    return hs_ + sl.rd * z_.BHs;
  }

  /// The saved arrays (training: the workspace) or the ping-pong buffers, and the initial states
  /// in the first slot. In inference with every row running every step and y's rows just h
  /// (one direction of the last or only layer), the steps write h straight into y: no copy.
  void place_states() {
    h_in_y_ = !training_ && !a_.active && a_.ldy == z_.Hs;
    S* ws = a_.ws;
    gates_ = training_ ? ws + L_.gates : nullptr;
    hs_ = training_ ? ws + L_.states : state_buf_.data();
    cs_ = !Cell::kCellState ? nullptr
          : training_       ? ws + L_.cstates
                            : state_buf_.data() + 2 * z_.BHs;
    ex_ = training_ && Cell::kExtra ? ws + L_.extra : nullptr;
    hcs_ = training_ && z_.proj ? ws + L_.hc : nullptr;
    first_slot_ = training_ && a_.reverse ? z_.T : 0;
    copy_or_zero(hs_ + first_slot_ * z_.BHs, a_.h0, z_.BHs);
    if constexpr (Cell::kCellState) copy_or_zero(cs_ + first_slot_ * z_.BH, a_.c0, z_.BH);
  }

  /// The weights, packed once for the products of every step (packed.hpp), rows by gate (the
  /// last argument: how many products each runs; a few small ones are not packed).
  void pack_weights() {
    const Weights<S>& w = *a_.w;
    const index_t T = z_.T, B = z_.B, I = z_.I, H = z_.H, Hs = z_.Hs;
    const index_t chunks = (T + chunk_ - 1) / chunk_;  // chunk_ >= 1
    const Compute cp = a_.compute;
    if (cp == Compute::Int8) {  // packed already (int8.hpp; api.cpp checked the sizes)
      const Int8View ih = int8_view(w.q_ih, z_.GH, I, G, "weight_ih");
      const Int8View hh = int8_view(w.q_hh, z_.GH, Hs, G, "weight_hh");
      P_ih_ = PackedGemm<S>(ih, chunk_ * B);
      const index_t rows = (chunk_ * B + 15) / 16 * 16;  // whole tiles (int8_kernel.hpp)
      xq_ = Scratch<std::uint8_t>(rows * P_ih_.int8_row_bytes());
      std::fill(xq_.data(), xq_.data() + xq_.size(), std::uint8_t(0));
      xs_ = Scratch<float>(rows);
      P_hh1_ = PackedGemm<S>(hh.gate_blocks(0, G1), B);
      if constexpr (G > G1) P_hh2_ = PackedGemm<S>(hh.gate_blocks(G1, G), B);
      if (z_.proj) P_hr_ = PackedGemm<S>(int8_view(w.q_hr, Hs, H, 1, "weight_hr"), B);
      return;
    }
    P_ih_ = PackedGemm<S>(w.w_ih, z_.GH, I, I, /*row_major=*/true, chunk_ * B, G, chunks, cp);
    P_hh1_ = PackedGemm<S>(w.w_hh, z_.gates.size(G1), Hs, Hs, true, B, G1, T, cp);
    if constexpr (G > G1) {
      P_hh2_ = PackedGemm<S>(w.w_hh + z_.gates.at(G1) * Hs, z_.gates.size(G - G1), Hs, Hs, true, B,
                             G - G1, T, cp);
    }
    if (z_.proj) P_hr_ = PackedGemm<S>(w.w_hr, Hs, H, H, true, B, 1, T, cp);
  }

  /// What the cell sees at time t: Bt running rows, the states of slots sl. With a projection
  /// the cell writes hc (h = W_hr hc follows), else h itself.
  FwdStep<S> step_args(const Chunk& c, index_t t, index_t k, index_t Bt, Slots sl) {
    const index_t BH = z_.BH;
    FwdStep<S> s{};
    s.B = Bt;
    s.H = z_.H;
    s.units = z_.H;
    s.gates = c.gates + (t - c.tlo) * z_.B * z_.GH;
    s.hproj = hproj_.empty() ? nullptr : hproj_.data();
    s.hproj2 = hproj2_.empty() ? nullptr : hproj2_.data();
    s.params = a_.w->cell_params;
    s.clip = static_cast<S>(a_.options.clip);
    s.input_forget = a_.options.input_forget;
    s.h_prev = h_read(t, k, sl);
    if constexpr (Cell::kCellState) {
      s.c_prev = cs_ + sl.rd * BH;
      s.c = cs_ + sl.wr * BH;
    }
    S* hc = z_.proj ? (training_ ? hcs_ + t * BH : step_buf_.data()) : nullptr;
    s.h = z_.proj ? hc : h_write(t, sl);
    if constexpr (Cell::kNorm) {
      S* ws = a_.ws;
      s.norm_h = training_ ? ws + L_.xhat_hh + t * z_.B * z_.GH : norm_buf_.data();
      s.norm_c = training_ ? ws + L_.chat + t * BH : norm_buf_.data() + z_.B * z_.GH;
      s.rstd = training_ ? ws + L_.rstd + t * z_.B * 3 : norm_buf_.data() + z_.B * (z_.GH + z_.H);
      s.b_hh = a_.w->b_hh;
    }
    if constexpr (Cell::kExtra) {
      s.extra = training_ ? ex_ + t * BH : (z_.proj ? hc_buf_.data() : step_buf_.data());
    }
    return s;
  }

  TeamUnits units(Part part) const { return team_units<S>(z_.H, z_.Hs, part); }

  /// Whether step k starts from the zero state (no h0): then its recurrent products (and a
  /// two-stage cell's second, whose input r*h is zero too) are zero for finite weights, and are
  /// skipped: nothing added to the gates, hproj = b_hh (one step, T = 1, reads only W_ih).
  bool from_zero_state(index_t k) const { return k == 0 && a_.h0 == nullptr; }

  /// rows [0, n) of out (leading dimension ld), the part's units of `gates` gate blocks, set to
  /// bias (indexed as out's columns; nullptr: zeros): a product of a zero state.
  void set_bias(S* out, index_t ld, const S* bias, int gates, index_t n, Part part) const {
    const TeamUnits u = units(part);
    for (index_t b = 0; b < n; ++b) {
      for (int g = 0; g < gates; ++g) {
        S* row = out + b * ld + z_.gates.at(g);
        if (bias) {
          copy_n(row + u.u0, bias + z_.gates.at(g) + u.u0, u.u1 - u.u0);
        } else {
          std::fill(row + u.u0, row + u.u1, S(0));
        }
      }
    }
  }

  /// gates += h_{t-1} W_hh^T (blocks [kInto, G1): hproj = h_{t-1} W_hh^T + b_hh), the part's
  /// units.
  void recurrent_product(const FwdStep<S>& s, index_t k, Part part) {
    const index_t ld = z_.gates.size(G1 - kInto);
    const S* b_hh = a_.w->b_hh;
    if (from_zero_state(k)) {
      if (kInto < G1)
        set_bias(hproj_.data(), ld, b_hh ? b_hh + z_.gates.at(kInto) : nullptr, G1 - kInto, s.B,
                 part);
      return;
    }
    P_hh1_.multiply_part(Rows<S>{s.h_prev, z_.Hs, s.B}, Dest<S>::add(s.gates, z_.GH), part,
                         Tail<S>{kInto, Dest<S>::set(hproj_.data(), ld, b_hh)});
  }

  /// A two-stage cell's hproj2 = extra W_hh[G1:]^T + b_hh[G1:], the part's units.
  void second_product(const FwdStep<S>& s, index_t k, Part part) {
    const Weights<S>& w = *a_.w;
    const GateLayout& gl = z_.gates;
    const S* bias = w.b_hh ? w.b_hh + gl.at(G1) : nullptr;
    if (from_zero_state(k)) {
      set_bias(hproj2_.data(), gl.size(G - G1), bias, G - G1, s.B, part);
      return;
    }
    P_hh2_.multiply_part(Rows<S>{s.extra, z_.H, s.B},
                         Dest<S>::set(hproj2_.data(), gl.size(G - G1), bias), part);
  }

  /// Finished (or not yet started) sequences, rows [s.B, B), keep their state; their saved
  /// per-step values are zero, so the weight GEMMs ignore them.
  void hold_finished_rows(const FwdStep<S>& s, S* h_out, const TeamUnits& u) {
    const index_t H = z_.H, Hs = z_.Hs;
    for (index_t b = s.B; b < z_.B; ++b) {
      copy_n(h_out + b * Hs + u.v0, s.h_prev + b * Hs + u.v0, u.v1 - u.v0);
      if constexpr (Cell::kCellState) {
        copy_n(s.c + b * H + u.u0, s.c_prev + b * H + u.u0, u.u1 - u.u0);
      }
      if (training_ && z_.proj) std::fill(s.h + b * H + u.u0, s.h + b * H + u.u1, S(0));
      if constexpr (Cell::kExtra) {
        if (training_) std::fill(s.extra + b * H + u.u0, s.extra + b * H + u.u1, S(0));
      }
    }
  }

  const DirForward<S>& a_;
  const DirSizes z_;
  const bool training_;
  const DirLayout L_;
  const std::vector<S> bias_;
  const index_t chunk_;
  Scratch<S> hproj_, hproj2_, gate_chunk_, state_buf_, step_buf_, hc_buf_, norm_buf_;
  Scratch<std::uint8_t> xq_{0};  ///< int8: a chunk's rows of x quantized (quantize_inputs)
  Scratch<float> xs_{0};         ///< int8: their scales
  S* gates_ = nullptr;           ///< training: (T, B, G*H) saved gates
  S* hs_ = nullptr;              ///< h in T+1 slots (training) or two
  S* cs_ = nullptr;              ///< c likewise (LSTM)
  S* ex_ = nullptr;              ///< training: (T, B, H) extra (GRU)
  S* hcs_ = nullptr;             ///< training: (T, B, H) hc (LSTM with projection)
  index_t first_slot_ = 0;
  bool h_in_y_ = false;  ///< the steps write h into y's rows (place_states)
  PackedGemm<S> P_ih_, P_hh1_, P_hh2_, P_hr_;
};

/// The time loops run in the calling thread; each step is cut into parts for a team of threads
/// (Team, parallel.hpp). Part i of n owns the hidden units [part_begin(H, i, n),
/// part_begin(H, i + 1, n)) in every gate: it computes those columns of the input projection
/// and of each step's recurrent product (PackedGemm::multiply_part, whose packed weight rows
/// stay in the cache of the core that runs the part from step to step), then the cell's
/// pointwise pass on them, and writes those units of h. The next step's product reads all of
/// h, so a step is one phase of the team (two with a projection or a two-stage cell, whose
/// second product reads all of the first stage's output). Every element is computed by the same
/// code in the same order whatever the split and whichever thread runs a part: bit-identical
/// results for any thread count.
///
/// With more than one thread the team's members run the whole loop together (run_team): each
/// keeps its part from the first step to the last and they wait for each other once a phase
/// (TeamMember; a part whose member another process keeps off its core is run by another),
/// rather than the caller handing every phase to the pool; when the threads are not free
/// (another job holds the pool) the caller runs the same phases with a Team.
template <class Cell, class S, class TeamT>
void forward_steps(ForwardLoop<Cell, S>& loop, const DirForward<S>& a, const TeamT& team) {
  for (index_t k0 = 0; k0 < a.d.T; k0 += loop.chunk_steps()) {
    const auto c = loop.chunk(k0);
    if (loop.quantized_inputs()) team.run([&](Part part) { loop.quantize_inputs(c, part); });
    team.run([&](Part part) { loop.project_inputs(c, part); });
    if constexpr (Cell::kNorm) team.run([&](Part part) { loop.normalize_inputs(c, part); });
    for (index_t k = k0; k < k0 + c.n; ++k) {
      if (team.leader()) check_interrupt();
      loop.step(c, k, team);
    }
  }
}

template <class Cell, class S>
void forward_dir(const DirForward<S>& a) {
  ForwardLoop<Cell, S> loop(a);
  const int n = loop.threads();
  if (n == 1 || a.d.T == 0 ||
      !run_team(n, [&](const TeamMember& m) { forward_steps(loop, a, m); })) {
    forward_steps(loop, a, Team(n));
  }
  loop.write_final_states();
}

/// One direction's backward (backward_dir runs it), as ForwardLoop: the buffers and packed
/// transposed weights made before the loop, the two halves of a step (through the cell, then
/// to the previous step), and the weight gradients after the loop.
template <class Cell, class S>
class BackwardLoop {
 public:
  static constexpr int G = Cell::kGates, G1 = Cell::kGates1;
  /// Gate blocks [0, kSame) have the same gradient on the input and the recurrent side (all of
  /// them unless kHiddenGradDiffers; GRU reset_after: r and z). A cell whose blocks differ
  /// writes the recurrent side of a step into one of two (B, G*H) step buffers (steps
  /// alternate: a part may start the next step while another still reads this one in the
  /// product), and the driver keeps the blocks [kSame, G1) that differ, (B, DH) a step, for
  /// dW_hh and db_hh.
  static constexpr bool kDiffers = Cell::kHiddenGradDiffers;
  static constexpr int kSame = kDiffers ? Cell::kIntoGates : G;
  static_assert(!kDiffers || G == G1, "a two-stage cell's blocks are the same");

  /// A step after its pass through the cell: time t, Bt running rows, the recurrent side of
  /// its gate gradients.
  struct Step {
    index_t t, Bt;
    const S* dgh;
  };

  explicit BackwardLoop(const DirBackward<S>& a)
      : a_(a),
        z_(a.d, G),
        L_(dir_layout(G, Cell::kCellState, Cell::kExtra, Cell::kNorm, a.d)),
        DH_(kDiffers ? z_.gates.size(G1 - kSame) : 0),
        dG_(a.ws + L_.gates),  // saved gates, overwritten in place by their gradients
        hs_(a.ws + L_.states),
        cs_(Cell::kCellState ? a.ws + L_.cstates : nullptr),
        ex_(Cell::kExtra ? a.ws + L_.extra : nullptr),
        hcs_(z_.proj ? a.ws + L_.hc : nullptr),
        dgh_step_(kDiffers && !Cell::kNorm ? 2 * z_.B * z_.GH : 0),
        dgh_keep_(kDiffers ? z_.T * z_.B * DH_ : 0),
        dh_carry_(z_.BHs),
        dh_cur_(z_.BHs),
        dhc_(z_.proj ? z_.BH : 0),
        dh_direct_(z_.proj ? z_.BH : 0),       // the LSTM cell's (zero) direct part, H wide; unused
        dh_all_(z_.proj ? z_.T * z_.BHs : 0),  // dL/dh of every step, for dW_hr
        dc_(Cell::kCellState ? z_.BH : 0),
        dextra_(G > G1 ? z_.BH : 0),
        dR_(Cell::kNorm ? z_.T * z_.B * z_.GH : 0),  // every step's dL/d(h W_hh^T), for dW_hh
        // the in-loop sums of the cell's own parameters' gradients, per block of rows
        zo_keep_h_(a.zoneout_h ? z_.BHs : 0),
        zo_keep_c_(Cell::kCellState && a.zoneout_c ? z_.BH : 0),
        param_acc_(Cell::kNorm ? (z_.B + kNormRowBlock - 1) / kNormRowBlock *
                                     cell_params_size(Cell::kKind, z_.H)
                               : 0) {
    std::fill(param_acc_.data(), param_acc_.data() + param_acc_.size(), S(0));
    copy_or_zero(dh_carry_.data(), a.dh_n, z_.BHs);
    if constexpr (Cell::kCellState) copy_or_zero(dc_.data(), a.dc_n, z_.BH);
    pack_weights();
  }

  int threads() const {
    return team_threads(z_.B * G * z_.H * z_.Hs, G, a_.compute,
                        {P_hh1_.max_parts(), P_hh2_.max_parts(), P_hr_.max_parts()});
  }

  /// Step k (time t) through the cell, in the team's phases: [what step k+1 sends back, see
  /// to_previous_step], dL/dh_t, [through the projection: dL/dhc = dL/dh W_hr reads all of
  /// dL/dh], [stage 1, then dextra = dgates[:, G1:] W_hh[G1:] reads all of them], the cell's
  /// pass (gates -> their gradients), a part on its own units. The first phase also finishes
  /// step k+1 (`later`, unless k is the last step): its product writes the part's units of
  /// the carry, all that dL/dh_t reads.
  Step through_cell(index_t k, const Step* later, const Team& team) {
    const index_t t = a_.reverse ? z_.T - 1 - k : k;
    const index_t Bt = a_.active ? a_.active[t] : z_.B;
    BwdStep<S> s = step_args(k, t, Bt, dh_cur_.data());
    if constexpr (Cell::kNorm) {  // the product (units), then the cell on the part's rows
      if (later) team.run([&](Part part) { to_previous_step(*later, units(part), part); });
      team.run([&](Part part) {
        const auto [b0, b1] = norm_rows(z_.B, part);
        incoming_gradient(t, std::min(b1, Bt), TeamUnits{0, z_.H, 0, z_.Hs}, b0);
        BwdStep<S> r = s;
        r.b0 = std::min(b0, Bt);
        r.B = std::min(b1, Bt);
        through_c_zoneout(t, r.b0, r.B, 0, z_.H, [&] { Cell::backward(r); });
        for (index_t b = std::max(b0, Bt); b < b1; ++b) {  // skipped rows: no gradient
          std::fill(s.gates + b * z_.GH, s.gates + (b + 1) * z_.GH, S(0));
          std::fill(s.dR + b * z_.GH, s.dR + (b + 1) * z_.GH, S(0));
          if constexpr (kDiffers) std::fill(s.dgh + b * DH_, s.dgh + (b + 1) * DH_, S(0));
        }
      });
      return {t, Bt, s.dR};
    }
    const S* dgh = kDiffers ? s.dgh : dG_ + t * z_.B * z_.GH;
    auto incoming = [&](Part part, const TeamUnits& u) {
      if (later) to_previous_step(*later, u, part);
      incoming_gradient(t, Bt, u);
    };
    if (z_.proj) {  // an LSTM: one stage
      team.run([&](Part part) {
        const TeamUnits u = units(part);
        incoming(part, u);
        copy_running_rows(dh_all_.data() + t * z_.BHs, z_.Hs, s.dh, z_.Hs, z_.B, Bt, u.v0, u.v1);
      });
      s.dh = dhc_.data();  // the cell gets dL/dhc and writes its (zero) direct part in H columns
      s.dh_prev = dh_direct_.data();
      team.run([&](Part part) {
        const TeamUnits u = units(part);
        P_hr_.multiply_part(Rows<S>{dh_cur_.data(), z_.Hs, Bt}, Dest<S>::set(dhc_.data(), z_.H),
                            part);
        through_c_zoneout(t, 0, Bt, u.u0, u.u1, [&] { Cell::backward(step_cols(s, u.u0, u.u1)); });
      });
    } else if constexpr (G > G1) {
      team.run([&](Part part) {
        const TeamUnits u = units(part);
        incoming(part, u);
        Cell::backward_stage1(step_cols(s, u.u0, u.u1));
      });
      s.dextra = dextra_.data();
      team.run([&](Part part) {
        P_hh2_.multiply_part(Rows<S>{dgh + z_.gates.at(G1), z_.GH, Bt},
                             Dest<S>::set(dextra_.data(), z_.H), part);
        const TeamUnits u = units(part);
        Cell::backward(step_cols(s, u.u0, u.u1));
      });
    } else {
      team.run([&](Part part) {
        const TeamUnits u = units(part);
        incoming(part, u);
        through_c_zoneout(t, 0, Bt, u.u0, u.u1, [&] { Cell::backward(step_cols(s, u.u0, u.u1)); });
      });
    }
    return {t, Bt, dgh};
  }

  /// The first step's to_previous_step (the others run in the next step's first phase).
  void to_previous_step(const Step& st, const Team& team) {
    team.run([&](Part part) { to_previous_step(st, units(part), part); });
  }

  /// dh0 (and dc0): what the first step sent back.
  void write_state_gradients() const {
    copy_n(a_.dh0, static_cast<const S*>(dh_carry_.data()), z_.BHs);
    if constexpr (Cell::kCellState) copy_n(a_.dc0, static_cast<const S*>(dc_.data()), z_.BH);
  }

  /// The weight and input gradients: one GEMM each over all T*B rows. The bias gradients come
  /// first: with bfloat16 products emulated in float the gradients that are a product's operand
  /// (the gates', the kept blocks', dL/dh for the projection) are then rounded in place (the
  /// products' other operands as gemm_tn packs them); dx = dG W_ih is then a PackedGemm (the
  /// weights packed as in the time loops, rounded or as bfloat16 pairs).
  void weight_gradients() {
    const Weights<S>& w = *a_.w;
    const WeightGrads<S>& g = *a_.g;
    const GateLayout& gl = z_.gates;
    const index_t R = z_.T * z_.B, I = z_.I, H = z_.H, Hs = z_.Hs, GH = z_.GH;
    const index_t first_in = a_.reverse ? 1 : 0;  // the slots read by the T steps
    const bool bf16 = a_.compute == Compute::Bf16;
    if (g.db_ih) column_sums(dG_, R, GH, g.db_ih);
    if (g.db_hh) {  // with db_ih (both biases or neither, fastrnn.hpp)
      // the blocks with the same gradient on both sides have the same sums (LSTM, RNN: all)
      copy_n(g.db_hh, static_cast<const S*>(g.db_ih), gl.size(kSame));
      if constexpr (kDiffers) column_sums(dgh_keep_.data(), R, DH_, g.db_hh + gl.at(kSame));
    }
    if constexpr (Cell::kParams && !Cell::kNorm) {  // the cell's own parameters, after the loop
      const S* c_in = Cell::kCellState ? cs_ + first_in * z_.BH : nullptr;
      const S* c_out = Cell::kCellState ? cs_ + (1 - first_in) * z_.BH : nullptr;
      Cell::param_gradients(ParamGrads<S>{R, H, dG_, c_in, c_out, g.d_cell_params});
    }
    if constexpr (Cell::kNorm) norm_gradients();
    if (bf16 && !kNativeBf16) {  // (the native products convert their operands as they read)
      round_rows(dG_, R, GH);
      if constexpr (kDiffers) round_rows(dgh_keep_.data(), R, DH_);
      if constexpr (Cell::kNorm) round_rows(dR_.data(), R, GH);
      if (z_.proj) round_rows(dh_all_.data(), R, Hs);
    }
    // dW_ih = dG^T x and dW_hh = dG^T h (the blocks [0, kSame)) in one call, sharing dG's
    // packing; a two-stage cell's last blocks take the extra as their recurrent input (an empty
    // product, rows [GH, GH), for the others)
    const S* h_in = hs_ + first_in * z_.BHs;
    gemm_tn(
        dG_, GH, R,
        {TnProduct<S>{g.dw_ih, I, a_.x, I, I, 0, GH},
         TnProduct<S>{g.dw_hh, Hs, h_in, Hs, Hs, 0, Cell::kNorm ? 0 : gl.size(std::min(kSame, G1))},
         TnProduct<S>{g.dw_hh + gl.at(G1) * Hs, Hs, ex_, H, H, G > G1 ? gl.at(G1) : GH, GH}},
        bf16);
    if constexpr (Cell::kNorm) gemm_tn(g.dw_hh, Hs, dR_.data(), GH, h_in, Hs, GH, Hs, R, bf16);
    if constexpr (kDiffers && !Cell::kNorm) {  // the blocks whose recurrent gradient differs (n)
      gemm_tn(g.dw_hh + gl.at(kSame) * Hs, Hs, dgh_keep_.data(), DH_, h_in, Hs, DH_, Hs, R, bf16);
    }
    if (z_.proj) gemm_tn(g.dw_hr, H, dh_all_.data(), Hs, hcs_, H, Hs, H, R, bf16);
    if (a_.dx && bf16) {  // dx = dG W_ih, with W_ih^T packed as the products' weights are
      PackedGemm<S> p(w.w_ih, I, GH, I, /*row_major=*/false, R, 1, 1, Compute::Bf16);
      const Team team(R * GH * I < kParallelMinWork ? 1 : std::min(num_threads(), p.max_parts()));
      team.run([&](Part part) {
        p.multiply_part(Rows<S>{dG_, GH, R},
                        a_.accumulate_dx ? Dest<S>::add(a_.dx, I) : Dest<S>::set(a_.dx, I), part);
      });
    } else if (a_.dx) {
      gemm(Mat<S>(a_.dx, R, I), CMat<S>(dG_, R, GH), CMat<S>(w.w_ih, GH, I), a_.accumulate_dx);
    }
  }

 private:
  TeamUnits units(Part part) const { return team_units<S>(z_.H, z_.Hs, part); }

  /// Layer-normalised cells, after the loop: dG = dL/d(x W_ih^T) through the projection's layer
  /// norm, in place, with g_ih's gradient summed per block of kRows rows (any thread a block,
  /// the blocks then added in order); the gains the steps added up (param_acc_) likewise.
  void norm_gradients() {
    constexpr index_t kRows = 64;
    const index_t R = z_.T * z_.B, GH = z_.GH, NP = cell_params_size(Cell::kKind, z_.H);
    const index_t blocks = (R + kRows - 1) / kRows;
    const S* gain = a_.w->cell_params;  // g_ih: the first G blocks
    const S* xh = a_.ws + L_.xhat_ih;
    const S* rstd = a_.ws + L_.rstd;
    Scratch<S> partial(blocks * GH);
    const int threads =
        R * GH < kParallelMinWork ? 1 : static_cast<int>(std::min<index_t>(num_threads(), blocks));
    parallel_for(blocks, threads, [&](index_t k) {
      S* acc = partial.data() + k * GH;
      std::fill(acc, acc + GH, S(0));
      for (index_t r = k * kRows; r < std::min(R, (k + 1) * kRows); ++r) {
        layer_norm_backward(static_cast<const S*>(dG_ + r * GH), gain, xh + r * GH, rstd[r * 3], GH,
                            dG_ + r * GH, acc);
      }
    });
    S* out = a_.g->d_cell_params;
    column_dot_sums(static_cast<const S*>(partial.data()), GH, static_cast<const S*>(nullptr), 0,
                    blocks, GH, out);
    const index_t row_blocks = param_acc_.size() / NP;
    column_dot_sums(static_cast<const S*>(param_acc_.data()) + GH, NP,
                    static_cast<const S*>(nullptr), 0, row_blocks, NP - GH, out + GH);
  }

  /// rows x cols values at m rounded to bfloat16 in place, rows shared among the threads.
  static void round_rows(S* m, index_t rows, index_t cols) {
    parallel_rows(rows, cols, [&](index_t r0, index_t r1) {
      round_bf16_inplace(m + r0 * cols, (r1 - r0) * cols);
    });
  }

  /// After a step's phases (its product reads all of the step's gradients): the part's units of
  /// dh_{t-1} = (direct part) + dgates[:, :G1] W_hh[:G1] (with a projection the cell is an
  /// LSTM: no direct part, the product is all of it); no gradient through the skipped rows'
  /// gates; the blocks whose recurrent side differs kept.
  void to_previous_step(const Step& st, const TeamUnits& u, Part part) {
    S* carry = dh_carry_.data();
    P_hh1_.multiply_part(Rows<S>{st.dgh, z_.GH, st.Bt},
                         z_.proj ? Dest<S>::set(carry, z_.Hs) : Dest<S>::add(carry, z_.Hs), part);
    if (a_.zoneout_h) {  // + m*dh_t, the path past the cell
      const index_t n = u.v1 - u.v0;
      for (index_t b = 0; b < st.Bt; ++b) {
        RowVec<S>(carry + b * z_.Hs + u.v0, n) +=
            CRowVec<S>(zo_keep_h_.data() + b * z_.Hs + u.v0, n);
      }
    }
    for (index_t b = st.Bt; b < z_.B; ++b) {
      for (index_t gi = 0; gi < G; ++gi) {
        S* row = dG_ + (st.t * z_.B + b) * z_.GH + z_.gates.at(gi);
        std::fill(row + u.u0, row + u.u1, S(0));
      }
    }
    if constexpr (kDiffers && !Cell::kNorm) {  // zero on skipped rows
      for (index_t gi = kSame; gi < G1; ++gi) {
        copy_running_rows(dgh_keep_.data() + st.t * z_.B * DH_ + z_.gates.at(gi - kSame), DH_,
                          st.dgh + z_.gates.at(gi), z_.GH, z_.B, st.Bt, u.u0, u.u1);
      }
    }
  }

  /// The transposed weights of the per-step products, packed once (packed.hpp) (the last
  /// argument: how many products each runs; a few small ones are not packed).
  void pack_weights() {
    const Weights<S>& w = *a_.w;
    const index_t T = z_.T, B = z_.B, H = z_.H, Hs = z_.Hs;
    const GateLayout& gl = z_.gates;
    const Compute cp = a_.compute;
    // W_hh1^T
    P_hh1_ = PackedGemm<S>(w.w_hh, Hs, gl.size(G1), Hs, /*row_major=*/false, B, 1, T, cp);
    if constexpr (G > G1) {
      P_hh2_ = PackedGemm<S>(w.w_hh + gl.at(G1) * Hs, H, gl.size(G - G1), Hs, false, B, 1, T, cp);
    }
    if (z_.proj) P_hr_ = PackedGemm<S>(w.w_hr, H, Hs, H, false, B, 1, T, cp);  // W_hr^T
  }

  /// dL/dh_t = dy_t + (what step t+1 sent back), the running rows' units of h.
  S* incoming_gradient(index_t t, index_t Bt, const TeamUnits& u, index_t b0 = 0) {
    S* dh = dh_cur_.data();
    const index_t Hs = z_.Hs, n = u.v1 - u.v0;
    for (index_t b = b0; b < Bt; ++b) {
      RowVec<S> out(dh + b * Hs + u.v0, n);
      CRowVec<S> carry(dh_carry_.data() + b * Hs + u.v0, n);
      if (a_.dy) {
        out = carry + CRowVec<S>(a_.dy + (t * z_.B + b) * a_.lddy + u.v0, n);
      } else {
        out = carry;
      }
      if (a_.zoneout_h) {  // h_t = m*h_{t-1} + (1-m)*h~_t: m*dh_t kept for dh_{t-1}
        const index_t o = b * Hs + u.v0;
        CRowVec<S> m(a_.zoneout_h + t * z_.B * Hs + o, n);
        RowVec<S>(zo_keep_h_.data() + o, n) = m.cwiseProduct(out);
        out = out - m.cwiseProduct(out);
      }
    }
    return dh;
  }

  /// The cell's backward `pass` (rows [b0, b1) < Bt, units [u0, u1)) under zoneout of c:
  /// dL/dc~_t = (1-m)*dc_t into the cell, m*dc_t added to the dc_{t-1} it gives.
  template <class F>
  void through_c_zoneout(index_t t, index_t b0, index_t b1, index_t u0, index_t u1, F&& pass) {
    if constexpr (Cell::kCellState) {
      if (a_.zoneout_c) {
        const index_t H = z_.H, n = u1 - u0;
        for (index_t b = b0; b < b1; ++b) {
          const index_t o = b * H + u0;
          CRowVec<S> m(a_.zoneout_c + t * z_.BH + o, n);
          RowVec<S> dc(dc_.data() + o, n), keep(zo_keep_c_.data() + o, n);
          keep = m.cwiseProduct(dc);
          dc -= keep;
        }
        pass();
        for (index_t b = b0; b < b1; ++b) {
          const index_t o = b * H + u0;
          RowVec<S>(dc_.data() + o, n) += CRowVec<S>(zo_keep_c_.data() + o, n);
        }
        return;
      }
    }
    pass();
  }

  /// What the cell sees at step k (time t), Bt running rows, dL/dh_t = dh.
  BwdStep<S> step_args(index_t k, index_t t, index_t Bt, S* dh) {
    const index_t B = z_.B, BH = z_.BH;
    const index_t rd = a_.reverse ? t + 1 : t, wr = a_.reverse ? t : t + 1;
    BwdStep<S> s{};
    s.B = Bt;
    s.H = z_.H;
    s.units = z_.H;
    s.gates = dG_ + t * B * z_.GH;
    s.dgh = !kDiffers     ? nullptr
            : Cell::kNorm ? dgh_keep_.data() + t * B * DH_  // the cell writes the kept blocks
                          : dgh_step_.data() + (k % 2) * B * z_.GH;
    s.dh = dh;
    s.dh_prev = dh_carry_.data();
    s.params = a_.w->cell_params;
    s.clip = static_cast<S>(a_.options.clip);
    s.input_forget = a_.options.input_forget;
    s.recompute_c = a_.zoneout_c != nullptr;  // the saved c_t is zoned out: c~_t from the gates
    s.h_prev = hs_ + rd * z_.BHs;
    if constexpr (Cell::kCellState) {
      s.dc = dc_.data();
      s.c_prev = cs_ + rd * BH;
      s.c = cs_ + wr * BH;
    }
    if constexpr (Cell::kExtra) s.extra = ex_ + t * BH;
    if constexpr (Cell::kNorm) {
      s.norm_h = a_.ws + L_.xhat_hh + t * B * z_.GH;
      s.norm_c = a_.ws + L_.chat + t * BH;
      s.rstd = a_.ws + L_.rstd + t * B * 3;
      s.param_acc = param_acc_.data();
      s.dR = dR_.data() + t * B * z_.GH;
    }
    return s;
  }

  const DirBackward<S>& a_;
  const DirSizes z_;
  const DirLayout L_;
  const index_t DH_;  ///< width of the kept blocks [kSame, G1)
  S* const dG_;
  const S* const hs_;
  const S* const cs_;
  const S* const ex_;
  const S* const hcs_;
  Scratch<S> dgh_step_, dgh_keep_, dh_carry_, dh_cur_, dhc_, dh_direct_, dh_all_, dc_, dextra_, dR_,
      zo_keep_h_, zo_keep_c_, param_acc_;
  PackedGemm<S> P_hh1_, P_hh2_, P_hr_;
};

/// Backward with a team as forward: part i owns the same units of the pointwise pass and the
/// units [part_begin(Hs, i, n), ...) of h in the product dh_{t-1} = dgates W_hh, which reads
/// all of the step's dgates: it runs at the start of the next step's first phase (one phase a
/// step; two with a projection or a two-stage cell). After the loop: the weight gradients in one
/// gemm_tn call, dx as one tiled GEMM.
template <class Cell, class S>
void backward_dir(const DirBackward<S>& a) {
  BackwardLoop<Cell, S> loop(a);
  const Team team(loop.threads());
  typename BackwardLoop<Cell, S>::Step st{};
  for (index_t k = a.d.T - 1; k >= 0; --k) {  // the forward's steps, last first
    check_interrupt();
    st = loop.through_cell(k, k == a.d.T - 1 ? nullptr : &st, team);
  }
  if (a.d.T > 0) loop.to_previous_step(st, team);
  loop.write_state_gradients();
  loop.weight_gradients();
}

}  // namespace FASTRNN_ISA_NS
}  // namespace fastrnn::detail
