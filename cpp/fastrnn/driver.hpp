// The generic time-loop driver: one forward and one backward loop for every cell policy.
//
// Forward, for all cells:
//   gates[0:T]  = x W_ih^T + b_ih                          one GEMM before the loop (in chunks of
//                                                          steps in inference, to bound memory)
//   each step:  hproj = h_{t-1} W_hh[:G1]^T                one recurrent GEMM
//               [stage 1; hproj2 = extra_t W_hh[G1:]^T]    two-stage cells only (GRU reset_before)
//               one fused pointwise pass over the gates    (the cell policy)
// Backward:
//   each step:  one fused pointwise pass                   (the cell policy; gates -> dgates)
//               [dextra = dgates[G1:] W_hh[G1:]; stage 2]  two-stage cells only
//               dh_{t-1} += dgates_h[:G1] W_hh[:G1]        one GEMM
//   after:      dW_ih = dG^T x, dW_hh = dG_h^T h_{0..T-1}, dx = dG W_ih, biases = column sums
// Nothing is allocated inside the time loops: every buffer is the workspace or made before.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "fastrnn/cells.hpp"
#include "fastrnn/workspace.hpp"

namespace fastrnn::detail {

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
  explicit Scratch(index_t n) : p_(n > 0 ? new S[static_cast<size_t>(n)] : nullptr), n_(n) {}
  S* data() { return p_.get(); }
  const S* data() const { return p_.get(); }
  index_t size() const { return n_; }
  bool empty() const { return n_ == 0; }

