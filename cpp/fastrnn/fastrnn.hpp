// fastrnn — fused forward and BPTT kernels for recurrent layers, on Eigen.
//
// This is the one public header of the C++ core. It knows nothing of Python.
//
// Conventions (stated once, here)
// -------------------------------
// * Shape letters: T time steps, B batch, I input features, H hidden units, G gates of the cell
//   (RNN 1, GRU 3, LSTM 4), "GH" is G*H; P the LSTM projection size and Hs the size of h (P if
//   projected, else H); L layers, D directions (2 = bidirectional).
// * Every array is dense and row-major ("C order"): the rightmost dimension changes fastest.
//   x is (T, B, I), time-major. Row r = t*B + b of the (T*B, I) matrix view is step t, sequence b.
// * Weights use PyTorch's layout so that trained weights load unchanged:
//       w_ih (GH, I), w_hh (GH, H), b_ih (GH), b_hh (GH)
//   with the gate blocks stacked along the first axis, each H rows:
//
//         w_ih                     LSTM      GRU       RNN
//        +----------------+ 0
//        |  gate 0 (H, I) |        i         r         h
//        +----------------+ H
//        |  gate 1 (H, I) |        f         z
//        +----------------+ 2H
//        |  gate 2 (H, I) |        g         n
//        +----------------+ 3H
//        |  gate 3 (H, I) |        o
//        +----------------+ 4H
//
// * Cell formulas (see ../shared/DOMAIN.md; `*` is the element-wise product):
//     RNN      h' = act(W_ih x + b_ih + W_hh h + b_hh),  act = tanh or relu
//     LSTM     i,f,o = sigmoid(.), g = tanh(.);  c' = f*c + i*g;  h' = o*tanh(c')
//     GRU      r,z = sigmoid(.);  h' = (1 - z)*n + z*h   with
//                reset_after  (default):  n = tanh(W_in x + b_in + r*(W_hn h + b_hn))
//                reset_before           :  n = tanh(W_in x + b_in + W_hn (r*h) + b_hn)
//     LSTM with peepholes (ONNX's LSTM with input P), the cell's own parameters p_i, p_f, p_o:
//              i = sigmoid(. + p_i*c), f = sigmoid(. + p_f*c), g = tanh(.);  c' = f*c + i*g;
//              o = sigmoid(. + p_o*c');  h' = o*tanh(c')
//     layer-normalised LSTM (haste's), LN(a) = (a - mean(a)) / sqrt(var(a) + 1e-5) over a row:
//              v = g_ih*LN(W_ih x) + g_hh*LN(W_hh h) + b_ih + b_hh (LN over the 4H values);
//              i,f,o = sigmoid(v.), g = tanh(v.);  c' = f*c + i*g;  h' = o*tanh(g_c*LN(c') + b_c)
//     layer-normalised GRU (reset_after), LN over the 3H values of a row:
//              a = g_ih*LN(W_ih x) + b_ih, m = g_hh*LN(W_hh h);  r,z = sigmoid(a. + m. + b_h.);
//              n = tanh(a_n + r*(m_n + b_hn));  h' = (1 - z)*n + z*h
//   CellOptions may clamp every pre-activation (ONNX's clip) and couple LSTM's gates
//   (input_forget: f = 1 - i).
// * Biases are optional (nullptr): a layer built with bias=False has none, and then no bias
//   gradients.
// * Initial states are optional (nullptr means zeros: the first step's recurrent products are
//   then zero, for finite weights, and are skipped); so are the incoming gradients dy, dh_n,
//   dc_n.
// * LSTM with projection (PyTorch's proj_size): h' = W_hr (o*tanh(c')), h has P < H units.
// * Variable lengths: the batch is sorted by decreasing length inside (a stable permutation), so
//   that the sequences still running at step t are a prefix of the rows; padded steps are skipped.
// * Aliasing: no output may overlap any input. The workspace is the only in/out buffer.
// * The workspace: forward in training mode saves, in one caller-owned buffer of
//   workspace_size(...) scalars, what backward needs (activated gates, the states of every step and
//   a per-step extra for GRU). backward CONSUMES it: it overwrites the saved gates with their
//   gradients, so one forward supports exactly one backward. The buffer starts with a small header
//   (cell, sizes, state) that backward checks, so a mismatched or already-consumed workspace is an
//   error, never silently wrong numbers. Its layout is otherwise private.
// * Errors are reported by throwing std::invalid_argument (bad sizes, bad workspace).
// * Instruction sets: the kernels are compiled once per ISA level (variant) and one is chosen at
//   run time for this CPU (see isa() below). Every variant computes the same formulas; different
//   variants may round differently in the last bits (FMA or not, SIMD width), while within a
//   variant results are bit-identical across thread counts and runs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace fastrnn {

