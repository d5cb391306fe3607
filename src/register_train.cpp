// Bindings of the training kernels (declared in fastrnn.hpp, namespace train): fused softmax
// cross-entropy, the embedding gradient, in-place optimizer updates and the sums behind gradient
// clipping. Arrays are checked as in register_rnn.cpp (dtype, C order, alignment, sizes,
// writeability); float32 and float64 both, chosen by the first array's dtype. The GIL is released
// around the work.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <tuple>

#include "checks.hpp"
#include "fastrnn/fastrnn.hpp"
#include "register.hpp"

namespace py = pybind11;

namespace fastrnn::py_bind {
namespace {

/// A C-contiguous, aligned array of dtype S and any shape, with n elements (n < 0: any).
template <class S>
py::array flat(const py::object& obj, const char* name, index_t n, bool writeable) {
  py::array a = typed_array<S>(obj, name);
  if (n >= 0 && a.size() != n) {
    throw py::value_error(std::string(name) + ": expected " + std::to_string(n) +
                          " elements (the parameter's shape), got shape " + shape_of(a));
  }
  if (!(a.flags() & py::array::c_style) ||
      reinterpret_cast<std::uintptr_t>(a.data()) % alignof(S) != 0) {
    throw py::value_error(std::string(name) + ": must be C-contiguous and aligned");
  }
  if (writeable && !a.writeable()) throw py::value_error(std::string(name) + ": must be writeable");
  return a;
}

py::array int64_vector(const py::object& obj, const char* name, index_t n) {
  Opt a = checked<std::int64_t>(obj, name, {n});
  return *a;
}

bool is_f64(const py::object& obj, const char* name) {
  if (!py::isinstance<py::array>(obj)) {
    throw py::type_error(std::string(name) + ": expected a numpy.ndarray, got " +
                         std::string(py::str(py::type::of(obj).attr("__name__"))));
  }
  auto dt = py::reinterpret_borrow<py::array>(obj).dtype();
  if (dt.equal(py::dtype::of<double>())) return true;
  if (dt.equal(py::dtype::of<float>())) return false;
  throw py::type_error(std::string(name) + ": expected dtype float32 or float64, got " +
                       std::string(py::str(dt)));
}

template <class S>
py::tuple xent_impl(const py::object& logits_in, const py::object& targets_in,
                    std::int64_t ignore_index, bool mean) {
  auto la = flat<S>(logits_in, "logits", -1, false);
  if (la.ndim() != 2) {
    throw py::value_error("logits: expected a 2-D array (N, C), got shape " + shape_of(la));
  }
  const index_t N = la.shape(0), C = la.shape(1);
  if (C < 1) throw py::value_error("logits: needs at least one class (C >= 1)");
  py::array t = int64_vector(targets_in, "targets", N);
  py::array_t<S> d({N, C});
  double loss = 0;
  const S* lp = static_cast<const S*>(la.data());
  const auto* tp = static_cast<const std::int64_t*>(t.data());
  S* dp = d.mutable_data();
  run_released(
      [&] { loss = train::softmax_cross_entropy<S>(lp, N, C, tp, ignore_index, mean, dp); });
  return py::make_tuple(loss, d);
}

template <class S>
py::array embedding_backward_impl(const py::object& ids_in, const py::object& dy_in,
                                  index_t num_embeddings, std::int64_t padding_idx) {
  auto dy = flat<S>(dy_in, "dy", -1, false);
  if (dy.ndim() != 2) {
    throw py::value_error("dy: expected a 2-D array (n, D), got shape " + shape_of(dy));
  }
  const index_t n = dy.shape(0), D = dy.shape(1);
  if (num_embeddings < 1) throw py::value_error("num_embeddings: must be >= 1");
  py::array ids = int64_vector(ids_in, "ids", n);
  py::array_t<S> dW({num_embeddings, D});
  const auto* ip = static_cast<const std::int64_t*>(ids.data());
  const S* dp = static_cast<const S*>(dy.data());
  S* wp = dW.mutable_data();
  run_released(
      [&] { train::embedding_backward<S>(ip, n, dp, D, num_embeddings, padding_idx, wp); });
  return dW;
}

template <class S>
void sgd_impl(const py::object& p_in, const py::object& g_in, const py::object& buf_in, double lr,
              double momentum, double dampening, double weight_decay, bool nesterov, bool first) {
  auto p = flat<S>(p_in, "param", -1, true);
  const index_t n = p.size();
  auto g = flat<S>(g_in, "grad", n, false);
  std::optional<py::array> buf;
  if (momentum != 0) {
    if (buf_in.is_none()) throw py::value_error("buf: required when momentum != 0");
    buf = flat<S>(buf_in, "buf", n, true);
  }
  S* pp = static_cast<S*>(p.mutable_data());
  const S* gp = static_cast<const S*>(g.data());
  S* bp = buf ? static_cast<S*>(buf->mutable_data()) : nullptr;
  run_released([&] {
    train::sgd_update<S>(pp, gp, bp, n, static_cast<S>(lr), static_cast<S>(momentum),
                         static_cast<S>(dampening), static_cast<S>(weight_decay), nesterov, first);
  });
}

template <class S>
void adam_impl(const py::object& p_in, const py::object& g_in, const py::object& m_in,
               const py::object& v_in, double lr, double beta1, double beta2, double eps,
               double weight_decay, std::int64_t step) {
  if (step < 1) throw py::value_error("step: must be >= 1 (the count after this update)");
  auto p = flat<S>(p_in, "param", -1, true);
  const index_t n = p.size();
  auto g = flat<S>(g_in, "grad", n, false);
  auto m = flat<S>(m_in, "exp_avg", n, true);
  auto v = flat<S>(v_in, "exp_avg_sq", n, true);
  S* pp = static_cast<S*>(p.mutable_data());
  const S* gp = static_cast<const S*>(g.data());
  S* mp = static_cast<S*>(m.mutable_data());
  S* vp = static_cast<S*>(v.mutable_data());
  run_released(
      [&] { train::adam_update<S>(pp, gp, mp, vp, n, lr, beta1, beta2, eps, weight_decay, step); });
}

template <class S>
double sum_squares_impl(const py::object& a_in) {
  auto a = flat<S>(a_in, "array", -1, false);
  const S* p = static_cast<const S*>(a.data());
  double r = 0;
  run_released([&] { r = train::sum_squares<S>(p, a.size()); });
  return r;
}

template <class S>
double max_abs_impl(const py::object& a_in) {
  auto a = flat<S>(a_in, "array", -1, false);
  return train::max_abs<S>(static_cast<const S*>(a.data()), a.size());
}

template <class S>
void scale_impl(const py::object& a_in, double s) {
  auto a = flat<S>(a_in, "array", -1, true);
  S* p = static_cast<S*>(a.mutable_data());
  run_released([&] { train::scale<S>(p, a.size(), static_cast<S>(s)); });
}

template <class S>
void clamp_impl(const py::object& a_in, double c) {
  auto a = flat<S>(a_in, "array", -1, true);
  S* p = static_cast<S*>(a.mutable_data());
  run_released([&] { train::clamp<S>(p, a.size(), static_cast<S>(c)); });
}

/// (N, in, out) of a linear layer's x (N, in) and weight (out, in), checked
std::tuple<index_t, index_t, index_t> linear_sizes(const py::array& x, const py::array& w) {
  if (x.ndim() != 2 || w.ndim() != 2 || x.shape(1) != w.shape(1)) {
    throw py::value_error("x, weight: expected (N, in) and (out, in), got " + shape_of(x) +
                          " and " + shape_of(w));
  }
  return {x.shape(0), x.shape(1), w.shape(0)};
}

template <class S>
py::array linear_forward_impl(const py::object& x_in, const py::object& w_in,
                              const py::object& b_in) {
  auto x = flat<S>(x_in, "x", -1, false);
  auto w = flat<S>(w_in, "weight", -1, false);
  const auto [N, In, Out] = linear_sizes(x, w);
  Opt b = checked<S>(b_in, "bias", {Out}, true);
  py::array_t<S> y({N, Out});
  const S* xp = static_cast<const S*>(x.data());
  const S* wp = static_cast<const S*>(w.data());
  const S* bp = b ? static_cast<const S*>(b->data()) : nullptr;
  S* yp = y.mutable_data();
  run_released([&] { train::linear_forward<S>(xp, N, In, wp, Out, bp, yp); });
  return y;
}

template <class S>
py::tuple linear_backward_impl(const py::object& x_in, const py::object& w_in,
                               const py::object& dy_in, bool has_bias) {
  auto x = flat<S>(x_in, "x", -1, false);
  auto w = flat<S>(w_in, "weight", -1, false);
  const auto [N, In, Out] = linear_sizes(x, w);
  Opt dy = checked<S>(dy_in, "dy", {N, Out});
  py::array_t<S> dx({N, In}), dW({Out, In});
  Opt db;
  if (has_bias) db = py::array_t<S>({Out});
  const S* xp = static_cast<const S*>(x.data());
  const S* wp = static_cast<const S*>(w.data());
  const S* dyp = static_cast<const S*>(dy->data());
  S* dxp = dx.mutable_data();
  S* dWp = dW.mutable_data();
  S* dbp = db ? static_cast<S*>(db->mutable_data()) : nullptr;
  run_released([&] { train::linear_backward<S>(xp, N, In, wp, Out, dyp, dxp, dWp, dbp); });
  return py::make_tuple(dx, dW, or_none(db));
}

/// The arrays of an attention call, checked against each other (fastrnn.hpp's contract):
/// query (Tq, B, D), keys (Tk, B, D), values (Tk, B, Dv), lengths (B,) int64 or None (all Tk),
/// v (D,) or None (the dot score). The lengths' range is the core's to check.
template <class S>
struct AttentionCall {
  Opt query, keys, values, v;
  py::array lengths;
  AttentionDims d{};

