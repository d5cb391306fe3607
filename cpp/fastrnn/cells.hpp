// The cells as small policies for the generic time-loop driver (driver.hpp).
//
// A cell is a struct with
//   kGates          G, the number of stacked gate blocks (rows of w_ih / w_hh are G*H)
//   kGates1         how many leading gate blocks take their recurrent product from h_{t-1};
//                   the remaining G - kGates1 blocks (GRU reset_before: n) take it from the
//                   per-step "extra" input, which stage 1 of the cell computes (r*h_{t-1})
//   kCellState      true if the cell carries a second state c (LSTM)
//   kExtra          true if the cell saves one more (B, H) array per step ("extra")
//   kIntoGates      how many leading gate blocks are a plain sum x W_ih^T + h W_hh^T + biases:
//                   the driver adds their recurrent product straight onto the gates (whose
//                   projection then carries b_ih + b_hh); only the blocks [kIntoGates, kGates1)
//                   come in hproj (GRU reset_after: n, which r scales)
//   kHiddenGradDiffers  true if the gradient w.r.t. the recurrent product differs from the one
//                   w.r.t. the input projection (GRU reset_after: the n block is scaled by r)
//   kKind           its CellKind (fastrnn.hpp), written into the workspace's header
//   kNorm           true for a layer-normalised cell: the driver normalises each row of the input
//                   projection before the loop (gates = gamma_ih*xhat_ih + b_ih + b_hh, the gain
//                   the first G blocks of cell_params), puts the whole recurrent product (no bias)
//                   into hproj, and runs the cell's passes on whole rows (rows [b0, B) of a
//                   part), so that the cell can reduce over a row; FwdStep/BwdStep carry the
//                   saved normalised values (norm_h, norm_c, rstd)
//   kParams         true if the cell has its own parameters (Weights::cell_params, their blocks
//                   of H named by an enum Param, read through Units::param); their gradients
//                   come from all T*B rows after the loop: param_gradients(ParamGrads)
//                   (kNorm cells add theirs up in the loop: BwdStep::param_acc)
//   an enum of its gates' names (kI, kF, kG, kO; kR, kZ, kN), their blocks' order (GateLayout)
// and static functions that each make ONE pass over the (B, G*H) gates of one step:
//   forward(FwdStep)      [forward_stage1 first, for two-stage cells]
//   backward(BwdStep)     [backward_stage1, then the driver's extra GEMM, then backward for
//                          two-stage cells]
// Derivatives are written from the saved activated outputs (sigmoid' = s(1-s), tanh' = 1-t^2),
// each backward line carries its formula. CellOptions (a step's clip and input_forget): each pass
// is compiled twice, without them (the common case, nothing to test per element) and with them.
#pragma once

#include "fastrnn/isa_namespace.hpp"  // first: only kernel units compile this

#include <Eigen/Core>
#include <cmath>
#include <tuple>
#include <type_traits>

#include "fastrnn/fastrnn.hpp"
#include "fastrnn/gates.hpp"
#include "fastrnn/parallel.hpp"

