// One variant's table of entry points (kernel_table.hpp), and its training kernels.
//
// The table is constant data: the code compiled once reads a variant's name and needs without
// running any of the variant's code (which may use instructions this CPU lacks), and calls into
// it only once the CPU has everything the variant needs. This unit therefore has no dynamic
// initialisation (a static initialiser would run at load time, on any CPU).
#include <Eigen/Core>
#include <cstdint>

#include "fastrnn/attention.hpp"
#include "fastrnn/cpu.hpp"
#include "fastrnn/entries.hpp"
#include "fastrnn/kernel_table.hpp"
#include "fastrnn/train.hpp"

#ifndef FASTRNN_ISA_NAME
#error "FASTRNN_ISA_NAME: the variant's name, set by CMakeLists.txt"
#endif

#define FASTRNN_CAT2(a, b) a##b
#define FASTRNN_CAT(a, b) FASTRNN_CAT2(a, b)
#define FASTRNN_STR2(x) #x
#define FASTRNN_STR(x) FASTRNN_STR2(x)

namespace fastrnn::detail {
inline namespace FASTRNN_ISA_NS {
namespace {

/// The CPU features the compiler was allowed to use in this variant (cpu.hpp), from its
/// predefined macros. MSVC defines only __AVX__, __AVX2__ and __AVX512*__ for its /arch levels;
/// what those levels imply is added for it.
constexpr std::uint64_t compiled_features() {
  std::uint64_t f = 0;
#if defined(__SSE3__)
  f |= kSse3;
#endif
#if defined(__SSSE3__)
  f |= kSsse3;
#endif
#if defined(__SSE4_1__)
  f |= kSse41;
#endif
#if defined(__SSE4_2__)
  f |= kSse42;
#endif
#if defined(__POPCNT__)
  f |= kPopcnt;
#endif
#if defined(__AVX__)
  f |= kAvx;
#endif
#if defined(__AVX2__)
  f |= kAvx2;
#endif
#if defined(__FMA__)
  f |= kFma;
#endif
#if defined(__F16C__)
  f |= kF16c;
#endif
#if defined(__BMI__)
  f |= kBmi1;
#endif
#if defined(__BMI2__)
  f |= kBmi2;
#endif
#if defined(__LZCNT__)
  f |= kLzcnt;
#endif
#if defined(__MOVBE__)
  f |= kMovbe;
#endif
#if defined(__AVX512F__)
  f |= kAvx512f;
#endif
#if defined(__AVX512BW__)
  f |= kAvx512bw;
#endif
#if defined(__AVX512CD__)
  f |= kAvx512cd;
#endif
#if defined(__AVX512DQ__)
  f |= kAvx512dq;
#endif
#if defined(__AVX512VL__)
  f |= kAvx512vl;
#endif
#if defined(__AVX512VNNI__)
  f |= kAvx512vnni;
#endif
#if defined(__AVX512BF16__)
  f |= kAvx512bf16;
#endif
#if defined(__AMX_TILE__)
  f |= kAmxTile;
#endif
#if defined(__AMX_BF16__)
  f |= kAmxBf16;
#endif
#if defined(__AMX_INT8__)
  f |= kAmxInt8;
#endif
#if defined(__ARM_NEON) || defined(_M_ARM64)
  f |= kNeon;
#endif
#if defined(_MSC_VER) && !defined(__clang__)
#if defined(__AVX__)
  f |= kSse3 | kSsse3 | kSse41 | kSse42 | kPopcnt;
#endif
#if defined(__AVX2__)
  f |= kFma | kF16c | kBmi1 | kBmi2 | kLzcnt | kMovbe;
#endif
#endif
  return f;
}

const char* simd_in_use() { return Eigen::SimdInstructionSetsInUse(); }

template <class S>
constexpr Kernels<S> kernels_of() {
  return Kernels<S>{
      &rnn_workspace_size<S>,
      &rnn_forward<S>,
      &rnn_backward<S>,
      &train::linear_forward<S>,
      &train::linear_backward<S>,
      &train::softmax_cross_entropy<S>,
      &train::embedding_backward<S>,
      &train::sgd_update<S>,
      &train::adam_update<S>,
      &train::sum_squares<S>,
      &train::max_abs<S>,
      &train::scale<S>,
      &train::clamp<S>,
      &train::attention_forward<S>,
      &train::attention_backward<S>,
  };
}

}  // namespace
}  // namespace FASTRNN_ISA_NS
}  // namespace fastrnn::detail

/// The table's symbol, fastrnn_kernels_<namespace>: declared by the code compiled once through
/// the list of variants CMake generates (isa_list.hpp). Its initialiser is a constant expression,
/// so it is initialised statically, with no code run at load time. (`const`, not `constexpr`:
/// MSVC gives an extern constexpr variable internal linkage unless /Zc:externConstexpr.)
extern "C" const fastrnn::detail::KernelTable FASTRNN_CAT(fastrnn_kernels_, FASTRNN_ISA_NS) = {
    FASTRNN_ISA_NAME,
    fastrnn::detail::compiled_features(),
    &fastrnn::detail::simd_in_use,
    FASTRNN_STR(EIGEN_WORLD_VERSION) "." FASTRNN_STR(EIGEN_MAJOR_VERSION) "." FASTRNN_STR(
        EIGEN_MINOR_VERSION),
    fastrnn::detail::kernels_of<float>(),
    fastrnn::detail::kernels_of<double>(),
};