  AttentionCall(const py::object& q_in, const py::object& k_in, const py::object& val_in,
                const py::object& len_in, const py::object& v_in) {
    const py::array q = three_d(q_in, "query", "(Tq, B, D)");
    const py::array k = three_d(k_in, "keys", "(Tk, B, D)");
    const py::array val = three_d(val_in, "values", "(Tk, B, Dv)");
    d = AttentionDims{q.shape(0), k.shape(0), q.shape(1), q.shape(2), val.shape(2)};
    if (d.D < 1) {
      throw py::value_error("query: needs at least one feature (D >= 1), got shape " + shape_of(q));
    }
    if (d.Dv < 1) {
      throw py::value_error("values: needs at least one feature (Dv >= 1), got shape " +
                            shape_of(val));
    }
    query = checked<S>(q_in, "query", {d.Tq, d.B, d.D});
    keys = checked<S>(k_in, "keys", {d.Tk, d.B, d.D});
    values = checked<S>(val_in, "values", {d.Tk, d.B, d.Dv});
    v = checked<S>(v_in, "v", {d.D}, true);
    if (len_in.is_none()) {
      py::array_t<std::int64_t> all(d.B);
      std::fill(all.mutable_data(), all.mutable_data() + d.B, static_cast<std::int64_t>(d.Tk));
      lengths = all;
    } else {
      lengths = *checked<std::int64_t>(len_in, "lengths", {d.B});
    }
  }

