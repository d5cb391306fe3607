// Bindings of the recurrent kernels: forward, backward, workspace_size.
//
// Every array argument is checked here (type, dtype, C order, alignment, shape, writeability)
// and a clear TypeError/ValueError names it; nothing is converted or copied silently (the Python
// layer makes arrays contiguous and of the right dtype, explicitly). Outputs are allocated while
// the GIL is held, then the GIL is released for the math: safe because from then on the C++ code
// touches only raw buffers whose owners (the py::array objects below) stay alive on this stack
// frame, and creates no Python object.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cstdint>
#include <new>
#include <optional>
#include <sstream>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "checks.hpp"
#include "fastrnn/fastrnn.hpp"
#include "register.hpp"

namespace py = pybind11;

namespace fastrnn::py_bind {
namespace {

/// A 1-D array of n scalars whose memory comes from the kernels' block cache (alloc_block) and
/// goes back to it when the array dies. For the training workspace: tens of MB per call, above the
/// C library's mmap threshold, so a fresh NumPy array page-faults (and the kernel zeroes) all of it
/// on every forward; a forward after a backward of the same sizes gets the same block back.
template <class S>
py::array cached_array(index_t n) {
  struct Block {
    void* p;
    size_t bytes;
  };
  size_t got = 0;
  void* p = alloc_block(sizeof(S) * static_cast<size_t>(n), got);  // rounded up to 64 bytes there
  auto* blk = new (std::nothrow) Block{p, got};
  if (!blk) {
    free_block(p, got);
    throw std::bad_alloc();
  }
  py::capsule owner(blk, [](void* q) {
    auto* b = static_cast<Block*>(q);
    free_block(b->p, b->bytes);
    delete b;
  });
  return py::array_t<S>({n}, {static_cast<py::ssize_t>(sizeof(S))}, static_cast<S*>(p), owner);
}

std::string param_name(const char* kind, index_t k, index_t D) {
  return std::string(kind) + "_l" + std::to_string(k / D) + (k % D ? "_reverse" : "");
}

/// Sizes from x and the options, checked (fastrnn::check_dims) before any array is sized, and
/// the weight list's length.
Dims dims_of(CellKind cell, const py::array& x, const py::list& weights, index_t num_layers,
             bool bidirectional, index_t proj_size, index_t hidden_size, bool reverse) {
  if (x.ndim() != 3) {
    throw py::value_error("x: expected a 3-D array (T, B, I), got shape " + shape_of(x));
  }
  Dims d;
  d.T = x.shape(0);
  d.B = x.shape(1);
  d.I = x.shape(2);
  d.H = hidden_size;
  d.P = proj_size;
  d.L = num_layers;
  d.D = bidirectional ? 2 : 1;
  d.reverse = reverse;
  check_dims(cell, d);
  if (static_cast<index_t>(py::len(weights)) != d.L * d.D) {
    throw py::value_error("weights: expected " + std::to_string(d.L * d.D) +
                          " (layer, direction) entries, got " + std::to_string(py::len(weights)));
  }
  return d;
}

/// The weights of every (layer, direction): tuples (w_ih, w_hh, b_ih, b_hh, w_hr) or (w_ih, w_hh,
/// b_ih, b_hh, w_hr, cell_params).
template <class S>
struct CheckedWeights {
  std::vector<Opt> keep;  // owners of the buffers
  std::vector<Weights<S>> w;
  bool bias = false;
};

/// A weight matrix packed by pack_int8: a 1-D uint8 array (its sizes are fastrnn::forward's
/// check).
Int8Matrix checked_int8(const py::object& obj, const std::string& name, Opt& keep) {
  if (obj.is_none()) throw py::type_error(name + ": required, got None");
  py::array a = typed_array<std::uint8_t>(obj, name.c_str());
  if (a.ndim() != 1) {
    throw py::value_error(name + ": expected the 1-D uint8 array of pack_int8, got shape " +
                          shape_of(a));
  }
  keep = checked<std::uint8_t>(obj, name.c_str(), {static_cast<index_t>(a.shape(0))});
  return Int8Matrix{static_cast<const std::uint8_t*>(keep->data()),
                    static_cast<index_t>(keep->shape(0))};
}

template <class S>
CheckedWeights<S> checked_weights(CellKind cell, const Dims& d, const py::list& weights,
                                  Compute compute = Compute::Exact) {
  CheckedWeights<S> out;
  const index_t GH = num_gates(cell) * d.H, Hs = d.hs(), NP = cell_params_size(cell, d.H);
  for (index_t k = 0; k < d.L * d.D; ++k) {
    py::object item = weights[static_cast<size_t>(k)];
    if (!py::isinstance<py::tuple>(item) || (py::len(item) != 5 && py::len(item) != 6)) {
      throw py::type_error("weights[" + std::to_string(k) +
                           "]: expected a tuple (w_ih, w_hh, b_ih, b_hh, w_hr[, cell_params])");
    }
    auto t = py::reinterpret_borrow<py::tuple>(item);
    const std::string cp_name = param_name("cell_params", k, d.D);
    py::object cp_obj = py::len(t) == 6 ? py::object(t[5]) : py::object(py::none());
    if (NP == 0 && !cp_obj.is_none()) {
      throw py::value_error(cp_name + ": " + cell_name(cell) + " has no parameters of its own");
    }
    if (NP > 0 && cp_obj.is_none()) {
      throw py::type_error(cp_name + ": required for " + cell_name(cell) + " (" +
                           std::to_string(NP) + " scalars), got None");
    }
    Opt cp = checked<S>(cp_obj, cp_name.c_str(), {NP}, true);
    out.keep.push_back(cp);
    const index_t I = d.input_size(k / d.D);
    if (compute == Compute::Int8) {  // (w_ih, w_hh, w_hr packed; the biases float)
      Opt q_ih, q_hh, q_hr;
      Weights<S> w{};
      w.q_ih = checked_int8(t[0], param_name("weight_ih", k, d.D), q_ih);
      w.q_hh = checked_int8(t[1], param_name("weight_hh", k, d.D), q_hh);
      Opt b_ih = checked<S>(t[2], param_name("bias_ih", k, d.D).c_str(), {GH}, true);
      Opt b_hh = checked<S>(t[3], param_name("bias_hh", k, d.D).c_str(), {GH}, true);
      if (d.P > 0) {
        w.q_hr = checked_int8(t[4], param_name("weight_hr", k, d.D), q_hr);
      } else if (!t[4].is_none()) {
        throw py::value_error(param_name("weight_hr", k, d.D) + ": only with proj_size > 0");
      }
      w.b_ih = ptr<S>(b_ih);
      w.b_hh = ptr<S>(b_hh);
      w.cell_params = ptr<S>(cp);
      if (k == 0) out.bias = bool(b_ih);
      out.w.push_back(w);
      for (Opt* o : {&q_ih, &q_hh, &b_ih, &b_hh, &q_hr}) out.keep.push_back(*o);
      continue;
    }
    Opt w_ih = checked<S>(t[0], param_name("weight_ih", k, d.D).c_str(), {GH, I});
    Opt w_hh = checked<S>(t[1], param_name("weight_hh", k, d.D).c_str(), {GH, Hs});
    Opt b_ih = checked<S>(t[2], param_name("bias_ih", k, d.D).c_str(), {GH}, true);
    Opt b_hh = checked<S>(t[3], param_name("bias_hh", k, d.D).c_str(), {GH}, true);
    // which parameters an entry has (both biases or neither, w_hr exactly with proj_size) is
    // fastrnn::forward's and backward's check; here only the buffers of those given
    Opt w_hr = checked<S>(t[4], param_name("weight_hr", k, d.D).c_str(), {d.P, d.H}, true);
    if (k == 0) out.bias = bool(b_ih);
    Weights<S> w{ptr<S>(w_ih), ptr<S>(w_hh), ptr<S>(b_ih), ptr<S>(b_hh), ptr<S>(w_hr)};
    w.cell_params = ptr<S>(cp);
    out.w.push_back(w);
    for (Opt* o : {&w_ih, &w_hh, &b_ih, &b_hh, &w_hr}) out.keep.push_back(*o);
  }
  return out;
}

/// lengths: None, or a (B,) int64 buffer (its values in [0, T]: fastrnn::forward's check)
Opt checked_lengths(const py::object& lengths, const Dims& d) {
  if (lengths.is_none()) return std::nullopt;
  if (!py::isinstance<py::array>(lengths)) {
    throw py::type_error("lengths: expected a numpy.ndarray of int64");
  }
  auto a = py::reinterpret_borrow<py::array>(lengths);
  if (!a.dtype().equal(py::dtype::of<std::int64_t>())) {
    throw py::type_error("lengths: expected dtype int64, got " + std::string(py::str(a.dtype())));
  }
  if (a.ndim() != 1 || a.shape(0) != d.B) {
    throw py::value_error("lengths: expected shape (" + std::to_string(d.B) + ",), got " +
                          shape_of(a));
  }
  if (!(a.flags() & py::array::c_style) ||
      reinterpret_cast<std::uintptr_t>(a.data()) % alignof(std::int64_t) != 0) {
    throw py::value_error("lengths: must be C-contiguous and aligned");
  }
  return a;
}

/// Zoneout multipliers (L*D, T, B, Hs) and (L*D, T, B, H), or None (the core checks that the
/// cell has a zoneout of c: has_zoneout_cell).
std::pair<Opt, Opt> checked_zoneout_impl(const Dims& d, const py::object& zh, const py::object& zc,
                                         bool is_float) {
  const index_t LD = d.L * d.D;
  auto one = [&](const py::object& o, const char* name, index_t W) -> Opt {
    if (o.is_none()) return std::nullopt;
    return is_float ? checked<float>(o, name, {LD, d.T, d.B, W}, true)
                    : checked<double>(o, name, {LD, d.T, d.B, W}, true);
  };
  return {one(zh, "zoneout_h", d.hs()), one(zc, "zoneout_c", d.H)};
}

template <class S>
std::pair<Opt, Opt> checked_zoneout(const Dims& d, const py::object& zh, const py::object& zc) {
  return checked_zoneout_impl(d, zh, zc, std::is_same_v<S, float>);
}

/// The fields ForwardArgs and BackwardArgs share: weights, x, lengths, workspace.
template <class Args, class S>
void set_shared(Args& a, const CheckedWeights<S>& cw, const Opt& x, const Opt& len, Opt& ws) {
  a.weights = cw.w.data();
  a.x = ptr<S>(x);
  a.lengths = len ? static_cast<const index_t*>(len->data()) : nullptr;
  a.workspace = mut_ptr<S>(ws);
}

template <class S>
py::tuple forward_impl(CellKind cell, const py::array& x_in, const py::list& weights,
                       const py::object& h0, const py::object& c0, const py::object& lengths,
                       const py::object& dropout, index_t num_layers, bool bidirectional,
                       index_t proj_size, index_t hidden_size, bool training, Compute compute,
                       bool reverse, const CellOptions& options, const py::object& zoneout_h,
                       const py::object& zoneout_c) {
  const Dims d =
      dims_of(cell, x_in, weights, num_layers, bidirectional, proj_size, hidden_size, reverse);
  const index_t LD = d.L * d.D, Hs = d.hs();
  Opt x = checked<S>(x_in, "x", {d.T, d.B, d.I});
  if (compute == Compute::Int8 && !std::is_same_v<S, float>) {
    throw py::type_error("x: int8 products need float32 arrays, got float64");
  }
  if (compute == Compute::Int8 && training) {
    throw py::value_error("training: int8 products are for inference (training=False)");
  }
  CheckedWeights<S> cw = checked_weights<S>(cell, d, weights, compute);
  Opt h0a = checked<S>(h0, "h0", {LD, d.B, Hs}, true);
  const bool lstm = has_cell_state(cell);
  Opt c0a;
  if (lstm) {
    c0a = checked<S>(c0, "c0", {LD, d.B, d.H}, true);
  } else if (!c0.is_none()) {
    throw py::value_error(std::string("c0: only an LSTM has a cell state, not ") + cell_name(cell));
  }
  Opt len = checked_lengths(lengths, d);
  Opt drop;
  if (!dropout.is_none()) {
    if (d.L < 2) throw py::value_error("dropout: masks apply between layers; num_layers is 1");
    drop = checked<S>(dropout, "dropout", {d.L - 1, d.T, d.B, d.D * Hs});
  }

  // y from the block cache: a call after one whose y is gone gets its memory back, mapped
  // (a fresh array of megabytes page-faults on every call); the kernels write all of it
  const index_t ny = d.T * d.B * d.D * Hs;
  Opt y = ny == 0 ? py::array_t<S>({d.T, d.B, d.D * Hs})
                  : py::reinterpret_steal<py::array>(
                        cached_array<S>(ny).attr("reshape")(d.T, d.B, d.D * Hs).release());
  Opt h_n = py::array_t<S>({LD, d.B, Hs});
  Opt c_n, ws;
  if (lstm) c_n = py::array_t<S>({LD, d.B, d.H});
  if (training) ws = cached_array<S>(workspace_size<S>(cell, d));

  ForwardArgs<S> a;
  set_shared(a, cw, x, len, ws);
  a.h0 = ptr<S>(h0a);
  a.c0 = ptr<S>(c0a);
  a.dropout = ptr<S>(drop);
  a.y = mut_ptr<S>(y);
  a.h_n = mut_ptr<S>(h_n);
  a.c_n = mut_ptr<S>(c_n);
  a.compute = compute;
  a.options = options;
  const auto [zh, zc] = checked_zoneout<S>(d, zoneout_h, zoneout_c);
  a.zoneout_h = ptr<S>(zh);
  a.zoneout_c = ptr<S>(zc);
  run_released([&] { forward<S>(cell, d, a); });
  return py::make_tuple(*y, *h_n, or_none(c_n), or_none(ws));
}

template <class S>
py::tuple backward_impl(CellKind cell, const py::array& x_in, const py::list& weights,
                        const py::object& lengths, const py::object& workspace,
                        const py::object& dy, const py::object& dh_n, const py::object& dc_n,
                        index_t num_layers, bool bidirectional, index_t proj_size,
                        index_t hidden_size, bool need_dx, Compute compute, bool reverse,
                        const CellOptions& options, const py::object& zoneout_h,
                        const py::object& zoneout_c) {
  const Dims d =
      dims_of(cell, x_in, weights, num_layers, bidirectional, proj_size, hidden_size, reverse);
  const index_t LD = d.L * d.D, Hs = d.hs(), GH = num_gates(cell) * d.H;
  const index_t NP = cell_params_size(cell, d.H);
  Opt x = checked<S>(x_in, "x", {d.T, d.B, d.I});
  CheckedWeights<S> cw = checked_weights<S>(cell, d, weights);
  Opt len = checked_lengths(lengths, d);
  Opt ws = checked<S>(workspace, "workspace", {workspace_size<S>(cell, d)}, false, true);
  Opt dya = checked<S>(dy, "dy", {d.T, d.B, d.D * Hs}, true);
  Opt dhn = checked<S>(dh_n, "dh_n", {LD, d.B, Hs}, true);
  const bool lstm = has_cell_state(cell);
  Opt dcn;
  if (lstm) {
    dcn = checked<S>(dc_n, "dc_n", {LD, d.B, d.H}, true);
  } else if (!dc_n.is_none()) {
    throw py::value_error(std::string("dc_n: only an LSTM has a cell state, not ") +
                          cell_name(cell));
  }

  Opt dx;
  if (need_dx) dx = py::array_t<S>({d.T, d.B, d.I});
  Opt dh0 = py::array_t<S>({LD, d.B, Hs});
  Opt dc0;
  if (lstm) dc0 = py::array_t<S>({LD, d.B, d.H});
  std::vector<Opt> keep;
  std::vector<WeightGrads<S>> grads;
  for (index_t k = 0; k < LD; ++k) {
    Opt gw_ih = py::array_t<S>({GH, d.input_size(k / d.D)});
    Opt gw_hh = py::array_t<S>({GH, Hs});
    Opt gb_ih, gb_hh, gw_hr, gcp;
    if (cw.bias) {
      gb_ih = py::array_t<S>(GH);
      gb_hh = py::array_t<S>(GH);
    }
    if (d.P > 0) gw_hr = py::array_t<S>({d.P, d.H});
    if (NP > 0) gcp = py::array_t<S>(NP);
    WeightGrads<S> wg{mut_ptr<S>(gw_ih), mut_ptr<S>(gw_hh), mut_ptr<S>(gb_ih), mut_ptr<S>(gb_hh),
                      mut_ptr<S>(gw_hr)};
    wg.d_cell_params = mut_ptr<S>(gcp);
    grads.push_back(wg);
    for (Opt* o : {&gw_ih, &gw_hh, &gb_ih, &gb_hh, &gw_hr, &gcp}) keep.push_back(*o);
  }

  BackwardArgs<S> a;
  set_shared(a, cw, x, len, ws);
  a.dy = ptr<S>(dya);
  a.dh_n = ptr<S>(dhn);
  a.dc_n = ptr<S>(dcn);
  a.dx = mut_ptr<S>(dx);
  a.dh0 = mut_ptr<S>(dh0);
  a.dc0 = mut_ptr<S>(dc0);
  a.grads = grads.data();
  a.compute = compute;
  a.options = options;
  const auto [zh, zc] = checked_zoneout<S>(d, zoneout_h, zoneout_c);
  a.zoneout_h = ptr<S>(zh);
  a.zoneout_c = ptr<S>(zc);
  run_released([&] { backward<S>(cell, d, a); });
  py::list g;
  for (index_t k = 0; k < LD; ++k) {  // 6-tuples for a cell with its own parameters
    const size_t o = static_cast<size_t>(6 * k);
    py::tuple e = py::make_tuple(*keep[o], *keep[o + 1], or_none(keep[o + 2]), or_none(keep[o + 3]),
                                 or_none(keep[o + 4]));
    g.append(NP > 0 ? py::tuple(e + py::make_tuple(*keep[o + 5])) : e);
  }
  return py::make_tuple(or_none(dx), *dh0, or_none(dc0), g);
}

/// The scalar type of a call is the dtype of x; every other array must match it.
template <class F>
auto on_dtype(const py::object& x, F&& f) {
  if (!py::isinstance<py::array>(x)) {
    throw py::type_error("x: expected a numpy.ndarray, got " +
                         std::string(py::str(py::type::of(x).attr("__name__"))));
  }
  auto a = py::reinterpret_borrow<py::array>(x);
  if (a.dtype().equal(py::dtype::of<float>())) return f(float{}, a);
  if (a.dtype().equal(py::dtype::of<double>())) return f(double{}, a);
  throw py::type_error("x: expected dtype float32 or float64, got " +
                       std::string(py::str(a.dtype())));
}

}  // namespace

void register_rnn(py::module_& m) {
  py::enum_<CellKind>(m, "Cell", "The recurrent cells of the kernels.")
      .value("rnn_tanh", CellKind::RnnTanh)
      .value("rnn_relu", CellKind::RnnRelu)
      .value("lstm", CellKind::Lstm)
      .value("gru", CellKind::Gru)
      .value("gru_reset_before", CellKind::GruResetBefore)
      .value("lstm_peephole", CellKind::LstmPeephole)
      .value("lnlstm", CellKind::LayerNormLstm)
      .value("lngru", CellKind::LayerNormGru);
  py::enum_<Compute>(m, "Compute",
                     "The precision of the matrix products (fastrnn.hpp's Compute): exact (the "
                     "arrays' dtype) or bfloat16 (float32 arrays only).")
      .value("exact", Compute::Exact)
      .value("bfloat16", Compute::Bf16)
      .value("int8", Compute::Int8);

  m.def(
      "pack_int8",
      [](const py::object& q_in, const py::object& scale_in, index_t gates) {
        const py::array q = typed_array<std::int8_t>(q_in, "q");
        if (q.ndim() != 2) {
          throw py::value_error("q: expected a 2-D int8 array (m, k), got shape " + shape_of(q));
        }
        const index_t m = q.shape(0), k = q.shape(1);
        Opt q2 = checked<std::int8_t>(q_in, "q", {m, k});
        Opt s = checked<float>(scale_in, "scale", {m});
        if (gates < 1 || m % gates != 0) {
          throw py::value_error("gates: must divide the rows of q (" + std::to_string(m) +
                                "), got " + std::to_string(gates));
        }
        py::array_t<std::uint8_t> out(int8_packed_bytes(m, k, gates));
        const auto* qp = ptr<std::int8_t>(q2);
        const auto* sp = ptr<float>(s);
        std::uint8_t* op = out.mutable_data();
        run_released([&] { pack_int8(qp, sp, m, k, gates, op); });
        return out;
      },
      py::arg("q"), py::arg("scale"), py::arg("gates") = 1,
      "Packs an int8 weight matrix q (m, k) in [-127, 127] with float32 scales (m,) for the int8 "
      "products (Compute.int8) -> 1-D uint8 array; m a multiple of gates (the stacked gate "
      "blocks).");

  m.def("num_gates", &num_gates, py::arg("cell"), "Number of stacked gate blocks G of a cell.");
  m.def("cell_params_size", &cell_params_size, py::arg("cell"), py::arg("H"),
        "Scalars of a cell's own parameters per layer and direction (0: none; lstm_peephole: "
        "3H, the peepholes p_i, p_f, p_o; lnlstm 10H; lngru 6H).");
  m.def("has_zoneout_cell", &has_zoneout_cell, py::arg("cell"),
        "Whether the cell's state c may be zoned out (zoneout_c): lstm and lnlstm.");

  m.def(
      "workspace_size",
      [](CellKind cell, index_t T, index_t B, index_t I, index_t H, const py::object& dtype,
         index_t num_layers, bool bidirectional, index_t proj_size, bool reverse) {
        const py::dtype dt = py::dtype::from_args(dtype);
        const Dims d{T, B, I, H, proj_size, num_layers, bidirectional ? 2 : 1, reverse};
        if (dt.equal(py::dtype::of<float>())) return workspace_size<float>(cell, d);
        if (dt.equal(py::dtype::of<double>())) return workspace_size<double>(cell, d);
        throw py::type_error("dtype: expected float32 or float64");
      },
      py::arg("cell"), py::arg("T"), py::arg("B"), py::arg("I"), py::arg("H"), py::arg("dtype"),
      py::arg("num_layers") = 1, py::arg("bidirectional") = false, py::arg("proj_size") = 0,
      py::arg("reverse") = false, "Number of scalars of the training workspace.");

  m.def(
      "forward",
      [](CellKind cell, const py::object& x, const py::list& weights, const py::object& h0,
         const py::object& c0, const py::object& lengths, const py::object& dropout,
         index_t num_layers, bool bidirectional, index_t proj_size, index_t hidden_size,
         bool training, Compute compute, bool reverse, double clip, bool input_forget,
         const py::object& zoneout_h, const py::object& zoneout_c) {
        const CellOptions o{clip, input_forget};
        return on_dtype(x, [&](auto s, const py::array& xa) {
          using S = decltype(s);
          return forward_impl<S>(cell, xa, weights, h0, c0, lengths, dropout, num_layers,
                                 bidirectional, proj_size, hidden_size, training, compute, reverse,
                                 o, zoneout_h, zoneout_c);
        });
      },
      py::arg("cell"), py::arg("x"), py::arg("weights"), py::arg("h0").none(true),
      py::arg("c0").none(true), py::arg("lengths").none(true), py::arg("dropout").none(true),
      py::arg("num_layers"), py::arg("bidirectional"), py::arg("proj_size"), py::arg("hidden_size"),
      py::arg("training"), py::arg("compute") = Compute::Exact, py::arg("reverse") = false,
      py::arg("clip") = 0.0, py::arg("input_forget") = false,
      py::arg("zoneout_h").none(true) = py::none(), py::arg("zoneout_c").none(true) = py::none(),
      "Forward through all layers and directions -> (y, h_n, c_n or None, workspace or None). "
      "reverse: the one direction runs from the last step to the first; clip (> 0) clamps every "
      "pre-activation to [-clip, clip]; input_forget (LSTM cells): f = 1 - i.");

  m.def(
      "backward",
      [](CellKind cell, const py::object& x, const py::list& weights, const py::object& lengths,
         const py::object& workspace, const py::object& dy, const py::object& dh_n,
         const py::object& dc_n, index_t num_layers, bool bidirectional, index_t proj_size,
         index_t hidden_size, bool need_dx, Compute compute, bool reverse, double clip,
         bool input_forget, const py::object& zoneout_h, const py::object& zoneout_c) {
        const CellOptions o{clip, input_forget};
        return on_dtype(x, [&](auto s, const py::array& xa) {
          using S = decltype(s);
          return backward_impl<S>(cell, xa, weights, lengths, workspace, dy, dh_n, dc_n, num_layers,
                                  bidirectional, proj_size, hidden_size, need_dx, compute, reverse,
                                  o, zoneout_h, zoneout_c);
        });
      },
      py::arg("cell"), py::arg("x"), py::arg("weights"), py::arg("lengths").none(true),
      py::arg("workspace"), py::arg("dy").none(true), py::arg("dh_n").none(true),
      py::arg("dc_n").none(true), py::arg("num_layers"), py::arg("bidirectional"),
      py::arg("proj_size"), py::arg("hidden_size"), py::arg("need_dx") = true,
      py::arg("compute") = Compute::Exact, py::arg("reverse") = false, py::arg("clip") = 0.0,
      py::arg("input_forget") = false, py::arg("zoneout_h").none(true) = py::none(),
      py::arg("zoneout_c").none(true) = py::none(),
      "BPTT, consuming the workspace -> (dx or None, dh0, dc0 or None, [(dw_ih, dw_hh, db_ih, "
      "db_hh, dw_hr[, d_cell_params]) per layer and direction]); need_dx=False skips the input "
      "gradient; reverse, clip and input_forget must be the forward's.");

  m.def("set_num_threads", &set_num_threads, py::arg("n"),
        "Sets the threads fastrnn's kernels use (independent of NumPy's or PyTorch's).");
  m.def("get_num_threads", &num_threads, "The threads fastrnn's kernels use.");
  m.attr("MAX_THREADS") = kMaxThreads;
  m.def("available_cpus", &available_cpus,
        "The CPUs this process may use: its affinity mask and its cgroups' CPU quota.");
  // private, for tests of the cgroup reading on made-up trees
  m.def(
      "_cgroup_cpu_limit",
      [](const std::string& root, const std::string& proc_self_cgroup,
         const std::string& mountinfo) {
        return cgroup_cpu_limit(root, proc_self_cgroup, mountinfo);
      },
      py::arg("root"), py::arg("proc_self_cgroup"), py::arg("mountinfo"),
      "The cgroup CPU limit read under `root` given the contents of /proc/self/cgroup and "
      "/proc/self/mountinfo; 0 = no limit.");

  m.def("build_info", []() {
    const BuildInfo b = build_info();
    py::dict d;
    d["eigen"] = b.eigen_version;
    d["simd"] = b.simd;
    d["isa"] = b.isa;
    d["isa_available"] = isa_available();
    d["isa_compiled"] = isa_compiled();
    return d;
  });
}

}  // namespace fastrnn::py_bind
