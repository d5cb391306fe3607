// Attention of decoder queries over an encoder's memory: the scores, the masked softmax and the
// context fused per batch entry, forward and backward (fastrnn.hpp states the contract; the
// NumPy reference is fastrnn.reference.attention_forward / attention_backward).
//
// Batch entry b owns row b of every (T, B, .) array: its queries Q_b (Tq, D), keys K_b and
// values V_b (its first L = lengths[b] steps), weights A_b (Tq, Tk) and context C_b (Tq, Dv) are
// strided views (outer stride B * width) into the time-major arrays, so every product over all
// of its decoder steps is one matrix product, with no copy:
//     dot       E = Q_b K_b^T                 (Tq x L)
//     additive  E[t, j] = v . tanh(Q_b[t] + K_b[j])   (chunked over D, as the cells' pointwise)
//     A_b[:, :L] = softmax over each row of E, A_b[:, L:] = 0;   C_b = A_b[:, :L] V_b
// Backward, with S = A * (dA - rowsum(A * dA)) the softmax's:
//     dA = dC_b V_b^T,  dV_b = A^T dC_b,  dot: dQ_b = S K_b, dK_b = S^T Q_b;  additive: with
//     u = tanh(q_t + k_j) recomputed (not saved: Tq*Tk*D values), g = S[t,j] v (1 - u^2),
//     dq_t += g, dk_j += g, dv += S[t,j] u.
// Batch entries are independent and each is computed by one thread, in a fixed order; the one
// sum across them (dv) is made per entry and then added in entry order: the results do not
// depend on the thread count.
#pragma once

#include "fastrnn/isa_namespace.hpp"  // first: only kernel units compile this

#include <Eigen/Core>
#include <algorithm>
#include <cstdint>
#include <vector>

#include "fastrnn/cells.hpp"  // for_each_chunk, Seg
#include "fastrnn/driver.hpp"
#include "fastrnn/fastrnn.hpp"
#include "fastrnn/parallel.hpp"

