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
//   an enum of its gates' names (kI, kF, kG, kO; kR, kZ, kN), their blocks' order (GateLayout)
// and static functions that each make ONE pass over the (B, G*H) gates of one step:
//   forward(FwdStep)      [forward_stage1 first, for two-stage cells]
//   backward(BwdStep)     [backward_stage1, then the driver's extra GEMM, then backward for
//                          two-stage cells]
// Derivatives are written from the saved activated outputs (sigmoid' = s(1-s), tanh' = 1-t^2),
// each backward line carries its formula.
#pragma once

#include "fastrnn/isa_namespace.hpp"  // first: only kernel units compile this

#include <Eigen/Core>
#include <tuple>
#include <type_traits>

#include "fastrnn/fastrnn.hpp"
#include "fastrnn/gates.hpp"

namespace fastrnn::detail {
inline namespace FASTRNN_ISA_NS {

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
  S* gates;         ///< (B, G*H) in: x W_ih^T + b_ih, and for the first kIntoGates blocks
                    ///< + h_{t-1} W_hh^T + b_hh; out: activated gates (saved)
  const S* hproj;   ///< (B, (G1-kIntoGates)*H) the other blocks' h_{t-1} W_hh^T + b_hh, or
                    ///< nullptr
  const S* hproj2;  ///< (B, (G-G1)*H) W_hh[G1:] extra_t + b_hh[G1:] (two-stage), else nullptr
  const S* h_prev;  ///< (B, H)
  S* h;             ///< (B, H) out
  const S* c_prev;  ///< (B, H) LSTM only
  S* c;             ///< (B, H) out, LSTM only
  S* extra;         ///< (B, H) out, cells with kExtra

  /// Every array (step_cols moves them all).
  auto arrays() { return std::tie(gates, hproj, hproj2, h_prev, h, c_prev, c, extra); }
};

/// What one backward step sees. `gates` holds the saved activated gates on entry and is
/// overwritten in place with the gradients w.r.t. the gate pre-activations (input side).
template <class S>
struct BwdStep {
  index_t B, H, units;
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

  /// Every array (step_cols moves them all).
  auto arrays() { return std::tie(gates, dgh, dh, dc, dh_prev, h_prev, c_prev, c, extra, dextra); }
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