using index_t = std::int64_t;

/// The recurrent cells. The numeric values are part of the binding's ABI; do not reorder.
enum class CellKind : int {
  RnnTanh = 0,
  RnnRelu = 1,
  Lstm = 2,
  Gru = 3,             ///< GRU with reset_after=True (PyTorch, cuDNN, Keras default)
  GruResetBefore = 4,  ///< GRU with reset_after=False (Cho et al., the course notes)
  LstmPeephole = 5,    ///< LSTM with peepholes (ONNX's LSTM with input P)
  LayerNormLstm = 6,   ///< layer-normalised LSTM (haste's LayerNormLSTM)
  LayerNormGru = 7,    ///< layer-normalised GRU (reset_after)
};

/// Number of gates G of a cell: the weight matrices have G*H rows.
int num_gates(CellKind cell) noexcept;
/// True for the LSTM cells, the only ones with a second state c.
bool has_cell_state(CellKind cell) noexcept;
/// True for the cells whose cell state may be zoned out (ForwardArgs::zoneout_c): the LSTM cells
/// but LstmPeephole, whose p_o's gradient needs the new cell state before zoneout.
bool has_zoneout_cell(CellKind cell) noexcept;
/// Scalars of the cell's own parameters per layer and direction (Weights::cell_params): 0 for
/// most cells; LstmPeephole 3H, the peepholes p_i, p_f, p_o (H each, in that order);
/// LayerNormLstm 10H, the gains g_ih (4H), g_hh (4H), g_c (H) and the bias b_c (H);
/// LayerNormGru 6H, the gains g_ih (3H) and g_hh (3H).
index_t cell_params_size(CellKind cell, index_t H) noexcept;
/// Short name ("lstm", "gru", ...) for messages.
const char* cell_name(CellKind cell) noexcept;

/// The precision of a call's matrix products (Python: compute_dtype). The numeric values are
/// part of the binding's ABI.
///   Exact  the arrays' own type (float or double).
///   Bf16   bfloat16 products with float accumulation (float arrays only): both operands of every
///          matrix product -- weights, inputs, hidden states, GRU's r*h, LSTM's o*tanh(c) before
///          the projection and, in backward, the gate gradients and dL/dh -- are rounded to
///          bfloat16 (to nearest, ties to even) and their products summed in float. Everything
///          else stays float: the arrays, biases, activations, LSTM's cell state, the pointwise
///          gradients and the bias gradients (oneDNN's scheme). CPUs with AVX512_BF16 run the
///          products on their bf16 dot-product instructions; the other variants compute the same
///          rounded products in float, so results agree across machines to float rounding.
///   Int8   int8 products with int32 accumulation, for inference (float arrays; forward only, no
///          workspace): the weights come quantized and packed (Weights::q_ih, q_hh, q_hr; see
///          pack_int8), symmetric with one scale per row (per gate and unit); at every product
///          each row of the activation operand (x, h, GRU's r*h, LSTM's o*tanh(c) before the
///          projection) is quantized the same way, amax = max|row|, scale = amax / 127,
///          q = nearest-even(x * (127 / amax)) (a row below 1e-30 is zeros with scale 0; a row
///          with a NaN or an infinity has scale NaN); the int8 products are summed exactly in
///          int32 and the sum goes into the float gates as float(sum) * scale_x * scale_w.
///          Biases, activations and LSTM's cell state stay float. Every variant computes the
///          same integers (VNNI, AMX, AVX2 or portable code); only the float arithmetic around
///          them may round differently.
enum class Compute : int { Exact = 0, Bf16 = 1, Int8 = 2 };

/// A weight matrix quantized to int8 and packed by pack_int8, for Compute::Int8. Not owned. The
/// packing records its sizes; forward checks them against the matrix it stands for.
struct Int8Matrix {
  const std::uint8_t* data = nullptr;
  index_t bytes = 0;
};

/// Bytes of pack_int8's output for an (m, k) matrix of `gates` stacked gate blocks.
index_t int8_packed_bytes(index_t m, index_t k, index_t gates);