namespace fastrnn::detail {
inline namespace FASTRNN_ISA_NS {

/// On a cell's pass: inline everything it calls. Without it GCC 12 left Eigen's packet tanh out of
/// line in the LSTM and GRU passes (once they were compiled twice, with and without CellOptions):
/// a call per packet that reloads its constants, +36% instructions in the plain LSTM cell's
/// forward (callgrind, x86-64-v3).
#if defined(__GNUC__) || defined(__clang__)
#define FASTRNN_FLATTEN [[gnu::flatten]]
#else
#define FASTRNN_FLATTEN
#endif

/// A fixed-size segment of N scalars at an arbitrary (unaligned) address.
template <class S, int N>
using Seg = Eigen::Map<Eigen::Array<S, N, 1>>;
template <class S, int N>
using CSeg = Eigen::Map<const Eigen::Array<S, N, 1>>;

/// Calls f(j, std::integral_constant<int, N>) over [0, H): chunks of the SIMD width N = P, then
/// single elements (N = 1). Which elements take the SIMD code thus depends only on H, never on
/// the buffers' addresses: on dynamic-size maps Eigen peels a scalar head up to the first aligned
/// address, and its scalar and SIMD sigmoid differ in the last bit, so results would depend on
/// where the allocator put the arrays. The chunk also keeps all gates of 16 units in registers.
template <class S, class F>
EIGEN_STRONG_INLINE void for_each_chunk(index_t H, F&& f) {
  constexpr int P = Eigen::internal::packet_traits<S>::size;
  index_t j = 0;
  for (; j + P <= H; j += P) f(j, std::integral_constant<int, P>{});
  for (; j < H; ++j) f(j, std::integral_constant<int, 1>{});
}

/// What one forward step sees. Pointers to row-major (B, width) blocks of one time step, rows
/// of stride H (gates: G*H); the cell works on the units [0, units) of each gate (a thread's
/// slice, pointers moved to its first unit by step_cols).
template <class S>
struct FwdStep {
  index_t B, H, units;
  index_t b0;         ///< the pass's first row (whole-row cells, kNorm: a part's rows [b0, B))
  S* gates;           ///< (B, G*H) in: x W_ih^T + b_ih, and for the first kIntoGates blocks
                      ///< + h_{t-1} W_hh^T + b_hh; out: activated gates (saved)
  const S* hproj;     ///< (B, (G1-kIntoGates)*H) the other blocks' h_{t-1} W_hh^T + b_hh, or
                      ///< nullptr
  const S* hproj2;    ///< (B, (G-G1)*H) W_hh[G1:] extra_t + b_hh[G1:] (two-stage), else nullptr
  const S* h_prev;    ///< (B, H)
  S* h;               ///< (B, H) out
  const S* c_prev;    ///< (B, H) LSTM only
  S* c;               ///< (B, H) out, LSTM only
  S* extra;           ///< (B, H) out, cells with kExtra
  const S* params;    ///< the cell's own parameters (kParams), blocks of H
  S clip;             ///< CellOptions::clip (0: none)
  bool input_forget;  ///< CellOptions::input_forget
  // layer-normalised cells (kNorm; step_cols does not apply to them)
  const S* b_hh;  ///< (G*H) b_hh or nullptr: the blocks [kIntoGates, G) add theirs themselves
  // out, saved for backward
  S* norm_h;  ///< (B, G*H) the normalised recurrent product
  S* norm_c;  ///< (B, H) the normalised c_t
  S* rstd;    ///< (B, 3) 1/sqrt(var + eps) of the input projection's row (the driver's), the
              ///< recurrent product's and c_t's

  /// Every array (step_cols moves them all).
  auto arrays() { return std::tie(gates, hproj, hproj2, h_prev, h, c_prev, c, extra, params); }
  /// Whether the step has CellOptions to apply.
  bool options() const { return clip > S(0) || input_forget; }
};

/// What one backward step sees. `gates` holds the saved activated gates on entry and is
/// overwritten in place with the gradients w.r.t. the gate pre-activations (input side).
template <class S>
struct BwdStep {
  index_t B, H, units;
  index_t b0;       ///< the pass's first row (kNorm cells)
  S* gates;         ///< (B, G*H) in: activated gates; out: dL/d(pre-activation), input side
  S* dgh;           ///< (B, G*H) out: same, recurrent side (kHiddenGradDiffers), else nullptr
  const S* dh;      ///< (B, H) dL/dh_t, total (from y_t and from step t+1)
  S* dc;            ///< (B, H) in: dL/dc_t from step t+1; out: dL/dc_{t-1} (LSTM only)
  S* dh_prev;       ///< (B, H) out: the part of dL/dh_{t-1} that does not go through W_hh
  const S* h_prev;  ///< (B, H)
  const S* c_prev;  ///< (B, H) LSTM only
  const S* c;       ///< (B, H) LSTM only
  const S* extra;   ///< (B, H) saved extra, cells with kExtra
  const S* dextra;  ///< (B, H) dL/d(extra) through W_hh[G1:] (two-stage cells)
  const S* params;  ///< the cell's own parameters (kParams)
  S clip;           ///< CellOptions, as the forward's
  bool input_forget;
  // layer-normalised cells (kNorm)
  const S* norm_h;  ///< (B, G*H) the forward's normalised recurrent product
  const S* norm_c;  ///< (B, H) the normalised c_t
  const S* rstd;    ///< (B, 3) the forward's
  /// the gradients of the cell's own parameters that the pass adds up (its layer norms' gains
  /// and biases): one row laid out as cell_params per block of kNormRowBlock rows, row b's at
  /// param_acc + (b / kNormRowBlock) * cell_params_size (the driver sums the blocks in order)
  S* param_acc;
  bool recompute_c;  ///< LSTM cells under zoneout of c: c~_t = f*c_{t-1} + i*g, not `c`
  S* dR;             ///< (B, G*H) out: dL/d(h_{t-1} W_hh^T), the recurrent product's gradient
                     ///< (with kHiddenGradDiffers, `dgh` is then (B, DH): the differing blocks'
                     ///< recurrent side, kept for db_hh)

  /// Every array (step_cols moves them all).
  auto arrays() {
    return std::tie(gates, dgh, dh, dc, dh_prev, h_prev, c_prev, c, extra, dextra, params);
  }
  bool options() const { return clip > S(0) || input_forget || recompute_c; }
};

/// What a cell with its own parameters (kParams) needs for their gradients, after the loop: the
/// R = T*B rows of every step, the saved states in the order of the steps' times.
template <class S>
struct ParamGrads {
  index_t R, H;
  const S* dgates;  ///< (R, G*H) dL/d(pre-activation) of every row (zero on skipped rows)
  const S* c_prev;  ///< (R, H) each row's c_{t-1} (LSTM cells)
  const S* c;       ///< (R, H) each row's c_t
  S* out;           ///< the gradients, laid out as Weights::cell_params
};

/// The units [u0, u1) of a step (FwdStep or BwdStep): every array moved by u0 (the cells add the
/// gate's offset). With u0 a multiple of the SIMD width, for_each_chunk's chunks are those of the
/// whole row, so a slice computes exactly what the whole step computes on those units.
template <class Step>
Step step_cols(const Step& s, index_t u0, index_t u1) {
  Step r = s;
  r.units = u1 - u0;
  std::apply([u0](auto*&... p) { ((p = p ? p + u0 : p), ...); }, r.arrays());
  return r;
}

/// The units [j, j + N) of row b of a step: what a cell's formulas read and write at one chunk.
/// Arrays with a gate axis are rows of G*H values (gate(array, g): gate g's units), the others
/// rows of H values (at(array)).
template <class S, int N>
struct Units {
  using Values = Eigen::Array<S, N, 1>;  ///< a chunk-local temporary (registers, never heap)
  GateLayout layout;
  index_t gate_row;  ///< offset of unit j of gate 0 in a (B, G*H) array
  index_t row;       ///< offset of unit j in a (B, H) array
  index_t unit;      ///< j

  Seg<S, N> gate(S* a, index_t g) const { return Seg<S, N>(a + gate_row + layout.at(g)); }
  Seg<S, N> at(S* a) const { return Seg<S, N>(a + row); }
  CSeg<S, N> at(const S* a) const { return CSeg<S, N>(a + row); }
  /// Unit j of block k of the cell's own parameters (the same for every row).
  CSeg<S, N> param(const S* a, index_t k) const { return CSeg<S, N>(a + layout.at(k) + unit); }
};

/// Calls f(Units<S, N>) over the rows [0, s.B) of a step of a G-gate cell and, in each row, over
/// the units [0, s.units) in for_each_chunk's chunks: the one loop of every cell's pass.
template <int G, class Step, class F>
EIGEN_STRONG_INLINE void for_each_unit(const Step& s, F&& f) {
  using S = std::remove_pointer_t<decltype(s.gates)>;
  const GateLayout layout{s.H};
  for (index_t b = s.b0; b < s.B; ++b) {
    for_each_chunk<S>(s.units, [&](index_t j, auto n) {
      f(Units<S, decltype(n)::value>{layout, b * layout.size(G) + j, b * s.H + j, j});
    });
  }
}

/// Logistic function 1 / (1 + exp(-a)): accurate to a few ulp over the whole range (Eigen 3.4's
/// float logistic() returns exp(a) below -9, ~1000 ulp off), no NaN for finite input (exp(-a)
/// overflows to inf and the result to 0), NaN in gives NaN out.
template <class Derived>
EIGEN_STRONG_INLINE auto sigmoid(const Eigen::ArrayBase<Derived>& a) {
  using S = typename Derived::Scalar;
  return (S(1) + (-a).exp()).inverse();
}

/// ONNX's clip of a pre-activation: a = min(max(a, -c), c) in place (NaN stays NaN).
template <class A, class S>
EIGEN_STRONG_INLINE void clamp_to(A&& a, S c) {
  a = (a > c).select(c, (a < -c).select(-c, a));
}

/// The derivative through clip: d = 0 where the saved activation y is at or beyond the
/// activation of a bound (lo = act(-c), hi = act(c), computed by the forward's code at the same
/// chunk width, so a clamped element's y equals it exactly): where the pre-activation was clamped
/// (or within rounding of the bound).
template <class D, class Y, class V>
EIGEN_STRONG_INLINE void zero_where_clamped(D&& d, const Y& y, const V& lo, const V& hi) {
  using S = typename V::Scalar;
  d = ((y <= lo) || (y >= hi)).select(S(0), d);
}

/// out[j] = sum over the rows r < R of a[r*lda + j] * b[r*ldb + j] (b nullptr: of a[r*lda + j]),
/// j < H, in row order (deterministic); blocks of columns shared among threads. For the gradients
/// of a cell's own per-unit parameters (ParamGrads).
template <class S>
void column_dot_sums(const S* a, index_t lda, const S* b, index_t ldb, index_t R, index_t H,
                     S* out) {
  using Row = Eigen::Map<const Eigen::Array<S, 1, Eigen::Dynamic>>;
  constexpr index_t kCols = 64;
  const index_t blocks = (H + kCols - 1) / kCols;
  const int threads =
      R * H < kParallelMinWork ? 1 : static_cast<int>(std::min<index_t>(num_threads(), blocks));
  parallel_for(blocks, threads, [&](index_t bi) {
    const index_t c0 = bi * kCols, n = std::min(kCols, H - c0);
    Eigen::Map<Eigen::Array<S, 1, Eigen::Dynamic>> acc(out + c0, n);
    acc.setZero();
    if (b) {
      for (index_t r = 0; r < R; ++r) acc += Row(a + r * lda + c0, n) * Row(b + r * ldb + c0, n);
    } else {
      for (index_t r = 0; r < R; ++r) acc += Row(a + r * lda + c0, n);
    }
  });
}

/// A sum over a row accumulated in for_each_chunk's chunks: add(values of one chunk), then
/// total(). The same chunks, hence the same sum, whichever part and buffer computes it.
template <class S>
class ChunkSum {
 public:
  template <int N>
  EIGEN_STRONG_INLINE void add(const Eigen::Array<S, N, 1>& v) {
    if constexpr (N == kP) {
      acc_ += v;
    } else {
      tail_ += v.sum();
    }
  }
  S total() const { return acc_.sum() + tail_; }

 private:
  static constexpr int kP = Eigen::internal::packet_traits<S>::size;
  Eigen::Array<S, kP, 1> acc_ = Eigen::Array<S, kP, 1>::Zero();
  S tail_ = 0;
};

/// The layer norm's epsilon (PyTorch's LayerNorm and haste's).
inline constexpr double kLayerNormEps = 1e-5;

/// Rows of a block of a layer-normalised cell's pass: its teams' parts take whole blocks of rows
/// (the accumulators of BwdStep::param_acc are per block, each added to by one part in a fixed
/// order: results independent of the thread count).
inline constexpr index_t kNormRowBlock = 8;

/// xhat = (x - mean(x)) / sqrt(var(x) + eps) over a row of n values (two passes: the mean, then
/// the variance around it); returns 1/sqrt(var + eps). xhat may be x.
template <class S>
S layer_norm(const S* x, index_t n, S* xhat) {
  ChunkSum<S> s1, s2;
  for_each_chunk<S>(n, [&](index_t j, auto c) {
    s1.add(Eigen::Array<S, decltype(c)::value, 1>(CSeg<S, decltype(c)::value>(x + j)));
  });
  const S mean = s1.total() / static_cast<S>(n);
  for_each_chunk<S>(n, [&](index_t j, auto c) {
    s2.add(Eigen::Array<S, decltype(c)::value, 1>(
        (CSeg<S, decltype(c)::value>(x + j) - mean).square()));
  });
  const S rstd = S(1) / std::sqrt(s2.total() / static_cast<S>(n) + static_cast<S>(kLayerNormEps));
  for_each_chunk<S>(n, [&](index_t j, auto c) {
    constexpr int N = decltype(c)::value;
    Seg<S, N>(xhat + j) = (CSeg<S, N>(x + j) - mean) * rstd;
  });
  return rstd;
}

/// The layer norm's backward over a row: with y = gain*xhat + bias, dy given,
/// dx = rstd * (g - mean(g) - xhat * mean(g*xhat)), g = dy*gain. dx may be dy. dgain and dbias
/// (if given) accumulate the row's gradients of gain (+= dy*xhat) and bias (+= dy).
template <class S>
void layer_norm_backward(const S* dy, const S* gain, const S* xhat, S rstd, index_t n, S* dx,
                         S* dgain = nullptr, S* dbias = nullptr) {
  ChunkSum<S> s1, s2;
  for_each_chunk<S>(n, [&](index_t j, auto c) {
    constexpr int N = decltype(c)::value;
    const CSeg<S, N> d(dy + j), x(xhat + j);
    const Eigen::Array<S, N, 1> g = d * CSeg<S, N>(gain + j);
    s1.add(g);
    s2.add(Eigen::Array<S, N, 1>(g * x));
    if (dgain) Seg<S, N>(dgain + j) += d * x;
    if (dbias) Seg<S, N>(dbias + j) += d;
  });
  const S m1 = s1.total() / static_cast<S>(n), m2 = s2.total() / static_cast<S>(n);
  for_each_chunk<S>(n, [&](index_t j, auto c) {
    constexpr int N = decltype(c)::value;
    const Eigen::Array<S, N, 1> g = CSeg<S, N>(dy + j) * CSeg<S, N>(gain + j);
    Seg<S, N>(dx + j) = rstd * (g - m1 - CSeg<S, N>(xhat + j) * m2);
  });
}

// ---------------------------------------------------------------------------------------------
// Vanilla RNN: h' = act(a), a = W_ih x + b_ih + W_hh h + b_hh. The saved "gate" is h' itself.
// ---------------------------------------------------------------------------------------------
template <bool kRelu>
struct RnnCell {
  static constexpr int kGates = 1;
  static constexpr int kGates1 = 1;
  static constexpr bool kCellState = false;
  static constexpr bool kExtra = false;
  static constexpr int kIntoGates = kGates;
  static constexpr bool kHiddenGradDiffers = false;
  static constexpr bool kParams = false;
  static constexpr bool kNorm = false;
  static constexpr CellKind kKind = kRelu ? CellKind::RnnRelu : CellKind::RnnTanh;
  enum Gate : int { kA };  ///< the pre-activation a, then h' itself

  template <class S>
  static void forward(const FwdStep<S>& s) {
    s.options() ? forward_pass<true>(s) : forward_pass<false>(s);
  }
  template <class S>
  static void backward(const BwdStep<S>& s) {
    s.options() ? backward_pass<true>(s) : backward_pass<false>(s);
  }

 private:
  template <bool kOpts, class S>
  FASTRNN_FLATTEN static void forward_pass(const FwdStep<S>& s) {
    for_each_unit<kGates>(s, [&](auto u) {
      auto a = u.gate(s.gates, kA);
      if constexpr (kOpts) clamp_to(a, s.clip);  // (options: clip only)
      if constexpr (kRelu) {
        a = (a < S(0)).select(S(0), a);  // relu; NaN stays NaN
      } else {
        a = a.tanh();
      }
      u.at(s.h) = a;
    });
  }

  template <bool kOpts, class S>
  FASTRNN_FLATTEN static void backward_pass(const BwdStep<S>& s) {
    for_each_unit<kGates>(s, [&](auto u) {
      using V = typename decltype(u)::Values;
      auto a = u.gate(s.gates, kA);  // h_t on entry
      const auto d = u.at(s.dh);
      if constexpr (kRelu) {
        if constexpr (kOpts) {  // clamped above: h = clip (below: h = 0, no gradient either)
          a = (a > S(0) && a < s.clip).select(d, S(0));  // da = dh * [0 < h < clip]
        } else {
          a = (a > S(0)).select(d, S(0));  // da = dh * [h > 0]
        }
      } else {
        if constexpr (kOpts) {
          const V hi = V::Constant(s.clip).tanh(), lo = V::Constant(-s.clip).tanh();
          const V h = a;
          a = d * (S(1) - a.square());  // da = dh * (1 - h^2), 0 where clamped
          zero_where_clamped(a, h, lo, hi);
        } else {
          a = d * (S(1) - a.square());  // da = dh * (1 - h^2)
        }
      }
      u.at(s.dh_prev).setZero();  // no direct path from h_t to h_{t-1}
    });
  }
};

// ---------------------------------------------------------------------------------------------
// LSTM, gates i f g o; with kPeep the peepholes p_i, p_f, p_o (ONNX's P): i and f also see
// p*c_{t-1}, o sees p_o*c_t. Options: clip (every gate's pre-activation) and input_forget
// (f = 1 - i, as ONNX Runtime).
// ---------------------------------------------------------------------------------------------
template <bool kPeep>
struct LstmCellT {
  static constexpr int kGates = 4;
  static constexpr int kGates1 = 4;
  static constexpr bool kCellState = true;
  static constexpr bool kExtra = false;
  static constexpr int kIntoGates = kGates;
  static constexpr bool kHiddenGradDiffers = false;
  static constexpr bool kParams = kPeep;
  static constexpr bool kNorm = false;
  static constexpr CellKind kKind = kPeep ? CellKind::LstmPeephole : CellKind::Lstm;
  enum Gate : int { kI, kF, kG, kO };
  enum Param : int { kPi, kPf, kPo };  ///< the blocks of cell_params (kPeep)

  template <class S>
  static void forward(const FwdStep<S>& s) {
    s.options() ? forward_pass<true>(s) : forward_pass<false>(s);
  }
  template <class S>
  static void backward(const BwdStep<S>& s) {
    s.options() ? backward_pass<true>(s) : backward_pass<false>(s);
  }

  /// dp_i = sum dI * c_{t-1}, dp_f = sum dF * c_{t-1}, dp_o = sum dO * c_t over the rows.
  template <class S>
  static void param_gradients(const ParamGrads<S>& a) {
    const GateLayout gl{a.H}, pl{a.H};
    const index_t GH = gl.size(kGates);
    column_dot_sums(a.dgates + gl.at(kI), GH, a.c_prev, a.H, a.R, a.H, a.out + pl.at(kPi));
    column_dot_sums(a.dgates + gl.at(kF), GH, a.c_prev, a.H, a.R, a.H, a.out + pl.at(kPf));
    column_dot_sums(a.dgates + gl.at(kO), GH, a.c, a.H, a.R, a.H, a.out + pl.at(kPo));
  }

 private:
  template <bool kOpts, class S>
  FASTRNN_FLATTEN static void forward_pass(const FwdStep<S>& s) {
    const bool clip = kOpts && s.clip > S(0), coupled = kOpts && s.input_forget;
    for_each_unit<kGates>(s, [&](auto u) {
      using V = typename decltype(u)::Values;
      auto i = u.gate(s.gates, kI), f = u.gate(s.gates, kF), g = u.gate(s.gates, kG),
           o = u.gate(s.gates, kO);
      const V cp = u.at(s.c_prev);
      if constexpr (kPeep) {
        i += u.param(s.params, kPi) * cp;  // + p_i*c_{t-1}
        f += u.param(s.params, kPf) * cp;  // + p_f*c_{t-1}
      }
      if constexpr (kOpts) {
        if (clip) {
          clamp_to(i, s.clip);
          clamp_to(f, s.clip);
          clamp_to(g, s.clip);
        }
      }
      i = sigmoid(i);
      f = coupled ? (S(1) - i).eval() : sigmoid(f).eval();  // input_forget: f = 1 - i
      g = g.tanh();
      if constexpr (!kPeep && !kOpts) o = sigmoid(o);
      const V cn = f * cp + i * g;  // c' = f*c + i*g
      u.at(s.c) = cn;
      if constexpr (kPeep) o += u.param(s.params, kPo) * cn;  // + p_o*c'
      if constexpr (kOpts) {
        if (clip) clamp_to(o, s.clip);
      }
      if constexpr (kPeep || kOpts) o = sigmoid(o);
      u.at(s.h) = o * cn.tanh();  // h' = o*tanh(c')
    });
  }

  template <bool kOpts, class S>
  FASTRNN_FLATTEN static void backward_pass(const BwdStep<S>& s) {
    const bool clip = kOpts && s.clip > S(0), coupled = kOpts && s.input_forget;
    for_each_unit<kGates>(s, [&](auto u) {
      using V = typename decltype(u)::Values;
      auto i = u.gate(s.gates, kI), f = u.gate(s.gates, kF), g = u.gate(s.gates, kG),
           o = u.gate(s.gates, kO);
      auto dc = u.at(s.dc);
      const V dh = u.at(s.dh);
      const V cp = u.at(s.c_prev);
      V tc;
      if constexpr (kOpts) {  // zoneout of c: the saved c_t is not the cell's c~_t
        tc = (s.recompute_c ? V(f * cp + i * g) : V(u.at(s.c))).tanh();
      } else {
        tc = u.at(s.c).tanh();
      }
      V dct = dc + dh * o * (S(1) - tc.square());  // dc_t += dh*o*(1 - tanh^2 c)
      V dO = dh * tc * o * (S(1) - o);             // do = dh * tanh(c) * o(1-o)
      V dI, dF;
      if constexpr (kOpts) {
        if (clip) {
          const V shi = sigmoid(V::Constant(s.clip)), slo = sigmoid(V::Constant(-s.clip));
          zero_where_clamped(dO, o, slo, shi);
        }
      }
      if constexpr (kPeep) dct += dO * u.param(s.params, kPo);  // o saw c_t: + do*p_o
      if (coupled) {                                            // f = 1 - i:
        dI = dct * (g - cp) * i * (S(1) - i);                   // di = dc*(g - c_{t-1})*i(1-i)
        dF.setZero();                                           // the f block is unused
      } else {
        dI = dct * g * i * (S(1) - i);   // di = dc * g * i(1-i)
        dF = dct * cp * f * (S(1) - f);  // df = dc * c_{t-1} * f(1-f)
      }
      V dG = dct * i * (S(1) - g.square());  // dg = dc * i * (1 - g^2)
      if constexpr (kOpts) {
        if (clip) {
          const V shi = sigmoid(V::Constant(s.clip)), slo = sigmoid(V::Constant(-s.clip));
          const V thi = V::Constant(s.clip).tanh(), tlo = V::Constant(-s.clip).tanh();
          zero_where_clamped(dI, i, slo, shi);
          if (!coupled) zero_where_clamped(dF, f, slo, shi);
          zero_where_clamped(dG, g, tlo, thi);
        }
      }
      dc = dct * f;  // dc_{t-1} = dc * f
      if constexpr (kPeep) {
        dc += dI * u.param(s.params, kPi) + dF * u.param(s.params, kPf);  // + di*p_i + df*p_f
      }
      i = dI;
      f = dF;
      g = dG;
      o = dO;
      u.at(s.dh_prev).setZero();  // no direct path from h_t to h_{t-1}
    });
  }
};

using LstmCell = LstmCellT<false>;
using LstmPeepholeCell = LstmCellT<true>;

// ---------------------------------------------------------------------------------------------
// Layer-normalised LSTM (haste's LayerNormLSTM), gates i f g o:
//   v  = g_ih*LN(x W_ih^T) + g_hh*LN(h W_hh^T) + b_ih + b_hh     (LN over the row's 4H values)
//   i, f, o = sigmoid(v.), g = tanh(v.);  c' = f*c + i*g;  h' = o*tanh(g_c*LN(c') + b_c)
// The driver normalises the input projection (kNorm); a pass here takes whole rows. Its own
// parameters, blocks of H: g_ih (4 blocks), g_hh (4), g_c, b_c.
// ---------------------------------------------------------------------------------------------
struct LnLstmCell {
  static constexpr int kGates = 4;
  static constexpr int kGates1 = 4;
  static constexpr bool kCellState = true;
  static constexpr bool kExtra = false;
  static constexpr int kIntoGates = kGates;  // the projection's bias: b_ih + b_hh, every block
  static constexpr bool kHiddenGradDiffers = false;
  static constexpr bool kParams = true;
  static constexpr bool kNorm = true;
  static constexpr CellKind kKind = CellKind::LayerNormLstm;
  enum Gate : int { kI, kF, kG, kO };
  enum Param : int { kGainIh = 0, kGainHh = 4, kGainC = 8, kBiasC = 9, kParamBlocks = 10 };

  /// Rows [b0, B): v += g_hh*LN(hproj) (saved: norm_h, rstd[1]), the gates, c' (saved), its
  /// layer norm (norm_c, rstd[2]) and h'.
  template <class S>
  FASTRNN_FLATTEN static void forward(const FwdStep<S>& s) {
    const GateLayout L{s.H};
    const index_t H = s.H, GH = L.size(kGates);
    const S* gain_hh = s.params + L.at(kGainHh);
    for (index_t b = s.b0; b < s.B; ++b) {
      S* v = s.gates + b * GH;
      S* xh = s.norm_h + b * GH;
      S* c = s.c + b * H;
      S* ch = s.norm_c + b * H;
      const S* cp = s.c_prev + b * H;
      s.rstd[b * 3 + 1] = layer_norm(s.hproj + b * GH, GH, xh);
      for_each_chunk<S>(H, [&](index_t j, auto n) {
        constexpr int N = decltype(n)::value;
        using V = Eigen::Array<S, N, 1>;
        Seg<S, N> i(v + L.at(kI, j)), f(v + L.at(kF, j)), g(v + L.at(kG, j)), o(v + L.at(kO, j));
        i += CSeg<S, N>(gain_hh + L.at(kI, j)) * CSeg<S, N>(xh + L.at(kI, j));  // + g_hh*xhat_hh
        f += CSeg<S, N>(gain_hh + L.at(kF, j)) * CSeg<S, N>(xh + L.at(kF, j));
        g += CSeg<S, N>(gain_hh + L.at(kG, j)) * CSeg<S, N>(xh + L.at(kG, j));
        o += CSeg<S, N>(gain_hh + L.at(kO, j)) * CSeg<S, N>(xh + L.at(kO, j));
        i = sigmoid(i);
        f = sigmoid(f);
        g = g.tanh();
        o = sigmoid(o);
        Seg<S, N>(c + j) = V(f * CSeg<S, N>(cp + j) + i * g);  // c' = f*c + i*g
      });
      const S rc = layer_norm(static_cast<const S*>(c), H, ch);  // chat = LN(c')
      s.rstd[b * 3 + 2] = rc;
      S* h = s.h + b * H;
      for_each_chunk<S>(H, [&](index_t j, auto n) {
        constexpr int N = decltype(n)::value;
        const auto yc = CSeg<S, N>(s.params + L.at(kGainC, j)) * CSeg<S, N>(ch + j) +
                        CSeg<S, N>(s.params + L.at(kBiasC, j));      // y_c = g_c*chat + b_c
        Seg<S, N>(h + j) = CSeg<S, N>(v + L.at(kO, j)) * yc.tanh();  // h' = o*tanh(y_c)
      });
    }
  }

  /// Rows [b0, B): gates -> dL/dv (the input side, also the bias gradient), dc_{t-1},
  /// dR = dL/d(h W_hh^T) through the recurrent product's layer norm; g_hh's, g_c's and b_c's
  /// gradients added to the row's block of param_acc.
  template <class S>
  FASTRNN_FLATTEN static void backward(const BwdStep<S>& s) {
    const GateLayout L{s.H};
    const index_t H = s.H, GH = L.size(kGates);
    const S* gain_c = s.params + L.at(kGainC);
    for (index_t b = s.b0; b < s.B; ++b) {
      S* v = s.gates + b * GH;
      const S* ch = s.norm_c + b * H;
      S* dyc = s.dh_prev + b * H;  // scratch (H values): dy_c, then dL/dc' through the LN
      S* acc = s.param_acc + (b / kNormRowBlock) * L.size(kParamBlocks);
      S* dc = s.dc + b * H;
      const S* dh = s.dh + b * H;
      const S* cp = s.c_prev + b * H;
      // through h' = o*tanh(y_c): do, dy_c
      for_each_chunk<S>(H, [&](index_t j, auto n) {
        constexpr int N = decltype(n)::value;
        using V = Eigen::Array<S, N, 1>;
        Seg<S, N> o(v + L.at(kO, j));
        const V t =
            (CSeg<S, N>(gain_c + j) * CSeg<S, N>(ch + j) + CSeg<S, N>(s.params + L.at(kBiasC, j)))
                .tanh();
        const V d = CSeg<S, N>(dh + j);
        Seg<S, N>(dyc + j) = d * o * (S(1) - t.square());  // dy_c = dh*o*(1 - tanh^2 y_c)
        o = d * t * o * (S(1) - o);                        // do = dh*tanh(y_c)*o(1-o)
      });
      // dc_t += dL/dc' through its layer norm (dc holds dL/dc_t from step t+1 on entry)
      layer_norm_backward(static_cast<const S*>(dyc), gain_c, ch, s.rstd[b * 3 + 2], H, dyc,
                          acc + L.at(kGainC), acc + L.at(kBiasC));
      for_each_chunk<S>(H, [&](index_t j, auto n) {
        constexpr int N = decltype(n)::value;
        using V = Eigen::Array<S, N, 1>;
        Seg<S, N> i(v + L.at(kI, j)), f(v + L.at(kF, j)), g(v + L.at(kG, j));
        Seg<S, N> dcs(dc + j);
        const V dct = dcs + CSeg<S, N>(s.dh_prev + b * H + j);  // dc_t, total
        const V di = dct * g * i * (S(1) - i);                  // di = dc * g * i(1-i)
        dcs = dct * f;                                          // dc_{t-1} = dc * f
        f = dct * CSeg<S, N>(cp + j) * f * (S(1) - f);          // df = dc * c_{t-1} * f(1-f)
        g = dct * i * (S(1) - g.square());                      // dg = dc * i * (1 - g^2)
        i = di;
      });
      std::fill(s.dh_prev + b * H, s.dh_prev + (b + 1) * H, S(0));  // no direct h_{t-1} path
      // dR = dL/d(h W_hh^T) through LN: dv (both sides share it) * g_hh
      layer_norm_backward(static_cast<const S*>(v), s.params + L.at(kGainHh), s.norm_h + b * GH,
                          s.rstd[b * 3 + 1], GH, s.dR + b * GH, acc + L.at(kGainHh));
    }
  }
};

// ---------------------------------------------------------------------------------------------
// Layer-normalised GRU (reset_after), gates r z n, LN as LnLstmCell's over the row's 3H values:
//   a  = g_ih*LN(x W_ih^T) + b_ih,  m = g_hh*LN(h W_hh^T)
//   r, z = sigmoid(a. + m. + b_h.),  n = tanh(a_n + r*(m_n + b_hn));  h' = (1-z)*n + z*h
// Saves hn = m_n + b_hn. Its own parameters, blocks of H: g_ih (3 blocks), g_hh (3).
// ---------------------------------------------------------------------------------------------
struct LnGruCell {
  static constexpr int kGates = 3;
  static constexpr int kGates1 = 3;
  static constexpr bool kCellState = false;
  static constexpr bool kExtra = true;
  static constexpr int kIntoGates = 2;  // r, z: the projection's bias b_ih + b_hh; n: b_in
  static constexpr bool kHiddenGradDiffers = true;
  static constexpr bool kParams = true;
  static constexpr bool kNorm = true;
  static constexpr CellKind kKind = CellKind::LayerNormGru;
  enum Gate : int { kR, kZ, kN };
  enum Param : int { kGainIh = 0, kGainHh = 3, kParamBlocks = 6 };  ///< blocks of H

  /// Rows [b0, B): the recurrent product's layer norm (norm_h, rstd[1]), the gates, h'.
  template <class S>
  FASTRNN_FLATTEN static void forward(const FwdStep<S>& s) {
    const GateLayout L{s.H};
    const index_t H = s.H, GH = L.size(kGates);
    const S* gain = s.params + L.at(kGainHh);
    for (index_t b = s.b0; b < s.B; ++b) {
      S* v = s.gates + b * GH;
      S* xh = s.norm_h + b * GH;
      S* hn = s.extra + b * H;
      const S* hp = s.h_prev + b * H;
      S* h = s.h + b * H;
      s.rstd[b * 3 + 1] = layer_norm(s.hproj + b * GH, GH, xh);
      for_each_chunk<S>(H, [&](index_t j, auto c) {
        constexpr int N = decltype(c)::value;
        using V = Eigen::Array<S, N, 1>;
        Seg<S, N> r(v + L.at(kR, j)), z(v + L.at(kZ, j)), n(v + L.at(kN, j));
        r += CSeg<S, N>(gain + L.at(kR, j)) * CSeg<S, N>(xh + L.at(kR, j));  // + g_hh*xhat
        z += CSeg<S, N>(gain + L.at(kZ, j)) * CSeg<S, N>(xh + L.at(kZ, j));
        V m = CSeg<S, N>(gain + L.at(kN, j)) * CSeg<S, N>(xh + L.at(kN, j));
        if (s.b_hh) m += CSeg<S, N>(s.b_hh + L.at(kN, j));  // hn = m_n + b_hn
        Seg<S, N>(hn + j) = m;
        r = sigmoid(r);
        z = sigmoid(z);
        n = (n + r * m).tanh();
        Seg<S, N>(h + j) = (S(1) - z) * n + z * CSeg<S, N>(hp + j);  // h' = (1-z)*n + z*h
      });
    }
  }

  /// Rows [b0, B): gates -> dL/d(pre-activation) (input side), the direct dh_{t-1} = dh*z,
  /// dgh = dn*r (the n block's recurrent side, kept), dR through the recurrent layer norm;
  /// g_hh's gradient added to the row's block of param_acc.
  template <class S>
  FASTRNN_FLATTEN static void backward(const BwdStep<S>& s) {
    const GateLayout L{s.H};
    const index_t H = s.H, GH = L.size(kGates);
    for (index_t b = s.b0; b < s.B; ++b) {
      S* v = s.gates + b * GH;
      S* dR = s.dR + b * GH;
      const S* dh = s.dh + b * H;
      const S* hp = s.h_prev + b * H;
      for_each_chunk<S>(H, [&](index_t j, auto c) {
        constexpr int N = decltype(c)::value;
        using V = Eigen::Array<S, N, 1>;
        Seg<S, N> r(v + L.at(kR, j)), z(v + L.at(kZ, j)), n(v + L.at(kN, j));
        const V d = CSeg<S, N>(dh + j);
        Seg<S, N>(s.dh_prev + b * H + j) = d * z;           // dh_{t-1} (direct) = dh*z
        const V dn = d * (S(1) - z) * (S(1) - n.square());  // dn = dh*(1-z)*(1-n^2)
        z = d * (CSeg<S, N>(hp + j) - n) * z * (S(1) - z);  // dz = dh*(h_{t-1}-n)*z(1-z)
        const V dm = dn * r;                                // d(m_n + b_hn) = dn*r
        Seg<S, N>(s.dgh + b * H + j) = dm;
        r = dn * CSeg<S, N>(s.extra + b * H + j) * r * (S(1) - r);  // dr = dn*hn*r(1-r)
        n = dn;
        Seg<S, N>(dR + L.at(kR, j)) = r;  // the recurrent side before its layer norm:
        Seg<S, N>(dR + L.at(kZ, j)) = z;  //   r, z as the input side, n scaled by r
        Seg<S, N>(dR + L.at(kN, j)) = dm;
      });
      S* acc = s.param_acc + (b / kNormRowBlock) * L.size(kParamBlocks);
      layer_norm_backward(static_cast<const S*>(dR), s.params + L.at(kGainHh), s.norm_h + b * GH,
                          s.rstd[b * 3 + 1], GH, dR, acc + L.at(kGainHh));
    }
  }
};

// ---------------------------------------------------------------------------------------------
// GRU, gates r z n, reset_after=True: n = tanh(xn + r*(W_hn h + b_hn)). Saves hn = W_hn h + b_hn.
// Options: clip (r, z, and n's whole argument).
// ---------------------------------------------------------------------------------------------
struct GruCell {
  static constexpr int kGates = 3;
  static constexpr int kGates1 = 3;
  static constexpr bool kCellState = false;
  static constexpr bool kExtra = true;
  static constexpr int kIntoGates = 2;  // r, z
  static constexpr bool kHiddenGradDiffers = true;
  static constexpr bool kParams = false;
  static constexpr bool kNorm = false;
  static constexpr CellKind kKind = CellKind::Gru;
  enum Gate : int { kR, kZ, kN };

  template <class S>
  static void forward(const FwdStep<S>& s) {
    s.options() ? forward_pass<true>(s) : forward_pass<false>(s);
  }
  template <class S>
  static void backward(const BwdStep<S>& s) {
    s.options() ? backward_pass<true>(s) : backward_pass<false>(s);
  }

 private:
  template <bool kOpts, class S>
  FASTRNN_FLATTEN static void forward_pass(const FwdStep<S>& s) {
    for_each_unit<kGates>(s, [&](auto u) {
      auto r = u.gate(s.gates, kR), z = u.gate(s.gates, kZ), n = u.gate(s.gates, kN);
      auto hn = u.at(s.extra);
      if constexpr (kOpts) {
        clamp_to(r, s.clip);
        clamp_to(z, s.clip);
      }
      r = sigmoid(r);
      z = sigmoid(z);
      hn = u.at(s.hproj);  // the n block's recurrent product
      if constexpr (kOpts) {
        n += r * hn;
        clamp_to(n, s.clip);
        n = n.tanh();
      } else {
        n = (n + r * hn).tanh();
      }
      u.at(s.h) = (S(1) - z) * n + z * u.at(s.h_prev);  // h' = (1-z)*n + z*h
    });
  }

  template <bool kOpts, class S>
  FASTRNN_FLATTEN static void backward_pass(const BwdStep<S>& s) {
    for_each_unit<kGates>(s, [&](auto u) {
      using V = typename decltype(u)::Values;
      auto r = u.gate(s.gates, kR), z = u.gate(s.gates, kZ), n = u.gate(s.gates, kN);
      const V dh = u.at(s.dh);
      u.at(s.dh_prev) = dh * z;                           // dh_{t-1} (direct) = dh*z
      V dn = dh * (S(1) - z) * (S(1) - n.square());       // dn = dh*(1-z)*(1-n^2)
      V dz = dh * (u.at(s.h_prev) - n) * z * (S(1) - z);  // dz = dh*(h_{t-1}-n)*z(1-z)
      if constexpr (kOpts) {                              // 0 where clamped
        const V shi = sigmoid(V::Constant(s.clip)), slo = sigmoid(V::Constant(-s.clip));
        zero_where_clamped(dn, n, V::Constant(-s.clip).tanh().eval(),
                           V::Constant(s.clip).tanh().eval());
        zero_where_clamped(dz, z, slo, shi);
      }
      z = dz;
      u.gate(s.dgh, kN) = dn * r;                  // d(W_hn h + b_hn) = dn*r
      V dr = dn * u.at(s.extra) * r * (S(1) - r);  // dr = dn * hn * r(1-r)
      if constexpr (kOpts) {
        zero_where_clamped(dr, r, sigmoid(V::Constant(-s.clip)).eval(),
                           sigmoid(V::Constant(s.clip)).eval());
      }
      r = dr;
      n = dn;
      u.gate(s.dgh, kR) = r;  // r, z: both sides share
      u.gate(s.dgh, kZ) = z;  //   the same gradient
    });
  }
};

// ---------------------------------------------------------------------------------------------
// GRU, gates r z n, reset_after=False: n = tanh(xn + W_hn (r*h) + b_hn). Two stages: stage 1
// makes r, z and the extra input r*h (saved), the driver multiplies it by W_hn, stage 2 makes n.
// Options: clip (r, z, and n's whole argument).
// ---------------------------------------------------------------------------------------------
struct GruResetBeforeCell {
  static constexpr int kGates = 3;
  static constexpr int kGates1 = 2;
  static constexpr bool kCellState = false;
  static constexpr bool kExtra = true;
  static constexpr int kIntoGates = 2;  // r, z
  static constexpr bool kHiddenGradDiffers = false;
  static constexpr bool kParams = false;
  static constexpr bool kNorm = false;
  static constexpr CellKind kKind = CellKind::GruResetBefore;
  enum Gate : int { kR, kZ, kN };

  template <class S>
  static void forward_stage1(const FwdStep<S>& s) {
    s.options() ? stage1_pass<true>(s) : stage1_pass<false>(s);
  }
  template <class S>
  static void forward(const FwdStep<S>& s) {
    s.options() ? forward_pass<true>(s) : forward_pass<false>(s);
  }
  /// Before the driver forms dextra = dn W_hn: the n and z gradients.
  template <class S>
  static void backward_stage1(const BwdStep<S>& s) {
    s.options() ? backward_stage1_pass<true>(s) : backward_stage1_pass<false>(s);
  }
  /// After: dextra = dL/d(r*h) is known; the r gradient and the path through r*h.
  template <class S>
  static void backward(const BwdStep<S>& s) {
    s.options() ? backward_pass<true>(s) : backward_pass<false>(s);
  }

 private:
  template <bool kOpts, class S>
  FASTRNN_FLATTEN static void stage1_pass(const FwdStep<S>& s) {
    for_each_unit<kGates>(s, [&](auto u) {
      auto r = u.gate(s.gates, kR), z = u.gate(s.gates, kZ);
      if constexpr (kOpts) {
        clamp_to(r, s.clip);
        clamp_to(z, s.clip);
      }
      r = sigmoid(r);
      z = sigmoid(z);
      u.at(s.extra) = r * u.at(s.h_prev);  // r*h
    });
  }

  template <bool kOpts, class S>
  FASTRNN_FLATTEN static void forward_pass(const FwdStep<S>& s) {
    for_each_unit<kGates>(s, [&](auto u) {
      auto z = u.gate(s.gates, kZ), n = u.gate(s.gates, kN);
      if constexpr (kOpts) {
        n += u.at(s.hproj2);
        clamp_to(n, s.clip);
        n = n.tanh();
      } else {
        n = (n + u.at(s.hproj2)).tanh();
      }
      u.at(s.h) = (S(1) - z) * n + z * u.at(s.h_prev);
    });
  }

  template <bool kOpts, class S>
  FASTRNN_FLATTEN static void backward_stage1_pass(const BwdStep<S>& s) {
    for_each_unit<kGates>(s, [&](auto u) {
      using V = typename decltype(u)::Values;
      auto z = u.gate(s.gates, kZ), n = u.gate(s.gates, kN);
      const V dh = u.at(s.dh);
      u.at(s.dh_prev) = dh * z;                           // dh_{t-1} (direct) = dh * z
      V dn = dh * (S(1) - z) * (S(1) - n.square());       // dn = dh*(1-z)*(1-n^2)
      V dz = dh * (u.at(s.h_prev) - n) * z * (S(1) - z);  // dz = dh*(h_{t-1}-n)*z(1-z)
      if constexpr (kOpts) {                              // 0 where clamped
        zero_where_clamped(dn, n, V::Constant(-s.clip).tanh().eval(),
                           V::Constant(s.clip).tanh().eval());
        zero_where_clamped(dz, z, sigmoid(V::Constant(-s.clip)).eval(),
                           sigmoid(V::Constant(s.clip)).eval());
      }
      z = dz;
      n = dn;
    });
  }

  template <bool kOpts, class S>
  FASTRNN_FLATTEN static void backward_pass(const BwdStep<S>& s) {
    for_each_unit<kGates>(s, [&](auto u) {
      using V = typename decltype(u)::Values;
      auto r = u.gate(s.gates, kR);
      const V drh = u.at(s.dextra);
      u.at(s.dh_prev) += drh * r;                    // dh_{t-1} += d(r*h) * r
      V dr = drh * u.at(s.h_prev) * r * (S(1) - r);  // dr = d(r*h) * h_{t-1} * r(1-r)
      if constexpr (kOpts) {
        zero_where_clamped(dr, r, sigmoid(V::Constant(-s.clip)).eval(),
                           sigmoid(V::Constant(s.clip)).eval());
      }
      r = dr;
    });
  }
};

}  // namespace FASTRNN_ISA_NS
}  // namespace fastrnn::detail
