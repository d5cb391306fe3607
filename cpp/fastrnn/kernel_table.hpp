// The one table of entry points through which every kernel is called (internal to the core).
//
// The kernels (cells, driver, stack, products, training kernels) are compiled once per ISA
// variant, each compilation in a namespace of its own (see isa_namespace.hpp), and each variant
// fills one KernelTable. The code that does not depend on the ISA -- argument checks, the choice
// of the variant, threads, the interrupt hook, the block cache -- is compiled once (cpp/*.cpp)
// and calls a kernel through the table of the variant in use: one indirect call per entry,
// never per step. Adding a kernel means one member here and one line in cpp/kernels/table.cpp.
#pragma once

#include <cstdint>

#include "fastrnn/fastrnn.hpp"

namespace fastrnn::detail {

/// The entry points of one variant for one scalar type. The RNN entries assume checked
/// arguments (cpp/api.cpp checks them before the call).
template <class S>
struct Kernels {
  index_t (*workspace_size)(CellKind, const Dims&);
  void (*forward)(CellKind, const Dims&, const ForwardArgs<S>&);
  void (*backward)(CellKind, const Dims&, const BackwardArgs<S>&);
  void (*linear_forward)(const S*, index_t, index_t, const S*, index_t, const S*, S*);
  void (*linear_backward)(const S*, index_t, index_t, const S*, index_t, const S*, S*, S*, S*);
  double (*softmax_cross_entropy)(const S*, index_t, index_t, const std::int64_t*, std::int64_t,
                                  bool, S*);
  void (*embedding_backward)(const std::int64_t*, index_t, const S*, index_t, index_t, std::int64_t,
                             S*);
  void (*sgd_update)(S*, const S*, S*, index_t, S, S, S, S, bool, bool);
  void (*adam_update)(S*, const S*, S*, S*, index_t, double, double, double, double, double,
                      std::int64_t);
  double (*sum_squares)(const S*, index_t);
  double (*max_abs)(const S*, index_t);
  void (*scale)(S*, index_t, S);
  void (*clamp)(S*, index_t, S);
  void (*attention_forward)(const AttentionDims&, const AttentionArgs<S>&, S*, S*);
  void (*attention_backward)(const AttentionDims&, const AttentionArgs<S>&, const S*, const S*, S*,
                             S*, S*, S*);
};

/// One variant: its name, what it needs from the CPU (cpu.hpp bits), and its entry points.
struct KernelTable {
  const char* name;     ///< e.g. "x86-64-v3"
  std::uint64_t needs;  ///< CpuFeature bits its compiler was allowed to use
  /// Eigen's SimdInstructionSetsInUse() in the variant (variant code: call it only once the CPU
  /// is known to run the variant)
  const char* (*simd)();
  const char* eigen_version;  ///< "3.4.1"
  Kernels<float> f32;
  Kernels<double> f64;

  template <class S>
  const Kernels<S>& of() const {
    if constexpr (sizeof(S) == sizeof(float)) {
      return f32;
    } else {
      return f64;
    }
  }
};

/// The table of the variant in use (isa() chooses it on first use).
const KernelTable& kernels();

/// Polls the calling thread's interrupt hook (see ScopedInterruptHook), at most every 20 ms;
/// throws Interrupted when it asks to stop. Compiled once; the kernels call it between steps.
void check_interrupt();

}  // namespace fastrnn::detail
