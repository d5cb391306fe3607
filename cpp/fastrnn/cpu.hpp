// CPU features, for choosing a kernel variant at run time (internal to the core).
//
// A variant states what it needs by what its compiler was allowed to use: its table unit
// (cpp/kernels/table.cpp) reads the compiler's predefined macros for the features below
// (__AVX2__, __FMA__, __AVX512F__, ...). That covers the variants of a dispatch build exactly. A
// single-variant build with -march=native or another -march may use more (AVX512_VBMI, AMX, SVE,
// ...) than these bits say: it is meant for the machine it was built on, and is checked only for
// the features listed here. cpu_features() asks the CPU (CPUID) and the OS (XGETBV: the OS saves
// the YMM / ZMM registers on a context switch; macOS enables AVX-512 state on first use, so there
// sysctl answers). A variant runs only where (needs & cpu_features()) == needs.
#pragma once

#include <cstdint>
#include <string>

namespace fastrnn::detail {

enum CpuFeature : std::uint64_t {
  kSse3 = 1ull << 0,
  kSsse3 = 1ull << 1,
  kSse41 = 1ull << 2,
  kSse42 = 1ull << 3,
  kPopcnt = 1ull << 4,
  kAvx = 1ull << 5,
  kAvx2 = 1ull << 6,
  kFma = 1ull << 7,
  kF16c = 1ull << 8,
  kBmi1 = 1ull << 9,
  kBmi2 = 1ull << 10,
  kLzcnt = 1ull << 11,
  kMovbe = 1ull << 12,
  kAvx512f = 1ull << 13,
  kAvx512bw = 1ull << 14,
  kAvx512cd = 1ull << 15,
  kAvx512dq = 1ull << 16,
  kAvx512vl = 1ull << 17,
  kAvx512vnni = 1ull << 18,
  kAvx512bf16 = 1ull << 19,
  /// AMX tiles and their bf16 and int8 products; on Linux the process must also have asked for
  /// the tile state (arch_prctl ARCH_REQ_XCOMP_PERM, done by cpu_features()).
  kAmxTile = 1ull << 20,
  kAmxBf16 = 1ull << 21,
  kAmxInt8 = 1ull << 22,
  kNeon = 1ull << 32,
};

/// The features this CPU and OS support (computed once).
std::uint64_t cpu_features() noexcept;

/// Names of the features in `bits`, space separated ("avx2 fma ...").
std::string feature_names(std::uint64_t bits);

}  // namespace fastrnn::detail