/// Packs the int8 matrix q (m, k <= 32768), row-major, values in [-127, 127], with one scale per
/// row (finite, >= 0: row i stands for q[i, :] * scale[i]), m a multiple of gates, into `out`
/// (int8_packed_bytes(m, k, gates) bytes, 64-byte aligned): the layout of the int8 kernels,
/// the same for every instruction-set variant. Throws std::invalid_argument for bad sizes, a
/// -128 or a bad scale, naming the row.
void pack_int8(const std::int8_t* q, const float* scale, index_t m, index_t k, index_t gates,
               std::uint8_t* out);

/// Sizes and directions of a recurrent layer stack (PyTorch's torch.nn.RNN/LSTM/GRU with all
/// their options, and ONNX's reverse-only direction).
struct Dims {
  index_t T = 0;  ///< time steps
  index_t B = 0;  ///< batch size
  index_t I = 0;  ///< input features of layer 0
  index_t H = 0;  ///< hidden units (of the gates and of LSTM's c)
  index_t P = 0;  ///< LSTM projection size (h has P units); 0 = no projection
  index_t L = 1;  ///< layers
  index_t D = 1;  ///< directions: 1, or 2 (bidirectional)
  /// D == 1 only: the one direction of every layer runs from the last step to the first (ONNX's
  /// direction="reverse"); with lengths, each sequence starts at its last valid step
  bool reverse = false;
  /// size of h: P with a projection, else H
  index_t hs() const { return P > 0 ? P : H; }
  /// input features of layer l
  index_t input_size(index_t l) const { return l == 0 ? I : D * hs(); }
};

/// The parameters of one layer and direction, PyTorch layout. Not owned.
template <class S>
struct Weights {
  const S* w_ih = nullptr;  ///< (G*H, I_l)
  const S* w_hh = nullptr;  ///< (G*H, Hs)
  const S* b_ih = nullptr;  ///< (G*H) or nullptr (no bias)
  const S* b_hh = nullptr;  ///< (G*H) or nullptr; both biases or neither, in every layer
  const S* w_hr = nullptr;  ///< (P, H) LSTM projection, required iff P > 0
  /// (cell_params_size(cell, H)) the cell's own parameters, required iff that is > 0
  const S* cell_params = nullptr;
  /// Compute::Int8 (float only): the weight matrices packed by pack_int8 (w_ih, w_hh with the
  /// cell's G gates, w_hr with 1), used in place of w_ih, w_hh, w_hr (then ignored, may be null)
  Int8Matrix q_ih, q_hh, q_hr;
};

/// Where the gradients of one layer and direction go; overwritten, not accumulated.
template <class S>
struct WeightGrads {
  S* dw_ih = nullptr;          ///< (G*H, I_l)
  S* dw_hh = nullptr;          ///< (G*H, Hs)
  S* db_ih = nullptr;          ///< (G*H), required when the layers have biases
  S* db_hh = nullptr;          ///< (G*H), required when the layers have biases
  S* dw_hr = nullptr;          ///< (P, H), required iff P > 0
  S* d_cell_params = nullptr;  ///< (cell_params_size(cell, H)), required iff that is > 0
};

/// Options of the cells' pointwise math, the same for every layer and direction (ONNX's
/// attributes of its LSTM, GRU and RNN operators). A backward must get its forward's (the
/// workspace records them).
struct CellOptions {
  /// > 0: every pre-activation (RNN's; LSTM's i, f, g, o with their peephole terms; GRU's r, z
  /// and n's whole argument) is clamped to [-clip, clip] before its activation, and its
  /// derivative is 0 where it was clamped (the saved activation at the activation of a bound);
  /// LSTM's cell state is not clamped. 0: none. Finite and >= 0.
  double clip = 0;
  /// (Neither applies to the layer-normalised cells.)
  /// LSTM cells only: the forget gate is 1 - i, as ONNX Runtime couples them (the f block's
  /// pre-activation and p_f are unused: their gradients are 0).
  bool input_forget = false;
};

// Layer l, direction d is entry l*D + d of the weight arrays and of the state arrays
// (PyTorch's order: weight_ih_l{l} then weight_ih_l{l}_reverse).

