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
// and static functions that each make ONE pass over the (B, G*H) gates of one step:
//   forward(FwdStep)      [forward_stage1 first, for two-stage cells]
//   backward(BwdStep)     [backward_stage1, then the driver's extra GEMM, then backward for
//                          two-stage cells]
// Derivatives are written from the saved activated outputs (sigmoid' = s(1-s), tanh' = 1-t^2),
// each backward line carries its formula.
#pragma once

#include "fastrnn/isa_namespace.hpp"  // first: only kernel units compile this

#include <Eigen/Core>
#include <algorithm>
#include <type_traits>

#include "fastrnn/fastrnn.hpp"

namespace fastrnn::detail {
inline namespace FASTRNN_ISA_NS {

/// A fixed-size segment of N scalars at an arbitrary (unaligned) address.
template <class S, int N>
using Seg = Eigen::Map<Eigen::Array<S, N, 1>>;
template <class S, int N>
using CSeg = Eigen::Map<const Eigen::Array<S, N, 1>>;
template <class S, int N>
using Tmp = Eigen::Array<S, N, 1>;  // a chunk-local temporary (registers / stack, never heap)

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
  S* gates;             ///< (B, G*H) in: x W_ih^T + b_ih, and for the first kIntoGates blocks
                        ///< + h_{t-1} W_hh^T + b_hh; out: activated gates (saved)
  const S* hproj;       ///< (B, (G1-kIntoGates)*H) the other blocks' h_{t-1} W_hh^T + b_hh, or
                        ///< nullptr
  const S* hproj2;      ///< (B, (G-G1)*H) W_hh[G1:] extra_t + b_hh[G1:] (two-stage), else nullptr
  const S* h_prev;      ///< (B, H)
  S* h;                 ///< (B, H) out
  const S* c_prev;      ///< (B, H) LSTM only
  S* c;                 ///< (B, H) out, LSTM only
  S* extra;             ///< (B, H) out, cells with kExtra
};

/// What one backward step sees. `gates` holds the saved activated gates on entry and is
/// overwritten in place with the gradients w.r.t. the gate pre-activations (input side).
template <class S>
struct BwdStep {
  index_t B, H, units;
  S* gates;             ///< (B, G*H) in: activated gates; out: dL/d(pre-activation), input side
  S* dgh;               ///< (B, G*H) out: same, recurrent side (kHiddenGradDiffers), else nullptr
  const S* dh;          ///< (B, H) dL/dh_t, total (from y_t and from step t+1)
  S* dc;                ///< (B, H) in: dL/dc_t from step t+1; out: dL/dc_{t-1} (LSTM only)
  S* dh_prev;           ///< (B, H) out: the part of dL/dh_{t-1} that does not go through W_hh
  const S* h_prev;      ///< (B, H)
  const S* c_prev;      ///< (B, H) LSTM only
  const S* c;           ///< (B, H) LSTM only
  const S* extra;       ///< (B, H) saved extra, cells with kExtra
  const S* dextra;      ///< (B, H) dL/d(extra) through W_hh[G1:] (two-stage cells)
};

/// The units [u0, u1) of a step: every pointer moved by u0 (the cells add g*H for gate g).
/// With u0 a multiple of the SIMD width, for_each_chunk's chunks are those of the whole row, so
/// a slice computes exactly what the whole step computes on those units.
template <class S>
FwdStep<S> step_cols(const FwdStep<S>& s, index_t u0, index_t u1) {
  auto at = [&](auto* p) { return p ? p + u0 : p; };
  FwdStep<S> r = s;
  r.units = u1 - u0;
  r.gates = at(s.gates);
  r.hproj = at(s.hproj);
  r.hproj2 = at(s.hproj2);
  r.h_prev = at(s.h_prev);
  r.h = at(s.h);
  r.c_prev = at(s.c_prev);
  r.c = at(s.c);
  r.extra = at(s.extra);
  return r;
}

template <class S>
BwdStep<S> step_cols(const BwdStep<S>& s, index_t u0, index_t u1) {
  auto at = [&](auto* p) { return p ? p + u0 : p; };
  BwdStep<S> r = s;
  r.units = u1 - u0;
  r.gates = at(s.gates);
  r.dgh = at(s.dgh);
  r.dh = at(s.dh);
  r.dc = at(s.dc);
  r.dh_prev = at(s.dh_prev);
  r.h_prev = at(s.h_prev);
  r.c_prev = at(s.c_prev);
  r.c = at(s.c);
  r.extra = at(s.extra);
  r.dextra = at(s.dextra);
  return r;
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

  template <class S>
  static void forward(const FwdStep<S>& s) {
    const index_t H = s.H;
    for (index_t b = 0; b < s.B; ++b) {
      S* g = s.gates + b * H;
      S* h = s.h + b * H;
      for_each_chunk<S>(s.units, [&](index_t j, auto n) {
        constexpr int N = decltype(n)::value;
        Seg<S, N> a(g + j);
        if constexpr (kRelu) {
          a = (a < S(0)).select(S(0), a);  // relu; NaN stays NaN
        } else {
          a = a.tanh();
        }
        Seg<S, N>(h + j) = a;
      });
    }
  }

  template <class S>
  static void backward(const BwdStep<S>& s) {
    const index_t H = s.H;
    for (index_t b = 0; b < s.B; ++b) {
      S* g = s.gates + b * H;
      const S* dh = s.dh + b * H;
      for_each_chunk<S>(s.units, [&](index_t j, auto n) {
        constexpr int N = decltype(n)::value;
        Seg<S, N> a(g + j);  // h_t on entry
        CSeg<S, N> d(dh + j);
        if constexpr (kRelu) {
          a = (a > S(0)).select(d, S(0));  // da = dh * [h > 0]
        } else {
          a = d * (S(1) - a.square());     // da = dh * (1 - h^2)
        }
      });
      std::fill(s.dh_prev + b * H, s.dh_prev + b * H + s.units, S(0));
    }
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

  template <class S>
  static void forward(const FwdStep<S>& s) {
    const index_t H = s.H, GH = 4 * H;
    for (index_t b = 0; b < s.B; ++b) {
      S* g = s.gates + b * GH;
      const S* c_prev = s.c_prev + b * H;
      S* c = s.c + b * H;
      S* h = s.h + b * H;
      for_each_chunk<S>(s.units, [&](index_t j, auto n) {
        constexpr int N = decltype(n)::value;
        Seg<S, N> i(g + j), f(g + H + j), gg(g + 2 * H + j), o(g + 3 * H + j);
        i = sigmoid(i);
        f = sigmoid(f);
        gg = gg.tanh();
        o = sigmoid(o);
        const Tmp<S, N> cn = f * CSeg<S, N>(c_prev + j) + i * gg;  // c' = f*c + i*g
        Seg<S, N>(c + j) = cn;
        Seg<S, N>(h + j) = o * cn.tanh();                           // h' = o*tanh(c')
      });
    }
  }

  template <class S>
  static void backward(const BwdStep<S>& s) {
    const index_t H = s.H, GH = 4 * H;
    for (index_t b = 0; b < s.B; ++b) {
      S* g = s.gates + b * GH;
      const S* dhp = s.dh + b * H;
      const S* cp = s.c_prev + b * H;
      const S* cc = s.c + b * H;
      S* dcp = s.dc + b * H;
      for_each_chunk<S>(s.units, [&](index_t j, auto n) {
        constexpr int N = decltype(n)::value;
        Seg<S, N> i(g + j), f(g + H + j), gg(g + 2 * H + j), o(g + 3 * H + j), dc(dcp + j);
        const Tmp<S, N> dh = CSeg<S, N>(dhp + j);
        const Tmp<S, N> tc = CSeg<S, N>(cc + j).tanh();
        const Tmp<S, N> dct = dc + dh * o * (S(1) - tc.square());  // dc_t += dh*o*(1 - tanh^2 c)
        const Tmp<S, N> di = dct * gg * i * (S(1) - i);              // di = dc * g * i(1-i)
        dc = dct * f;                                                // dc_{t-1} = dc * f
        f = dct * CSeg<S, N>(cp + j) * f * (S(1) - f);               // df = dc * c_{t-1} * f(1-f)
        gg = dct * i * (S(1) - gg.square());                         // dg = dc * i * (1 - g^2)
        o = dh * tc * o * (S(1) - o);                                // do = dh * tanh(c) * o(1-o)
        i = di;
      });
      std::fill(s.dh_prev + b * H, s.dh_prev + b * H + s.units, S(0));
    }
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

  template <class S>
  static void forward(const FwdStep<S>& s) {
    const index_t H = s.H, GH = 3 * H;
    for (index_t b = 0; b < s.B; ++b) {
      S* g = s.gates + b * GH;
      const S* hp = s.hproj + b * H;  // the n block only
      const S* h_prev = s.h_prev + b * H;
      S* ex = s.extra + b * H;
      S* h = s.h + b * H;
      for_each_chunk<S>(s.units, [&](index_t j, auto n_) {
        constexpr int N = decltype(n_)::value;
        Seg<S, N> r(g + j), z(g + H + j), n(g + 2 * H + j), hn(ex + j);
        r = sigmoid(r);
        z = sigmoid(z);
        hn = CSeg<S, N>(hp + j);
        n = (n + r * hn).tanh();
        Seg<S, N>(h + j) = (S(1) - z) * n + z * CSeg<S, N>(h_prev + j);  // h' = (1-z)*n + z*h
      });
    }
  }

  template <class S>
  static void backward(const BwdStep<S>& s) {
    const index_t H = s.H, GH = 3 * H;
    for (index_t b = 0; b < s.B; ++b) {
      S* g = s.gates + b * GH;
      S* gh = s.dgh + b * GH;
      const S* dhp = s.dh + b * H;
      const S* hpp = s.h_prev + b * H;
      const S* hnp = s.extra + b * H;
      S* dhprev = s.dh_prev + b * H;
      for_each_chunk<S>(s.units, [&](index_t j, auto n_) {
        constexpr int N = decltype(n_)::value;
        Seg<S, N> r(g + j), z(g + H + j), n(g + 2 * H + j);
        const Tmp<S, N> dh = CSeg<S, N>(dhp + j);
        Seg<S, N>(dhprev + j) = dh * z;                              // dh_{t-1} (direct) = dh*z
        const Tmp<S, N> dn = dh * (S(1) - z) * (S(1) - n.square());  // dn = dh*(1-z)*(1-n^2)
        z = dh * (CSeg<S, N>(hpp + j) - n) * z * (S(1) - z);         // dz = dh*(h_{t-1}-n)*z(1-z)
        Seg<S, N>(gh + 2 * H + j) = dn * r;                          // d(W_hn h + b_hn) = dn*r
        r = dn * CSeg<S, N>(hnp + j) * r * (S(1) - r);               // dr = dn * hn * r(1-r)
        n = dn;
        Seg<S, N>(gh + j) = r;                                       // r, z: both sides share
        Seg<S, N>(gh + H + j) = z;                                   //   the same gradient
      });
    }
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

  template <class S>
  static void forward_stage1(const FwdStep<S>& s) {
    const index_t H = s.H, GH = 3 * H;
    for (index_t b = 0; b < s.B; ++b) {
      S* g = s.gates + b * GH;
      const S* h_prev = s.h_prev + b * H;
      S* ex = s.extra + b * H;
      for_each_chunk<S>(s.units, [&](index_t j, auto n_) {
        constexpr int N = decltype(n_)::value;
        Seg<S, N> r(g + j), z(g + H + j);
        r = sigmoid(r);
        z = sigmoid(z);
        Seg<S, N>(ex + j) = r * CSeg<S, N>(h_prev + j);  // r*h
      });
    }
  }

  template <class S>
  static void forward(const FwdStep<S>& s) {
    const index_t H = s.H, GH = 3 * H;
    for (index_t b = 0; b < s.B; ++b) {
      S* g = s.gates + b * GH;
      const S* hp2 = s.hproj2 + b * H;
      const S* h_prev = s.h_prev + b * H;
      S* h = s.h + b * H;
      for_each_chunk<S>(s.units, [&](index_t j, auto n_) {
        constexpr int N = decltype(n_)::value;
        Seg<S, N> z(g + H + j), n(g + 2 * H + j);
        n = (n + CSeg<S, N>(hp2 + j)).tanh();
        Seg<S, N>(h + j) = (S(1) - z) * n + z * CSeg<S, N>(h_prev + j);
      });
    }
  }

  /// Before the driver forms dextra = dn W_hn: the n and z gradients.
  template <class S>
  static void backward_stage1(const BwdStep<S>& s) {
    const index_t H = s.H, GH = 3 * H;
    for (index_t b = 0; b < s.B; ++b) {
      S* g = s.gates + b * GH;
      const S* dhp = s.dh + b * H;
      const S* hpp = s.h_prev + b * H;
      S* dhprev = s.dh_prev + b * H;
      for_each_chunk<S>(s.units, [&](index_t j, auto n_) {
        constexpr int N = decltype(n_)::value;
        Seg<S, N> z(g + H + j), n(g + 2 * H + j);
        const Tmp<S, N> dh = CSeg<S, N>(dhp + j);
        Seg<S, N>(dhprev + j) = dh * z;                       // dh_{t-1} (direct) = dh * z
        const Tmp<S, N> dn = dh * (S(1) - z) * (S(1) - n.square());  // dn = dh*(1-z)*(1-n^2)
        z = dh * (CSeg<S, N>(hpp + j) - n) * z * (S(1) - z);  // dz = dh*(h_{t-1}-n)*z(1-z)
        n = dn;
      });
    }
  }

  /// After: dextra = dL/d(r*h) is known; the r gradient and the path through r*h.
  template <class S>
  static void backward(const BwdStep<S>& s) {
    const index_t H = s.H, GH = 3 * H;
    for (index_t b = 0; b < s.B; ++b) {
      S* g = s.gates + b * GH;
      const S* drhp = s.dextra + b * H;
      const S* hpp = s.h_prev + b * H;
      S* dhprev = s.dh_prev + b * H;
      for_each_chunk<S>(s.units, [&](index_t j, auto n_) {
        constexpr int N = decltype(n_)::value;
        Seg<S, N> r(g + j);
        const Tmp<S, N> drh = CSeg<S, N>(drhp + j);
        Seg<S, N>(dhprev + j) += drh * r;                       // dh_{t-1} += d(r*h) * r
        r = drh * CSeg<S, N>(hpp + j) * r * (S(1) - r);         // dr = d(r*h) * h_{t-1} * r(1-r)
      });
    }
  }
};

}  // namespace FASTRNN_ISA_NS
}  // namespace fastrnn::detail