  Seg<S, N> gate(S* a, index_t g) const { return Seg<S, N>(a + gate_row + layout.at(g)); }
  Seg<S, N> at(S* a) const { return Seg<S, N>(a + row); }
  CSeg<S, N> at(const S* a) const { return CSeg<S, N>(a + row); }
};

/// Calls f(Units<S, N>) over the rows [0, s.B) of a step of a G-gate cell and, in each row, over
/// the units [0, s.units) in for_each_chunk's chunks: the one loop of every cell's pass.
template <int G, class Step, class F>
EIGEN_STRONG_INLINE void for_each_unit(const Step& s, F&& f) {
  using S = std::remove_pointer_t<decltype(s.gates)>;
  const GateLayout layout{s.H};
  for (index_t b = 0; b < s.B; ++b) {
    for_each_chunk<S>(s.units, [&](index_t j, auto n) {
      f(Units<S, decltype(n)::value>{layout, b * layout.size(G) + j, b * s.H + j});
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
  static constexpr CellKind kKind = kRelu ? CellKind::RnnRelu : CellKind::RnnTanh;
  enum Gate : int { kA };  ///< the pre-activation a, then h' itself

  template <class S>
  static void forward(const FwdStep<S>& s) {
    for_each_unit<kGates>(s, [&](auto u) {
      auto a = u.gate(s.gates, kA);
      if constexpr (kRelu) {
        a = (a < S(0)).select(S(0), a);  // relu; NaN stays NaN
      } else {
        a = a.tanh();
      }
      u.at(s.h) = a;
    });
  }

  template <class S>
  static void backward(const BwdStep<S>& s) {
    for_each_unit<kGates>(s, [&](auto u) {
      auto a = u.gate(s.gates, kA);  // h_t on entry
      const auto d = u.at(s.dh);
      if constexpr (kRelu) {
        a = (a > S(0)).select(d, S(0));  // da = dh * [h > 0]
      } else {
        a = d * (S(1) - a.square());  // da = dh * (1 - h^2)
      }
      u.at(s.dh_prev).setZero();  // no direct path from h_t to h_{t-1}
    });
  }
};

// ---------------------------------------------------------------------------------------------
// LSTM, gates i f g o.
// ---------------------------------------------------------------------------------------------
struct LstmCell {
  static constexpr int kGates = 4;
  static constexpr int kGates1 = 4;
  static constexpr bool kCellState = true;
  static constexpr bool kExtra = false;
  static constexpr int kIntoGates = kGates;
  static constexpr bool kHiddenGradDiffers = false;
  static constexpr CellKind kKind = CellKind::Lstm;
  enum Gate : int { kI, kF, kG, kO };

  template <class S>
  static void forward(const FwdStep<S>& s) {
    for_each_unit<kGates>(s, [&](auto u) {
      using V = typename decltype(u)::Values;
      auto i = u.gate(s.gates, kI), f = u.gate(s.gates, kF), g = u.gate(s.gates, kG),
           o = u.gate(s.gates, kO);
      i = sigmoid(i);
      f = sigmoid(f);
      g = g.tanh();
      o = sigmoid(o);
      const V cn = f * u.at(s.c_prev) + i * g;  // c' = f*c + i*g
      u.at(s.c) = cn;
      u.at(s.h) = o * cn.tanh();  // h' = o*tanh(c')
    });
  }

  template <class S>
  static void backward(const BwdStep<S>& s) {
    for_each_unit<kGates>(s, [&](auto u) {
      using V = typename decltype(u)::Values;
      auto i = u.gate(s.gates, kI), f = u.gate(s.gates, kF), g = u.gate(s.gates, kG),
           o = u.gate(s.gates, kO);
      auto dc = u.at(s.dc);
      const V dh = u.at(s.dh);
      const V tc = u.at(s.c).tanh();
      const V dct = dc + dh * o * (S(1) - tc.square());  // dc_t += dh*o*(1 - tanh^2 c)
      const V di = dct * g * i * (S(1) - i);             // di = dc * g * i(1-i)
      dc = dct * f;                                      // dc_{t-1} = dc * f
      f = dct * u.at(s.c_prev) * f * (S(1) - f);         // df = dc * c_{t-1} * f(1-f)
      g = dct * i * (S(1) - g.square());                 // dg = dc * i * (1 - g^2)
      o = dh * tc * o * (S(1) - o);                      // do = dh * tanh(c) * o(1-o)
      i = di;
      u.at(s.dh_prev).setZero();  // no direct path from h_t to h_{t-1}
    });
  }
};

// ---------------------------------------------------------------------------------------------
// GRU, gates r z n, reset_after=True: n = tanh(xn + r*(W_hn h + b_hn)). Saves hn = W_hn h + b_hn.
// ---------------------------------------------------------------------------------------------
struct GruCell {
  static constexpr int kGates = 3;
  static constexpr int kGates1 = 3;
  static constexpr bool kCellState = false;
  static constexpr bool kExtra = true;
  static constexpr int kIntoGates = 2;  // r, z
  static constexpr bool kHiddenGradDiffers = true;
  static constexpr CellKind kKind = CellKind::Gru;
  enum Gate : int { kR, kZ, kN };

  template <class S>
  static void forward(const FwdStep<S>& s) {
    for_each_unit<kGates>(s, [&](auto u) {
      auto r = u.gate(s.gates, kR), z = u.gate(s.gates, kZ), n = u.gate(s.gates, kN);
      auto hn = u.at(s.extra);
      r = sigmoid(r);
      z = sigmoid(z);
      hn = u.at(s.hproj);  // the n block's recurrent product
      n = (n + r * hn).tanh();
      u.at(s.h) = (S(1) - z) * n + z * u.at(s.h_prev);  // h' = (1-z)*n + z*h
    });
  }

  template <class S>
  static void backward(const BwdStep<S>& s) {
    for_each_unit<kGates>(s, [&](auto u) {
      using V = typename decltype(u)::Values;
      auto r = u.gate(s.gates, kR), z = u.gate(s.gates, kZ), n = u.gate(s.gates, kN);
      const V dh = u.at(s.dh);
      u.at(s.dh_prev) = dh * z;                            // dh_{t-1} (direct) = dh*z
      const V dn = dh * (S(1) - z) * (S(1) - n.square());  // dn = dh*(1-z)*(1-n^2)
      z = dh * (u.at(s.h_prev) - n) * z * (S(1) - z);      // dz = dh*(h_{t-1}-n)*z(1-z)
      u.gate(s.dgh, kN) = dn * r;                          // d(W_hn h + b_hn) = dn*r
      r = dn * u.at(s.extra) * r * (S(1) - r);             // dr = dn * hn * r(1-r)
      n = dn;
      u.gate(s.dgh, kR) = r;  // r, z: both sides share
      u.gate(s.dgh, kZ) = z;  //   the same gradient
    });
  }
};

// ---------------------------------------------------------------------------------------------
// GRU, gates r z n, reset_after=False: n = tanh(xn + W_hn (r*h) + b_hn). Two stages: stage 1
// makes r, z and the extra input r*h (saved), the driver multiplies it by W_hn, stage 2 makes n.
// ---------------------------------------------------------------------------------------------
struct GruResetBeforeCell {
  static constexpr int kGates = 3;
  static constexpr int kGates1 = 2;
  static constexpr bool kCellState = false;
  static constexpr bool kExtra = true;
  static constexpr int kIntoGates = 2;  // r, z
  static constexpr bool kHiddenGradDiffers = false;
  static constexpr CellKind kKind = CellKind::GruResetBefore;
  enum Gate : int { kR, kZ, kN };

  template <class S>
  static void forward_stage1(const FwdStep<S>& s) {
    for_each_unit<kGates>(s, [&](auto u) {
      auto r = u.gate(s.gates, kR), z = u.gate(s.gates, kZ);
      r = sigmoid(r);
      z = sigmoid(z);
      u.at(s.extra) = r * u.at(s.h_prev);  // r*h
    });
  }

  template <class S>
  static void forward(const FwdStep<S>& s) {
    for_each_unit<kGates>(s, [&](auto u) {
      auto z = u.gate(s.gates, kZ), n = u.gate(s.gates, kN);
      n = (n + u.at(s.hproj2)).tanh();
      u.at(s.h) = (S(1) - z) * n + z * u.at(s.h_prev);
    });
  }

  /// Before the driver forms dextra = dn W_hn: the n and z gradients.
  template <class S>
  static void backward_stage1(const BwdStep<S>& s) {
    for_each_unit<kGates>(s, [&](auto u) {
      using V = typename decltype(u)::Values;
      auto z = u.gate(s.gates, kZ), n = u.gate(s.gates, kN);
      const V dh = u.at(s.dh);
      u.at(s.dh_prev) = dh * z;                            // dh_{t-1} (direct) = dh * z
      const V dn = dh * (S(1) - z) * (S(1) - n.square());  // dn = dh*(1-z)*(1-n^2)
      z = dh * (u.at(s.h_prev) - n) * z * (S(1) - z);      // dz = dh*(h_{t-1}-n)*z(1-z)
      n = dn;
    });
  }

  /// After: dextra = dL/d(r*h) is known; the r gradient and the path through r*h.
  template <class S>
  static void backward(const BwdStep<S>& s) {
    for_each_unit<kGates>(s, [&](auto u) {
      using V = typename decltype(u)::Values;
      auto r = u.gate(s.gates, kR);
      const V drh = u.at(s.dextra);
      u.at(s.dh_prev) += drh * r;                 // dh_{t-1} += d(r*h) * r
      r = drh * u.at(s.h_prev) * r * (S(1) - r);  // dr = d(r*h) * h_{t-1} * r(1-r)
    });
  }
};

}  // namespace FASTRNN_ISA_NS
}  // namespace fastrnn::detail
