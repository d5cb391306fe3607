// The bfloat16 product kernel of the variants whose CPU has AVX512_BF16 (vdpbf16ps): out += A x^T
// for a panel of 16 or 32 rows of A and up to 12 rows of x, both packed as bfloat16 pairs along
// the depth, summed in float.
//
// Layouts (PackedMatrix packs A, PackedGemm converts x; both round to nearest, ties to even):
//   A panel, W packets of 16 rows:  pair p of row r at a[(p * 16W + r) * 2 + {0, 1}] = A(r, 2p),
//                                   A(r, 2p + 1), zero past the depth and past the panel's rows
//   x rows:                         pair p of row c at x[c * ldx + 2p + {0, 1}], zero past
//                                   the depth
// vdpbf16ps multiplies 16 such pairs by one broadcast pair of x and adds both products to 16 float
// sums: the panel's W packets times N rows of x are W*N independent sums, enough to cover the
// instruction's latency (N = 12, W = 2: 24 of the 32 vector registers). Every output element is a
// sum over the depth in order, one pair at a time, whatever the blocking around the kernel.
#pragma once

#include "fastrnn/isa_namespace.hpp"  // first: only kernel units compile this

#if defined(__AVX512BF16__)
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "fastrnn/fastrnn.hpp"

namespace fastrnn::detail {
inline namespace FASTRNN_ISA_NS {

/// Rows of x per kernel call (the widest).
inline constexpr int kBf16Cols = 12;

/// sums[q][c] (q < W packets of 16 rows, c < N rows of x) over `pairs` pairs of the depth; then
/// store(c, q, sums) for each.
template <int W, int N, class Store>
EIGEN_ALWAYS_INLINE void bf16_panel(const std::uint16_t* a, std::int64_t pairs,
                                    const std::uint16_t* x, std::int64_t ldx, Store&& store) {
  __m512 acc[W][N];
  for (int q = 0; q < W; ++q) {
    for (int c = 0; c < N; ++c) acc[q][c] = _mm512_setzero_ps();
  }
  for (std::int64_t p = 0; p < pairs; ++p) {
    __m512bh av[W];
    for (int q = 0; q < W; ++q) {
      av[q] = (__m512bh)_mm512_loadu_si512(a + (p * 16 * W + 16 * q) * 2);
    }
    for (int c = 0; c < N; ++c) {
      std::int32_t pair;
      std::memcpy(&pair, x + c * ldx + 2 * p, sizeof pair);
      const __m512bh xv = (__m512bh)_mm512_set1_epi32(pair);
      for (int q = 0; q < W; ++q) acc[q][c] = _mm512_dpbf16_ps(acc[q][c], av[q], xv);
    }
  }
  for (int c = 0; c < N; ++c) {
    for (int q = 0; q < W; ++q) store(c, q, acc[q][c]);
  }
}

/// bf16_panel for n <= kBf16Cols rows of x: the widest call, then the rest in 8, 4, 2, 1 (a
/// function of n only). store(c, q, sums) gets the row c of x from 0.
template <int W, class Store>
void bf16_panel_rows(const std::uint16_t* a, std::int64_t pairs, const std::uint16_t* x,
                     std::int64_t ldx, std::int64_t n, Store&& store) {
  std::int64_t c0 = 0;
  auto run = [&](auto cols) {
    constexpr int N = decltype(cols)::value;
    for (; c0 + N <= n; c0 += N) {
      const std::int64_t base = c0;
      bf16_panel<W, N>(a, pairs, x + base * ldx, ldx,
                       [&](int c, int q, __m512 v) { store(base + c, q, v); });
    }
  };
  run(std::integral_constant<int, kBf16Cols>{});
  run(std::integral_constant<int, 8>{});
  run(std::integral_constant<int, 4>{});
  run(std::integral_constant<int, 2>{});
  run(std::integral_constant<int, 1>{});
}

/// n floats of src as bfloat16 pairs in dst (n rounded up to even, the last half zero),
/// nearest with ties to even (vcvtne2ps2bf16; NaN stays NaN).
inline void to_bf16_pairs(std::uint16_t* dst, const float* src, std::int64_t n) {
  std::int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(src + i + 16), _mm512_loadu_ps(src + i));
    _mm512_storeu_si512(dst + i, (__m512i)v);
  }
  if (i < n) {
    const std::int64_t rest = n - i;
    const __mmask16 lo = static_cast<__mmask16>(rest >= 16 ? 0xffff : (1u << rest) - 1);
    const __mmask16 hi = static_cast<__mmask16>(rest <= 16 ? 0 : (1u << (rest - 16)) - 1);
    const __m512bh v = _mm512_cvtne2ps_pbh(_mm512_maskz_loadu_ps(hi, src + i + 16),
                                           _mm512_maskz_loadu_ps(lo, src + i));
    const std::int64_t even = (rest + 1) / 2 * 2;
    _mm512_mask_storeu_epi16(dst + i, static_cast<__mmask32>((std::uint64_t(1) << even) - 1),
                             (__m512i)v);
  }
}

#if defined(__AMX_TILE__) && defined(__AMX_BF16__)
// AMX (Sapphire Rapids and later): tdpbf16ps multiplies a 16 x 32 tile of bfloat16 by a 32 x 16
// one held as 16 rows of pairs, adding into a 16 x 16 tile of float sums. Here the first operand
// is 16 rows of x (32 values of the depth each, from the x rows' pairs) and the second 16 rows
// of A (16 of their pairs: one 64-byte row of a panel of 16, or half a row of a panel of 32):
// both layouts above serve as they are, with the depth padded to whole tiles (multiples of 32,
// zeros). Tiles 0-3 are four 16 x 16 sums (two blocks of x rows by two of A rows), 4-5 the x
// tiles, 6-7 the A tiles: per step of 32 of the depth four loads and four products. Every sum
// runs over the depth in order, one tile step at a time, whatever the blocking around it.

