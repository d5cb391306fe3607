// Bindings of the recurrent kernels: forward, backward, workspace_size.
//
// Every array argument is checked here (type, dtype, C order, alignment, shape, writeability)
// and a clear TypeError/ValueError names it; nothing is converted or copied silently (the Python layer makes
// arrays contiguous and of the right dtype, explicitly). Outputs are allocated while the GIL is
// held, then the GIL is released for the math: safe because from then on the C++ code touches
// only raw buffers whose owners (the py::array objects below) stay alive on this stack frame, and
// creates no Python object.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "fastrnn/fastrnn.hpp"
#include "register.hpp"

namespace py = pybind11;

namespace fastrnn::py_bind {
namespace {

std::string shape_str(const std::vector<index_t>& s) {
  std::ostringstream os;
  os << "(";
  for (size_t k = 0; k < s.size(); ++k) os << (k ? ", " : "") << s[k];
  os << (s.size() == 1 ? ",)" : ")");
  return os.str();
}

std::string shape_of(const py::array& a) {
  std::vector<index_t> s(a.shape(), a.shape() + a.ndim());
  return shape_str(s);
}

/// An array argument that may be absent (None). Note that a default-constructed py::array is
/// an empty array, not "no array": absence must be explicit.
using Opt = std::optional<py::array>;

/// The array behind `obj`, checked against the expected dtype and shape, or nullopt when
/// `obj` is None and the argument is optional.
template <class S>
Opt checked(const py::object& obj, const char* name, const std::vector<index_t>& shape,
            bool optional = false, bool writeable = false) {
  if (obj.is_none()) {
    if (optional) return std::nullopt;
    throw py::type_error(std::string(name) + ": required, got None");
  }
  if (!py::isinstance<py::array>(obj)) {
    throw py::type_error(std::string(name) + ": expected a numpy.ndarray, got " +
                         std::string(py::str(py::type::of(obj).attr("__name__"))));
  }
  auto a = py::reinterpret_borrow<py::array>(obj);
  if (!a.dtype().equal(py::dtype::of<S>())) {
    throw py::type_error(std::string(name) + ": expected dtype " +
                         std::string(py::str(py::dtype::of<S>())) + ", got " +
                         std::string(py::str(a.dtype())));
  }
  bool ok = a.ndim() == static_cast<py::ssize_t>(shape.size());
  for (size_t k = 0; ok && k < shape.size(); ++k) ok = a.shape(k) == shape[k];
  if (!ok) {
    throw py::value_error(std::string(name) + ": expected shape " + shape_str(shape) + ", got " +
                          shape_of(a));
  }
  if (!(a.flags() & py::array::c_style)) {
    throw py::value_error(std::string(name) + ": must be C-contiguous");
  }
  if (reinterpret_cast<std::uintptr_t>(a.data()) % alignof(S) != 0) {
    throw py::value_error(std::string(name) + ": must be aligned to its dtype");
  }
  if (writeable && !a.writeable()) {
    throw py::value_error(std::string(name) + ": must be writeable");
  }
  return a;
}

template <class S>
const S* ptr(const Opt& a) {
  return a ? static_cast<const S*>(a->data()) : nullptr;
}
template <class S>
S* mut_ptr(Opt& a) {
  return a ? static_cast<S*>(a->mutable_data()) : nullptr;
}
py::object or_none(const Opt& a) { return a ? py::object(*a) : py::object(py::none()); }


struct Sizes {
  Dims d;
  index_t GH;
};

template <class S>
Sizes sizes_of(CellKind cell, const py::array& x, const py::object& weight_hh) {
  if (x.ndim() != 3) {
    throw py::value_error("x: expected a 3-D array (T, B, I), got shape " + shape_of(x));
  }
  if (!py::isinstance<py::array>(weight_hh)) {
    throw py::type_error("weight_hh: expected a numpy.ndarray");
  }
  auto w = py::reinterpret_borrow<py::array>(weight_hh);
  if (w.ndim() != 2) {
    throw py::value_error("weight_hh: expected a 2-D array (G*H, H), got shape " + shape_of(w));
  }
  Sizes s;
  s.d.T = x.shape(0);
  s.d.B = x.shape(1);
  s.d.I = x.shape(2);
  s.d.H = w.shape(1);
  if (s.d.I < 1) throw py::value_error("x: the input size (last axis) must be >= 1");
  if (s.d.H < 1) throw py::value_error("weight_hh: the hidden size (axis 1) must be >= 1");
  s.GH = num_gates(cell) * s.d.H;
  return s;
}

template <class S>
py::tuple forward_impl(CellKind cell, const py::array& x_in, const py::object& weight_ih,
                       const py::object& weight_hh, const py::object& bias_ih,
                       const py::object& bias_hh, const py::object& h0, const py::object& c0,
                       bool training) {
  const Sizes z = sizes_of<S>(cell, x_in, weight_hh);
  const Dims& d = z.d;
  Opt x = checked<S>(x_in, "x", {d.T, d.B, d.I});
  Opt w_ih = checked<S>(weight_ih, "weight_ih", {z.GH, d.I});
  Opt w_hh = checked<S>(weight_hh, "weight_hh", {z.GH, d.H});
  Opt b_ih = checked<S>(bias_ih, "bias_ih", {z.GH}, true);
  Opt b_hh = checked<S>(bias_hh, "bias_hh", {z.GH}, true);
  if (bool(b_ih) != bool(b_hh)) throw py::value_error("bias_ih, bias_hh: give both or neither");
  Opt h0a = checked<S>(h0, "h0", {d.B, d.H}, true);
  const bool lstm = has_cell_state(cell);
  Opt c0a;
  if (lstm) {
    c0a = checked<S>(c0, "c0", {d.B, d.H}, true);
  } else if (!c0.is_none()) {
    throw py::value_error(std::string("c0: only an LSTM has a cell state, not ") +
                          cell_name(cell));
  }

  Opt y = py::array_t<S>({d.T, d.B, d.H});
  Opt h_n = py::array_t<S>({d.B, d.H});
  Opt c_n, ws;
  if (lstm) c_n = py::array_t<S>({d.B, d.H});
  if (training) ws = py::array_t<S>(workspace_size<S>(cell, d));

  Weights<S> w{ptr<S>(w_ih), ptr<S>(w_hh), ptr<S>(b_ih), ptr<S>(b_hh)};
  ForwardArgs<S> a;
  a.x = ptr<S>(x);
  a.h0 = ptr<S>(h0a);
  a.c0 = ptr<S>(c0a);
  a.y = mut_ptr<S>(y);
  a.h_n = mut_ptr<S>(h_n);
  a.c_n = mut_ptr<S>(c_n);
  a.workspace = mut_ptr<S>(ws);
  {
    py::gil_scoped_release release;  // raw buffers only from here, see the file comment
    forward<S>(cell, d, w, a);
  }
  return py::make_tuple(*y, *h_n, or_none(c_n), or_none(ws));
}

template <class S>
py::tuple backward_impl(CellKind cell, const py::array& x_in, const py::object& weight_ih,
                        const py::object& weight_hh, const py::object& bias_ih,
                        const py::object& bias_hh, const py::object& workspace,
                        const py::object& dy, const py::object& dh_n, const py::object& dc_n) {
  const Sizes z = sizes_of<S>(cell, x_in, weight_hh);
  const Dims& d = z.d;
  Opt x = checked<S>(x_in, "x", {d.T, d.B, d.I});
  Opt w_ih = checked<S>(weight_ih, "weight_ih", {z.GH, d.I});
  Opt w_hh = checked<S>(weight_hh, "weight_hh", {z.GH, d.H});
  Opt b_ih = checked<S>(bias_ih, "bias_ih", {z.GH}, true);
  Opt b_hh = checked<S>(bias_hh, "bias_hh", {z.GH}, true);
  if (bool(b_ih) != bool(b_hh)) throw py::value_error("bias_ih, bias_hh: give both or neither");
  Opt ws = checked<S>(workspace, "workspace", {workspace_size<S>(cell, d)}, false, true);
  Opt dya = checked<S>(dy, "dy", {d.T, d.B, d.H}, true);
  Opt dhn = checked<S>(dh_n, "dh_n", {d.B, d.H}, true);
  const bool lstm = has_cell_state(cell);
  Opt dcn;
  if (lstm) {
    dcn = checked<S>(dc_n, "dc_n", {d.B, d.H}, true);
  } else if (!dc_n.is_none()) {
    throw py::value_error(std::string("dc_n: only an LSTM has a cell state, not ") +
                          cell_name(cell));
  }

  Opt dx = py::array_t<S>({d.T, d.B, d.I});
  Opt dh0 = py::array_t<S>({d.B, d.H});
  Opt dw_ih = py::array_t<S>({z.GH, d.I});
  Opt dw_hh = py::array_t<S>({z.GH, d.H});
  Opt dc0, db_ih, db_hh;
  if (lstm) dc0 = py::array_t<S>({d.B, d.H});
  if (b_ih) {
    db_ih = py::array_t<S>(z.GH);
    db_hh = py::array_t<S>(z.GH);
  }

  Weights<S> w{ptr<S>(w_ih), ptr<S>(w_hh), ptr<S>(b_ih), ptr<S>(b_hh)};
  BackwardArgs<S> a;
  a.x = ptr<S>(x);
  a.workspace = mut_ptr<S>(ws);
  a.dy = ptr<S>(dya);
  a.dh_n = ptr<S>(dhn);
  a.dc_n = ptr<S>(dcn);
  a.dx = mut_ptr<S>(dx);
  a.dh0 = mut_ptr<S>(dh0);
  a.dc0 = mut_ptr<S>(dc0);
  a.dw_ih = mut_ptr<S>(dw_ih);
  a.dw_hh = mut_ptr<S>(dw_hh);
  a.db_ih = mut_ptr<S>(db_ih);
  a.db_hh = mut_ptr<S>(db_hh);
  {
    py::gil_scoped_release release;  // raw buffers only from here, see the file comment
    backward<S>(cell, d, w, a);
  }
  return py::make_tuple(*dx, *dh0, or_none(dc0), *dw_ih, *dw_hh, or_none(db_ih), or_none(db_hh));
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
  throw py::type_error("x: expected dtype float32 or float64, got " + std::string(py::str(a.dtype())));
}

}  // namespace

void register_rnn(py::module_& m) {
  py::enum_<CellKind>(m, "Cell", "The recurrent cells of the kernels.")
      .value("rnn_tanh", CellKind::RnnTanh)
      .value("rnn_relu", CellKind::RnnRelu)
      .value("lstm", CellKind::Lstm)
      .value("gru", CellKind::Gru)
      .value("gru_reset_before", CellKind::GruResetBefore);

  m.def("num_gates", &num_gates, py::arg("cell"), "Number of stacked gate blocks G of a cell.");

  m.def(
      "workspace_size",
      [](CellKind cell, index_t T, index_t B, index_t I, index_t H, const py::object& dtype) {
        const py::dtype dt = py::dtype::from_args(dtype);
        const Dims d{T, B, I, H};
        if (dt.equal(py::dtype::of<float>())) return workspace_size<float>(cell, d);
        if (dt.equal(py::dtype::of<double>())) return workspace_size<double>(cell, d);
        throw py::type_error("dtype: expected float32 or float64");
      },
      py::arg("cell"), py::arg("T"), py::arg("B"), py::arg("I"), py::arg("H"), py::arg("dtype"),
      "Number of scalars of the training workspace.");

  m.def(
      "forward",
      [](CellKind cell, const py::object& x, const py::object& weight_ih,
         const py::object& weight_hh, const py::object& bias_ih, const py::object& bias_hh,
         const py::object& h0, const py::object& c0, bool training) {
        return on_dtype(x, [&](auto s, const py::array& xa) {
          using S = decltype(s);
          return forward_impl<S>(cell, xa, weight_ih, weight_hh, bias_ih, bias_hh, h0, c0,
                                 training);
        });
      },
      py::arg("cell"), py::arg("x"), py::arg("weight_ih"), py::arg("weight_hh"),
      py::arg("bias_ih").none(true), py::arg("bias_hh").none(true), py::arg("h0").none(true),
      py::arg("c0").none(true), py::arg("training"),
      "Forward over all steps -> (y, h_n, c_n or None, workspace or None).");

  m.def(
      "backward",
      [](CellKind cell, const py::object& x, const py::object& weight_ih,
         const py::object& weight_hh, const py::object& bias_ih, const py::object& bias_hh,
         const py::object& workspace, const py::object& dy, const py::object& dh_n,
         const py::object& dc_n) {
        return on_dtype(x, [&](auto s, const py::array& xa) {
          using S = decltype(s);
          return backward_impl<S>(cell, xa, weight_ih, weight_hh, bias_ih, bias_hh, workspace,
                                  dy, dh_n, dc_n);
        });
      },
      py::arg("cell"), py::arg("x"), py::arg("weight_ih"), py::arg("weight_hh"),
      py::arg("bias_ih").none(true), py::arg("bias_hh").none(true), py::arg("workspace"),
      py::arg("dy").none(true), py::arg("dh_n").none(true), py::arg("dc_n").none(true),
      "BPTT, consuming the workspace -> (dx, dh0, dc0 or None, dweight_ih, dweight_hh, "
      "dbias_ih or None, dbias_hh or None).");

  m.def("build_info", []() {
    const BuildInfo b = build_info();
    py::dict d;
    d["eigen"] = b.eigen_version;
    d["simd"] = b.simd;
    d["openmp"] = b.openmp;
    return d;
  });
}

}  // namespace fastrnn::py_bind
