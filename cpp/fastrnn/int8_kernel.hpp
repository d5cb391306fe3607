// The int8 products of Compute::Int8 (fastrnn.hpp): the activations quantized per row, then their
// exact int32 sums against the packed weights (int8.hpp), dequantized into float outputs.
//
// One kernel per instruction set, all computing the same integers:
//   AMX-INT8 (x86-64-v4-amx, 16 rows of x or more): tdpbusd, 16 x-rows by 16 weight rows a tile
//   AVX512-VNNI (x86-64-v4-bf16, -amx): vpdpbusd, 16 weight rows by a broadcast quad of x
//   AVX2 (x86-64-v3, -v4): vpmaddubsw on |x| and the weights with x's signs (vpsignb): every
//     pair sum is at most 2 * 127 * 127 = 32258 < 32767, so its int16 never saturates (both
//     operands are symmetric, in [-127, 127]), then vpmaddwd into int32
//   portable (the other variants): plain int32 loops
// vpdpbusd and tdpbusd multiply unsigned by signed bytes: there x is stored as x + 128 and each
// sum starts from -128 * (the weight row's sum), which makes it exact again.
#pragma once

#include "fastrnn/isa_namespace.hpp"  // first: only kernel units compile this

#include <Eigen/Core>  // EIGEN_ALWAYS_INLINE
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "fastrnn/fastrnn.hpp"
#include "fastrnn/int8.hpp"

#if defined(__AVX2__)
#include <immintrin.h>
#endif
#if defined(__AVX512BF16__)
#include "fastrnn/bf16_kernel.hpp"  // the AMX tile configuration
#endif

#if defined(__AVX512VNNI__) && defined(__AVX512BW__)
#define FASTRNN_I8_VNNI 1
#else
#define FASTRNN_I8_VNNI 0
#endif
#if FASTRNN_I8_VNNI && defined(__AMX_TILE__) && defined(__AMX_INT8__) && defined(__AMX_BF16__)
#define FASTRNN_I8_AMX 1
#else
#define FASTRNN_I8_AMX 0
#endif

namespace fastrnn::detail {
inline namespace FASTRNN_ISA_NS {

/// Added to the quantized activations as they are stored (as bytes): 128 for the kernels that
/// read them unsigned.
inline constexpr int kI8Offset = FASTRNN_I8_VNNI ? 128 : 0;

/// The largest magnitude quantization accepts; a row below 1e-30 is zeros (scale 0).
inline constexpr float kQuantMin = 1e-30f;

/// Quantizes n rows of x (k values each, ldx apart) per row (fastrnn.hpp's Compute::Int8): row
/// c's values as bytes q + kI8Offset at q + c * ldq (the bytes past k up to ldq: kI8Offset, i.e.
/// zero) and its scale at scale[c].
inline void quantize_rows_i8(const float* x, index_t ldx, index_t n, index_t k, std::uint8_t* q,
                             index_t ldq, float* scale) {
  for (index_t c = 0; c < n; ++c) {
    const float* row = x + c * ldx;
    std::uint8_t* out = q + c * ldq;
    // the largest |x| as bits: for non-NaN values the order of their magnitudes' bits is the
    // order of the magnitudes; infinities and NaNs have all exponent bits set
    std::uint32_t m = 0;
    for (index_t j = 0; j < k; ++j) {
      std::uint32_t b;
      std::memcpy(&b, row + j, 4);
      m = std::max(m, b & 0x7fffffffu);
    }
    float amax;
    std::memcpy(&amax, &m, 4);
    if (m >= 0x7f800000u || amax < kQuantMin) {
      scale[c] = m >= 0x7f800000u ? NAN : 0.0f;
      std::fill(out, out + ldq, static_cast<std::uint8_t>(kI8Offset));
      continue;
    }
    const float inv = 127.0f / amax;
    scale[c] = amax / 127.0f;
    index_t j = 0;
#if defined(__AVX512BW__)
    const __m512 vinv = _mm512_set1_ps(inv);
    for (; j + 16 <= k; j += 16) {
      const __m512i v = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(row + j), vinv));
      __m128i b = _mm512_cvtsepi32_epi8(v);
      if constexpr (kI8Offset != 0) b = _mm_xor_si128(b, _mm_set1_epi8(-128));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(out + j), b);
    }
#elif defined(__AVX2__)
    const __m256 vinv = _mm256_set1_ps(inv);
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (; j + 32 <= k; j += 32) {
      __m256i v[4];
      for (int i = 0; i < 4; ++i) {
        v[i] = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(row + j + 8 * i), vinv));
      }
      const __m256i w16a = _mm256_packs_epi32(v[0], v[1]), w16b = _mm256_packs_epi32(v[2], v[3]);
      __m256i b = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(w16a, w16b), order);
      if constexpr (kI8Offset != 0) b = _mm256_xor_si256(b, _mm256_set1_epi8(-128));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + j), b);
    }
