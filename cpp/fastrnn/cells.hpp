// The cells as small policies for the generic time-loop driver (driver.hpp).
//
// A cell is a struct with
//   kGates          G, the number of stacked gate blocks (rows of w_ih / w_hh are G*H)
//   kGates1         how many leading gate blocks take their recurrent product from h_{t-1};
//                   the remaining G - kGates1 blocks (GRU reset_before: n) take it from the
//                   per-step "extra" input, which stage 1 of the cell computes (r*h_{t-1})
//   kCellState      true if the cell carries a second state c (LSTM)
//   kExtra          true if the cell saves one more (B, H) array per step ("extra")
//   kHiddenGradDiffers  true if the gradient w.r.t. the recurrent product differs from the one
//                   w.r.t. the input projection (GRU reset_after: the n block is scaled by r)
//   kScratch        number of H-sized scratch vectors the pointwise passes need per row
// and static functions that each make ONE pass over the (B, G*H) gates of one step:
//   forward(FwdStep)      [forward_stage1 first, for two-stage cells]
//   backward(BwdStep)     [backward_stage1, then the driver's extra GEMM, then backward for
//                          two-stage cells]
// Derivatives are written from the saved activated outputs (sigmoid' = s(1-s), tanh' = 1-t^2),
// each backward line carries its formula.
#pragma once

#include <Eigen/Core>

#include "fastrnn/fastrnn.hpp"

