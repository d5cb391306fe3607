// The C++ kernel test: every kernel variant this CPU runs, against a naive reference written here.
//
// No test framework and no Python: one program, linked with the whole core (every variant),
// built with -DFASTRNN_BUILD_TESTS=ON (CMakeLists.txt) and run natively and under qemu
// (tools/cross_aarch64.sh, tools/baseline_x86.sh). For each variant in isa_available():
//   * forward of every cell (the peephole LSTM and the layer-normalised LSTM and GRU with their
//     own parameters, cell_params, among them), float and double, against a naive forward in double
//     (plain loops, straight from the formulas of fastrnn.hpp): with and without biases and
//     initial states, two layers with dropout multipliers, bidirectional, reverse-only
//     (Dims::reverse), LSTM projection, variable lengths (some 0, some < T), T = 0, CellOptions
//     (clip, with some pre-activations clamped; input_forget), zoneout of h (every cell) and of c
//     (has_zoneout_cell), training's 0/1 multipliers and inference's p, and shapes past the SIMD
//     widths and the kernels' blockings (the layer norms' rows of G*H and the LSTM's H with a
//     tail);
//   * backward in double against central finite differences of the loss
//         L = sum(y * Ry) + sum(h_n * Rh) + sum(c_n * Rc)
//     computed with the naive forward (so backward is checked independently of the kernels'
//     forward), and backward in float against backward in double; every gradient, the
//     peepholes' and the layer norms' gains' and bias' d_cell_params too;
//   * inference forward (no workspace) bit-identical to training forward;
//   * a backward with other CellOptions or another direction than its forward's workspace, and
//     invalid options, refused (std::invalid_argument); the layer-normalised cells' projection
//     and CellOptions too;
//   * determinism: bit-identical results for 1 and 2 threads, on a repeated run and with the
//     arrays at other addresses (offsets that break their SIMD alignment);
//   * the ISA API (isa_compiled, isa_available, isa, set_isa) and some train:: kernels;
//   * the thread pool (cpp/fastrnn/pool.hpp): every item of a job runs once, on fewer threads
//     than items, an item's exception reaches the caller once the job's threads stopped, jobs
//     started from an item run serially, and thousands of back-to-back jobs (run it under
//     -fsanitize=thread to check the pool for data races).
// It prints one line per variant with the largest errors seen and exits non-zero on any failure.
// Errors are relative to max(1, max |expected|) over an array; tolerances: forward 1e-10 (double)
// and 1e-4 (float); double backward against the finite differences (4-point central, step 1e-3,
// 1e-5 for ReLU, 1e-4 with clip and for the layer-normalised cells, 1e-6 for their h0 when that
// is zero; ~1e-9 accurate) 1e-7; float backward against double backward 1e-3. The loss has kinks
// (ReLU's at 0, clip's at +-clip): the problems keep their pre-activations away from them
// (make_problem), and a finite difference across one is skipped.
//
// Usage: fastrnn_kernel_test [seed] [variant ...]   (the seed also from FASTRNN_TEST_SEED, fixed by
// default; the variants: all that this CPU runs by default).
// All random data is float-representable, so that the float kernels and the double reference
// see the same inputs, and depends only on the seed (our own generator, no <random>
// distributions, whose algorithms differ between standard libraries).
#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <limits>
#include <map>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "fastrnn/fastrnn.hpp"
#include "fastrnn/pool.hpp"

namespace {

using fastrnn::CellKind;
using fastrnn::Dims;
using fastrnn::index_t;
using Vec = std::vector<double>;

// ------------------------------------------------------------------------------------------------
// Failures, statistics, timing
// ------------------------------------------------------------------------------------------------

int g_failures = 0;

void fail(const std::string& what) {
  ++g_failures;
  if (g_failures <= 200) std::printf("FAIL: %s\n", what.c_str());
  if (g_failures == 200) std::printf("(further failures not printed)\n");
  std::fflush(stdout);
}

/// The largest error seen per category, for the summary line of a variant.
std::map<std::string, double> g_stats;

void note(const std::string& category, double err) {
  double& s = g_stats[category];
  s = std::max(s, std::isnan(err) ? std::numeric_limits<double>::infinity() : err);
}

/// Checks err <= tol (err NaN fails), records err under `category`.
bool check(const std::string& category, const std::string& what, double err, double tol) {
  note(category, err);
  if (err <= tol) return true;
  char buf[96];
  std::snprintf(buf, sizeof buf, ": error %.3e > tolerance %.3e", err, tol);
  fail(what + buf);
  return false;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

/// max |got - want| / max(1, max |want|); NaN or a size mismatch gives infinity.
template <class S, class W>
double rel_err(const std::vector<S>& got, const std::vector<W>& want) {
  if (got.size() != want.size()) return std::numeric_limits<double>::infinity();
  double scale = 1, err = 0;
  for (const W& w : want) scale = std::max(scale, std::fabs(static_cast<double>(w)));
  for (size_t i = 0; i < got.size(); ++i) {
    const double e = std::fabs(static_cast<double>(got[i]) - static_cast<double>(want[i]));
    err = std::max(err, std::isnan(e) ? std::numeric_limits<double>::infinity() : e);
  }
  return err / scale;
}

template <class S>
bool same_bits(const std::vector<S>& a, const std::vector<S>& b) {
  return a.size() == b.size() &&
         (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(S)) == 0);
}

// ------------------------------------------------------------------------------------------------
// Deterministic random numbers (splitmix64), float-representable values
// ------------------------------------------------------------------------------------------------

class Rng {
 public:
  explicit Rng(std::uint64_t seed) : s_(seed) {}
  std::uint64_t next() {
    std::uint64_t z = (s_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }  // [0, 1)
  /// uniform in [lo, hi), rounded to float
  double operator()(double lo, double hi) {
    return static_cast<double>(static_cast<float>(lo + (hi - lo) * uniform()));
  }
  Vec vec(index_t n, double lo, double hi) {
    Vec v(static_cast<size_t>(n));
    for (double& x : v) x = (*this)(lo, hi);
    return v;
  }

 private:
  std::uint64_t s_;
};

// ------------------------------------------------------------------------------------------------
// Problems
// ------------------------------------------------------------------------------------------------

const CellKind kCells[] = {CellKind::RnnTanh,       CellKind::RnnRelu,     CellKind::Lstm,
                           CellKind::LstmPeephole,  CellKind::Gru,         CellKind::GruResetBefore,
                           CellKind::LayerNormLstm, CellKind::LayerNormGru};

/// The layer-normalised cells (LayerNormLstm, LayerNormGru).
bool is_norm(CellKind cell) {
  return cell == CellKind::LayerNormLstm || cell == CellKind::LayerNormGru;
}
/// The cells with PyTorch's LSTM projection (proj_size): the LSTM and the peephole LSTM. The
/// cells with CellOptions: all but the layer-normalised ones (which refuse both:
/// check_norm_refused).
bool has_projection(CellKind cell) {
  return cell == CellKind::Lstm || cell == CellKind::LstmPeephole;
}
bool has_options(CellKind cell) { return !is_norm(cell); }

struct Config {
  std::string name;
  CellKind cell = CellKind::RnnTanh;
  Dims d;
  bool bias = true;
  bool h0 = true;                ///< initial states given (else nullptr: zeros)
  bool dropout = false;          ///< dropout multipliers between layers (L > 1)
  bool dy = true;                ///< the loss has sum(y * Ry) (else backward gets dy = nullptr)
  bool dhn = true;               ///< ... sum(h_n * Rh), sum(c_n * Rc)
  std::vector<index_t> lengths;  ///< empty: none
  fastrnn::CellOptions opt;      ///< clip, input_forget (forward's and backward's)
  double zoneout_h = 0;          ///< zoneout probability of h (0: no multipliers)
  double zoneout_c = 0;          ///< ... of c (has_zoneout_cell)
  bool zoneout_eval = false;     ///< inference's multipliers, p itself (else 0/1 draws)
  bool fd = true;                ///< check backward by finite differences
  index_t fd_cap = 0;            ///< at most this many entries per array (0: all)
};

enum Param { kWih = 0, kWhh, kBih, kBhh, kWhr, kCellParams, kParams };

struct Problem {
  Config c;
  std::vector<std::vector<Vec>> w;  ///< [l*D + d][Param]
  Vec x, h0, c0, drop, ry, rh, rc;  ///< h0, c0 zeros when not given (c0 LSTM only)
  Vec zh, zc;                       ///< zoneout (L*D, T, B, Hs), (L*D, T, B, H); empty: none
  std::vector<index_t> lens;        ///< effective lengths (all T without lengths)
  // finite-difference gradients, computed once (slot order, see slots()); NaN: not checked
  std::vector<Vec> fd;
  std::vector<std::vector<size_t>> fd_idx;
  index_t fd_skipped = 0;
  index_t clipped = 0, clamped = 0;  ///< pre-activations the reference clipped, clamped of them