template <class S>
struct ForwardArgs {
  const Weights<S>* weights = nullptr;  ///< L*D entries
  const S* x = nullptr;                 ///< (T, B, I) input
  const S* h0 = nullptr;                ///< (L*D, B, Hs) initial hidden states, nullptr = zeros
  const S* c0 = nullptr;                ///< (L*D, B, H) initial cell states (LSTM), nullptr = zeros
  /// (B) valid steps of each sequence, 0..T, in any order; nullptr = all T. Steps past a
  /// sequence's length leave its state unchanged and output zeros; the reverse direction starts
  /// at its last valid step (PyTorch's packed sequences).
  const index_t* lengths = nullptr;
  /// (L-1, T, B, D*Hs) multipliers applied to the outputs of layers 0..L-2 (inverted dropout:
  /// 0 or 1/(1-p)), nullptr = none
  const S* dropout = nullptr;
  S* y = nullptr;  ///< (T, B, D*Hs) out: the last layer's h of every step, directions concatenated
  S* h_n = nullptr;  ///< (L*D, B, Hs) out: final hidden states
  S* c_n = nullptr;  ///< (L*D, B, H) out: final cell states (LSTM only; ignored otherwise)
  /// workspace_size(...) scalars to save for backward (training), or nullptr (inference: nothing
  /// per step is kept; one layer's output is the extra memory, O(T*B*D*Hs) with L > 1)
  S* workspace = nullptr;
  Compute compute = Compute::Exact;  ///< the products' precision (recorded in the workspace)
  CellOptions options;               ///< (recorded in the workspace)
  /// Zoneout (Krueger et al.): after each step of a running sequence, h_t = m*h_{t-1} +
  /// (1 - m)*h~_t, h~_t the cell's new state (with a projection: after it), and for the LSTM
  /// cells c_t = m_c*c_{t-1} + (1 - m_c)*c~_t (the cell's h~ is made from c~). The multipliers,
  /// in [0, 1]: in training draws of 0 or 1 (probability p), in inference p itself (the
  /// expectation). (L*D, T, B, Hs) and (L*D, T, B, H), in the caller's batch order; nullptr =
  /// none. Not with LstmPeephole's zoneout_c. A backward must get the same arrays.
  const S* zoneout_h = nullptr;
  const S* zoneout_c = nullptr;
};

template <class S>
struct BackwardArgs {
  const Weights<S>* weights = nullptr;    ///< as given to forward
  const S* x = nullptr;                   ///< (T, B, I) as given to forward
  const index_t* lengths = nullptr;       ///< as given to forward (checked against the workspace)
  S* workspace = nullptr;                 ///< in/out: filled by forward(training), consumed here
  const S* dy = nullptr;                  ///< (T, B, D*Hs) dL/dy, nullptr = zeros
  const S* dh_n = nullptr;                ///< (L*D, B, Hs), nullptr = zeros
  const S* dc_n = nullptr;                ///< (L*D, B, H) (LSTM), nullptr = zeros
  S* dx = nullptr;                        ///< (T, B, I) out; nullptr = not wanted (skips its GEMM)
  S* dh0 = nullptr;                       ///< (L*D, B, Hs) out
  S* dc0 = nullptr;                       ///< (L*D, B, H) out (LSTM only)
  const WeightGrads<S>* grads = nullptr;  ///< L*D entries, out
  Compute compute = Compute::Exact;       ///< must be the forward's (checked: the workspace)
  CellOptions options;                    ///< must be the forward's (checked: the workspace)
  const S* zoneout_h = nullptr;           ///< the forward's (given or not: checked)
  const S* zoneout_c = nullptr;           ///< the forward's (given or not: checked)
};

/// Number of scalars of type S the training workspace needs.
/// The rules of a stack's sizes, the C++ statement of fastrnn.spec.StackSpec's: T, B >= 0; I, H,
/// L >= 1; D 1 or 2, reverse only with D 1; 0 <= P < H, and P > 0 only for the LSTM cells
/// without layer norm. Throws
/// std::invalid_argument naming the size. forward, backward and workspace_size check them; a caller
/// may check first (the bindings do, before they size the output arrays).
void check_dims(CellKind cell, const Dims& dims);

template <class S>
index_t workspace_size(CellKind cell, const Dims& dims);

/// Forward pass over all steps, layers and directions. Throws std::invalid_argument on
/// inconsistent arguments.
template <class S>
void forward(CellKind cell, const Dims& dims, const ForwardArgs<S>& args);

/// Backpropagation through time through all layers and directions, consuming the workspace of
/// the matching forward. The weights must be the ones forward used.
template <class S>
void backward(CellKind cell, const Dims& dims, const BackwardArgs<S>& args);

extern template index_t workspace_size<float>(CellKind, const Dims&);
extern template index_t workspace_size<double>(CellKind, const Dims&);
extern template void forward<float>(CellKind, const Dims&, const ForwardArgs<float>&);
extern template void forward<double>(CellKind, const Dims&, const ForwardArgs<double>&);
extern template void backward<float>(CellKind, const Dims&, const BackwardArgs<float>&);
extern template void backward<double>(CellKind, const Dims&, const BackwardArgs<double>&);

