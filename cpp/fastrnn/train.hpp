// Training kernels around the recurrent layers: the fused softmax cross-entropy, the embedding
// gradient, the optimizer updates (SGD with momentum, Adam) fused into one pass over each
// parameter array, in place, and the sums of squares behind gradient clipping.
//
// Every result is independent of the thread count: element-wise passes may be split anyhow, and
// reductions are made in fixed-size pieces summed in order (in double).
#pragma once

#include "fastrnn/isa_namespace.hpp"  // first: only kernel units compile this

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "fastrnn/driver.hpp"
#include "fastrnn/fastrnn.hpp"
#include "fastrnn/parallel.hpp"

namespace fastrnn::detail {
inline namespace FASTRNN_ISA_NS {
namespace train {

using detail::parallel_rows;

/// The output layer y (N, Out) = x (N, In) W^T + b, W (Out, In) as torch.nn.Linear, on
/// fastrnn's own threads (NumPy's BLAS threads would compete with them for the cores: measured,
/// a char-model training step went from 36 to 226 ms on 2 cores when the head ran in NumPy).
template <class S>
void linear_forward(const S* x, index_t N, index_t In, const S* W, index_t Out, const S* b, S* y) {
  Eigen::setNbThreads(1);  // parallelism is fastrnn's own, over fixed tiles (parallel.hpp)
  detail::Mat<S> Y(y, N, Out);
  detail::gemm(Y, detail::CMat<S>(x, N, In), detail::CMat<S>(W, Out, In).transpose());
  if (b) Y.rowwise() += detail::CRowVec<S>(b, Out);
}

/// dx = dy W, dW = dy^T x, db = column sums of dy (db may be null: no bias)
template <class S>
void linear_backward(const S* x, index_t N, index_t In, const S* W, index_t Out, const S* dy, S* dx,
                     S* dW, S* db) {
  Eigen::setNbThreads(1);
  detail::CMat<S> DY(dy, N, Out);
  detail::gemm(detail::Mat<S>(dx, N, In), DY, detail::CMat<S>(W, Out, In));
  detail::gemm_tn(dW, In, dy, Out, x, In, Out, In, N);
  if (db) detail::column_sums(dy, N, Out, db);
}

/// Softmax cross-entropy over the rows of logits (N, C) with integer targets (N,): returns the
/// loss (mean over the rows whose target is not ignore_index, or their sum) and writes
/// dlogits = (softmax - onehot) / count (or without the division), zero on ignored rows.
/// Stable: log-sum-exp around the row maximum. An all-ignored batch gives loss NaN under "mean"
/// (0/0, as PyTorch) and zero gradients.
template <class S>
double softmax_cross_entropy(const S* logits, index_t N, index_t C, const std::int64_t* targets,
                             std::int64_t ignore_index, bool mean, S* dlogits) {
  for (index_t r = 0; r < N; ++r) {
    const std::int64_t t = targets[r];
    if (t != ignore_index && (t < 0 || t >= C)) {
      throw std::invalid_argument("targets: entry " + std::to_string(r) + " is " +
                                  std::to_string(t) + ", outside [0, " + std::to_string(C) +
                                  ") (and not ignore_index)");
    }
  }
  index_t count = 0;
  for (index_t r = 0; r < N; ++r) count += targets[r] != ignore_index;
  const double scale = mean ? 1.0 / static_cast<double>(count) : 1.0;
  std::vector<double> row_loss(static_cast<size_t>(N), 0.0);
  parallel_rows(N, C, [&](index_t r0, index_t r1) {
    for (index_t r = r0; r < r1; ++r) {
      Eigen::Map<const Eigen::Array<S, Eigen::Dynamic, 1>> z(logits + r * C, C);
      Eigen::Map<Eigen::Array<S, Eigen::Dynamic, 1>> d(dlogits + r * C, C);
      const std::int64_t t = targets[r];
      if (t == ignore_index) {
        d.setZero();
        continue;
      }
      const S zmax = z.maxCoeff();
      // exp(z - max): at most 1, the sum at least 1. In fixed SIMD-width chunks, summed in
      // chunk order: on a dynamic-size map Eigen peels a scalar head up to the first aligned
      // address, so d = (z - zmax).exp() and d.sum() changed in the last bits with where the
      // rows sit in memory (measured: 3 different results over 16 offsets of one array).
      double sum = 0;
      detail::for_each_chunk<S>(C, [&](index_t j, auto n) {
        constexpr int W = decltype(n)::value;
        detail::Seg<S, W> dj(d.data() + j);
        dj = (detail::CSeg<S, W>(z.data() + j) - zmax).exp();
        sum += static_cast<double>(dj.sum());
      });
      const double lse = static_cast<double>(zmax) + std::log(sum);
      row_loss[static_cast<size_t>(r)] = lse - static_cast<double>(z[t]);
      d *= static_cast<S>(scale / sum);
      d[t] -= static_cast<S>(scale);
    }
  });
  if (count == 0) return mean ? std::nan("") : 0.0;
  double total = 0;
  for (double v : row_loss) total += v;  // row order: deterministic
  return total * scale;
}

/// dW (num_embeddings, D) = sum over i of dy[i] into row ids[i]; the padding row (if >= 0) gets
/// no gradient. Ids are checked first (a clear error, never an out-of-bounds write).
template <class S>
void embedding_backward(const std::int64_t* ids, index_t n, const S* dy, index_t D,
                        index_t num_embeddings, std::int64_t padding_idx, S* dW) {
  for (index_t i = 0; i < n; ++i) {
    if (ids[i] < 0 || ids[i] >= num_embeddings) {
      throw std::invalid_argument("ids: entry " + std::to_string(i) + " is " +
                                  std::to_string(ids[i]) + ", outside [0, " +
                                  std::to_string(num_embeddings) + ")");
    }
  }
  std::fill(dW, dW + num_embeddings * D, S(0));
  // each thread owns a range of embedding rows and scans all ids in order: deterministic
  parallel_rows(num_embeddings, n * D / std::max<index_t>(num_embeddings, 1) + D,
                [&](index_t e0, index_t e1) {
                  for (index_t i = 0; i < n; ++i) {
                    const std::int64_t e = ids[i];
                    if (e < e0 || e >= e1 || e == padding_idx) continue;
                    Eigen::Map<Eigen::Array<S, Eigen::Dynamic, 1>>(dW + e * D, D) +=
                        Eigen::Map<const Eigen::Array<S, Eigen::Dynamic, 1>>(dy + i * D, D);
                  }
                });
}

/// Elements per piece of a split pass (fixed: results do not depend on the thread count).
inline constexpr index_t kPiece = 1 << 14;

/// Calls f(begin, end) over [0, n) in pieces, shared among the threads.
template <class F>
void for_pieces(index_t n, F&& f) {
  const index_t pieces = (n + kPiece - 1) / kPiece;
  parallel_rows(pieces, kPiece, [&](index_t p0, index_t p1) {
    for (index_t p = p0; p < p1; ++p) f(p * kPiece, std::min(n, (p + 1) * kPiece));
  });
}

/// sum of squares of a[0..n), in double, summed piece by piece in order
template <class S>
double sum_squares(const S* a, index_t n) {
  const index_t pieces = (n + kPiece - 1) / kPiece;
  std::vector<double> part(static_cast<size_t>(pieces), 0.0);
  for_pieces(n, [&](index_t b, index_t e) {
    double s = 0;
    for (index_t i = b; i < e; ++i) s += static_cast<double>(a[i]) * static_cast<double>(a[i]);
    part[static_cast<size_t>(b / kPiece)] = s;
  });
  double total = 0;
  for (double v : part) total += v;
  return total;
}

/// max |a[i]| (NaN if any element is NaN)
template <class S>
double max_abs(const S* a, index_t n) {
  double m = 0;
  for (index_t i = 0; i < n; ++i) {
    const double v = std::fabs(static_cast<double>(a[i]));
    if (std::isnan(v)) return v;
    m = std::max(m, v);
  }
  return m;
}

/// a *= s, in place
template <class S>
void scale(S* a, index_t n, S s) {
  for_pieces(n, [&](index_t b, index_t e) {
    for (index_t i = b; i < e; ++i) a[i] *= s;
  });
}

/// a = clamp(a, -c, c), in place (NaN stays NaN)
template <class S>
void clamp(S* a, index_t n, S c) {
  for_pieces(n, [&](index_t b, index_t e) {
    for (index_t i = b; i < e; ++i) a[i] = a[i] > c ? c : (a[i] < -c ? -c : a[i]);
  });
}

/// torch.optim.SGD's update of one parameter array, in place:
///   g' = g + wd*p;  buf = first ? g' : momentum*buf + (1-dampening)*g'  (when momentum != 0)
///   d = nesterov ? g' + momentum*buf : buf (or g' without momentum);  p -= lr*d
template <class S>
void sgd_update(S* p, const S* g, S* buf, index_t n, S lr, S momentum, S dampening, S weight_decay,
                bool nesterov, bool first) {
  for_pieces(n, [&](index_t b, index_t e) {
    for (index_t i = b; i < e; ++i) {
      S gi = g[i];
      if (weight_decay != S(0)) gi += weight_decay * p[i];
      if (momentum != S(0)) {
        buf[i] = first ? gi : momentum * buf[i] + (S(1) - dampening) * gi;
        gi = nesterov ? gi + momentum * buf[i] : buf[i];
      }
      p[i] -= lr * gi;
    }
  });
}

/// torch.optim.Adam's update (no amsgrad) of one parameter array, in place, step >= 1:
///   g' = g + wd*p;  m = b1*m + (1-b1)*g';  v = b2*v + (1-b2)*g'^2
///   p -= lr/(1-b1^step) * m / (sqrt(v)/sqrt(1-b2^step) + eps)
/// (= the notes' m_hat / (sqrt(v_hat) + eps) with m_hat = m/(1-b1^t), v_hat = v/(1-b2^t)).
template <class S>
void adam_update(S* p, const S* g, S* m, S* v, index_t n, double lr, double beta1, double beta2,
                 double eps, double weight_decay, std::int64_t step) {
  const double bc1 = 1.0 - std::pow(beta1, static_cast<double>(step));
  const double bc2 = 1.0 - std::pow(beta2, static_cast<double>(step));
  const S step_size = static_cast<S>(lr / bc1), sqrt_bc2 = static_cast<S>(std::sqrt(bc2));
  const S b1 = static_cast<S>(beta1), b2 = static_cast<S>(beta2), ep = static_cast<S>(eps);
  const S wd = static_cast<S>(weight_decay);
  for_pieces(n, [&](index_t b, index_t e) {
    for (index_t i = b; i < e; ++i) {
      S gi = g[i];
      if (wd != S(0)) gi += wd * p[i];
      m[i] = b1 * m[i] + (S(1) - b1) * gi;
      v[i] = b2 * v[i] + (S(1) - b2) * gi * gi;
      p[i] -= step_size * m[i] / (std::sqrt(v[i]) / sqrt_bc2 + ep);
    }
  });
}

}  // namespace train
}  // namespace FASTRNN_ISA_NS
}  // namespace fastrnn::detail