  bool lstm() const { return fastrnn::has_cell_state(c.cell); }  ///< an LSTM cell (c)
  bool ln() const { return is_norm(c.cell); }  ///< a layer-normalised cell (LSTM or GRU)
  bool lnlstm() const { return c.cell == CellKind::LayerNormLstm; }  ///< the layer-normalised LSTM
  /// the cell's own parameters per layer and direction (LstmPeephole: 3H; LayerNormLstm: 10H;
  /// LayerNormGru: 6H)
  index_t cell_params() const { return fastrnn::cell_params_size(c.cell, c.d.H); }
  index_t G() const { return fastrnn::num_gates(c.cell); }
  index_t LD() const { return c.d.L * c.d.D; }
};

std::string dims_name(const Config& c) {
  const Dims& d = c.d;
  std::string s = std::string(fastrnn::cell_name(c.cell)) + "/" + c.name + " (T" +
                  std::to_string(d.T) + " B" + std::to_string(d.B) + " I" + std::to_string(d.I) +
                  " H" + std::to_string(d.H);
  if (d.P) s += " P" + std::to_string(d.P);
  if (d.L > 1) s += " L" + std::to_string(d.L);
  if (d.D > 1) s += " D" + std::to_string(d.D);
  if (d.reverse) s += " reverse";
  if (c.opt.clip > 0) {
    char buf[32];
    std::snprintf(buf, sizeof buf, " clip %g", c.opt.clip);
    s += buf;
  }
  if (c.opt.input_forget) s += " input_forget";
  if (c.zoneout_h > 0 || c.zoneout_c > 0) {
    char buf[64];
    std::snprintf(buf, sizeof buf, " zoneout %g/%g%s", c.zoneout_h, c.zoneout_c,
                  c.zoneout_eval ? " eval" : "");
    s += buf;
  }
  return s + ")";
}

Problem make_problem_once(const Config& c, std::uint64_t seed) {
  Rng r(seed);
  Problem p;
  p.c = c;
  const Dims& d = c.d;
  const index_t G = p.G(), GH = G * d.H, Hs = d.hs(), LD = p.LD();
  const double k = 1.5 / std::sqrt(static_cast<double>(d.H));  // PyTorch's init range, wider
  p.w.resize(static_cast<size_t>(LD));
  for (index_t l = 0; l < d.L; ++l) {
    for (index_t dir = 0; dir < d.D; ++dir) {
      std::vector<Vec>& w = p.w[static_cast<size_t>(l * d.D + dir)];
      w.resize(kParams);
      w[kWih] = r.vec(GH * d.input_size(l), -k, k);
      w[kWhh] = r.vec(GH * Hs, -k, k);
      if (c.bias) {
        w[kBih] = r.vec(GH, -k, k);
        w[kBhh] = r.vec(GH, -k, k);
      }
      if (d.P > 0) w[kWhr] = r.vec(d.P * d.H, -k, k);
      if (p.ln()) {  // the gains g_ih, g_hh (GH each) and the LSTM's g_c (H) around 1, b_c near 0
        w[kCellParams] = r.vec(2 * GH + (p.lnlstm() ? d.H : 0), 0.5, 1.5);
        if (p.lnlstm()) {
          const Vec bc = r.vec(d.H, -0.5, 0.5);
          w[kCellParams].insert(w[kCellParams].end(), bc.begin(), bc.end());
        }
      } else if (p.cell_params() > 0) {  // the peepholes
        w[kCellParams] = r.vec(p.cell_params(), -1, 1);
      }
    }
  }
  p.x = r.vec(d.T * d.B * d.I, -1, 1);
  p.h0 = c.h0 ? r.vec(LD * d.B * Hs, -0.8, 0.8) : Vec(static_cast<size_t>(LD * d.B * Hs), 0.0);
  if (p.lstm()) {
    p.c0 = c.h0 ? r.vec(LD * d.B * d.H, -1, 1) : Vec(static_cast<size_t>(LD * d.B * d.H), 0.0);
  }
  if (c.dropout && d.L > 1) {
    p.drop.resize(static_cast<size_t>((d.L - 1) * d.T * d.B * d.D * Hs));
    for (double& m : p.drop) m = r.uniform() < 0.2 ? 0.0 : 1.25;  // p = 0.2: 0 or 1/(1-p)
  }
  // zoneout: 1 (keep the previous state) with probability p in training, p itself in inference
  auto zoneout = [&](double prob, index_t W) {
    Vec m(static_cast<size_t>(LD * d.T * d.B * W), prob);
    if (!c.zoneout_eval) {
      for (double& v : m) v = r.uniform() < prob ? 1.0 : 0.0;
    }
    return m;
  };
  if (c.zoneout_h > 0) p.zh = zoneout(c.zoneout_h, Hs);
  if (c.zoneout_c > 0) p.zc = zoneout(c.zoneout_c, d.H);
  p.ry = r.vec(d.T * d.B * d.D * Hs, -1, 1);
  p.rh = r.vec(LD * d.B * Hs, -1, 1);
  if (p.lstm()) p.rc = r.vec(LD * d.B * d.H, -1, 1);
  p.lens = c.lengths.empty() ? std::vector<index_t>(static_cast<size_t>(d.B), d.T) : c.lengths;
  return p;
}

/// What the reference saw of the pre-activations at a kink of the loss: ReLU's at 0, and with
/// CellOptions::clip those of every clipped pre-activation at +-clip (the derivative is 0 beyond).
struct KinkTrace {
  std::vector<char> sides;  ///< the side of its kink of every pre-activation at one, in order
  double relu_dist = std::numeric_limits<double>::infinity();  ///< the smallest |a| of ReLU's a
  double clip_dist = std::numeric_limits<double>::infinity();  ///< the smallest |a -+ clip|
  index_t clipped = 0, clamped = 0;  ///< pre-activations clipped, those beyond +-clip of them
};

struct RefOut {
  Vec y, hn, cn;
};

RefOut ref_forward(const Problem& p, KinkTrace* kinks = nullptr);

/// A random problem. For ReLU cells, one whose pre-activations all keep away from the kink at 0
/// (by 1e-4); with clip, one whose clipped pre-activations all keep away from +-clip (by 1e-3,
/// 1e-4 for the larger problems without finite differences) and some of which are clamped (5%
/// at least): near a kink the float and double kernels (and the finite differences) may take
/// different sides, and their gradients then differ by O(1), by the problem's construction, not
/// by an error. A clip config that gets no such problem fails (choose another clip).
Problem make_problem(const Config& c, std::uint64_t seed) {
  const bool clip = c.opt.clip > 0;
  for (int attempt = 0;; ++attempt) {
    Problem p = make_problem_once(c, seed + static_cast<std::uint64_t>(attempt) * 7919u);
    if (c.cell != CellKind::RnnRelu && !clip) return p;
    KinkTrace t;
    ref_forward(p, &t);
    p.clipped = t.clipped;
    p.clamped = t.clamped;
    if (t.relu_dist >= 1e-4 && t.clip_dist >= (c.fd ? 1e-3 : 1e-4) && p.clamped * 20 >= p.clipped)
      return p;
    if (attempt == 100) {
      if (clip) {
        char buf[160];
        std::snprintf(buf, sizeof buf,
                      ": no problem in 100 attempts whose pre-activations keep away from +-clip "
                      "(last: %.1e) with 5%% clamped (last: %lld of %lld)",
                      t.clip_dist, static_cast<long long>(p.clamped),
                      static_cast<long long>(p.clipped));
        fail(dims_name(c) + buf);
      }
      return p;
    }
  }
}

// ------------------------------------------------------------------------------------------------
// The naive reference forward, in double
// ------------------------------------------------------------------------------------------------

double sigmoid(double a) { return 1.0 / (1.0 + std::exp(-a)); }

/// The layer norm of a row of n values: (a - mean(a)) / sqrt(var(a) + 1e-5), var biased.
void layer_norm(const double* a, index_t n, double* out) {
  double mean = 0, var = 0;
  for (index_t j = 0; j < n; ++j) mean += a[j];
  mean /= static_cast<double>(n);
  for (index_t j = 0; j < n; ++j) var += (a[j] - mean) * (a[j] - mean);
  var /= static_cast<double>(n);
  const double rstd = 1 / std::sqrt(var + 1e-5);
  for (index_t j = 0; j < n; ++j) out[j] = (a[j] - mean) * rstd;
}

/// Straight from fastrnn.hpp. `kinks` (optional) receives the trace of the pre-activations at a
/// kink (for the finite differences: a kink crossed invalidates them).
RefOut ref_forward(const Problem& p, KinkTrace* kinks) {
  const Config& c = p.c;
  const Dims& d = c.d;
  const index_t T = d.T, B = d.B, H = d.H, Hs = d.hs(), D = d.D, G = p.G(), GH = G * H;
  RefOut o;
  o.hn.assign(static_cast<size_t>(p.LD() * B * Hs), 0.0);
  if (p.lstm()) o.cn.assign(static_cast<size_t>(p.LD() * B * H), 0.0);
  // CellOptions::clip: a pre-activation clamped to [-clip, clip] (ReLU's: its kink at -clip is
  // none, relu is 0 on both sides)
  const double clip = c.opt.clip;
  auto clamp = [&](double a, bool relu = false) {
    if (clip <= 0) return a;
    if (kinks) {
      kinks->sides.push_back(a > clip);
      kinks->clip_dist = std::min(kinks->clip_dist, std::fabs(a - clip));
      if (!relu) {
        kinks->sides.push_back(a < -clip);
        kinks->clip_dist = std::min(kinks->clip_dist, std::fabs(a + clip));
      }
      ++kinks->clipped;
      kinks->clamped += a > clip || (!relu && a < -clip);
    }
    return std::min(clip, std::max(-clip, a));
  };
  Vec in = p.x;
  index_t In = d.I;
  Vec ai(static_cast<size_t>(GH)), ah(static_cast<size_t>(GH)), h(static_cast<size_t>(Hs)),
      cst(static_cast<size_t>(H)), hnew(static_cast<size_t>(Hs)), hc(static_cast<size_t>(H)),
      rh(static_cast<size_t>(H));
  Vec ni(static_cast<size_t>(GH)), nh(static_cast<size_t>(GH)), og(static_cast<size_t>(H)),
      nc(static_cast<size_t>(H));  // the layer-normalised cells' normalised rows, the LSTM's o
  for (index_t l = 0; l < d.L; ++l) {
    Vec out(static_cast<size_t>(T * B * D * Hs), 0.0);
    for (index_t dir = 0; dir < D; ++dir) {
      const index_t k = l * D + dir;
      const std::vector<Vec>& w = p.w[static_cast<size_t>(k)];
      const Vec& wih = w[kWih];
      const Vec& whh = w[kWhh];
      auto bih = [&](index_t j) { return c.bias ? w[kBih][static_cast<size_t>(j)] : 0.0; };
      auto bhh = [&](index_t j) { return c.bias ? w[kBhh][static_cast<size_t>(j)] : 0.0; };
      // the peephole of block q (p_i, p_f, p_o) for unit j; 0 without (plain LSTM)
      auto peep = [&](index_t q, index_t j) {
        return p.cell_params() > 0 ? w[kCellParams][static_cast<size_t>(q * H + j)] : 0.0;
      };
      // the layer-normalised cells' parameters: g_ih (GH), g_hh (GH); the LSTM's g_c (H), b_c (H)
      const double* g_ih = p.ln() ? w[kCellParams].data() : nullptr;
      const double* g_hh = p.ln() ? g_ih + GH : nullptr;
      const double* g_c = p.lnlstm() ? g_hh + GH : nullptr;
      const double* b_c = p.lnlstm() ? g_c + H : nullptr;
      for (index_t b = 0; b < B; ++b) {
        for (index_t j = 0; j < Hs; ++j) h[j] = p.h0[(k * B + b) * Hs + j];
        if (p.lstm()) {
          for (index_t j = 0; j < H; ++j) cst[j] = p.c0[(k * B + b) * H + j];
        }
        const index_t len = p.lens[static_cast<size_t>(b)];
        for (index_t s = 0; s < len; ++s) {
          // the reverse direction (dir 1, or dir 0 of a reverse-only stack) from the last valid
          // step
          const index_t t = dir == 0 && !d.reverse ? s : len - 1 - s;
          const double* xt = in.data() + (t * B + b) * In;
          const Vec cprev = cst;              // (zoneout of c)
          for (index_t j = 0; j < GH; ++j) {  // (the layer norm's products without the biases)
            double a = p.ln() ? 0.0 : bih(j), r = p.ln() ? 0.0 : bhh(j);
            for (index_t m = 0; m < In; ++m) a += wih[j * In + m] * xt[m];
            for (index_t m = 0; m < Hs; ++m) r += whh[j * Hs + m] * h[m];
            ai[j] = a;
            ah[j] = r;
          }
          switch (c.cell) {
            case CellKind::RnnTanh:
              for (index_t j = 0; j < H; ++j) hnew[j] = std::tanh(clamp(ai[j] + ah[j]));
              break;
            case CellKind::RnnRelu:
              for (index_t j = 0; j < H; ++j) {
                const double a = clamp(ai[j] + ah[j], /*relu=*/true);
                if (kinks) {
                  kinks->sides.push_back(a > 0);
                  kinks->relu_dist = std::min(kinks->relu_dist, std::fabs(a));
                }
                hnew[j] = a > 0 ? a : 0.0;
              }
              break;
            case CellKind::Lstm:
            case CellKind::LstmPeephole:
              for (index_t j = 0; j < H; ++j) {
                const double cp = cst[j];
                // peepholes: i, f see p_i*c, p_f*c; o sees p_o*c'
                const double i = sigmoid(clamp(ai[j] + ah[j] + peep(0, j) * cp));
                const double f = c.opt.input_forget  // input_forget: f = 1 - i
                                     ? 1 - i
                                     : sigmoid(clamp(ai[H + j] + ah[H + j] + peep(1, j) * cp));
                const double g = std::tanh(clamp(ai[2 * H + j] + ah[2 * H + j]));
                cst[j] = f * cp + i * g;  // c' = f*c + i*g
                const double og =
                    sigmoid(clamp(ai[3 * H + j] + ah[3 * H + j] + peep(2, j) * cst[j]));
                hc[j] = og * std::tanh(cst[j]);  // o*tanh(c')
              }
              if (d.P > 0) {  // h' = W_hr (o*tanh(c'))
                const Vec& whr = w[kWhr];
                for (index_t q = 0; q < Hs; ++q) {
                  double a = 0;
                  for (index_t j = 0; j < H; ++j) a += whr[q * H + j] * hc[j];
                  hnew[q] = a;
                }
              } else {
                for (index_t j = 0; j < H; ++j) hnew[j] = hc[j];
              }
              break;
            case CellKind::LayerNormLstm:
              // v = g_ih*LN(x W_ih^T) + g_hh*LN(h W_hh^T) + b_ih + b_hh, LN over the 4H values
              layer_norm(ai.data(), GH, ni.data());
              layer_norm(ah.data(), GH, nh.data());
              for (index_t j = 0; j < GH; ++j) {
                ai[j] = g_ih[j] * ni[j] + g_hh[j] * nh[j] + bih(j) + bhh(j);
              }
              for (index_t j = 0; j < H; ++j) {
                const double i = sigmoid(ai[j]), f = sigmoid(ai[H + j]);
                const double g = std::tanh(ai[2 * H + j]);
                og[j] = sigmoid(ai[3 * H + j]);
                cst[j] = f * cst[j] + i * g;  // c' = f*c + i*g
              }
              layer_norm(cst.data(), H, nc.data());  // h' = o*tanh(g_c*LN(c') + b_c)
              for (index_t j = 0; j < H; ++j) hnew[j] = og[j] * std::tanh(g_c[j] * nc[j] + b_c[j]);
              break;
            case CellKind::LayerNormGru:
              // a = g_ih*LN(x W_ih^T) + b_ih, m = g_hh*LN(h W_hh^T), LN over the 3H values
              layer_norm(ai.data(), GH, ni.data());
              layer_norm(ah.data(), GH, nh.data());
              for (index_t j = 0; j < GH; ++j) {
                ai[j] = g_ih[j] * ni[j] + bih(j);
                ah[j] = g_hh[j] * nh[j];
              }
              for (index_t j = 0; j < H; ++j) {  // r, z = sigmoid(a. + m. + b_h.)
                const double r = sigmoid(ai[j] + ah[j] + bhh(j));
                const double z = sigmoid(ai[H + j] + ah[H + j] + bhh(H + j));
                // n = tanh(a_n + r*(m_n + b_hn)); h' = (1-z)*n + z*h
                const double n = std::tanh(ai[2 * H + j] + r * (ah[2 * H + j] + bhh(2 * H + j)));
                hnew[j] = (1 - z) * n + z * h[j];
              }
              break;
            case CellKind::Gru:  // n = tanh(W_in x + b_in + r*(W_hn h + b_hn))
              for (index_t j = 0; j < H; ++j) {
                const double r = sigmoid(clamp(ai[j] + ah[j]));
                const double z = sigmoid(clamp(ai[H + j] + ah[H + j]));
                const double n = std::tanh(clamp(ai[2 * H + j] + r * ah[2 * H + j]));
                hnew[j] = (1 - z) * n + z * h[j];
              }
              break;
            case CellKind::GruResetBefore:  // n = tanh(W_in x + b_in + W_hn (r*h) + b_hn)
              for (index_t j = 0; j < H; ++j) rh[j] = sigmoid(clamp(ai[j] + ah[j])) * h[j];
              for (index_t j = 0; j < H; ++j) {
                const double z = sigmoid(clamp(ai[H + j] + ah[H + j]));
                double a = bhh(2 * H + j);
                for (index_t m = 0; m < H; ++m) a += whh[(2 * H + j) * Hs + m] * rh[m];
                const double n = std::tanh(clamp(ai[2 * H + j] + a));
                hnew[j] = (1 - z) * n + z * h[j];
              }
              break;
          }
          // zoneout: h_t = m*h_{t-1} + (1-m)*h~_t (after the projection), c_t likewise (the
          // cell's h~ made from its own c~)
          if (!p.zh.empty()) {
            const double* m = p.zh.data() + ((k * T + t) * B + b) * Hs;
            for (index_t j = 0; j < Hs; ++j) hnew[j] = m[j] * h[j] + (1 - m[j]) * hnew[j];
          }
          if (!p.zc.empty()) {
            const double* m = p.zc.data() + ((k * T + t) * B + b) * H;
            for (index_t j = 0; j < H; ++j) cst[j] = m[j] * cprev[j] + (1 - m[j]) * cst[j];
          }
          h = hnew;
          for (index_t j = 0; j < Hs; ++j) out[(t * B + b) * D * Hs + dir * Hs + j] = h[j];
        }
        for (index_t j = 0; j < Hs; ++j) o.hn[(k * B + b) * Hs + j] = h[j];
        if (p.lstm()) {
          for (index_t j = 0; j < H; ++j) o.cn[(k * B + b) * H + j] = cst[j];
        }
      }
    }
    if (l < d.L - 1 && !p.drop.empty()) {
      const double* m = p.drop.data() + l * T * B * D * Hs;
      for (size_t i = 0; i < out.size(); ++i) out[i] *= m[i];
    }
    in = std::move(out);
    In = D * Hs;
  }
  o.y = std::move(in);
  return o;
}

double dot(const Vec& a, const Vec& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

double ref_loss(const Problem& p, KinkTrace* kinks = nullptr) {
  const RefOut o = ref_forward(p, kinks);
  double L = 0;
  if (p.c.dy) L += dot(o.y, p.ry);
  if (p.c.dhn) L += dot(o.hn, p.rh);
  if (p.c.dhn && p.lstm()) L += dot(o.cn, p.rc);
  return L;
}

/// The differentiable arrays in "slot" order: x, h0, c0 (LSTM), then per layer and direction
/// w_ih, w_hh, b_ih, b_hh (with biases), w_hr (with a projection), cell_params (the peepholes).
/// The kernel's gradients are collected in the same order (run_kernel).
std::vector<std::pair<std::string, Vec*>> slots(Problem& p) {
  std::vector<std::pair<std::string, Vec*>> s;
  s.push_back({"dx", &p.x});
  s.push_back({"dh0", &p.h0});
  if (p.lstm()) s.push_back({"dc0", &p.c0});
  static const char* kNames[kParams] = {"dw_ih", "dw_hh", "db_ih",
                                        "db_hh", "dw_hr", "d_cell_params"};
  for (index_t k = 0; k < p.LD(); ++k) {
    for (int a = 0; a < kParams; ++a) {
      if ((a == kBih || a == kBhh) && !p.c.bias) continue;
      if (a == kWhr && p.c.d.P == 0) continue;
      if (a == kCellParams && p.cell_params() == 0) continue;
      s.push_back({std::string(kNames[a]) + "[" + std::to_string(k) + "]",
                   &p.w[static_cast<size_t>(k)][static_cast<size_t>(a)]});
    }
  }
  return s;
}

/// Central differences of ref_loss, 4 points (error O(eps^4)): once per problem. ReLU cells and
/// clip use a smaller step (1e-5, 1e-4) and drop an entry whose perturbation moves a
/// pre-activation across a kink (ReLU's 0, +-clip). The layer-normalised cells' layer norms curve
/// more (step 1e-4: errors at 1e-3 ~1e-6 for the LSTM, ~6e-8 for the GRU), and most near a zero
/// row, where its derivative is 1/sqrt(1e-5): the recurrent product of zero initial states, which
/// moves off zero by eps * W_hh's column when h0 moves (the h0 slot of such a problem: step 1e-6;
/// at 1e-4 errors ~1e-4 for the LSTM, ~1e-6 for the GRU).
void compute_fd(Problem& p) {
  Problem q = p;
  const auto sl = slots(q);
  const bool relu = p.c.cell == CellKind::RnnRelu, kinks = relu || p.c.opt.clip > 0;
  const double eps0 = relu ? 1e-5 : kinks || p.ln() ? 1e-4 : 1e-3;
  KinkTrace base, trace;
  ref_loss(q, kinks ? &base : nullptr);
  p.fd.assign(sl.size(), Vec());
  p.fd_idx.assign(sl.size(), {});
  p.fd_skipped = 0;
  for (size_t si = 0; si < sl.size(); ++si) {
    Vec& v = *sl[si].second;
    const size_t n = v.size();
    std::vector<size_t>& idx = p.fd_idx[si];
    const size_t cap = static_cast<size_t>(p.c.fd_cap);
    if (cap == 0 || n <= cap) {
      for (size_t i = 0; i < n; ++i) idx.push_back(i);
    } else {  // evenly spread, the first and the last included
      for (size_t i = 0; i < cap; ++i) idx.push_back(i * (n - 1) / (cap - 1));
    }
    Vec& g = p.fd[si];
    g.assign(n, std::numeric_limits<double>::quiet_NaN());
    const double eps = p.ln() && !p.c.h0 && sl[si].second == &q.h0 ? 1e-6 : eps0;
    for (size_t i : idx) {
      const double v0 = v[i];
      double f[4];
      const double steps[4] = {eps, -eps, 2 * eps, -2 * eps};
      bool kink = false;
      for (int s = 0; s < 4; ++s) {
        v[i] = v0 + steps[s];
        trace = KinkTrace();
        f[s] = ref_loss(q, kinks ? &trace : nullptr);
        kink = kink || trace.sides != base.sides;
      }
      v[i] = v0;
      if (kink) {
        ++p.fd_skipped;
        continue;
      }
      g[i] = (8 * (f[0] - f[1]) - (f[2] - f[3])) / (12 * eps);
    }
  }
}

// ------------------------------------------------------------------------------------------------
// The kernels
// ------------------------------------------------------------------------------------------------

template <class S>
std::vector<S> cvt(const Vec& v, size_t off = 0) {
  std::vector<S> r(v.size() + off, S(0));
  for (size_t i = 0; i < v.size(); ++i) r[off + i] = static_cast<S>(v[i]);
  return r;
}

template <class S>
struct Result {
  std::vector<S> y, hn, cn;
  std::vector<std::vector<S>> grads;  ///< slot order (slots())
};

/// Forward (training: with a workspace; else inference) and, if `backward`, backward consuming
/// the workspace. Outputs start as NaN, so an element never written shows. `check_consumed`:
/// a second backward on the consumed workspace must throw std::invalid_argument. `off`: every
/// array starts `off` scalars into its buffer (the workspace 8*off bytes, as it must be 8-byte
/// aligned), to check that results do not depend on where the arrays sit in memory.
template <class S>
Result<S> run_kernel(const Problem& p, bool backward, bool training = true,
                     bool check_consumed = false, size_t off = 0) {
  const Config& c = p.c;
  const Dims& d = c.d;
  const CellKind cell = c.cell;
  const bool lstm = p.lstm();
  const index_t LD = p.LD(), H = d.H, Hs = d.hs(), T = d.T, B = d.B;
  const S nan = std::numeric_limits<S>::quiet_NaN();
  auto out = [&](index_t n) { return std::vector<S>(static_cast<size_t>(n) + off, nan); };
  std::vector<std::vector<std::vector<S>>> wv(static_cast<size_t>(LD));
  std::vector<fastrnn::Weights<S>> W(static_cast<size_t>(LD));
  for (index_t k = 0; k < LD; ++k) {
    auto& v = wv[static_cast<size_t>(k)];
    for (int a = 0; a < kParams; ++a) {
      v.push_back(cvt<S>(p.w[static_cast<size_t>(k)][static_cast<size_t>(a)], off));
    }
    fastrnn::Weights<S>& w = W[static_cast<size_t>(k)];
    w.w_ih = v[kWih].data() + off;
    w.w_hh = v[kWhh].data() + off;
    w.b_ih = c.bias ? v[kBih].data() + off : nullptr;
    w.b_hh = c.bias ? v[kBhh].data() + off : nullptr;
    w.w_hr = d.P > 0 ? v[kWhr].data() + off : nullptr;
    w.cell_params = p.cell_params() > 0 ? v[kCellParams].data() + off : nullptr;
  }
  const auto x = cvt<S>(p.x, off), h0 = cvt<S>(p.h0, off), c0 = cvt<S>(p.c0, off),
             drop = cvt<S>(p.drop, off), zh = cvt<S>(p.zh, off), zc = cvt<S>(p.zc, off);
  const S* zoneout_h = p.zh.empty() ? nullptr : zh.data() + off;
  const S* zoneout_c = p.zc.empty() ? nullptr : zc.data() + off;
  const auto ry = cvt<S>(p.ry, off), rh = cvt<S>(p.rh, off), rc = cvt<S>(p.rc, off);
  const index_t* lengths = c.lengths.empty() ? nullptr : c.lengths.data();

  Result<S> r;
  r.y = out(T * B * d.D * Hs);
  r.hn = out(LD * B * Hs);
  if (lstm) r.cn = out(LD * B * H);
  std::vector<S> ws;
  const size_t ws_off = 8 * off / sizeof(S);
  fastrnn::ForwardArgs<S> fa;
  fa.weights = W.data();
  fa.x = x.data() + off;
  fa.h0 = c.h0 ? h0.data() + off : nullptr;
  fa.c0 = lstm && c.h0 ? c0.data() + off : nullptr;
  fa.lengths = lengths;
  fa.options = c.opt;
  fa.dropout = p.drop.empty() ? nullptr : drop.data() + off;
  fa.zoneout_h = zoneout_h;
  fa.zoneout_c = zoneout_c;
  fa.y = r.y.data() + off;
  fa.h_n = r.hn.data() + off;
  fa.c_n = lstm ? r.cn.data() + off : nullptr;
  if (training) {
    ws.assign(static_cast<size_t>(fastrnn::workspace_size<S>(cell, d)) + ws_off, nan);
    fa.workspace = ws.data() + ws_off;
  }
  fastrnn::forward<S>(cell, d, fa);
  auto strip = [&](std::vector<S>& v) {
    if (!v.empty()) v.erase(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(off));
  };
  if (!backward) {
    strip(r.y);
    strip(r.hn);
    strip(r.cn);
    return r;
  }

  auto grad = [&](index_t n) {
    r.grads.push_back(out(n));
    return r.grads.size() - 1;
  };
  const size_t gx = grad(T * B * d.I), gh0 = grad(LD * B * Hs);
  const size_t gc0 = lstm ? grad(LD * B * H) : 0;
  std::vector<std::vector<size_t>> gw(static_cast<size_t>(LD), std::vector<size_t>(kParams, 0));
  const index_t GH = p.G() * H;
  for (index_t k = 0; k < LD; ++k) {
    auto& g = gw[static_cast<size_t>(k)];
    g[kWih] = grad(GH * d.input_size(k / d.D));
    g[kWhh] = grad(GH * Hs);
    if (c.bias) {
      g[kBih] = grad(GH);
      g[kBhh] = grad(GH);
    }
    if (d.P > 0) g[kWhr] = grad(d.P * H);
    if (p.cell_params() > 0) g[kCellParams] = grad(p.cell_params());
  }
  // pointers only now: r.grads does not move any more
  auto gp = [&](size_t i) { return r.grads[i].data() + off; };
  std::vector<fastrnn::WeightGrads<S>> WG(static_cast<size_t>(LD));
  for (index_t k = 0; k < LD; ++k) {
    const auto& g = gw[static_cast<size_t>(k)];
    fastrnn::WeightGrads<S>& wg = WG[static_cast<size_t>(k)];
    wg.dw_ih = gp(g[kWih]);
    wg.dw_hh = gp(g[kWhh]);
    if (c.bias) {
      wg.db_ih = gp(g[kBih]);
      wg.db_hh = gp(g[kBhh]);
    }
    if (d.P > 0) wg.dw_hr = gp(g[kWhr]);
    if (p.cell_params() > 0) wg.d_cell_params = gp(g[kCellParams]);
  }
  fastrnn::BackwardArgs<S> ba;
  ba.weights = W.data();
  ba.x = x.data() + off;
  ba.lengths = lengths;
  ba.options = c.opt;
  ba.zoneout_h = zoneout_h;
  ba.zoneout_c = zoneout_c;
  ba.workspace = ws.data() + ws_off;
  ba.dy = c.dy ? ry.data() + off : nullptr;
  ba.dh_n = c.dhn ? rh.data() + off : nullptr;
  ba.dc_n = lstm && c.dhn ? rc.data() + off : nullptr;
  ba.dx = gp(gx);
  ba.dh0 = gp(gh0);
  ba.dc0 = lstm ? gp(gc0) : nullptr;
  ba.grads = WG.data();
  fastrnn::backward<S>(cell, d, ba);
  if (check_consumed) {
    bool threw = false;
    try {
      fastrnn::backward<S>(cell, d, ba);
    } catch (const std::invalid_argument&) {
      threw = true;
    }
    if (!threw) fail(dims_name(c) + ": a second backward on a consumed workspace did not throw");
  }
  strip(r.y);
  strip(r.hn);
  strip(r.cn);
  for (auto& g : r.grads) strip(g);
  return r;
}

const char* type_name(float) { return "float"; }
const char* type_name(double) { return "double"; }

/// Lengths outside [0, T] are refused before any kernel runs (api.cpp), by forward and by
/// backward, with a message naming the entry; a refused backward leaves the workspace unused.
template <class S>
void check_bad_lengths() {
  const CellKind cell = CellKind::Lstm;
  Dims d;
  d.T = 3;
  d.B = 2;
  d.I = 2;
  d.H = 4;
  const index_t GH = 4 * d.H, n = d.T * d.B;
  auto buf = [](index_t size, double v) { return std::vector<S>(static_cast<size_t>(size), S(v)); };
  const std::vector<S> w_ih = buf(GH * d.I, 0.1), w_hh = buf(GH * d.H, -0.1), x = buf(n * d.I, 0.5);
  std::vector<S> y = buf(n * d.H, 0), hn = buf(d.B * d.H, 0), cn = hn, dh0 = hn, dc0 = hn;
  std::vector<S> dx = buf(n * d.I, 0), dw_ih = buf(GH * d.I, 0), dw_hh = buf(GH * d.H, 0);
  std::vector<S> ws = buf(fastrnn::workspace_size<S>(cell, d), 0);
  fastrnn::Weights<S> w;
  w.w_ih = w_ih.data();
  w.w_hh = w_hh.data();
  fastrnn::WeightGrads<S> g;
  g.dw_ih = dw_ih.data();
  g.dw_hh = dw_hh.data();
  const index_t ok[] = {3, 1}, too_long[] = {3, 4}, negative[] = {-1, 2};
  fastrnn::ForwardArgs<S> fa;
  fa.weights = &w;
  fa.x = x.data();
  fa.y = y.data();
  fa.h_n = hn.data();
  fa.c_n = cn.data();
  fa.workspace = ws.data();
  fastrnn::BackwardArgs<S> ba;
  ba.weights = &w;
  ba.x = x.data();
  ba.workspace = ws.data();
  ba.dx = dx.data();
  ba.dh0 = dh0.data();
  ba.dc0 = dc0.data();
  ba.grads = &g;
  const std::string ty = type_name(S());
  auto expect = [&](const std::string& what, const std::string& message, auto&& call) {
    try {
      call();
      fail(what + " did not throw");
    } catch (const std::invalid_argument& e) {
      if (e.what() != message) fail(what + " threw \"" + e.what() + "\", not \"" + message + "\"");
    }
  };
  const std::string past_t = "lengths: entry 1 is 4, outside [0, T=3]";
  fa.lengths = too_long;
  expect(ty + " forward with a length > T", past_t, [&] { fastrnn::forward<S>(cell, d, fa); });
  fa.lengths = negative;
  expect(ty + " forward with a length < 0", "lengths: entry 0 is -1, outside [0, T=3]",
         [&] { fastrnn::forward<S>(cell, d, fa); });
  fa.lengths = ok;
  fastrnn::forward<S>(cell, d, fa);
  ba.lengths = too_long;
  expect(ty + " backward with a length > T", past_t, [&] { fastrnn::backward<S>(cell, d, ba); });
  ba.lengths = ok;
  fastrnn::backward<S>(cell, d, ba);  // the workspace was not consumed by the refused call
}

/// A backward must get its forward's CellOptions and direction, which the workspace records:
/// others are refused with std::invalid_argument before any kernel runs, and the refused calls
/// leave the workspace unused. Invalid options (clip < 0, NaN, infinite; input_forget for a cell
/// without c), a reverse-only stack with two directions and a peephole LSTM without its
/// cell_params (or their gradients) are refused too. Each message must name what it refuses.
template <class S>
void check_options_refused() {
  const CellKind cell = CellKind::LstmPeephole;
  Dims d;
  d.T = 3;
  d.B = 2;
  d.I = 2;
  d.H = 4;
  const index_t GH = 4 * d.H, n = d.T * d.B;
  auto buf = [](index_t size, double v) { return std::vector<S>(static_cast<size_t>(size), S(v)); };
  const std::vector<S> w_ih = buf(GH * d.I, 0.1), w_hh = buf(GH * d.H, -0.1), x = buf(n * d.I, 0.5),
                       peep = buf(3 * d.H, 0.25);
  std::vector<S> y = buf(n * d.H, 0), hn = buf(d.B * d.H, 0), cn = hn, dh0 = hn, dc0 = hn;
  std::vector<S> dx = buf(n * d.I, 0), dw_ih = buf(GH * d.I, 0), dw_hh = buf(GH * d.H, 0),
                 dpeep = buf(3 * d.H, 0);
  std::vector<S> ws = buf(fastrnn::workspace_size<S>(cell, d), 0);
  fastrnn::Weights<S> w;
  w.w_ih = w_ih.data();
  w.w_hh = w_hh.data();
  w.cell_params = peep.data();
  fastrnn::WeightGrads<S> g;
  g.dw_ih = dw_ih.data();
  g.dw_hh = dw_hh.data();
  g.d_cell_params = dpeep.data();
  fastrnn::ForwardArgs<S> fa;
  fa.weights = &w;
  fa.x = x.data();
  fa.y = y.data();
  fa.h_n = hn.data();
  fa.c_n = cn.data();
  fa.workspace = ws.data();
  fa.options.clip = 1.5;
  fa.options.input_forget = true;
  fastrnn::BackwardArgs<S> ba;
  ba.weights = &w;
  ba.x = x.data();
  ba.workspace = ws.data();
  ba.dx = dx.data();
  ba.dh0 = dh0.data();
  ba.dc0 = dc0.data();
  ba.grads = &g;
  const std::string ty = type_name(S());
  // `call` must throw std::invalid_argument with a message that contains `names`
  auto refused = [&](const std::string& what, const std::string& names, auto&& call) {
    try {
      call();
      fail(ty + " " + what + " did not throw");
    } catch (const std::invalid_argument& e) {
      if (std::string(e.what()).find(names) == std::string::npos)
        fail(ty + " " + what + " threw \"" + e.what() + "\", which does not name " + names);
    } catch (const std::exception& e) {
      fail(ty + " " + what + " threw another exception type: " + e.what());
    }
  };
  fastrnn::forward<S>(cell, d, fa);
  auto opts = [](double clip, bool input_forget) {
    fastrnn::CellOptions o;
    o.clip = clip;
    o.input_forget = input_forget;
    return o;
  };
  for (const fastrnn::CellOptions& o : {opts(0, false), opts(0, true), opts(1.5, false),
                                        opts(1.25, true), opts(1.5 + 1e-9, true)}) {
    ba.options = o;
    refused("backward with clip " + std::to_string(o.clip) + ", input_forget " +
                std::to_string(o.input_forget) + " after a forward with 1.5, 1",
            "clip, input_forget", [&] { fastrnn::backward<S>(cell, d, ba); });
  }
  ba.options = fa.options;
  Dims rev = d;
  rev.reverse = true;
  refused("reverse-only backward after a forward in time", "reverse",
          [&] { fastrnn::backward<S>(cell, rev, ba); });
  g.d_cell_params = nullptr;
  refused("backward without d_cell_params", "d_cell_params",
          [&] { fastrnn::backward<S>(cell, d, ba); });
  g.d_cell_params = dpeep.data();
  fastrnn::backward<S>(cell, d, ba);  // the workspace was not consumed by the refused calls

  // the forward's own refusals
  for (double clip :
       {-1.0, std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::infinity()}) {
    fa.options = opts(clip, false);
    refused("forward with clip " + std::to_string(clip), "clip",
            [&] { fastrnn::forward<S>(cell, d, fa); });
  }
  fa.options = opts(0, true);
  fastrnn::Weights<S> w_gru = w;  // (w_ih, w_hh: 4H rows, GRU reads 3H)
  w_gru.cell_params = nullptr;
  fa.weights = &w_gru;
  refused("GRU forward with input_forget", "input_forget",
          [&] { fastrnn::forward<S>(CellKind::Gru, d, fa); });
  fa.weights = &w;
  fa.options = opts(0, false);
  w.cell_params = nullptr;
  refused("forward without cell_params", "cell_params", [&] { fastrnn::forward<S>(cell, d, fa); });
  w.cell_params = peep.data();
  Dims rev2 = rev;
  rev2.D = 2;
  refused("reverse-only forward with two directions", "reverse",
          [&] { fastrnn::forward<S>(cell, rev2, fa); });
  fastrnn::forward<S>(cell, d, fa);  // (the arguments restored)
}

/// The layer-normalised cells (`cell`: LayerNormLstm, LayerNormGru) have no projection and no
/// CellOptions: proj_size > 0 (workspace_size, forward), clip and input_forget (forward, and
/// backward after a valid forward) are refused with std::invalid_argument naming them (and the
/// cell for the options), as are missing cell_params or d_cell_params; the refused backwards
/// leave the workspace unused.
template <class S>
void check_norm_refused(CellKind cell) {
  const bool lstm = fastrnn::has_cell_state(cell);
  const std::string cname = fastrnn::cell_name(cell);
  Dims d;
  d.T = 3;
  d.B = 2;
  d.I = 2;
  d.H = 4;
  const index_t GH = fastrnn::num_gates(cell) * d.H, n = d.T * d.B,
                NP = fastrnn::cell_params_size(cell, d.H);
  auto buf = [](index_t size, double v) { return std::vector<S>(static_cast<size_t>(size), S(v)); };
  const std::vector<S> w_ih = buf(GH * d.I, 0.1), w_hh = buf(GH * d.H, -0.1), x = buf(n * d.I, 0.5),
                       w_hr = buf(2 * d.H, 0.5);
  std::vector<S> params = buf(NP, 1);  // gains 1, then the LSTM's b_c 0
  if (lstm) std::fill(params.end() - d.H, params.end(), S(0));
  std::vector<S> y = buf(n * d.H, 0), hn = buf(d.B * d.H, 0), cn = hn, dh0 = hn, dc0 = hn;
  std::vector<S> dx = buf(n * d.I, 0), dw_ih = buf(GH * d.I, 0), dw_hh = buf(GH * d.H, 0),
                 dparams = buf(NP, 0);
  std::vector<S> ws = buf(fastrnn::workspace_size<S>(cell, d), 0);
  fastrnn::Weights<S> w;
  w.w_ih = w_ih.data();
  w.w_hh = w_hh.data();
  w.cell_params = params.data();
  fastrnn::WeightGrads<S> g;
  g.dw_ih = dw_ih.data();
  g.dw_hh = dw_hh.data();
  g.d_cell_params = dparams.data();
  fastrnn::ForwardArgs<S> fa;
  fa.weights = &w;
  fa.x = x.data();
  fa.y = y.data();
  fa.h_n = hn.data();
  fa.c_n = lstm ? cn.data() : nullptr;
  fa.workspace = ws.data();
  fastrnn::BackwardArgs<S> ba;
  ba.weights = &w;
  ba.x = x.data();
  ba.workspace = ws.data();
  ba.dx = dx.data();
  ba.dh0 = dh0.data();
  ba.dc0 = lstm ? dc0.data() : nullptr;
  ba.grads = &g;
  const std::string ty = std::string(type_name(S())) + " " + cname;
  // `call` must throw std::invalid_argument with a message that contains each of `names`
  auto refused = [&](const std::string& what, std::vector<std::string> names, auto&& call) {
    try {
      call();
      fail(ty + " " + what + " did not throw");
    } catch (const std::invalid_argument& e) {
      for (const std::string& name : names) {
        if (std::string(e.what()).find(name) == std::string::npos)
          fail(ty + " " + what + " threw \"" + e.what() + "\", which does not name " + name);
      }
    } catch (const std::exception& e) {
      fail(ty + " " + what + " threw another exception type: " + e.what());
    }
  };
  Dims proj = d;
  proj.P = 2;
  fastrnn::workspace_size<S>(CellKind::Lstm, proj);  // (the sizes are valid for the LSTM)
  refused("workspace_size with proj_size 2", {"proj_size"},
          [&] { fastrnn::workspace_size<S>(cell, proj); });
  fastrnn::Weights<S> wp = w;
  wp.w_hr = w_hr.data();
  fa.weights = &wp;
  refused("forward with proj_size 2", {"proj_size"}, [&] { fastrnn::forward<S>(cell, proj, fa); });
  fa.weights = &w;
  auto opts = [](double clip, bool input_forget) {
    fastrnn::CellOptions o;
    o.clip = clip;
    o.input_forget = input_forget;
    return o;
  };
  const fastrnn::CellOptions bad[] = {opts(1, false), opts(0, true), opts(0.5, true)};
  auto opt_names = [&](const fastrnn::CellOptions& o) {
    std::vector<std::string> v{cname};
    if (o.clip > 0) v.push_back("clip");
    if (o.input_forget) v.push_back("input_forget");
    return v;
  };
  auto opt_what = [](const fastrnn::CellOptions& o) {
    return "with clip " + std::to_string(o.clip) + ", input_forget " +
           std::to_string(o.input_forget);
  };
  for (const fastrnn::CellOptions& o : bad) {
    fa.options = o;
    refused("forward " + opt_what(o), opt_names(o), [&] { fastrnn::forward<S>(cell, d, fa); });
  }
  fa.options = fastrnn::CellOptions();
  w.cell_params = nullptr;
  refused("forward without cell_params", {"cell_params"},
          [&] { fastrnn::forward<S>(cell, d, fa); });
  w.cell_params = params.data();
  fastrnn::forward<S>(cell, d, fa);
  for (const fastrnn::CellOptions& o : bad) {
    ba.options = o;
    refused("backward " + opt_what(o), opt_names(o), [&] { fastrnn::backward<S>(cell, d, ba); });
  }
  ba.options = fastrnn::CellOptions();
  g.d_cell_params = nullptr;
  refused("backward without d_cell_params", {"d_cell_params"},
          [&] { fastrnn::backward<S>(cell, d, ba); });
  g.d_cell_params = dparams.data();
  fastrnn::backward<S>(cell, d, ba);  // the workspace was not consumed by the refused calls
}

template <class S>
constexpr double fwd_tol() {
  return sizeof(S) == 8 ? 1e-10 : 1e-4;
}

/// Forward of `p` in S against the reference (computed once by the caller).
template <class S>
void check_forward(const Problem& p, const RefOut& ref, const Result<S>& r,
                   const std::string& tag) {
  const std::string cat = sizeof(S) == 8 ? "fwd64" : "fwd32";
  const std::string what = tag + " " + dims_name(p.c) + " " + type_name(S()) + " ";
  check(cat, what + "y", rel_err(r.y, ref.y), fwd_tol<S>());
  check(cat, what + "h_n", rel_err(r.hn, ref.hn), fwd_tol<S>());
  if (p.lstm()) check(cat, what + "c_n", rel_err(r.cn, ref.cn), fwd_tol<S>());
}

/// Backward in double against the finite differences (the checked entries).
void check_backward_fd(Problem& p, const Result<double>& r, const std::string& tag) {
  const auto sl = slots(p);
  if (r.grads.size() != sl.size()) {
    fail(tag + " " + dims_name(p.c) + ": gradient count mismatch");
    return;
  }
  for (size_t si = 0; si < sl.size(); ++si) {
    const Vec& fd = p.fd[si];
    const std::vector<double>& g = r.grads[si];
    double scale = 1, err = 0;
    for (size_t i : p.fd_idx[si]) {
      if (!std::isnan(fd[i])) scale = std::max(scale, std::fabs(fd[i]));
    }
    for (size_t i : p.fd_idx[si]) {
      if (std::isnan(fd[i])) continue;
      const double e = std::fabs(g[i] - fd[i]);
      err = std::max(err, std::isnan(e) ? std::numeric_limits<double>::infinity() : e);
    }
    // every element written (NaN-filled before the call), the unchecked ones too
    for (double v : g) {
      if (std::isnan(v)) err = std::numeric_limits<double>::infinity();
    }
    check("bwd64_fd",
          tag + " " + dims_name(p.c) + " double " + sl[si].first + " vs finite differences",
          err / scale, 1e-7);
  }
}

/// Backward in float against backward in double (both kernels).
void check_backward_float(const Problem& p, const Result<float>& rf, const Result<double>& rd,
                          const std::string& tag) {
  Problem q = p;
  const auto sl = slots(q);
  if (rf.grads.size() != rd.grads.size() || rf.grads.size() != sl.size()) {
    fail(tag + " " + dims_name(p.c) + ": gradient count mismatch (float)");
    return;
  }
  for (size_t si = 0; si < sl.size(); ++si) {
    check("bwd32", tag + " " + dims_name(p.c) + " float " + sl[si].first + " vs double",
          rel_err(rf.grads[si], rd.grads[si]), 1e-3);
  }
}

template <class S>
void check_inference_same(const Problem& p, const Result<S>& train, const std::string& tag) {
  const Result<S> inf = run_kernel<S>(p, false, /*training=*/false);
  if (!same_bits(inf.y, train.y) || !same_bits(inf.hn, train.hn) || !same_bits(inf.cn, train.cn)) {
    fail(tag + " " + dims_name(p.c) + " " + type_name(S()) +
         ": inference forward differs from training forward");
  }
}

/// One correctness problem on the current variant: forward both types, backward double vs FD,
/// backward float vs double, inference == training.
void check_problem(Problem& p, const RefOut& ref, const std::string& tag, bool check_consumed) {
  const Result<double> rd = run_kernel<double>(p, true, true, check_consumed);
  const Result<float> rf = run_kernel<float>(p, true);
  check_forward(p, ref, rd, tag);
  check_forward(p, ref, rf, tag);
  if (p.c.fd) check_backward_fd(p, rd, tag);
  check_backward_float(p, rf, rd, tag);
  check_inference_same(p, rd, tag);
  check_inference_same(p, rf, tag);
}

/// Bit-identical results for 1 and 2 threads, on a repeated run and with every array at another
/// address; inference forward bit-identical to training forward. Also the forward against the
/// reference (the caller: float backward against double).
template <class S>
Result<S> check_threads_type(const Problem& p, const RefOut& ref, const std::string& tag,
                             int restore_threads) {
  fastrnn::set_num_threads(1);
  const Result<S> r1 = run_kernel<S>(p, true);
  fastrnn::set_num_threads(2);
  const Result<S> r2 = run_kernel<S>(p, true);
  const Result<S> r3 = run_kernel<S>(p, true);
  const Result<S> inf2 = run_kernel<S>(p, false, false);
  const Result<S> moved = run_kernel<S>(p, true, true, false, /*off=*/3);  // other addresses
  fastrnn::set_num_threads(restore_threads);
  const std::string what = tag + " " + dims_name(p.c) + " " + type_name(S());
  auto same = [&](const Result<S>& a, const Result<S>& b, const char* how) {
    bool ok = same_bits(a.y, b.y) && same_bits(a.hn, b.hn) && same_bits(a.cn, b.cn);
    for (size_t i = 0; ok && i < a.grads.size(); ++i) ok = same_bits(a.grads[i], b.grads[i]);
    ok = ok && a.grads.size() == b.grads.size();
    if (!ok) fail(what + ": results differ, " + how);
    note("det_fail", ok ? 0 : 1);
  };
  same(r1, r2, "1 vs 2 threads");
  same(r2, r3, "2 threads, repeated run");
  same(r2, moved, "2 threads, the arrays at other addresses");
  if (!same_bits(inf2.y, r1.y) || !same_bits(inf2.hn, r1.hn) || !same_bits(inf2.cn, r1.cn)) {
    fail(what + ": inference forward (2 threads) differs from training forward (1 thread)");
    note("det_fail", 1);
  }
  check_forward(p, ref, r1, tag);
  return r1;
}

void check_threads(const Problem& p, const RefOut& ref, const std::string& tag, int restore) {
  const Result<double> rd = check_threads_type<double>(p, ref, tag, restore);
  const Result<float> rf = check_threads_type<float>(p, ref, tag, restore);
  check_backward_float(p, rf, rd, tag);
}

// ------------------------------------------------------------------------------------------------
// train:: kernels
// ------------------------------------------------------------------------------------------------

template <class S>
void check_train(std::uint64_t seed) {
  namespace tr = fastrnn::train;
  const std::string cat = sizeof(S) == 8 ? "train64" : "train32";
  const double tol = sizeof(S) == 8 ? 1e-12 : 1e-5;
  const std::string ty = type_name(S());
  Rng r(seed);
  // linear_forward / linear_backward: a small depth (direct weight gradient) and a larger one
  for (index_t N : {index_t(5), index_t(37)}) {
    const index_t In = 29, Out = 19;
    const Vec x = r.vec(N * In, -1, 1), W = r.vec(Out * In, -1, 1), b = r.vec(Out, -1, 1),
              dy = r.vec(N * Out, -1, 1);
    for (bool bias : {true, false}) {
      Vec y(static_cast<size_t>(N * Out)), dx(static_cast<size_t>(N * In), 0.0),
          dW(static_cast<size_t>(Out * In), 0.0), db(static_cast<size_t>(Out), 0.0);
      for (index_t n = 0; n < N; ++n) {
        for (index_t o = 0; o < Out; ++o) {
          double s = bias ? b[o] : 0.0;
          for (index_t i = 0; i < In; ++i) s += x[n * In + i] * W[o * In + i];
          y[n * Out + o] = s;
          for (index_t i = 0; i < In; ++i) {
            dx[n * In + i] += dy[n * Out + o] * W[o * In + i];
            dW[o * In + i] += dy[n * Out + o] * x[n * In + i];
          }
          db[o] += dy[n * Out + o];
        }
      }
      const auto xs = cvt<S>(x), Ws = cvt<S>(W), bs = cvt<S>(b), dys = cvt<S>(dy);
      const S nan = std::numeric_limits<S>::quiet_NaN();
      std::vector<S> ys(y.size(), nan), dxs(dx.size(), nan), dWs(dW.size(), nan),
          dbs(db.size(), nan);
      tr::linear_forward<S>(xs.data(), N, In, Ws.data(), Out, bias ? bs.data() : nullptr,
                            ys.data());
      tr::linear_backward<S>(xs.data(), N, In, Ws.data(), Out, dys.data(), dxs.data(), dWs.data(),
                             bias ? dbs.data() : nullptr);
      const std::string what =
          "train " + ty + " linear N=" + std::to_string(N) + (bias ? " bias " : " no bias ");
      const double lt = sizeof(S) == 8 ? 1e-12 : 1e-4;  // sums of up to 37 products
      check(cat, what + "y", rel_err(ys, y), lt);
      check(cat, what + "dx", rel_err(dxs, dx), lt);
      check(cat, what + "dW", rel_err(dWs, dW), lt);
      if (bias) check(cat, what + "db", rel_err(dbs, db), lt);
    }
  }
  // softmax_cross_entropy: some rows ignored, mean and sum
  {
    const index_t N = 13, C = 21;
    const std::int64_t ignore = -100;
    const Vec z = r.vec(N * C, -8, 8);
    std::vector<std::int64_t> t(static_cast<size_t>(N));
    for (index_t n = 0; n < N; ++n) {
      t[static_cast<size_t>(n)] = n % 5 == 3 ? ignore : static_cast<std::int64_t>(r.next() % C);
    }
    const auto zs = cvt<S>(z);
    for (bool mean : {true, false}) {
      index_t count = 0;
      for (auto v : t) count += v != ignore;
      const double scale = mean ? 1.0 / static_cast<double>(count) : 1.0;
      Vec dz(z.size(), 0.0);
      double loss = 0;
      for (index_t n = 0; n < N; ++n) {
        const std::int64_t tn = t[static_cast<size_t>(n)];
        if (tn == ignore) continue;
        double mx = -1e300, sum = 0;
        for (index_t j = 0; j < C; ++j) mx = std::max(mx, z[n * C + j]);
        for (index_t j = 0; j < C; ++j) sum += std::exp(z[n * C + j] - mx);
        loss += mx + std::log(sum) - z[n * C + tn];
        for (index_t j = 0; j < C; ++j) {
          dz[n * C + j] = (std::exp(z[n * C + j] - mx) / sum - (j == tn ? 1.0 : 0.0)) * scale;
        }
      }
      loss *= scale;
      std::vector<S> dzs(dz.size(), std::numeric_limits<S>::quiet_NaN());
      const double got =
          tr::softmax_cross_entropy<S>(zs.data(), N, C, t.data(), ignore, mean, dzs.data());
      const std::string what =
          "train " + ty + " softmax_cross_entropy " + (mean ? "mean " : "sum ");
      check(cat, what + "loss", std::fabs(got - loss) / std::max(1.0, std::fabs(loss)),
            sizeof(S) == 8 ? 1e-12 : 1e-5);
      check(cat, what + "dlogits", rel_err(dzs, dz), tol);
    }
    bool threw = false;  // a target outside [0, C)
    std::vector<std::int64_t> bad = t;
    bad[0] = C;
    std::vector<S> dzs(z.size());
    try {
      tr::softmax_cross_entropy<S>(zs.data(), N, C, bad.data(), ignore, true, dzs.data());
    } catch (const std::invalid_argument&) {
      threw = true;
    }
    if (!threw) fail("train " + ty + " softmax_cross_entropy: a target out of range did not throw");
  }
  // sum_squares (several pieces of 16384), max_abs, scale, clamp
  {
    const index_t n = 40000;
    const Vec a = r.vec(n, -2, 2);
    const auto as = cvt<S>(a);
    double ss = 0, mx = 0;
    for (double v : a) {
      ss += v * v;
      mx = std::max(mx, std::fabs(v));
    }
    const double got = tr::sum_squares<S>(as.data(), n);
    check(cat, "train " + ty + " sum_squares", std::fabs(got - ss) / ss, 1e-12);
    check(cat, "train " + ty + " max_abs", std::fabs(tr::max_abs<S>(as.data(), n) - mx), 0.0);
    const int threads = fastrnn::num_threads();
    fastrnn::set_num_threads(1);
    const double s1 = tr::sum_squares<S>(as.data(), n);
    fastrnn::set_num_threads(2);
    const double s2 = tr::sum_squares<S>(as.data(), n);
    fastrnn::set_num_threads(threads);
    if (std::memcmp(&s1, &s2, sizeof s1) != 0)
      fail("train " + ty + " sum_squares: 1 vs 2 threads differ");
    std::vector<S> sc = as, cl = as;
    tr::scale<S>(sc.data(), n, S(0.75));
    tr::clamp<S>(cl.data(), n, S(1));
    double e1 = 0, e2 = 0;
    for (index_t i = 0; i < n; ++i) {
      e1 = std::max(e1,
                    std::fabs(static_cast<double>(sc[i]) - static_cast<double>(as[i] * S(0.75))));
      e2 =
          std::max(e2, std::fabs(static_cast<double>(cl[i]) - std::min(1.0, std::max(-1.0, a[i]))));
    }
    check(cat, "train " + ty + " scale", e1, 0.0);
    check(cat, "train " + ty + " clamp", e2, 0.0);
  }
  // embedding_backward (a padding row), sgd_update with momentum, adam_update
  {
    const index_t n = 23, D = 19, E = 7;
    const std::int64_t pad = 2;
    std::vector<std::int64_t> ids(static_cast<size_t>(n));
    for (auto& v : ids) v = static_cast<std::int64_t>(r.next() % E);
    const Vec dy = r.vec(n * D, -1, 1);
    Vec dW(static_cast<size_t>(E * D), 0.0);
    for (index_t i = 0; i < n; ++i) {
      if (ids[static_cast<size_t>(i)] == pad) continue;
      for (index_t j = 0; j < D; ++j) dW[ids[static_cast<size_t>(i)] * D + j] += dy[i * D + j];
    }
    const auto dys = cvt<S>(dy);
    std::vector<S> dWs(dW.size(), std::numeric_limits<S>::quiet_NaN());
    tr::embedding_backward<S>(ids.data(), n, dys.data(), D, E, pad, dWs.data());
    check(cat, "train " + ty + " embedding_backward", rel_err(dWs, dW), tol);

    const index_t m = 50;
    const Vec p0 = r.vec(m, -1, 1), g = r.vec(m, -1, 1), b0 = r.vec(m, -1, 1);
    const double lr = 0.125, mom = 0.875, damp = 0.25, wd = 0.0625;
    Vec p = p0, buf = b0;
    for (index_t i = 0; i < m; ++i) {  // second step (first = false), nesterov
      double gi = g[i] + wd * p[i];
      buf[i] = mom * buf[i] + (1 - damp) * gi;
      gi = gi + mom * buf[i];
      p[i] -= lr * gi;
    }
    auto ps = cvt<S>(p0), bufs = cvt<S>(b0);
    const auto gs = cvt<S>(g);
    tr::sgd_update<S>(ps.data(), gs.data(), bufs.data(), m, S(lr), S(mom), S(damp), S(wd), true,
                      false);
    check(cat, "train " + ty + " sgd_update p", rel_err(ps, p), tol * 10);
    check(cat, "train " + ty + " sgd_update buf", rel_err(bufs, buf), tol * 10);

    const double b1 = 0.875, b2 = 0.96875, aeps = 1e-8;
    const std::int64_t step = 3;
    Vec pa = p0, ma = b0, va(static_cast<size_t>(m));
    for (index_t i = 0; i < m; ++i) va[i] = std::fabs(b0[i]) * 0.5;
    auto pas = cvt<S>(pa), mas = cvt<S>(ma), vas = cvt<S>(va);
    for (index_t i = 0; i < m; ++i) {
      const double gi = g[i] + wd * pa[i];
      ma[i] = b1 * ma[i] + (1 - b1) * gi;
      va[i] = b2 * va[i] + (1 - b2) * gi * gi;
      const double mh = ma[i] / (1 - std::pow(b1, step)), vh = va[i] / (1 - std::pow(b2, step));
      pa[i] -= lr * mh / (std::sqrt(vh) + aeps);
    }
    tr::adam_update<S>(pas.data(), gs.data(), mas.data(), vas.data(), m, lr, b1, b2, aeps, wd,
                       step);
    check(cat, "train " + ty + " adam_update p", rel_err(pas, pa), tol * 10);
    check(cat, "train " + ty + " adam_update m", rel_err(mas, ma), tol * 10);
    check(cat, "train " + ty + " adam_update v", rel_err(vas, va), tol * 10);
  }
}

// ------------------------------------------------------------------------------------------------
// The ISA API
// ------------------------------------------------------------------------------------------------

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

/// The pool's contract (pool.hpp) on job shapes of every kind, with up to 8 threads.
void check_pool() {
  using fastrnn::detail::pool_run;
  struct Job {
    std::vector<std::atomic<int>> runs;
    std::atomic<int> max_thread{0};
    std::atomic<int> out_of_range{0};
    index_t throw_at = -1;
    explicit Job(index_t count) : runs(static_cast<size_t>(count)) {}
  };
  auto item = [](void* ctx, index_t i, int thread) {
    Job& j = *static_cast<Job*>(ctx);
    if (i < 0 || static_cast<size_t>(i) >= j.runs.size()) {  // another job's bounds
      j.out_of_range.fetch_add(1);
      return;
    }
    j.runs[static_cast<size_t>(i)].fetch_add(1);
    int m = j.max_thread.load();
    while (thread > m && !j.max_thread.compare_exchange_weak(m, thread)) {
    }
    if (i == j.throw_at) throw std::runtime_error("item " + std::to_string(i));
  };
  for (int round = 0; round < 300; ++round) {
    for (index_t count : {1, 2, 3, 7, 64, 1000}) {
      for (int threads : {1, 2, 3, 8}) {
        Job j(count);
        const bool throws = round % 7 == 0 && count > 2;
        if (throws) j.throw_at = count / 2;
        try {
          pool_run(count, threads, item, &j);
          if (throws) fail("pool: an item's exception did not reach the caller");
        } catch (const std::runtime_error& e) {
          if (!throws || std::string(e.what()) != "item " + std::to_string(count / 2))
            fail(std::string("pool: unexpected exception ") + e.what());
        }
        for (const auto& r : j.runs) {  // after an exception, items not started may be skipped
          if (r.load() > 1 || (r.load() == 0 && !throws))
            fail("pool: an item ran " + std::to_string(r.load()) + " times");
        }
        if (j.out_of_range.load() != 0) fail("pool: an item beyond the job's count ran");
        if (j.max_thread.load() >= std::min<index_t>(threads, count))
          fail("pool: a thread index beyond the job's threads");
      }
    }
  }
  // a job started from an item runs serially in that item's thread
  std::atomic<int> inner_bad{0};
  auto outer = [](void* ctx, index_t, int) {
    auto& bad = *static_cast<std::atomic<int>*>(ctx);
    pool_run(
        4, 4, [](void* c, index_t, int t) { static_cast<std::atomic<int>*>(c)->fetch_add(t); },
        &bad);
  };
  pool_run(8, 4, outer, &inner_bad);
  if (inner_bad.load() != 0) fail("pool: a job inside an item was not run serially");
  if (fastrnn::detail::pool_workers() > 7) fail("pool: more workers than the largest job needs");
}

void check_isa_api(const std::vector<std::string>& compiled,
                   const std::vector<std::string>& avail) {
  if (compiled.empty()) fail("isa_compiled() is empty");
  if (avail.empty()) fail("isa_available() is empty: this CPU runs none of " + join(compiled));
  // available: a subsequence of compiled (same order)
  size_t j = 0;
  for (size_t i = 0; i < compiled.size() && j < avail.size(); ++i) {
    if (compiled[i] == avail[j]) ++j;
  }
  if (j != avail.size()) {
    fail("isa_available() [" + join(avail) + "] is not a subset of isa_compiled() [" +
         join(compiled) + "] in the same order");
  }
  const std::string before = avail.empty() ? "" : fastrnn::isa();
  bool threw = false;
  try {
    fastrnn::set_isa("no-such");
  } catch (const std::invalid_argument& e) {
    threw = true;
    const std::string msg = e.what();
    for (const auto& v : compiled) {
      if (msg.find(v) == std::string::npos) {
        fail("set_isa(\"no-such\"): the message does not name variant " + v + ": " + msg);
      }
    }
  } catch (const std::exception& e) {
    fail(std::string("set_isa(\"no-such\") threw another exception type: ") + e.what());
    threw = true;
  }
  if (!threw) fail("set_isa(\"no-such\") did not throw");
  if (avail.empty()) return;
  if (fastrnn::isa() != before) fail("a failed set_isa changed the variant in use");
  for (const auto& v : compiled) {
    const bool runs = std::find(avail.begin(), avail.end(), v) != avail.end();
    if (runs) {
      fastrnn::set_isa(v);
      if (fastrnn::isa() != v) fail("set_isa(" + v + "): isa() is " + fastrnn::isa());
      if (fastrnn::build_info().isa != v) fail("set_isa(" + v + "): build_info().isa differs");
      std::string upper = v;
      for (char& ch : upper) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
      fastrnn::set_isa(upper);
      if (fastrnn::isa() != v) fail("set_isa(" + upper + "): isa() is " + fastrnn::isa());
    } else {
      bool t = false;
      try {
        fastrnn::set_isa(v);
      } catch (const std::invalid_argument&) {
        t = true;
      }
      if (!t) fail("set_isa(" + v + ") on a CPU that cannot run it did not throw");
    }
  }
  fastrnn::set_isa("");
  if (fastrnn::isa() != avail.back()) {
    fail("set_isa(\"\") chose " + fastrnn::isa() + ", not the best available " + avail.back());
  }
}

// ------------------------------------------------------------------------------------------------
// The problems
// ------------------------------------------------------------------------------------------------

Dims dims(index_t T, index_t B, index_t I, index_t H, index_t P = 0, index_t L = 1, index_t D = 1) {
  Dims d;
  d.T = T;
  d.B = B;
  d.I = I;
  d.H = H;
  d.P = P;
  d.L = L;
  d.D = D;
  return d;
}

/// A problem of `cell` named `name` with sizes d, the other options at their defaults.
Config config(CellKind cell, const char* name, const Dims& d) {
  Config c;
  c.cell = cell;
  c.name = name;
  c.d = d;
  return c;
}

/// The LSTM projection's correctness problems (either LSTM cell).
void lstm_projection_configs(CellKind cell, std::vector<Config>& out) {
  {
    Config x = config(cell, "proj_stack", dims(4, 3, 4, 6, 3, 2, 2));
    x.dropout = true;
    x.lengths = {4, 1, 0};
    out.push_back(x);
  }
  {  // reverse-only, two layers
    Config x = config(cell, "proj_reverse", dims(4, 3, 4, 6, 3, 2));
    x.d.reverse = true;
    x.lengths = {2, 4, 0};
    out.push_back(x);
  }
  {
    Config x = config(cell, "proj_wide", dims(6, 5, 9, 21, 17));
    x.lengths = {6, 6, 3, 1, 5};
    x.fd_cap = 30;
    out.push_back(x);
  }
  {
    Config x = config(cell, "proj_direct", dims(2, 1, 37, 70, 33));
    x.fd_cap = 4;
    out.push_back(x);
  }
}

/// CellOptions' correctness problems: clip (make_problem keeps the pre-activations away from
/// +-clip and has some clamped), and for the LSTM cells input_forget, alone and with clip.
void options_configs(CellKind cell, std::vector<Config>& out) {
  const bool lstm = fastrnn::has_cell_state(cell);
  {  // bidirectional (sampled entries: the runtime)
    Config x = config(cell, "clip", dims(4, 3, 5, 6, 0, 1, 2));
    x.opt.clip = 1;
    x.fd_cap = 30;
    out.push_back(x);
  }
  {  // reverse-only, two layers, dropout, lengths; LSTM: coupled gates too
    Config x = config(cell, "clip_stack", dims(5, 4, 4, 5, 0, 2));
    x.d.reverse = true;
    x.dropout = true;
    x.lengths = {5, 0, 3, 2};
    x.opt.clip = 0.75;
    x.opt.input_forget = lstm;
    out.push_back(x);
  }
  {  // H past the widest SIMD packet with a tail: the clamps and their derivatives per chunk
    Config x = config(cell, "clip_wide", dims(3, 3, 7, 19));
    x.lengths = {3, 1, 2};
    x.opt.clip = 0.75;
    x.fd_cap = 40;
    out.push_back(x);
  }
  if (!lstm) return;
  {  // coupled gates, no clip: bidirectional, lengths
    Config x = config(cell, "input_forget", dims(4, 3, 5, 6, 0, 1, 2));
    x.lengths = {4, 2, 0};
    x.opt.input_forget = true;
    x.fd_cap = 30;
    out.push_back(x);
  }
  {  // the projection with both options
    Config x = config(cell, "proj_options", dims(4, 3, 4, 6, 3, 2, 2));
    x.opt.clip = 1;
    x.opt.input_forget = true;
    x.lengths = {1, 4, 3};
    x.fd_cap = 30;
    out.push_back(x);
  }
}

/// The layer-normalised cells' own correctness problems (besides every cell's): rows of G*H (and
/// the LSTM's H) with a tail past the SIMD widths (H odd), and zero initial states in a stack
/// (the first step's layer norm of a zero recurrent product, whose derivative is 1/sqrt(1e-5)).
void norm_configs(CellKind cell, std::vector<Config>& out) {
  {
    Config x = config(cell, "wide_37", dims(4, 3, 9, 37, 0, 1, 2));
    x.lengths = {4, 1, 3};
    x.fd_cap = 30;
    out.push_back(x);
  }
  {
    Config x = config(cell, "wide_stack_zero_states", dims(3, 4, 7, 19, 0, 2));
    x.h0 = false;
    x.dropout = true;
    x.lengths = {3, 0, 2, 1};
    x.fd_cap = 30;
    out.push_back(x);
  }
}

/// Zoneout's correctness problems, every cell: h's multipliers, and c's for has_zoneout_cell.
void zoneout_configs(CellKind cell, std::vector<Config>& out) {
  const double pc = fastrnn::has_zoneout_cell(cell) ? 0.4 : 0;
  {  // training's 0/1 multipliers: two bidirectional layers, dropout, lengths (one 0)
    Config x = config(cell, "zoneout_stack", dims(5, 4, 4, 5, 0, 2, 2));
    x.dropout = true;
    x.lengths = {5, 0, 3, 2};
    x.zoneout_h = 0.3;
    x.zoneout_c = pc;
    x.fd_cap = 40;
    out.push_back(x);
  }
  {  // inference's p: reverse-only, H past the SIMD widths with a tail
    Config x = config(cell, "zoneout_eval", dims(4, 3, 7, 19));
    x.d.reverse = true;
    x.lengths = {4, 1, 3};
    x.zoneout_h = 0.3;
    x.zoneout_c = pc;
    x.zoneout_eval = true;
    x.fd_cap = 40;
    out.push_back(x);
  }
  if (pc > 0) {  // c's alone, zero initial states
    Config x = config(cell, "zoneout_c", dims(4, 3, 5, 6));
    x.h0 = false;
    x.zoneout_c = 0.5;
    out.push_back(x);
  }
  if (has_projection(cell)) {  // h zoned out after the projection (Hs < H)
    Config x = config(cell, "zoneout_proj", dims(4, 3, 4, 6, 3, 1, 2));
    x.lengths = {4, 2, 3};
    x.zoneout_h = 0.3;
    x.zoneout_c = pc;
    out.push_back(x);
  }
  if (has_options(cell)) {  // with clip (and the LSTM's input_forget)
    Config x = config(cell, "zoneout_clip", dims(4, 3, 5, 6));
    x.opt.clip = 1;
    x.opt.input_forget = fastrnn::has_cell_state(cell);
    x.zoneout_h = 0.3;
    x.zoneout_c = pc;
    out.push_back(x);
  }
}

/// Correctness problems (checked by finite differences), every cell.
std::vector<Config> correctness_configs() {
  std::vector<Config> out;
  for (CellKind cell : kCells) {
    // a few steps of a few sequences: unpacked per-step products
    out.push_back(config(cell, "basic", dims(4, 3, 5, 6)));
    {  // no biases, zero initial states, no final-state gradients; weight gradients over 6 rows
      Config x = config(cell, "nobias_zero_states", dims(2, 3, 4, 5));
      x.bias = false;
      x.h0 = false;
      x.dhn = false;
      out.push_back(x);
    }
    {  // only the final states in the loss, bidirectional
      Config x = config(cell, "no_dy", dims(3, 2, 3, 4, 0, 1, 2));
      x.dy = false;
      out.push_back(x);
    }
    {  // two bidirectional layers, dropout, variable lengths (one 0, some < T)
      Config x = config(cell, "stack", dims(5, 4, 4, 5, 0, 2, 2));
      x.dropout = true;
      x.lengths = {5, 0, 3, 2};
      out.push_back(x);
    }
    {  // H past the widest SIMD packet (16 floats) with a tail; packed products
      Config x = config(cell, "wide", dims(5, 6, 7, 19, 0, 1, 2));
      x.lengths = {5, 2, 5, 0, 1, 4};
      x.fd_cap = 40;
      out.push_back(x);
    }
    {  // reverse-only (D = 1): two layers, dropout, each sequence from its last valid step
      Config x = config(cell, "reverse", dims(5, 4, 4, 5, 0, 2));
      x.d.reverse = true;
      x.dropout = true;
      x.lengths = {3, 5, 0, 2};
      out.push_back(x);
    }
    {  // reverse-only, all T steps, zero initial states
      Config x = config(cell, "reverse_full", dims(4, 3, 3, 6));
      x.d.reverse = true;
      x.h0 = false;
      out.push_back(x);
    }
    // no steps at all: h_n = h0, and the gradients pass straight through
    out.push_back(config(cell, "T0", dims(0, 2, 3, 4, 0, 1, 2)));
    // the shapes of the Python tests that reach the kernels' blockings (sampled entries)
    struct Shape {
      const char* name;
      index_t T, B, I, H;
    };
    const Shape shapes[] = {
        {"panels_130", 2, 5, 64, 130},   // several packed panels
        {"panels_48", 4, 3, 80, 48},     // weight gradients: panels of 3, 2 and 1 packets
        {"tiles_272", 2, 3, 272, 16},    // more than one 256-column tile of dW_ih
        {"direct_70", 3, 1, 37, 70},     // unpacked products, rows and depth past whole packets
        {"direct_tn_40", 2, 4, 75, 40},  // weight gradients over 8 rows, unpacked
        {"batch1_33", 9, 1, 20, 33},     // batch 1, more steps: packed again
    };
    for (const Shape& s : shapes) {
      Config x = config(cell, s.name, dims(s.T, s.B, s.I, s.H));
      x.fd_cap = 4;
      out.push_back(x);
    }
    if (has_projection(cell)) lstm_projection_configs(cell, out);
    if (has_options(cell)) options_configs(cell, out);
    if (is_norm(cell)) norm_configs(cell, out);
    zoneout_configs(cell, out);
  }
  return out;
}

/// Thread-determinism problems (no finite differences), every cell.
std::vector<Config> thread_configs() {
  std::vector<Config> out;
  auto add = [&](Config x) {
    x.fd = false;
    out.push_back(x);
  };
  for (CellKind cell : kCells) {
    {  // big enough that the time loops run in a team of threads (a step's recurrent product
       // B*G*H*H >= 2^16 multiply-adds: kParallelMinWork): H = 120 for the one-gate RNN
      const bool rnn = cell == CellKind::RnnTanh || cell == CellKind::RnnRelu;
      Config x = config(cell, "threads", dims(7, 5, 33, rnn ? 120 : 70, 0, 2, 2));
      x.dropout = true;
      x.lengths = {7, 3, 7, 0, 5};
      add(x);
      // the same reverse-only (D = 1) with clip, and for the LSTM cells input_forget (the
      // layer-normalised cells, which have no options: reverse-only)
      x.name = has_options(cell) ? "threads_options" : "threads_reverse";
      x.d.D = 1;
      x.d.reverse = true;
      if (has_options(cell)) {
        x.opt.clip = 0.5;
        x.opt.input_forget = fastrnn::has_cell_state(cell);
      }
      add(x);
    }
    if (has_projection(cell)) {
      Config x = config(cell, "threads_proj", dims(7, 5, 33, 80, 50, 2, 2));
      x.dropout = true;
      x.lengths = {2, 7, 7, 6, 0};
      add(x);
    }
    {  // zoneout of h and (has_zoneout_cell) c, in the threads' parts of the units / rows
      Config x = config(cell, "threads_zoneout", dims(7, 5, 33, 70, 0, 2, 2));
      x.dropout = true;
      x.lengths = {7, 3, 7, 0, 5};
      x.zoneout_h = 0.3;
      x.zoneout_c = fastrnn::has_zoneout_cell(cell) ? 0.3 : 0;
      add(x);
    }
    // batch 1, one step: the unpacked (direct) products, shared among threads
    add(config(cell, "direct_b1", dims(1, 1, 33, 260)));
    add(config(cell, "direct_b3", dims(3, 3, 33, 260)));
  }
  return out;
}

std::string fmt(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2e", v);
  return buf;
}

}  // namespace

int main(int argc, char** argv) {
  std::uint64_t seed = 20240607;
  if (const char* s = std::getenv("FASTRNN_TEST_SEED"); s && *s)
    seed = std::strtoull(s, nullptr, 10);
  std::vector<std::string> only;  // variants named on the command line (default: all available)
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "-h" || a == "--help") {
      std::printf(
          "usage: %s [seed] [variant ...]\n(seed also from FASTRNN_TEST_SEED; default: "
          "every variant this CPU runs)\n",
          argv[0]);
      return 0;
    }
    if (!a.empty() && a.find_first_not_of("0123456789") == std::string::npos) {
      seed = std::strtoull(a.c_str(), nullptr, 10);
    } else {
      only.push_back(a);
    }
  }
  const auto t_start = std::chrono::steady_clock::now();
  try {
    const std::vector<std::string> compiled = fastrnn::isa_compiled();
    const std::vector<std::string> avail = fastrnn::isa_available();
    const int threads = fastrnn::num_threads();
    std::printf("fastrnn_kernel_test: seed %llu, compiled [%s], available [%s], %d threads\n",
                static_cast<unsigned long long>(seed), join(compiled).c_str(), join(avail).c_str(),
                threads);
    std::fflush(stdout);
    check_isa_api(compiled, avail);
    const auto t_pool = std::chrono::steady_clock::now();
    check_pool();
    std::printf("thread pool: %d workers, %.2f s\n", fastrnn::detail::pool_workers(),
                seconds_since(t_pool));

    std::vector<std::string> run = avail;  // the variants to test
    if (!only.empty()) {
      run.clear();
      for (const std::string& v : only) {
        if (std::find(avail.begin(), avail.end(), v) == avail.end()) {
          std::printf("error: variant %s (command line) is not available here: %s\n", v.c_str(),
                      join(avail).c_str());
          return 2;
        }
        run.push_back(v);
      }
    }

    // the problems, their reference forwards and finite differences: once for all variants
    auto t0 = std::chrono::steady_clock::now();
    std::vector<Problem> probs, tprobs;
    std::vector<RefOut> refs, trefs;
    std::uint64_t pseed = seed;
    index_t skipped = 0, fd_entries = 0, clipped = 0, clamped = 0;
    for (const Config& c : correctness_configs()) {
      probs.push_back(make_problem(c, ++pseed * 1000003u));
      refs.push_back(ref_forward(probs.back()));
      compute_fd(probs.back());
      skipped += probs.back().fd_skipped;
      for (const auto& idx : probs.back().fd_idx) fd_entries += static_cast<index_t>(idx.size());
      clipped += probs.back().clipped;
      clamped += probs.back().clamped;
    }
    for (const Config& c : thread_configs()) {
      tprobs.push_back(make_problem(c, ++pseed * 1000003u));
      trefs.push_back(ref_forward(tprobs.back()));
      clipped += tprobs.back().clipped;
      clamped += tprobs.back().clamped;
    }
    std::printf(
        "reference: %zu problems, %lld finite-difference entries (%lld skipped at a kink: ReLU's "
        "0, +-clip), %zu thread problems, %lld of %lld clipped pre-activations clamped: %.2f s\n",
        probs.size(), static_cast<long long>(fd_entries), static_cast<long long>(skipped),
        tprobs.size(), static_cast<long long>(clamped), static_cast<long long>(clipped),
        seconds_since(t0));
    std::fflush(stdout);

    for (const std::string& v : run) {
      t0 = std::chrono::steady_clock::now();
      const int failures_before = g_failures;
      g_stats.clear();
      fastrnn::set_isa(v);
      if (fastrnn::isa() != v) fail("set_isa(" + v + "): isa() is " + fastrnn::isa());
      const std::string tag = "[" + v + "]";
      for (size_t i = 0; i < probs.size(); ++i) {
        try {
          check_problem(probs[i], refs[i], tag, /*check_consumed=*/i == 0);
        } catch (const std::exception& e) {
          fail(tag + " " + dims_name(probs[i].c) + ": exception " + e.what());
        }
      }
      for (size_t i = 0; i < tprobs.size(); ++i) {
        try {
          check_threads(tprobs[i], trefs[i], tag + " threads", threads);
        } catch (const std::exception& e) {
          fastrnn::set_num_threads(threads);
          fail(tag + " threads " + dims_name(tprobs[i].c) + ": exception " + e.what());
        }
      }
      try {
        check_train<double>(seed + 17);
        check_train<float>(seed + 17);
        check_bad_lengths<double>();
        check_bad_lengths<float>();
      } catch (const std::exception& e) {
        fail(tag + " train: exception " + std::string(e.what()));
      }
      try {
        check_options_refused<double>();
        check_options_refused<float>();
        for (CellKind cell : {CellKind::LayerNormLstm, CellKind::LayerNormGru}) {
          check_norm_refused<double>(cell);
          check_norm_refused<float>(cell);
        }
      } catch (const std::exception& e) {
        fail(tag + " options refused: exception " + std::string(e.what()));
      }
      const fastrnn::BuildInfo info = fastrnn::build_info();
      std::printf(
          "variant %-15s %s  fwd64 %s  fwd32 %s  bwd64-vs-fd %s  bwd32-vs-64 %s  "
          "train64 %s  train32 %s  threads %s  [%s; %.2f s]\n",
          v.c_str(), g_failures == failures_before ? "ok  " : "FAIL", fmt(g_stats["fwd64"]).c_str(),
          fmt(g_stats["fwd32"]).c_str(), fmt(g_stats["bwd64_fd"]).c_str(),
          fmt(g_stats["bwd32"]).c_str(), fmt(g_stats["train64"]).c_str(),
          fmt(g_stats["train32"]).c_str(), g_stats["det_fail"] == 0 ? "bit-identical" : "DIFFER",
          info.simd, seconds_since(t0));
      std::fflush(stdout);
    }
  } catch (const std::exception& e) {
    fail(std::string("exception: ") + e.what());
  }
  std::printf("%s: %d failure(s), %.2f s\n", g_failures ? "FAILED" : "PASSED", g_failures,
              seconds_since(t_start));
  return g_failures ? 1 : 0;
}