namespace fastrnn::detail {
inline namespace FASTRNN_ISA_NS {
namespace train {

namespace attn {

template <class S>
using Strided = Eigen::Map<RowMat<S>, 0, Eigen::OuterStride<>>;
template <class S>
using CStrided = Eigen::Map<const RowMat<S>, 0, Eigen::OuterStride<>>;

/// Rows [0, rows) of batch entry b of a time-major (T, B, width) array.
template <class S>
CStrided<S> rows_of(const S* a, index_t b, index_t B, index_t rows, index_t width) {
  return CStrided<S>(a + b * width, rows, width, Eigen::OuterStride<>(B * width));
}
template <class S>
Strided<S> rows_of(S* a, index_t b, index_t B, index_t rows, index_t width) {
  return Strided<S>(a + b * width, rows, width, Eigen::OuterStride<>(B * width));
}

/// v . tanh(q + k) over D features, in for_each_chunk's chunks (which elements take the SIMD
/// code depends on D only).
template <class S>
S additive_score(const S* q, const S* k, const S* v, index_t D) {
  constexpr int P = Eigen::internal::packet_traits<S>::size;
  Eigen::Array<S, P, 1> acc = Eigen::Array<S, P, 1>::Zero();
  S tail = 0;
  for_each_chunk<S>(D, [&](index_t a, auto n) {
    constexpr int W = decltype(n)::value;
    const Eigen::Array<S, W, 1> u = (CSeg<S, W>(q + a) + CSeg<S, W>(k + a)).tanh();
    if constexpr (W == P) {
      acc += CSeg<S, W>(v + a) * u;
    } else {
      tail += (CSeg<S, W>(v + a) * u).sum();
    }
  });
  return acc.sum() + tail;
}

/// Row-wise softmax of e (rows x L) in place, over its first L columns; the rest of each row
/// (up to Tk) set to zero. Exp and sum in for_each_chunk's chunks, summed in chunk order.
template <class S>
void masked_softmax(Strided<S> e, index_t L) {
  for (index_t t = 0; t < e.rows(); ++t) {
    S* row = &e(t, 0);
    const S m = Eigen::Map<const Eigen::Array<S, 1, Eigen::Dynamic>>(row, L).maxCoeff();
    S sum = 0;
    for_each_chunk<S>(L, [&](index_t j, auto n) {
      constexpr int W = decltype(n)::value;
      Seg<S, W> r(row + j);
      r = (r - m).exp();
      sum += r.sum();
    });
    const S inv = S(1) / sum;
    for_each_chunk<S>(L, [&](index_t j, auto n) {
      constexpr int W = decltype(n)::value;
      Seg<S, W>(row + j) *= inv;
    });
    std::fill(row + L, row + e.cols(), S(0));
  }
}

/// Work of one batch entry, in multiply-adds (the threads' share of a call).
inline index_t work_per_entry(const AttentionDims& d, bool additive) {
  return d.Tq * d.Tk * (d.Dv + d.D * (additive ? 8 : 1)) + 1;
}

}  // namespace attn

template <class S>
void attention_forward(const AttentionDims& d, const AttentionArgs<S>& a, S* context, S* weights) {
  Eigen::setNbThreads(1);  // parallelism is fastrnn's own: over batch entries
  const bool additive = a.v != nullptr;
  parallel_rows(d.B, attn::work_per_entry(d, additive), [&](index_t b0, index_t b1) {
    for (index_t b = b0; b < b1; ++b) {
      const index_t L = static_cast<index_t>(a.lengths[b]);
      auto E = attn::rows_of(weights, b, d.B, d.Tq, d.Tk);
      auto K = attn::rows_of(a.keys, b, d.B, L, d.D);
      auto Q = attn::rows_of(a.query, b, d.B, d.Tq, d.D);
      if (additive) {
        for (index_t t = 0; t < d.Tq; ++t) {
          for (index_t j = 0; j < L; ++j) {
            E(t, j) = attn::additive_score(Q.row(t).data(), K.row(j).data(), a.v, d.D);
          }
        }
      } else {
        E.leftCols(L).noalias() = Q * K.transpose();
      }
      attn::masked_softmax<S>(E, L);
      attn::rows_of(context, b, d.B, d.Tq, d.Dv).noalias() =
          E.leftCols(L) * attn::rows_of(a.values, b, d.B, L, d.Dv);
    }
  });
}

template <class S>
void attention_backward(const AttentionDims& d, const AttentionArgs<S>& a, const S* weights,
                        const S* dcontext, S* dquery, S* dkeys, S* dvalues, S* dv) {
  Eigen::setNbThreads(1);
  const bool additive = a.v != nullptr;
  // the additive score's dv, one row per batch entry, summed in entry order at the end
  std::vector<S> dv_part(additive ? static_cast<size_t>(d.B * d.D) : 0, S(0));
  parallel_rows(d.B, 2 * attn::work_per_entry(d, additive), [&](index_t b0, index_t b1) {
    RowMat<S> ds(d.Tq, d.Tk);  // dL/dscores of one entry (allocated once per thread)
    for (index_t b = b0; b < b1; ++b) {
      const index_t L = static_cast<index_t>(a.lengths[b]);
      const auto A = attn::rows_of(weights, b, d.B, d.Tq, d.Tk).leftCols(L);
      const auto dC = attn::rows_of(dcontext, b, d.B, d.Tq, d.Dv);
      const auto V = attn::rows_of(a.values, b, d.B, L, d.Dv);
      const auto Q = attn::rows_of(a.query, b, d.B, d.Tq, d.D);
      const auto K = attn::rows_of(a.keys, b, d.B, L, d.D);
      auto dQ = attn::rows_of(dquery, b, d.B, d.Tq, d.D);
      auto dK = attn::rows_of(dkeys, b, d.B, d.Tk, d.D);
      auto dV = attn::rows_of(dvalues, b, d.B, d.Tk, d.Dv);
      auto G = ds.leftCols(L);
      G.noalias() = dC * V.transpose();     // dA
      for (index_t t = 0; t < d.Tq; ++t) {  // the softmax's backward, row by row
        const S dot = A.row(t).dot(G.row(t));
        G.row(t) = (A.row(t).array() * (G.row(t).array() - dot)).matrix();
      }
      dV.topRows(L).noalias() = A.transpose() * dC;
      dV.bottomRows(d.Tk - L).setZero();
      dK.bottomRows(d.Tk - L).setZero();
      if (!additive) {
        dQ.noalias() = G * K;
        dK.topRows(L).noalias() = G.transpose() * Q;
        continue;
      }
      dQ.setZero();
      dK.topRows(L).setZero();
      S* dvb = dv_part.data() + b * d.D;
      for (index_t t = 0; t < d.Tq; ++t) {
        for (index_t j = 0; j < L; ++j) {
          const S s = G(t, j);
          const S* q = Q.row(t).data();
          const S* k = K.row(j).data();
          S* dq = dQ.row(t).data();
          S* dk = dK.row(j).data();
          for_each_chunk<S>(d.D, [&](index_t i, auto n) {
            constexpr int W = decltype(n)::value;
            const Eigen::Array<S, W, 1> u = (CSeg<S, W>(q + i) + CSeg<S, W>(k + i)).tanh();
            const Eigen::Array<S, W, 1> g = s * CSeg<S, W>(a.v + i) * (S(1) - u * u);
            Seg<S, W>(dq + i) += g;
            Seg<S, W>(dk + i) += g;
            Seg<S, W>(dvb + i) += s * u;
          });
        }
      }
    }
  });
  if (additive) {
    std::fill(dv, dv + d.D, S(0));
    for (index_t b = 0; b < d.B; ++b) {
      Eigen::Map<Eigen::Array<S, Eigen::Dynamic, 1>>(dv, d.D) +=
          Eigen::Map<const Eigen::Array<S, Eigen::Dynamic, 1>>(dv_part.data() + b * d.D, d.D);
    }
  }
}

}  // namespace train
}  // namespace FASTRNN_ISA_NS
}  // namespace fastrnn::detail