#endif
    for (; j < k; ++j) {
      const long v = std::lrint(row[j] * inv);  // nearest, ties to even (the default mode)
      out[j] = static_cast<std::uint8_t>(static_cast<int>(std::clamp(v, -127L, 127L)) + kI8Offset);
    }
    std::fill(out + k, out + ldq, static_cast<std::uint8_t>(kI8Offset));
  }
}

/// Where a product's outputs go: row c, A's row r at out[c * ld + r - shift], set to bias[r] (or
/// 0) + the product, or added to with accumulate (PackedGemm's Target).
struct I8Out {
  float* out;
  index_t ld;
  bool accumulate;
  const float* bias;
  index_t shift;
};

/// The sums of x row c by the 16 rows of the panel starting at unit pu of gate g, dequantized
/// into the outputs of the units [u0, u1) among them.
inline void i8_store(const Int8View& v, index_t g, index_t pu, index_t u0, index_t u1,
                     const std::int32_t* sums, float sx, index_t c, const I8Out& o) {
  const index_t lo = std::max(u0, pu), hi = std::min(u1, pu + kI8Rows);
  const float* sw = v.scale + v.prow(g, 0);
  const index_t r0 = g * v.units;  // A's row of the gate's unit 0
  float* row = o.out + c * o.ld + r0 - o.shift;
#if defined(__AVX512F__)
  // lane i: unit pu + i (the scales are padded to whole panels; the rest masked)
  const auto m = static_cast<__mmask16>(((1u << (hi - pu)) - 1) & ~((1u << (lo - pu)) - 1));
  const __m512 p = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_loadu_si512(sums)),
                                 _mm512_mul_ps(_mm512_set1_ps(sx), _mm512_loadu_ps(sw + pu)));
  const __m512 base = o.accumulate ? _mm512_maskz_loadu_ps(m, row + pu)
                      : o.bias     ? _mm512_maskz_loadu_ps(m, o.bias + r0 + pu)
                                   : _mm512_setzero_ps();
  _mm512_mask_storeu_ps(row + pu, m, _mm512_add_ps(base, p));
#else
  for (index_t u = lo; u < hi; ++u) {
    const float p = static_cast<float>(sums[u - pu]) * (sx * sw[u]);
    row[u] = (o.accumulate ? row[u] : o.bias ? o.bias[r0 + u] : 0.0f) + p;
  }
#endif
}

#if FASTRNN_I8_AMX
/// i8_store for the `rows` (<= 16) rows of x from c0 of one AMX tile of sums (16 x 16, row by
/// row): the same arithmetic, with what the rows share (the units' mask and scales, the bias)
/// loaded once.
inline void i8_store_tile(const Int8View& v, index_t g, index_t pu, index_t u0, index_t u1,
                          const std::int32_t* sums, const float* sx, index_t c0, index_t rows,
                          const I8Out& o) {
  const index_t lo = std::max(u0, pu), hi = std::min(u1, pu + kI8Rows);
  const auto m = static_cast<__mmask16>(((1u << (hi - pu)) - 1) & ~((1u << (lo - pu)) - 1));
  const index_t r0 = g * v.units + pu;  // A's row of lane 0
  const __m512 sw = _mm512_loadu_ps(v.scale + v.prow(g, pu));
  const __m512 bias =
      !o.accumulate && o.bias ? _mm512_maskz_loadu_ps(m, o.bias + r0) : _mm512_setzero_ps();
  float* out = o.out + c0 * o.ld + r0 - o.shift;
  for (index_t r = 0; r < rows; ++r, out += o.ld) {
    const __m512 p = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_load_si512(sums + 16 * r)),
                                   _mm512_mul_ps(_mm512_set1_ps(sx[c0 + r]), sw));
    const __m512 base = o.accumulate ? _mm512_maskz_loadu_ps(m, out) : bias;
    _mm512_mask_storeu_ps(out, m, _mm512_add_ps(base, p));
  }
}
#endif