/// Attention: Tq queries and Tk keys per batch entry, B entries, D features of a query and of a
/// key (the score's), Dv of a value. Arrays are time-major: query (Tq, B, D), keys (Tk, B, D),
/// values (Tk, B, Dv), weights (Tq, B, Tk), context (Tq, B, Dv).
struct AttentionDims {
  index_t Tq, Tk, B, D, Dv;
};
/// The inputs of an attention call. lengths[b], in [1, Tk], counts the valid keys of entry b
/// (the rest is padding: weight zero, gradient zero). v: the additive score's vector (D), or
/// nullptr for the dot score.
template <class S>
struct AttentionArgs {
  const S* query;
  const S* keys;
  const S* values;
  const std::int64_t* lengths;
  const S* v;
};
/// Training kernels around the recurrent layers, for S = float or double. Every result is
/// independent of the thread count.
namespace train {
/// The output layer y (N, Out) = x (N, In) W^T + b, W (Out, In) as torch.nn.Linear; b may be
/// nullptr (no bias).
template <class S>
void linear_forward(const S* x, index_t N, index_t In, const S* W, index_t Out, const S* b, S* y);
/// dx = dy W, dW = dy^T x, db = column sums of dy (db may be nullptr: no bias).
template <class S>
void linear_backward(const S* x, index_t N, index_t In, const S* W, index_t Out, const S* dy, S* dx,
                     S* dW, S* db);
/// Softmax cross-entropy over the rows of logits (N, C) with integer targets (N,): returns the
/// loss (mean over the rows whose target is not ignore_index, or their sum) and writes
/// dlogits = (softmax - onehot) / count (or without the division), zero on ignored rows.
/// A target outside [0, C) (and not ignore_index) is std::invalid_argument.
template <class S>
double softmax_cross_entropy(const S* logits, index_t N, index_t C, const std::int64_t* targets,
                             std::int64_t ignore_index, bool mean, S* dlogits);
/// dW (num_embeddings, D) = sum over i of dy[i] into row ids[i]; padding_idx (if >= 0) gets no
/// gradient. An id outside [0, num_embeddings) is std::invalid_argument.
template <class S>
void embedding_backward(const std::int64_t* ids, index_t n, const S* dy, index_t D,
                        index_t num_embeddings, std::int64_t padding_idx, S* dW);
/// torch.optim.SGD's update of one parameter array, in place (buf: the momentum buffer, used
/// when momentum != 0).
template <class S>
void sgd_update(S* p, const S* g, S* buf, index_t n, S lr, S momentum, S dampening, S weight_decay,
                bool nesterov, bool first);
/// torch.optim.Adam's update (no amsgrad) of one parameter array, in place; step >= 1.
template <class S>
void adam_update(S* p, const S* g, S* m, S* v, index_t n, double lr, double beta1, double beta2,
                 double eps, double weight_decay, std::int64_t step);
/// Sum of squares of a[0..n), in double, in a fixed order.
template <class S>
double sum_squares(const S* a, index_t n);
/// max |a[i]| (NaN if any element is NaN).
template <class S>
double max_abs(const S* a, index_t n);
/// a *= s, in place.
template <class S>
void scale(S* a, index_t n, S s);
/// a = clamp(a, -c, c), in place (NaN stays NaN).
template <class S>
void clamp(S* a, index_t n, S c);

/// weights[t,b,:] = softmax over j < lengths[b] of the score of query (t,b) and key (j,b), zero
/// beyond; context[t,b] = sum_j weights[t,b,j] values[j,b]. The score: dot, q . k; or additive,
/// v . tanh(q + k) (q and k already projected). Scores, softmax and context fused per entry.
/// A length outside [1, Tk] is std::invalid_argument.
template <class S>
void attention_forward(const AttentionDims& d, const AttentionArgs<S>& a, S* context, S* weights);
/// The gradients of attention_forward from its weights and dcontext (Tq, B, Dv): dquery (Tq, B, D),
/// dkeys (Tk, B, D), dvalues (Tk, B, Dv), and dv (D) for the additive score (else unused).
template <class S>
void attention_backward(const AttentionDims& d, const AttentionArgs<S>& a, const S* weights,
                        const S* dcontext, S* dquery, S* dkeys, S* dvalues, S* dv);
}  // namespace train

