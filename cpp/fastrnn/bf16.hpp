// bfloat16 values for Compute::Bf16 (fastrnn.hpp): rounding float to the nearest bfloat16 (ties to
// even), kept in float or packed as the 16-bit halves the bf16 dot-product instructions read.
// The rounding is the reference's (python/fastrnn/reference.py, round_bf16) bit for bit: NaN
// stays a quiet NaN of its sign, overflow goes to infinity, subnormals round like the rest.
#pragma once

#include "fastrnn/isa_namespace.hpp"  // first: only kernel units compile this

#include <cstdint>
#include <cstring>

#include "fastrnn/fastrnn.hpp"

namespace fastrnn::detail {
inline namespace FASTRNN_ISA_NS {

/// The bfloat16 nearest to f (ties to even), as its 16 bits.
inline std::uint16_t bf16_bits(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<std::uint16_t>(u >> 16);
}

/// The float value of bfloat16 bits.
inline float bf16_value(std::uint16_t b) {
  const std::uint32_t u = static_cast<std::uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

/// f rounded to the nearest bfloat16, as a float.
inline float round_bf16(float f) { return bf16_value(bf16_bits(f)); }

/// p[0, n) rounded to bfloat16 in place (a loop the compiler vectorises).
inline void round_bf16_inplace(float* p, index_t n) {
  for (index_t i = 0; i < n; ++i) {
    std::uint32_t u;
    std::memcpy(&u, p + i, sizeof u);
    const std::uint32_t r = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
    const std::uint32_t q = (u | 0x400000u) & 0xffff0000u;  // NaN: quiet, sign kept
    const std::uint32_t v = (u & 0x7fffffffu) > 0x7f800000u ? q : r;
    std::memcpy(p + i, &v, sizeof v);
  }
}

/// dst[0, n) = src[0, n) rounded to bfloat16.
inline void copy_round_bf16(float* dst, const float* src, index_t n) {
  std::memcpy(dst, src, sizeof(float) * static_cast<size_t>(n));
  round_bf16_inplace(dst, n);
}

/// Double arrays never compute in bfloat16 (api.cpp refuses it); these keep templates generic.
inline void round_bf16_inplace(double*, index_t) {}
inline void copy_round_bf16(double* dst, const double* src, index_t n) {
  std::memcpy(dst, src, sizeof(double) * static_cast<size_t>(n));
}

}  // namespace FASTRNN_ISA_NS
}  // namespace fastrnn::detail