  static py::array three_d(const py::object& obj, const char* name, const char* shape) {
    py::array a = typed_array<S>(obj, name);
    if (a.ndim() != 3) {
      throw py::value_error(std::string(name) + ": expected shape " + shape + ", got " +
                            shape_of(a));
    }
    return a;
  }

  AttentionArgs<S> args() const {
    return {ptr<S>(query), ptr<S>(keys), ptr<S>(values),
            static_cast<const std::int64_t*>(lengths.data()), ptr<S>(v)};
  }
};

template <class S>
py::tuple attention_forward_impl(const py::object& q, const py::object& k, const py::object& val,
                                 const py::object& len, const py::object& v) {
  const AttentionCall<S> c(q, k, val, len, v);
  py::array_t<S> context({c.d.Tq, c.d.B, c.d.Dv}), weights({c.d.Tq, c.d.B, c.d.Tk});
  S* cp = context.mutable_data();
  S* wp = weights.mutable_data();
  run_released([&] { train::attention_forward<S>(c.d, c.args(), cp, wp); });
  return py::make_tuple(context, weights);
}

template <class S>
py::tuple attention_backward_impl(const py::object& q, const py::object& k, const py::object& val,
                                  const py::object& len, const py::object& w_in,
                                  const py::object& dc_in, const py::object& v) {
  const AttentionCall<S> c(q, k, val, len, v);
  const Opt w = checked<S>(w_in, "weights", {c.d.Tq, c.d.B, c.d.Tk});
  const Opt dc = checked<S>(dc_in, "dcontext", {c.d.Tq, c.d.B, c.d.Dv});
  py::array_t<S> dq({c.d.Tq, c.d.B, c.d.D}), dk({c.d.Tk, c.d.B, c.d.D});
  py::array_t<S> dval({c.d.Tk, c.d.B, c.d.Dv});
  Opt dv;
  if (c.v) dv = py::array_t<S>({c.d.D});
  const S* wp = ptr<S>(w);
  const S* dcp = ptr<S>(dc);
  S* dqp = dq.mutable_data();
  S* dkp = dk.mutable_data();
  S* dvalp = dval.mutable_data();
  S* dvp = mut_ptr<S>(dv);
  run_released([&] { train::attention_backward<S>(c.d, c.args(), wp, dcp, dqp, dkp, dvalp, dvp); });
  return py::make_tuple(dq, dk, dval, or_none(dv));
}

}  // namespace

void register_train(py::module_& m) {
  m.def(
      "softmax_cross_entropy",
      [](const py::object& logits, const py::object& targets, std::int64_t ignore_index,
         bool mean) {
        return is_f64(logits, "logits") ? xent_impl<double>(logits, targets, ignore_index, mean)
                                        : xent_impl<float>(logits, targets, ignore_index, mean);
      },
      py::arg("logits"), py::arg("targets"), py::arg("ignore_index"), py::arg("mean"),
      "(loss, dlogits) of the softmax cross-entropy over the rows of logits (N, C).");
  m.def(
      "linear_forward",
      [](const py::object& x, const py::object& w, const py::object& b) {
        return is_f64(x, "x") ? linear_forward_impl<double>(x, w, b)
                              : linear_forward_impl<float>(x, w, b);
      },
      py::arg("x"), py::arg("weight"), py::arg("bias"),
      "y (N, out) = x (N, in) weight^T + bias (bias may be None).");
  m.def(
      "linear_backward",
      [](const py::object& x, const py::object& w, const py::object& dy, bool has_bias) {
        return is_f64(x, "x") ? linear_backward_impl<double>(x, w, dy, has_bias)
                              : linear_backward_impl<float>(x, w, dy, has_bias);
      },
      py::arg("x"), py::arg("weight"), py::arg("dy"), py::arg("has_bias"),
      "(dx, dweight, dbias or None) of linear_forward.");
  m.def(
      "embedding_backward",
      [](const py::object& ids, const py::object& dy, index_t num_embeddings,
         std::int64_t padding_idx) {
        return is_f64(dy, "dy")
                   ? embedding_backward_impl<double>(ids, dy, num_embeddings, padding_idx)
                   : embedding_backward_impl<float>(ids, dy, num_embeddings, padding_idx);
      },
      py::arg("ids"), py::arg("dy"), py::arg("num_embeddings"), py::arg("padding_idx"),
      "dW (num_embeddings, D) from ids (n,) and dy (n, D); padding_idx < 0 for none.");
  m.def(
      "sgd_update",
      [](const py::object& p, const py::object& g, const py::object& buf, double lr,
         double momentum, double dampening, double weight_decay, bool nesterov, bool first) {
        if (is_f64(p, "param")) {
          sgd_impl<double>(p, g, buf, lr, momentum, dampening, weight_decay, nesterov, first);
        } else {
          sgd_impl<float>(p, g, buf, lr, momentum, dampening, weight_decay, nesterov, first);
        }
      },
      py::arg("param"), py::arg("grad"), py::arg("buf"), py::arg("lr"), py::arg("momentum"),
      py::arg("dampening"), py::arg("weight_decay"), py::arg("nesterov"), py::arg("first"),
      "torch.optim.SGD's update of one parameter array, in place.");
  m.def(
      "adam_update",
      [](const py::object& p, const py::object& g, const py::object& mm, const py::object& v,
         double lr, double beta1, double beta2, double eps, double weight_decay,
         std::int64_t step) {
        if (is_f64(p, "param")) {
          adam_impl<double>(p, g, mm, v, lr, beta1, beta2, eps, weight_decay, step);
        } else {
          adam_impl<float>(p, g, mm, v, lr, beta1, beta2, eps, weight_decay, step);
        }
      },
      py::arg("param"), py::arg("grad"), py::arg("exp_avg"), py::arg("exp_avg_sq"), py::arg("lr"),
      py::arg("beta1"), py::arg("beta2"), py::arg("eps"), py::arg("weight_decay"), py::arg("step"),
      "torch.optim.Adam's update of one parameter array, in place.");
  m.def(
      "sum_squares",
      [](const py::object& a) {
        return is_f64(a, "array") ? sum_squares_impl<double>(a) : sum_squares_impl<float>(a);
      },
      py::arg("array"), "Sum of squares (in double, deterministic order).");
  m.def(
      "max_abs",
      [](const py::object& a) {
        return is_f64(a, "array") ? max_abs_impl<double>(a) : max_abs_impl<float>(a);
      },
      py::arg("array"), "Largest absolute value (NaN if any is NaN).");
  m.def(
      "scale_",
      [](const py::object& a, double s) {
        is_f64(a, "array") ? scale_impl<double>(a, s) : scale_impl<float>(a, s);
      },
      py::arg("array"), py::arg("factor"), "array *= factor, in place.");
  m.def(
      "clamp_",
      [](const py::object& a, double c) {
        is_f64(a, "array") ? clamp_impl<double>(a, c) : clamp_impl<float>(a, c);
      },
      py::arg("array"), py::arg("limit"), "array = clip(array, -limit, limit), in place.");
  m.def(
      "attention_forward",
      [](const py::object& q, const py::object& k, const py::object& val, const py::object& len,
         const py::object& v) {
        return is_f64(q, "query") ? attention_forward_impl<double>(q, k, val, len, v)
                                  : attention_forward_impl<float>(q, k, val, len, v);
      },
      py::arg("query"), py::arg("keys"), py::arg("values"), py::arg("lengths"), py::arg("v"),
      "(context (Tq, B, Dv), weights (Tq, B, Tk)): masked-softmax attention, dot score (v None) "
      "or additive.");
  m.def(
      "attention_backward",
      [](const py::object& q, const py::object& k, const py::object& val, const py::object& len,
         const py::object& w, const py::object& dc, const py::object& v) {
        return is_f64(q, "query") ? attention_backward_impl<double>(q, k, val, len, w, dc, v)
                                  : attention_backward_impl<float>(q, k, val, len, w, dc, v);
      },
      py::arg("query"), py::arg("keys"), py::arg("values"), py::arg("lengths"), py::arg("weights"),
      py::arg("dcontext"), py::arg("v"),
      "(dquery, dkeys, dvalues, dv or None) of attention_forward.");
}

}  // namespace fastrnn::py_bind