namespace fastrnn::detail {

template <class S>
using Vec = Eigen::Map<Eigen::Array<S, Eigen::Dynamic, 1>>;
template <class S>
using CVec = Eigen::Map<const Eigen::Array<S, Eigen::Dynamic, 1>>;

/// What one forward step sees. Pointers to row-major (B, width) blocks of one time step.
template <class S>
struct FwdStep {
  index_t B, H;
  S* gates;             ///< (B, G*H) in: x projection (+ b_ih); out: activated gates (saved)
  const S* hproj;       ///< (B, G1*H) W_hh[:G1] h_{t-1}, no bias
  const S* hproj2;      ///< (B, (G-G1)*H) W_hh[G1:] extra_t (two-stage cells), else nullptr
  const S* b_hh;        ///< (G*H) recurrent bias (zeros when the layer has none)
  const S* h_prev;      ///< (B, H)
  S* h;                 ///< (B, H) out
  const S* c_prev;      ///< (B, H) LSTM only
  S* c;                 ///< (B, H) out, LSTM only
  S* extra;             ///< (B, H) out, cells with kExtra
  S* scratch;           ///< kScratch * H
};

/// What one backward step sees. `gates` holds the saved activated gates on entry and is
/// overwritten in place with the gradients w.r.t. the gate pre-activations (input side).
template <class S>
struct BwdStep {
  index_t B, H;
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
  S* scratch;           ///< kScratch * H
};

/// Numerically safe logistic function: never NaN, saturates to exactly 0 and 1.
template <class Derived>
auto sigmoid(const Eigen::ArrayBase<Derived>& a) {
  return a.logistic();
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
  static constexpr bool kHiddenGradDiffers = false;
  static constexpr int kScratch = 0;

  template <class S>
  static void forward(const FwdStep<S>& s) {
    const index_t H = s.H;
    CVec<S> bh(s.b_hh, H);
    for (index_t b = 0; b < s.B; ++b) {
      Vec<S> a(s.gates + b * H, H);
      CVec<S> hp(s.hproj + b * H, H);
      if constexpr (kRelu) {
        a = (a + hp + bh).max(S(0));
      } else {
        a = (a + hp + bh).tanh();
      }
      Vec<S>(s.h + b * H, H) = a;
    }
  }

  template <class S>
  static void backward(const BwdStep<S>& s) {
    const index_t H = s.H;
    for (index_t b = 0; b < s.B; ++b) {
      Vec<S> g(s.gates + b * H, H);  // h_t on entry
      CVec<S> dh(s.dh + b * H, H);
      if constexpr (kRelu) {
        g = (g > S(0)).select(dh, S(0));  // da = dh * [h > 0]
      } else {
        g = dh * (S(1) - g.square());     // da = dh * (1 - h^2)
      }
      Vec<S>(s.dh_prev + b * H, H).setZero();
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
  static constexpr bool kHiddenGradDiffers = false;
  static constexpr int kScratch = 2;

  template <class S>
  static void forward(const FwdStep<S>& s) {
    const index_t H = s.H, GH = 4 * H;
    for (index_t b = 0; b < s.B; ++b) {
      S* g = s.gates + b * GH;
      const S* hp = s.hproj + b * GH;
      Vec<S> gi(g, H), gf(g + H, H), gg(g + 2 * H, H), go(g + 3 * H, H);
      gi = sigmoid(gi + CVec<S>(hp, H) + CVec<S>(s.b_hh, H));
      gf = sigmoid(gf + CVec<S>(hp + H, H) + CVec<S>(s.b_hh + H, H));
      gg = (gg + CVec<S>(hp + 2 * H, H) + CVec<S>(s.b_hh + 2 * H, H)).tanh();
      go = sigmoid(go + CVec<S>(hp + 3 * H, H) + CVec<S>(s.b_hh + 3 * H, H));
      Vec<S> c(s.c + b * H, H);
      c = gf * CVec<S>(s.c_prev + b * H, H) + gi * gg;  // c' = f*c + i*g
      Vec<S>(s.h + b * H, H) = go * c.tanh();           // h' = o*tanh(c')
    }
  }

  template <class S>
  static void backward(const BwdStep<S>& s) {
    const index_t H = s.H, GH = 4 * H;
    Vec<S> tc(s.scratch, H), tmp(s.scratch + H, H);
    for (index_t b = 0; b < s.B; ++b) {
      S* g = s.gates + b * GH;
      Vec<S> i(g, H), f(g + H, H), gg(g + 2 * H, H), o(g + 3 * H, H);
      CVec<S> dh(s.dh + b * H, H), c_prev(s.c_prev + b * H, H);
      Vec<S> dc(s.dc + b * H, H);
      tc = CVec<S>(s.c + b * H, H).tanh();
      dc += dh * o * (S(1) - tc.square());           // dc_t = dc_t(from t+1) + dh*o*(1 - tanh^2 c)
      o = dh * tc * o * (S(1) - o);                  // do = dh * tanh(c) * o(1-o)
      tmp = dc * gg * i * (S(1) - i);                // di = dc * g * i(1-i)
      gg = dc * i * (S(1) - gg.square());            // dg = dc * i * (1 - g^2)
      i = tmp;
      tmp = dc * f;                                  // dc_{t-1} = dc * f
      f = dc * c_prev * f * (S(1) - f);              // df = dc * c_{t-1} * f(1-f)
      dc = tmp;
      Vec<S>(s.dh_prev + b * H, H).setZero();
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
  static constexpr bool kHiddenGradDiffers = true;
  static constexpr int kScratch = 1;

  template <class S>
  static void forward(const FwdStep<S>& s) {
    const index_t H = s.H, GH = 3 * H;
    for (index_t b = 0; b < s.B; ++b) {
      S* g = s.gates + b * GH;
      const S* hp = s.hproj + b * GH;
      Vec<S> r(g, H), z(g + H, H), n(g + 2 * H, H), hn(s.extra + b * H, H);
      CVec<S> h_prev(s.h_prev + b * H, H);
      r = sigmoid(r + CVec<S>(hp, H) + CVec<S>(s.b_hh, H));
      z = sigmoid(z + CVec<S>(hp + H, H) + CVec<S>(s.b_hh + H, H));
      hn = CVec<S>(hp + 2 * H, H) + CVec<S>(s.b_hh + 2 * H, H);
      n = (n + r * hn).tanh();
      Vec<S>(s.h + b * H, H) = (S(1) - z) * n + z * h_prev;  // h' = (1-z)*n + z*h
    }
  }

  template <class S>
  static void backward(const BwdStep<S>& s) {
    const index_t H = s.H, GH = 3 * H;
    Vec<S> dn(s.scratch, H);
    for (index_t b = 0; b < s.B; ++b) {
      S* g = s.gates + b * GH;
      S* gh = s.dgh + b * GH;
      Vec<S> r(g, H), z(g + H, H), n(g + 2 * H, H);
      CVec<S> dh(s.dh + b * H, H), h_prev(s.h_prev + b * H, H), hn(s.extra + b * H, H);
      Vec<S>(s.dh_prev + b * H, H) = dh * z;               // dh_{t-1} (direct) = dh * z
      dn = dh * (S(1) - z) * (S(1) - n.square());          // dn = dh * (1-z) * (1 - n^2)
      z = dh * (h_prev - n) * z * (S(1) - z);              // dz = dh * (h_{t-1} - n) * z(1-z)
      Vec<S>(gh + 2 * H, H) = dn * r;                      // d(W_hn h + b_hn) = dn * r
      r = dn * hn * r * (S(1) - r);                        // dr = dn * hn * r(1-r)
      n = dn;
      Vec<S>(gh, 2 * H) = Vec<S>(g, 2 * H);                // r, z: both sides share the gradient
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
  static constexpr bool kHiddenGradDiffers = false;
  static constexpr int kScratch = 1;

  template <class S>
  static void forward_stage1(const FwdStep<S>& s) {
    const index_t H = s.H, GH = 3 * H;
    for (index_t b = 0; b < s.B; ++b) {
      S* g = s.gates + b * GH;
      const S* hp = s.hproj + b * 2 * H;
      Vec<S> r(g, H), z(g + H, H);
      r = sigmoid(r + CVec<S>(hp, H) + CVec<S>(s.b_hh, H));
      z = sigmoid(z + CVec<S>(hp + H, H) + CVec<S>(s.b_hh + H, H));
      Vec<S>(s.extra + b * H, H) = r * CVec<S>(s.h_prev + b * H, H);  // r*h
    }
  }

  template <class S>
  static void forward(const FwdStep<S>& s) {
    const index_t H = s.H, GH = 3 * H;
    for (index_t b = 0; b < s.B; ++b) {
      S* g = s.gates + b * GH;
      Vec<S> z(g + H, H), n(g + 2 * H, H);
      n = (n + CVec<S>(s.hproj2 + b * H, H) + CVec<S>(s.b_hh + 2 * H, H)).tanh();
      Vec<S>(s.h + b * H, H) = (S(1) - z) * n + z * CVec<S>(s.h_prev + b * H, H);
    }
  }

  /// Before the driver forms dextra = dn W_hn: the n and z gradients.
  template <class S>
  static void backward_stage1(const BwdStep<S>& s) {
    const index_t H = s.H, GH = 3 * H;
    Vec<S> dn(s.scratch, H);
    for (index_t b = 0; b < s.B; ++b) {
      S* g = s.gates + b * GH;
      Vec<S> z(g + H, H), n(g + 2 * H, H);
      CVec<S> dh(s.dh + b * H, H), h_prev(s.h_prev + b * H, H);
      Vec<S>(s.dh_prev + b * H, H) = dh * z;               // dh_{t-1} (direct) = dh * z
      dn = dh * (S(1) - z) * (S(1) - n.square());          // dn = dh * (1-z) * (1 - n^2)
      z = dh * (h_prev - n) * z * (S(1) - z);              // dz = dh * (h_{t-1} - n) * z(1-z)
      n = dn;
    }
  }

  /// After: dextra = dL/d(r*h) is known; the r gradient and the path through r*h.
  template <class S>
  static void backward(const BwdStep<S>& s) {
    const index_t H = s.H, GH = 3 * H;
    for (index_t b = 0; b < s.B; ++b) {
      Vec<S> r(s.gates + b * GH, H);
      CVec<S> drh(s.dextra + b * H, H), h_prev(s.h_prev + b * H, H);
      Vec<S>(s.dh_prev + b * H, H) += drh * r;             // dh_{t-1} += d(r*h) * r
      r = drh * h_prev * r * (S(1) - r);                   // dr = d(r*h) * h_{t-1} * r(1-r)
    }
  }
};

}  // namespace fastrnn::detail