#if FASTRNN_I8_VNNI
/// vpdpbusd: sums[c][16 q + r] for N rows of x (unsigned, ldx bytes apart) by W panels (pstride
/// bytes apart), over kq quads, each starting from -128 * the row's sum.
template <int W, int N>
EIGEN_ALWAYS_INLINE void i8_panels(const std::int8_t* a, index_t pstride, index_t kq,
                                   const std::int32_t* rowsums, index_t sstride,
                                   const std::uint8_t* x, index_t ldx, std::int32_t* sums) {
  // few rows of x (a batch of 1 or 2): C independent chains of sums, quad i in chain i % C,
  // added at the end (integers: the same sums), so that vpdpbusd's latency is covered
  constexpr int C = N <= 2 ? 4 : 1;
  __m512i acc[C][W][N];
  for (int q = 0; q < W; ++q) {
    const __m512i comp = _mm512_sub_epi32(
        _mm512_setzero_si512(), _mm512_slli_epi32(_mm512_loadu_si512(rowsums + q * sstride), 7));
    for (int c = 0; c < N; ++c) {
      acc[0][q][c] = comp;
      for (int h = 1; h < C; ++h) acc[h][q][c] = _mm512_setzero_si512();
    }
  }
  auto quad_step = [&](index_t i, int h) {
    __m512i av[W];
    for (int q = 0; q < W; ++q) av[q] = _mm512_loadu_si512(a + q * pstride + i * 64);
    for (int c = 0; c < N; ++c) {
      std::int32_t quad;
      std::memcpy(&quad, x + c * ldx + 4 * i, 4);
      const __m512i xv = _mm512_set1_epi32(quad);
      for (int q = 0; q < W; ++q) acc[h][q][c] = _mm512_dpbusd_epi32(acc[h][q][c], xv, av[q]);
    }
  };
  index_t i = 0;
  for (; i + C <= kq; i += C) {
    for (int h = 0; h < C; ++h) quad_step(i + h, h);
  }
  for (; i < kq; ++i) quad_step(i, 0);
  for (int c = 0; c < N; ++c) {
    for (int q = 0; q < W; ++q) {
      __m512i t = acc[0][q][c];
      for (int h = 1; h < C; ++h) t = _mm512_add_epi32(t, acc[h][q][c]);
      _mm512_storeu_si512(sums + c * 16 * W + 16 * q, t);
    }
  }
}
inline constexpr int kI8Cols = 12;  ///< rows of x per kernel call (the widest)
#elif defined(__AVX2__)
/// vpmaddubsw on |x| and sign(x) * a (exact: see the top of this file), W = 1 panel.
template <int W, int N>
EIGEN_ALWAYS_INLINE void i8_panels(const std::int8_t* a, index_t pstride, index_t kq,
                                   const std::int32_t*, index_t, const std::uint8_t* x, index_t ldx,
                                   std::int32_t* sums) {
  static_assert(W == 1);
  (void)pstride;
  __m256i acc[N][2];
  for (int c = 0; c < N; ++c) acc[c][0] = acc[c][1] = _mm256_setzero_si256();
  const __m256i ones = _mm256_set1_epi16(1);
  for (index_t i = 0; i < kq; ++i) {
    const __m256i w0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + i * 64));
    const __m256i w1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + i * 64 + 32));
    for (int c = 0; c < N; ++c) {
      std::int32_t quad;
      std::memcpy(&quad, x + c * ldx + 4 * i, 4);
      const __m256i xv = _mm256_set1_epi32(quad), ax = _mm256_abs_epi8(xv);
      const __m256i p0 = _mm256_maddubs_epi16(ax, _mm256_sign_epi8(w0, xv));
      const __m256i p1 = _mm256_maddubs_epi16(ax, _mm256_sign_epi8(w1, xv));
      acc[c][0] = _mm256_add_epi32(acc[c][0], _mm256_madd_epi16(p0, ones));
      acc[c][1] = _mm256_add_epi32(acc[c][1], _mm256_madd_epi16(p1, ones));
    }
  }
  for (int c = 0; c < N; ++c) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(sums + c * 16), acc[c][0]);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(sums + c * 16 + 8), acc[c][1]);
  }
}
inline constexpr int kI8Cols = 4;
#else
/// Plain int32 sums, W = 1 panel.
template <int W, int N>
EIGEN_ALWAYS_INLINE void i8_panels(const std::int8_t* a, index_t, index_t kq, const std::int32_t*,
                                   index_t, const std::uint8_t* x, index_t ldx,
                                   std::int32_t* sums) {
  static_assert(W == 1);
  for (int c = 0; c < N; ++c) {
    std::int32_t acc[kI8Rows] = {};
    const auto* xc = reinterpret_cast<const std::int8_t*>(x + c * ldx);
    for (index_t i = 0; i < kq; ++i) {
      const std::int8_t* ai = a + i * 64;
      for (index_t r = 0; r < kI8Rows; ++r) {
        std::int32_t s = 0;
        for (index_t j = 0; j < 4; ++j) s += std::int32_t(xc[4 * i + j]) * ai[r * 4 + j];
        acc[r] += s;
      }
    }
    std::memcpy(sums + c * kI8Rows, acc, sizeof acc);
  }
}
inline constexpr int kI8Cols = 4;
#endif