 private:
  std::unique_ptr<S[]> p_;
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

/// sum over rows of a row-major (rows, cols) matrix, in row order (deterministic)
template <class S>
void column_sums(const S* m, index_t rows, index_t cols, S* out) {
  RowVec<S> acc(out, cols);
  acc.setZero();
  for (index_t r = 0; r < rows; ++r) acc += CRowVec<S>(m + r * cols, cols);
}

template <class Cell, class S>
void forward_loop(const Dims& d, const Weights<S>& w, const ForwardArgs<S>& a) {
  constexpr int G = Cell::kGates, G1 = Cell::kGates1;
  const index_t T = d.T, B = d.B, I = d.I, H = d.H, GH = G * H, BH = B * H;
  const bool training = a.workspace != nullptr;
  const WorkspaceLayout L = workspace_layout<S>(Cell::kGates, Cell::kCellState, Cell::kExtra, d);

  // --- everything the loop needs, allocated before it ---
  std::vector<S> b_hh_zero;
  const S* b_hh = w.b_hh;
  if (!b_hh) {
    b_hh_zero.assign(static_cast<size_t>(GH), S(0));
    b_hh = b_hh_zero.data();
  }
  Scratch<S> hproj(B * G1 * H);
  Scratch<S> hproj2(G > G1 ? B * (G - G1) * H : 0);
  const index_t chunk = projection_chunk_steps(T, B);
  Scratch<S> gate_chunk(training ? 0 : chunk * B * GH);
  // Inference keeps only the current and previous states: h in y (or h0), c and extra ping-pong.
  Scratch<S> state_buf(training ? 0 : (Cell::kCellState ? 3 : 1) * BH);
  Scratch<S> extra_buf(!training && Cell::kExtra ? BH : 0);

  S* ws_gates = training ? a.workspace + L.gates : nullptr;
  S* hs = training ? a.workspace + L.hs : nullptr;  // (T+1, B, H): h_0 .. h_T
  S* cs = training && Cell::kCellState ? a.workspace + L.cs : nullptr;
  S* ex = training && Cell::kExtra ? a.workspace + L.extra : nullptr;

  const S* h0 = a.h0;
  if (training) {
    copy_or_zero(hs, a.h0, BH);
    h0 = hs;
  } else if (!h0) {
    std::fill(state_buf.data(), state_buf.data() + BH, S(0));
    h0 = state_buf.data();
  }
  S* c_a = nullptr;  // inference ping-pong for c
  S* c_b = nullptr;
  if constexpr (Cell::kCellState) {
    if (training) {
      copy_or_zero(cs, a.c0, BH);
    } else {
      c_a = state_buf.data() + BH;
      c_b = state_buf.data() + 2 * BH;
      copy_or_zero(c_a, a.c0, BH);
    }
  }

  CMat<S> W_ih(w.w_ih, GH, I);
  CMat<S> W_hh1(w.w_hh, G1 * H, H);
  CMat<S> W_hh2(w.w_hh + G1 * H * H, (G - G1) * H, H);

  for (index_t t0 = 0; t0 < T; t0 += chunk) {
    const index_t n = std::min(chunk, T - t0);
    S* gbase = training ? ws_gates + t0 * B * GH : gate_chunk.data();
    Mat<S> Xp(gbase, n * B, GH);
    Xp.noalias() = CMat<S>(a.x + t0 * B * I, n * B, I) * W_ih.transpose();
    if (w.b_ih) Xp.rowwise() += CRowVec<S>(w.b_ih, GH);

    for (index_t t = t0; t < t0 + n; ++t) {
      FwdStep<S> s{};
      s.B = B;
      s.H = H;
      s.gates = gbase + (t - t0) * B * GH;
      s.hproj = hproj.data();
      s.hproj2 = hproj2.empty() ? nullptr : hproj2.data();
      s.b_hh = b_hh;
      if (training) {
        s.h_prev = hs + t * BH;
        s.h = hs + (t + 1) * BH;
      } else {
        s.h_prev = t == 0 ? h0 : a.y + (t - 1) * BH;
        s.h = a.y + t * BH;
      }
      if constexpr (Cell::kCellState) {
        if (training) {
          s.c_prev = cs + t * BH;
          s.c = cs + (t + 1) * BH;
        } else {
          s.c_prev = c_a;
          s.c = c_b;
          std::swap(c_a, c_b);  // after this step c_a holds c_t
        }
      }
      if constexpr (Cell::kExtra) s.extra = training ? ex + t * BH : extra_buf.data();

      Mat<S>(hproj.data(), B, G1 * H).noalias() = CMat<S>(s.h_prev, B, H) * W_hh1.transpose();
      if constexpr (G > G1) {
        Cell::forward_stage1(s);
        Mat<S>(hproj2.data(), B, (G - G1) * H).noalias() =
            CMat<S>(s.extra, B, H) * W_hh2.transpose();
      }
      Cell::forward(s);
    }
  }

  if (training) {
    copy_n(a.y, hs + BH, T * BH);
    copy_n(a.h_n, hs + T * BH, BH);
    if constexpr (Cell::kCellState) copy_n(a.c_n, cs + T * BH, BH);
    write_header<S>(a.workspace, cell_kind_of<Cell>(), d, w.b_ih != nullptr,
                    WorkspaceState::Ready);
  } else {
    copy_n(a.h_n, T == 0 ? h0 : a.y + (T - 1) * BH, BH);
    if constexpr (Cell::kCellState) copy_n(a.c_n, static_cast<const S*>(c_a), BH);
  }
}

template <class Cell, class S>
void backward_loop(const Dims& d, const Weights<S>& w, const BackwardArgs<S>& a) {
  constexpr int G = Cell::kGates, G1 = Cell::kGates1;
  const index_t T = d.T, B = d.B, I = d.I, H = d.H, GH = G * H, BH = B * H;
  const WorkspaceLayout L = workspace_layout<S>(Cell::kGates, Cell::kCellState, Cell::kExtra, d);
  check_header<S>(a.workspace, cell_kind_of<Cell>(), d, w.b_ih != nullptr);

  S* dG = a.workspace + L.gates;  // saved gates, overwritten in place by their gradients
  const S* hs = a.workspace + L.hs;
  const S* cs = Cell::kCellState ? a.workspace + L.cs : nullptr;
  const S* ex = Cell::kExtra ? a.workspace + L.extra : nullptr;

  Scratch<S> dgh_buf(Cell::kHiddenGradDiffers ? T * B * GH : 0);
  S* dGh = Cell::kHiddenGradDiffers ? dgh_buf.data() : dG;
  Scratch<S> dh_carry(BH), dh_cur(BH);
  Scratch<S> dc(Cell::kCellState ? BH : 0);
  Scratch<S> dextra(G > G1 ? BH : 0);
  copy_or_zero(dh_carry.data(), a.dh_n, BH);
  if constexpr (Cell::kCellState) copy_or_zero(dc.data(), a.dc_n, BH);
  claim_workspace(a.workspace);  // after every allocation: a bad_alloc leaves it usable

  CMat<S> W_hh1(w.w_hh, G1 * H, H);
  CMat<S> W_hh2(w.w_hh + G1 * H * H, (G - G1) * H, H);
  Mat<S> dH(dh_carry.data(), B, H);

  for (index_t t = T - 1; t >= 0; --t) {
    // dL/dh_t = dy_t + (what step t+1 sent back)
    if (a.dy) {
      Eigen::Map<Eigen::Array<S, Eigen::Dynamic, 1>>(dh_cur.data(), BH) =
          Eigen::Map<const Eigen::Array<S, Eigen::Dynamic, 1>>(dh_carry.data(), BH) +
          Eigen::Map<const Eigen::Array<S, Eigen::Dynamic, 1>>(a.dy + t * BH, BH);
    } else {
      copy_n(dh_cur.data(), static_cast<const S*>(dh_carry.data()), BH);
    }
    BwdStep<S> s{};
    s.B = B;
    s.H = H;
    s.gates = dG + t * B * GH;
    s.dgh = Cell::kHiddenGradDiffers ? dGh + t * B * GH : nullptr;
    s.dh = dh_cur.data();
    s.dh_prev = dh_carry.data();
    s.h_prev = hs + t * BH;
    if constexpr (Cell::kCellState) {
      s.dc = dc.data();
      s.c_prev = cs + t * BH;
      s.c = cs + (t + 1) * BH;
    }
    if constexpr (Cell::kExtra) s.extra = ex + t * BH;

    const S* dgh_t = dGh + t * B * GH;
    if constexpr (G > G1) {
      Cell::backward_stage1(s);
      // dL/d(extra) = dgates[:, G1:] W_hh[G1:]   (a column block of the step's gradients)
      Eigen::Map<const RowMat<S>, 0, Eigen::OuterStride<>> dg2(dgh_t + G1 * H, B, (G - G1) * H,
                                                               Eigen::OuterStride<>(GH));
      Mat<S>(dextra.data(), B, H).noalias() = dg2 * W_hh2;
      s.dextra = dextra.data();
    }
    Cell::backward(s);
    // dh_{t-1} += dgates[:, :G1] W_hh[:G1]
    Eigen::Map<const RowMat<S>, 0, Eigen::OuterStride<>> dg1(dgh_t, B, G1 * H,
                                                             Eigen::OuterStride<>(GH));
    dH.noalias() += dg1 * W_hh1;
  }

  copy_n(a.dh0, static_cast<const S*>(dh_carry.data()), BH);
  if constexpr (Cell::kCellState) copy_n(a.dc0, static_cast<const S*>(dc.data()), BH);

  // --- the weight and input gradients: one GEMM each over all T*B rows ---
  const index_t R = T * B;
  CMat<S> dGx_all(dG, R, GH);
  CMat<S> dGh_all(dGh, R, GH);
  Mat<S> dW_ih(a.dw_ih, GH, I);
  Mat<S> dW_hh(a.dw_hh, GH, H);
  dW_ih.noalias() = dGx_all.transpose() * CMat<S>(a.x, R, I);
  dW_hh.topRows(G1 * H).noalias() = dGh_all.leftCols(G1 * H).transpose() * CMat<S>(hs, R, H);
  if constexpr (G > G1) {
    dW_hh.bottomRows((G - G1) * H).noalias() =
        dGh_all.rightCols((G - G1) * H).transpose() * CMat<S>(ex, R, H);
  }
  if (a.db_ih) column_sums(dG, R, GH, a.db_ih);
  if (a.db_hh) column_sums(dGh, R, GH, a.db_hh);
  Mat<S>(a.dx, R, I).noalias() = dGx_all * CMat<S>(w.w_ih, GH, I);
}

}  // namespace fastrnn::detail