/// Instruction-set variants. A build holds one or more compilations of the kernels ("variants",
/// e.g. x86-64-v2, x86-64-v3, x86-64-v4, x86-64-v4-bf16 on x86, neon on aarch64); one of them
/// runs every call. Which one is chosen at the first call (or at import in Python): the one named
/// by the environment variable FASTRNN_ISA when it is set and not empty, else the best this CPU
/// and its OS support (CPUID and XGETBV on x86). A name that is unknown or that this CPU cannot
/// run is an error naming the choices, never an illegal instruction.
///
/// The variants compiled into this build, lowest first.
std::vector<std::string> isa_compiled();
/// The compiled variants this CPU and OS can run, best last.
std::vector<std::string> isa_available();
/// The variant in use (chooses it on first use; throws std::invalid_argument for a bad
/// FASTRNN_ISA and std::runtime_error when this CPU can run none of the variants).
std::string isa();
/// Runs the kernels of the named variant from now on (a call already running finishes with its
/// own); std::invalid_argument, naming the choices, for an unknown name or one this CPU cannot
/// run. An empty name selects the best available.
void set_isa(const std::string& name);

/// Memory blocks of at least `bytes` bytes (a multiple of 64), 64-byte aligned, from the cache
/// the kernels use for their scratch buffers (freed blocks are kept for calls of the same sizes,
/// already mapped, up to 256 MiB). `got` receives the block's usable size, which free_block needs.
void* alloc_block(std::size_t bytes, std::size_t& got);
void free_block(void* p, std::size_t bytes) noexcept;

/// Thrown when an interrupt hook asks a running call to stop.
struct Interrupted : std::runtime_error {
  Interrupted() : std::runtime_error("interrupted") {}
};

/// While one of these lives on a thread, the time loops of calls made on that thread call
/// poll(ctx) about every 20 ms; when it returns true the call stops by throwing Interrupted
/// (outputs and workspace are then undefined; a consumed workspace stays consumed).
class ScopedInterruptHook {
 public:
  using Poll = bool (*)(void*);
  ScopedInterruptHook(Poll poll, void* ctx) noexcept;
  ~ScopedInterruptHook();
  ScopedInterruptHook(const ScopedInterruptHook&) = delete;
  ScopedInterruptHook& operator=(const ScopedInterruptHook&) = delete;

 private:
  Poll prev_poll_;
  void* prev_ctx_;
};

/// The most threads the kernels use: set_num_threads refuses more, and a default (from
/// FASTRNN_NUM_THREADS or OMP_NUM_THREADS) above it is cut to it. Far above any core count a
/// kernel can use; a job never starts more threads than it has items (cpp/fastrnn/pool.hpp).
constexpr int kMaxThreads = 1024;
/// Threads the kernels use (fastrnn's own setting, independent of any other library's pool).
/// Default: FASTRNN_NUM_THREADS when set to a positive integer, else OMP_NUM_THREADS (the first
/// entry of its list), else the CPUs this process may use: its affinity mask and its cgroups' CPU
/// quota rounded up, not the machine's cores; at most kMaxThreads. Results are bit-identical for
/// every value.
int num_threads() noexcept;
/// Sets the threads the kernels use; 1 <= n <= kMaxThreads (throws std::invalid_argument
/// otherwise).
void set_num_threads(int n);
/// The CPUs this process may use, >= 1: the fewest of its affinity mask and its cgroups' CPU quota
/// rounded up (Linux; Windows: the affinity mask; elsewhere the machine's cores). Read from the
/// system at each call; the default of num_threads() when no variable sets one.
int available_cpus() noexcept;
/// The CPU limit that the cgroup files under `root` give ("" for this system), read as
/// available_cpus() reads them, with the contents of /proc/self/cgroup and /proc/self/mountinfo
/// given: the smallest ceil(quota / period) of the cgroup and its parents; 0 = no limit. (For
/// tests of that reading, on made-up trees.)
int cgroup_cpu_limit(const std::string& root, const std::string& proc_self_cgroup,
                     const std::string& mountinfo) noexcept;

/// Facts about this build and the variant in use, for diagnostics (`fastrnn.build_info()`).
struct BuildInfo {
  const char* eigen_version;
  const char* simd;  ///< Eigen's SIMD instruction sets in the variant in use
  const char* isa;   ///< the variant in use (isa())
};
/// (Chooses the variant on first use, as isa(), and throws as it does.)
BuildInfo build_info();

}  // namespace fastrnn