/// Panels per kernel call.
inline constexpr int kI8Width = FASTRNN_I8_VNNI ? 2 : 1;

#if FASTRNN_I8_AMX
/// AMX: NX blocks of 16 rows of x by NA panels, tiles 0-3 the int32 sums (starting from
/// -128 * each weight row's sum: a stride-0 load), 4-5 x, 6-7 the panels; then each tile to
/// sums (16 x 16 int32) and store(i, j, sums).
template <int NX, int NA, class Store>
void i8_amx_block(const std::uint8_t* x, index_t ldx, const std::int8_t* a, index_t pstride,
                  const std::int32_t* comp, index_t steps, std::int32_t* sums, Store&& store) {
  _tile_loadd(0, comp, 0);
  if constexpr (NA > 1) _tile_loadd(1, comp + 16, 0);
  if constexpr (NX > 1) _tile_loadd(2, comp, 0);
  if constexpr (NX > 1 && NA > 1) _tile_loadd(3, comp + 16, 0);
  for (index_t s = 0; s < steps; ++s) {
    _tile_loadd(4, x + s * 64, ldx);
    if constexpr (NX > 1) _tile_loadd(5, x + 16 * ldx + s * 64, ldx);
    _tile_loadd(6, a + s * 1024, 64);
    if constexpr (NA > 1) _tile_loadd(7, a + pstride + s * 1024, 64);
    _tile_dpbusd(0, 4, 6);
    if constexpr (NA > 1) _tile_dpbusd(1, 4, 7);
    if constexpr (NX > 1) _tile_dpbusd(2, 5, 6);
    if constexpr (NX > 1 && NA > 1) _tile_dpbusd(3, 5, 7);
  }
  _tile_stored(0, sums, 64);
  store(0, 0, sums);
  if constexpr (NA > 1) {
    _tile_stored(1, sums, 64);
    store(0, 1, sums);
  }
  if constexpr (NX > 1) {
    _tile_stored(2, sums, 64);
    store(1, 0, sums);
  }
  if constexpr (NX > 1 && NA > 1) {
    _tile_stored(3, sums, 64);
    store(1, 1, sums);
  }
}
#endif

/// Rows of x from which the AMX tiles run (fewer: the vector kernel).
inline constexpr index_t kI8AmxMinRows = 16;