/// The depth's pairs per tile step.
inline constexpr std::int64_t kAmxPairs = 16;

/// The tile configuration the kernel uses: palette 1, tiles 0-7 of 16 rows of 64 bytes. A
/// constant, not a local filled before the load: gcc 12's ldtilecfg names only 8 of its 64 bytes
/// as the memory it reads, so stores to a local could be dropped as dead.
struct alignas(64) AmxConfig {
  std::uint8_t palette, start_row, reserved[14];
  std::uint16_t colsb[16];
  std::uint8_t rows[16];
};
inline constexpr AmxConfig kAmxConfig = {
    1, 0, {}, {64, 64, 64, 64, 64, 64, 64, 64}, {16, 16, 16, 16, 16, 16, 16, 16}};

/// Loads the tile configuration in the calling thread; amx_done() releases the tiles.
inline void amx_configure() { _tile_loadconfig(&kAmxConfig); }

inline void amx_done() { _tile_release(); }

/// The tile steps of amx_block and amx_block_direct: tiles 0-3 (the NX x NA sums in use) +=
/// NX blocks of 16 rows of x (at x, ldx values per row) by NA blocks of 16 rows of an A panel of
/// `w` rows, over `steps` steps of the depth.
template <int NX, int NA>
EIGEN_ALWAYS_INLINE void amx_steps(const std::uint16_t* x, std::int64_t ldx, const std::uint16_t* a,
                                   std::int64_t w, std::int64_t steps) {
  const std::int64_t x_stride = ldx * 2, a_stride = w * 4;  // bytes per tile row
  for (std::int64_t s = 0; s < steps; ++s) {
    const std::uint16_t* xs = x + s * 2 * kAmxPairs;
    const std::uint16_t* as = a + s * kAmxPairs * w * 2;
    _tile_loadd(4, xs, x_stride);
    if constexpr (NX > 1) _tile_loadd(5, xs + 16 * ldx, x_stride);
    _tile_loadd(6, as, a_stride);
    if constexpr (NA > 1) _tile_loadd(7, as + 32, a_stride);
    _tile_dpbf16ps(0, 4, 6);
    if constexpr (NA > 1) _tile_dpbf16ps(1, 4, 7);
    if constexpr (NX > 1) _tile_dpbf16ps(2, 5, 6);
    if constexpr (NX > 1 && NA > 1) _tile_dpbf16ps(3, 5, 7);
  }
}

/// The sums of NX blocks of 16 rows of x (at x, ldx pairs-values per row) by NA blocks of 16 rows
/// of an A panel of `w` rows (at a: pair p of its row r at (p * w + r) * 2) over `steps` tile
/// steps; then store(i, j, sums) for each block pair, `sums` the 16 x 16 floats of block i of x by
/// block j of A, row by row (16 values of A's rows for each row of x).
template <int NX, int NA, class Store>
void amx_block(const std::uint16_t* x, std::int64_t ldx, const std::uint16_t* a, std::int64_t w,
               std::int64_t steps, float* sums, Store&& store) {
  _tile_zero(0);
  if constexpr (NA > 1) _tile_zero(1);
  if constexpr (NX > 1) _tile_zero(2);
  if constexpr (NX > 1 && NA > 1) _tile_zero(3);
  amx_steps<NX, NA>(x, ldx, a, w, steps);
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

/// Where amx_block_direct's sums go: tile (i, j) (block i of x rows by block j of A rows) starts
/// from init[i][j] (16 rows init_stride bytes apart; stride 0 repeats one row: a bias; nullptr:
/// zeros) and is stored to out[i][j], 16 rows `stride` bytes apart.
struct AmxTiles {
  float* out[2][2];
  std::int64_t stride;
  const float* init[2][2];
  std::int64_t init_stride;
};

/// amx_block for whole tiles written in place: the sums start from the destination's own values
/// (or the bias, or zeros) and go straight back, no pass through memory of their own.
template <int NX, int NA>
void amx_block_direct(const std::uint16_t* x, std::int64_t ldx, const std::uint16_t* a,
                      std::int64_t w, std::int64_t steps, const AmxTiles& t) {
#define FASTRNN_AMX_INIT(tile, i, j)                \
  if (t.init[i][j]) {                               \
    _tile_loadd(tile, t.init[i][j], t.init_stride); \
  } else {                                          \
    _tile_zero(tile);                               \
  }
  FASTRNN_AMX_INIT(0, 0, 0)
  if constexpr (NA > 1) FASTRNN_AMX_INIT(1, 0, 1)
  if constexpr (NX > 1) FASTRNN_AMX_INIT(2, 1, 0)
  if constexpr (NX > 1 && NA > 1) FASTRNN_AMX_INIT(3, 1, 1)
#undef FASTRNN_AMX_INIT
  amx_steps<NX, NA>(x, ldx, a, w, steps);
  _tile_stored(0, t.out[0][0], t.stride);
  if constexpr (NA > 1) _tile_stored(1, t.out[0][1], t.stride);
  if constexpr (NX > 1) _tile_stored(2, t.out[1][0], t.stride);
  if constexpr (NX > 1 && NA > 1) _tile_stored(3, t.out[1][1], t.stride);
}
#endif  // AMX

}  // namespace FASTRNN_ISA_NS
}  // namespace fastrnn::detail

#endif  // __AVX512BF16__
