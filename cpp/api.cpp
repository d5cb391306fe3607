// The public entry points of fastrnn.hpp: argument checks (compiled once), then one call through
// the table of the kernel variant in use (kernel_table.hpp).
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>

#include "fastrnn/fastrnn.hpp"
#include "fastrnn/int8.hpp"
#include "fastrnn/kernel_table.hpp"

namespace fastrnn {

void check_dims(CellKind cell, const Dims& d) {
  if (d.T < 0 || d.B < 0) throw std::invalid_argument("dims: T and B must be >= 0");
  if (d.I < 1 || d.H < 1) throw std::invalid_argument("dims: I and H must be >= 1");
  if (d.L < 1) throw std::invalid_argument("num_layers: must be >= 1");
  if (d.D != 1 && d.D != 2) throw std::invalid_argument("directions: must be 1 or 2");
  if (d.reverse && d.D != 1) {
    throw std::invalid_argument("reverse: a reverse-only stack has one direction, not two");
  }
  if (d.P < 0 || d.P >= d.H) {
    throw std::invalid_argument("proj_size: must be >= 0 and smaller than hidden_size");
  }
  if (d.P > 0 && cell != CellKind::Lstm && cell != CellKind::LstmPeephole) {
    throw std::invalid_argument(
        "proj_size: only LSTM layers (without layer norm) have a projection");
  }
}

namespace detail {
namespace {

void require(const void* p, const char* name) {
  if (!p) throw std::invalid_argument(std::string(name) + ": required, got a null pointer");
}

std::string entry_name(const char* kind, index_t k, const Dims& d) {
  return std::string(kind) + "_l" + std::to_string(k / d.D) + (k % d.D ? "_reverse" : "");
}

/// clip finite and >= 0; input_forget only for the cells with a cell state.
void check_options(CellKind cell, const CellOptions& o) {
  if (!(o.clip >= 0 && o.clip <= 1.7976931348623157e308)) {
    throw std::invalid_argument("clip: must be a finite value >= 0 (0 = no clipping), got " +
                                std::to_string(o.clip));
  }
  const bool norm = cell == CellKind::LayerNormLstm || cell == CellKind::LayerNormGru;
  if (norm && (o.clip > 0 || o.input_forget)) {
    throw std::invalid_argument(std::string("clip, input_forget: not for the layer-normalised ") +
                                "cell " + cell_name(cell));
  }
  if (o.input_forget && !has_cell_state(cell)) {
    throw std::invalid_argument(std::string("input_forget: only LSTM cells couple their input "
                                            "and forget gates, not ") +
                                cell_name(cell));
  }
}

/// zoneout of c: only has_zoneout_cell's cells.
void check_zoneout(CellKind cell, const void* zoneout_c) {
  if (zoneout_c && !has_zoneout_cell(cell)) {
    throw std::invalid_argument(std::string("zoneout_c: only lstm and lnlstm zone out a cell "
                                            "state, not ") +
                                cell_name(cell));
  }
}

template <class S>
void check_weights(CellKind cell, const Weights<S>* w, const Dims& d, Compute c = Compute::Exact) {
  require(w, "weights");
  const bool bias = w[0].b_ih != nullptr;
  const index_t GH = num_gates(cell) * d.H;
  for (index_t k = 0; k < d.L * d.D; ++k) {
    if (c == Compute::Int8) {  // the packings' sizes (int8.hpp)
      int8_view(w[k].q_ih, GH, d.input_size(k / d.D), num_gates(cell),
                entry_name("weight_ih", k, d));
      int8_view(w[k].q_hh, GH, d.hs(), num_gates(cell), entry_name("weight_hh", k, d));
      if (d.P > 0) int8_view(w[k].q_hr, d.P, d.H, 1, entry_name("weight_hr", k, d));
    } else {
      require(w[k].w_ih, "w_ih");
      require(w[k].w_hh, "w_hh");
    }
    if ((w[k].b_ih == nullptr) != (w[k].b_hh == nullptr) || (w[k].b_ih != nullptr) != bias) {
      throw std::invalid_argument("b_ih, b_hh: give both biases or neither, in every layer");
    }
    if (c != Compute::Int8 && (w[k].w_hr != nullptr) != (d.P > 0)) {
      throw std::invalid_argument("w_hr: required exactly when proj_size > 0");
    }
    if ((w[k].cell_params != nullptr) != (cell_params_size(cell, d.H) > 0)) {
      throw std::invalid_argument(entry_name("cell_params", k, d) + ": required exactly for a " +
                                  "cell with its own parameters (" + cell_name(cell) + ": " +
                                  std::to_string(cell_params_size(cell, d.H)) + " scalars)");
    }
  }
}

/// Every length in [0, T] (the kernels assume it: plan_lengths in stack.hpp); nullptr = none.
void check_lengths(const index_t* lengths, const Dims& d) {
  if (!lengths) return;
  for (index_t b = 0; b < d.B; ++b) {
    if (lengths[b] < 0 || lengths[b] > d.T) {
      throw std::invalid_argument("lengths: entry " + std::to_string(b) + " is " +
                                  std::to_string(lengths[b]) +
                                  ", outside [0, T=" + std::to_string(d.T) + "]");
    }
  }
}

/// A known Compute, and Bf16 for float arrays only.
template <class S>
void check_compute(Compute c) {
  if (c != Compute::Exact && c != Compute::Bf16 && c != Compute::Int8) {
    throw std::invalid_argument("compute: unknown precision " +
                                std::to_string(static_cast<int>(c)));
  }
  if (c == Compute::Bf16 && sizeof(S) != sizeof(float)) {
    throw std::invalid_argument("compute: bfloat16 products need float32 arrays, not float64");
  }
  if (c == Compute::Int8 && sizeof(S) != sizeof(float)) {
    throw std::invalid_argument("compute: int8 products need float32 arrays, not float64");
  }
}

}  // namespace
}  // namespace detail

template <class S>
index_t workspace_size(CellKind cell, const Dims& dims) {
  check_dims(cell, dims);
  return detail::kernels().of<S>().workspace_size(cell, dims);
}

template <class S>
void forward(CellKind cell, const Dims& dims, const ForwardArgs<S>& a) {
  check_dims(cell, dims);
  detail::check_compute<S>(a.compute);
  detail::check_options(cell, a.options);
  detail::check_zoneout(cell, a.zoneout_c);
  detail::check_weights(cell, a.weights, dims, a.compute);
  if (a.compute == Compute::Int8 && a.workspace) {
    throw std::invalid_argument("compute: int8 products are for inference (no workspace)");
  }
  if (dims.T * dims.B > 0) {
    detail::require(a.x, "x");
    detail::require(a.y, "y");
  }
  detail::require(a.h_n, "h_n");
  if (has_cell_state(cell)) detail::require(a.c_n, "c_n");
  detail::check_lengths(a.lengths, dims);
  detail::kernels().of<S>().forward(cell, dims, a);
}

template <class S>
void backward(CellKind cell, const Dims& dims, const BackwardArgs<S>& a) {
  check_dims(cell, dims);
  detail::check_options(cell, a.options);
  detail::check_zoneout(cell, a.zoneout_c);
  detail::check_weights(cell, a.weights, dims);
  if (a.compute == Compute::Int8) {
    throw std::invalid_argument("compute: int8 products are for inference; there is no backward");
  }
  detail::require(a.workspace, "workspace");
  detail::require(a.grads, "grads");
  if (dims.T * dims.B > 0) detail::require(a.x, "x");
  detail::require(a.dh0, "dh0");
  if (has_cell_state(cell)) detail::require(a.dc0, "dc0");
  detail::check_lengths(a.lengths, dims);
  detail::check_compute<S>(a.compute);
  for (index_t k = 0; k < dims.L * dims.D; ++k) {
    detail::require(a.grads[k].dw_ih, "dw_ih");
    detail::require(a.grads[k].dw_hh, "dw_hh");
    if (a.weights[k].b_ih) {
      detail::require(a.grads[k].db_ih, "db_ih");
      detail::require(a.grads[k].db_hh, "db_hh");
    }
    if (dims.P > 0) detail::require(a.grads[k].dw_hr, "dw_hr");
    if (cell_params_size(cell, dims.H) > 0) {
      detail::require(a.grads[k].d_cell_params, "d_cell_params");
    }
  }
  detail::kernels().of<S>().backward(cell, dims, a);
}

index_t int8_packed_bytes(index_t m, index_t k, index_t gates) {
  if (m < 0 || k < 0 || gates < 1 || m % gates != 0) {
    throw std::invalid_argument("pack_int8: need m, k >= 0 and m a multiple of gates >= 1");
  }
  return detail::Int8Sizes::of(m, k, gates).bytes();
}

void pack_int8(const std::int8_t* q, const float* scale, index_t m, index_t k, index_t gates,
               std::uint8_t* out) {
  using detail::kI8Rows;
  const detail::Int8Sizes z = detail::Int8Sizes::of(m, k, gates);
  int8_packed_bytes(m, k, gates);  // the sizes' check
  if (k > detail::kI8MaxDepth) {   // the kernels' int32 sums could overflow
    throw std::invalid_argument("q: int8 products take at most " +
                                std::to_string(detail::kI8MaxDepth) + " columns (input_size, " +
                                "hidden_size), got " + std::to_string(k));
  }
  if (m * k > 0) detail::require(q, "q");
  if (m > 0) detail::require(scale, "scale");
  detail::require(out, "out");
  for (index_t i = 0; i < m; ++i) {
    if (!(scale[i] >= 0 && scale[i] <= 3.4e38f)) {
      throw std::invalid_argument("scale: row " + std::to_string(i) +
                                  " is not a finite value >= 0");
    }
    for (index_t j = 0; j < k; ++j) {
      if (q[i * k + j] == -128) {
        throw std::invalid_argument("q: row " + std::to_string(i) +
                                    " holds -128; int8 weights are symmetric, in [-127, 127]");
      }
    }
  }
  std::memset(out, 0, static_cast<size_t>(z.bytes()));
  detail::Int8Header h{};
  std::memcpy(h.magic, detail::kI8Magic, sizeof h.magic);
  h.version = detail::kI8Version;
  h.rows = m;
  h.depth = k;
  h.gates = gates;
  h.panels = z.panels;
  h.quads = z.quads;
  std::memcpy(out, &h, sizeof h);
  auto* panels = reinterpret_cast<std::int8_t*>(out + 128);
  auto* scales = reinterpret_cast<float*>(out + z.scales_at());
  auto* sums = reinterpret_cast<std::int32_t*>(out + z.sums_at());
  for (index_t g = 0; g < gates; ++g) {
    for (index_t u = 0; u < z.units; ++u) {
      const index_t row = g * z.units + u, p = u / kI8Rows, r = u % kI8Rows;
      const index_t prow = (g * z.panels) * kI8Rows + u;
      std::int8_t* panel = panels + (g * z.panels + p) * z.panel_bytes();
      std::int32_t sum = 0;
      for (index_t j = 0; j < k; ++j) {
        const std::int8_t v = q[row * k + j];
        panel[((j / 4) * kI8Rows + r) * 4 + j % 4] = v;
        sum += v;
      }
      scales[prow] = scale[row];
      sums[prow] = sum;
    }
  }
}

template index_t workspace_size<float>(CellKind, const Dims&);
template index_t workspace_size<double>(CellKind, const Dims&);
template void forward<float>(CellKind, const Dims&, const ForwardArgs<float>&);
template void forward<double>(CellKind, const Dims&, const ForwardArgs<double>&);
template void backward<float>(CellKind, const Dims&, const BackwardArgs<float>&);
template void backward<double>(CellKind, const Dims&, const BackwardArgs<double>&);

namespace train {

template <class S>
void linear_forward(const S* x, index_t N, index_t In, const S* W, index_t Out, const S* b, S* y) {
  detail::kernels().of<S>().linear_forward(x, N, In, W, Out, b, y);
}

template <class S>
void linear_backward(const S* x, index_t N, index_t In, const S* W, index_t Out, const S* dy, S* dx,
                     S* dW, S* db) {
  detail::kernels().of<S>().linear_backward(x, N, In, W, Out, dy, dx, dW, db);
}

template <class S>
double softmax_cross_entropy(const S* logits, index_t N, index_t C, const std::int64_t* targets,
                             std::int64_t ignore_index, bool mean, S* dlogits) {
  return detail::kernels().of<S>().softmax_cross_entropy(logits, N, C, targets, ignore_index, mean,
                                                         dlogits);
}

template <class S>
void embedding_backward(const std::int64_t* ids, index_t n, const S* dy, index_t D,
                        index_t num_embeddings, std::int64_t padding_idx, S* dW) {
  detail::kernels().of<S>().embedding_backward(ids, n, dy, D, num_embeddings, padding_idx, dW);
}

template <class S>
void sgd_update(S* p, const S* g, S* buf, index_t n, S lr, S momentum, S dampening, S weight_decay,
                bool nesterov, bool first) {
  detail::kernels().of<S>().sgd_update(p, g, buf, n, lr, momentum, dampening, weight_decay,
                                       nesterov, first);
}

template <class S>
void adam_update(S* p, const S* g, S* m, S* v, index_t n, double lr, double beta1, double beta2,
                 double eps, double weight_decay, std::int64_t step) {
  detail::kernels().of<S>().adam_update(p, g, m, v, n, lr, beta1, beta2, eps, weight_decay, step);
}

template <class S>
double sum_squares(const S* a, index_t n) {
  return detail::kernels().of<S>().sum_squares(a, n);
}

template <class S>
double max_abs(const S* a, index_t n) {
  return detail::kernels().of<S>().max_abs(a, n);
}

template <class S>
void scale(S* a, index_t n, S s) {
  detail::kernels().of<S>().scale(a, n, s);
}

template <class S>
void clamp(S* a, index_t n, S c) {
  detail::kernels().of<S>().clamp(a, n, c);
}

namespace {
/// The sizes and lengths of an attention call (the contract of fastrnn.hpp).
void check_attention(const AttentionDims& d, const std::int64_t* lengths) {
  if (d.Tq < 0 || d.Tk < 0 || d.B < 0 || d.D < 1 || d.Dv < 1) {
    throw std::invalid_argument("attention: bad sizes (Tq, Tk, B >= 0 and D, Dv >= 1)");
  }
  for (index_t b = 0; b < d.B; ++b) {
    if (lengths[b] < 1 || lengths[b] > d.Tk) {
      throw std::invalid_argument("lengths: entry " + std::to_string(b) + " is " +
                                  std::to_string(lengths[b]) + ", outside [1, " +
                                  std::to_string(d.Tk) + "] (the keys' steps)");
    }
  }
}
}  // namespace

template <class S>
void attention_forward(const AttentionDims& d, const AttentionArgs<S>& a, S* context, S* weights) {
  check_attention(d, a.lengths);
  detail::kernels().of<S>().attention_forward(d, a, context, weights);
}

template <class S>
void attention_backward(const AttentionDims& d, const AttentionArgs<S>& a, const S* weights,
                        const S* dcontext, S* dquery, S* dkeys, S* dvalues, S* dv) {
  check_attention(d, a.lengths);
  detail::kernels().of<S>().attention_backward(d, a, weights, dcontext, dquery, dkeys, dvalues, dv);
}

#define FASTRNN_INSTANTIATE_TRAIN(S)                                                            \
  template void linear_forward<S>(const S*, index_t, index_t, const S*, index_t, const S*, S*); \
  template void linear_backward<S>(const S*, index_t, index_t, const S*, index_t, const S*, S*, \
                                   S*, S*);                                                     \
  template double softmax_cross_entropy<S>(const S*, index_t, index_t, const std::int64_t*,     \
                                           std::int64_t, bool, S*);                             \
  template void embedding_backward<S>(const std::int64_t*, index_t, const S*, index_t, index_t, \
                                      std::int64_t, S*);                                        \
  template void sgd_update<S>(S*, const S*, S*, index_t, S, S, S, S, bool, bool);               \
  template void adam_update<S>(S*, const S*, S*, S*, index_t, double, double, double, double,   \
                               double, std::int64_t);                                           \
  template double sum_squares<S>(const S*, index_t);                                            \
  template double max_abs<S>(const S*, index_t);                                                \
  template void scale<S>(S*, index_t, S);                                                       \
  template void clamp<S>(S*, index_t, S);                                                       \
  template void attention_forward<S>(const AttentionDims&, const AttentionArgs<S>&, S*, S*);    \
  template void attention_backward<S>(const AttentionDims&, const AttentionArgs<S>&, const S*,  \
                                      const S*, S*, S*, S*, S*);
FASTRNN_INSTANTIATE_TRAIN(float)
FASTRNN_INSTANTIATE_TRAIN(double)
#undef FASTRNN_INSTANTIATE_TRAIN

}  // namespace train
}  // namespace fastrnn