/// out(c, gate g's units [u0, u1)) for the n rows of x quantized (xq: ldx bytes a row, rows
/// padded with zeros to whole tiles of 16; sx their scales) by the packed weights v.
inline void i8_segment(const Int8View& v, index_t g, index_t u0, index_t u1, const std::uint8_t* xq,
                       index_t ldx, const float* sx, index_t n, const I8Out& o) {
  if (u1 <= u0 || n <= 0) return;
  const index_t p0 = u0 / kI8Rows, p1 = (u1 + kI8Rows - 1) / kI8Rows;
  const index_t pstride = v.panel_bytes(), kq = v.depth_quads();
  alignas(64) std::int32_t sums[kI8Cols * 16 * kI8Width > 256 ? kI8Cols * 16 * kI8Width : 256];
#if FASTRNN_I8_AMX
  if (n >= kI8AmxMinRows) {
    alignas(64) std::int32_t comp[2 * kI8Rows];
    const index_t steps = v.quads / kI8TileQuads;
    for (index_t p = p0; p < p1; p += 2) {
      const int na = p + 1 < p1 ? 2 : 1;
      for (int j = 0; j < na; ++j) {
        for (index_t r = 0; r < kI8Rows; ++r) {
          comp[j * kI8Rows + r] = -128 * v.sums[v.prow(g, (p + j) * kI8Rows + r)];
        }
      }
      for (index_t cb = 0; cb < n; cb += 32) {
        const int nx = n - cb > 16 ? 2 : 1;
        auto store = [&](int i, int j, const std::int32_t* s) {
          const index_t c = cb + 16 * i;
          i8_store_tile(v, g, (p + j) * kI8Rows, u0, u1, s, sx, c, std::min<index_t>(16, n - c), o);
        };
        const std::uint8_t* x = xq + cb * ldx;
        const std::int8_t* a = v.panel(g, p);
        if (nx == 2 && na == 2) {
          i8_amx_block<2, 2>(x, ldx, a, pstride, comp, steps, sums, store);
        } else if (nx == 2) {
          i8_amx_block<2, 1>(x, ldx, a, pstride, comp, steps, sums, store);
        } else if (na == 2) {
          i8_amx_block<1, 2>(x, ldx, a, pstride, comp, steps, sums, store);
        } else {
          i8_amx_block<1, 1>(x, ldx, a, pstride, comp, steps, sums, store);
        }
      }
    }
    return;
  }
#endif
  for (index_t p = p0; p < p1; p += kI8Width) {
    const int w = static_cast<int>(std::min<index_t>(kI8Width, p1 - p));
    const std::int8_t* a = v.panel(g, p);
    const std::int32_t* rs = v.sums + v.prow(g, p * kI8Rows);
    index_t c0 = 0;
    auto run = [&](auto cols, auto width) {
      constexpr int N = decltype(cols)::value, W = decltype(width)::value;
      for (; c0 + N <= n; c0 += N) {
        i8_panels<W, N>(a, pstride, kq, rs, kI8Rows, xq + c0 * ldx, ldx, sums);
        for (int c = 0; c < N; ++c) {
          for (int q = 0; q < W; ++q) {
            i8_store(v, g, (p + q) * kI8Rows, u0, u1, sums + c * 16 * W + 16 * q, sx[c0 + c],
                     c0 + c, o);
          }
        }
      }
    };
    auto all_rows = [&](auto width) {
      run(std::integral_constant<int, kI8Cols>{}, width);
      if constexpr (kI8Cols > 8) run(std::integral_constant<int, 8>{}, width);
      if constexpr (kI8Cols > 4) run(std::integral_constant<int, 4>{}, width);
      run(std::integral_constant<int, 2>{}, width);
      run(std::integral_constant<int, 1>{}, width);
    };
    if (w == kI8Width) {
      all_rows(std::integral_constant<int, kI8Width>{});
    } else {
      all_rows(std::integral_constant<int, 1>{});
    }
  }
}

}  // namespace FASTRNN_ISA_NS
}  // namespace fastrnn::detail
