// Threads: fastrnn's own thread count, and a matrix product whose result does not depend on it.
//
// Eigen's multi-threaded GEMM chooses its depth blocking from the number of threads, so its
// results change (in the last bits) with the thread count. Here Eigen always runs one thread per
// product, and a product is cut into output tiles whose shape does not depend on the thread
// count; each tile is one single-threaded Eigen product and the tiles are shared among the
// threads. Every output element is thus computed by the same code in the same
// order for any thread count: results are bit-identical across set_num_threads values. The tile
// shape depends on the product's shape only (see tile_shape).
#pragma once

#include "fastrnn/isa_namespace.hpp"  // first: only kernel units compile this

#include <Eigen/Core>
#include <algorithm>

#include "fastrnn/fastrnn.hpp"
#include "fastrnn/kernel_table.hpp"  // check_interrupt

#ifdef _OPENMP
#include <omp.h>
#endif

namespace fastrnn::detail {
inline namespace FASTRNN_ISA_NS {

/// Tiles per product aimed at: enough to share among 8 threads, few enough that the operands
/// are not packed again and again (Eigen packs a tile's operands for each tile). Tiles are never
/// smaller than kMinTileRows x kMinTileCols (narrower tiles cost more than they share).
inline constexpr index_t kTargetTiles = 8;
inline constexpr index_t kMinTileRows = 256;
inline constexpr index_t kMinTileCols = 128;

struct TileShape {
  index_t rows, cols;
};

/// The tile shape of an M x N product: a function of M and N only (never of the thread count),
/// halving the larger side while there are fewer than kTargetTiles tiles and the halves stay
/// at least the minimum size.
inline TileShape tile_shape(index_t M, index_t N) {
  auto ceil_div = [](index_t a, index_t b) { return (a + b - 1) / b; };
  TileShape t{M, N};
  while (ceil_div(M, t.rows) * ceil_div(N, t.cols) < kTargetTiles) {
    const index_t hc = ceil_div(t.cols, 2), hr = ceil_div(t.rows, 2);
    const bool can_c = hc >= kMinTileCols, can_r = hr >= kMinTileRows;
    if (can_c && (t.cols >= t.rows || !can_r)) {
      t.cols = hc;
    } else if (can_r) {
      t.rows = hr;
    } else {
      break;
    }
  }
  return t;
}

/// Products smaller than this (multiply-adds) run on one thread: waking a second one costs more.
/// (Tiles are the same either way, so this does not change any result.)
inline constexpr index_t kParallelMinWork = index_t(1) << 16;

/// f(0), ..., f(count - 1), split statically over `threads` threads (1: in this thread). The
/// items must be independent: which thread runs an item never changes its result.
template <class F>
void parallel_for(index_t count, int threads, F&& f) {
#ifdef _OPENMP
  if (threads > 1) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (index_t i = 0; i < count; ++i) f(i);
    return;
  }
#endif
  (void)threads;
  for (index_t i = 0; i < count; ++i) f(i);
}

/// Runs f(i, n) once in each of n = `threads` threads (i = 0 in the calling thread), which stay
/// together for the whole call: the time loops run inside one team and meet at team_barrier()
/// once or twice per step, instead of starting threads for every product. f must not throw.
template <class F>
void run_team(int threads, F&& f) {
#ifdef _OPENMP
  if (threads > 1) {
#pragma omp parallel num_threads(threads)
    f(static_cast<index_t>(omp_get_thread_num()), static_cast<index_t>(omp_get_num_threads()));
    return;
  }
#endif
  (void)threads;
  f(index_t(0), index_t(1));
}

/// Waits for every thread of the team (a no-op outside one).
inline void team_barrier() {
#ifdef _OPENMP
#pragma omp barrier
#endif
}

/// dst = lhs * rhs (or dst += lhs * rhs), over fixed tiles of dst, in parallel.
/// dst is a writable Eigen expression (a Map or a block of one); lhs and rhs any expressions.
template <class Dst, class Lhs, class Rhs>
void gemm(Dst&& dst, const Lhs& lhs, const Rhs& rhs, bool accumulate = false) {
  const index_t M = dst.rows(), N = dst.cols();
  if (M == 0 || N == 0) return;
  if (lhs.cols() == 0) {
    if (!accumulate) dst.setZero();
    return;
  }
  const TileShape ts = tile_shape(M, N);
  const index_t tm = (M + ts.rows - 1) / ts.rows, tn = (N + ts.cols - 1) / ts.cols;
  const index_t tiles = tm * tn;
  auto tile = [&](index_t k) {
    const index_t r0 = (k / tn) * ts.rows, c0 = (k % tn) * ts.cols;
    const index_t rm = std::min(ts.rows, M - r0), cn = std::min(ts.cols, N - c0);
    auto d = dst.block(r0, c0, rm, cn);
    if (accumulate) {
      d.noalias() += lhs.middleRows(r0, rm) * rhs.middleCols(c0, cn);
    } else {
      d.noalias() = lhs.middleRows(r0, rm) * rhs.middleCols(c0, cn);
    }
  };
  const bool small = M * N * lhs.cols() < kParallelMinWork;
  const int threads = small ? 1 : static_cast<int>(std::min<index_t>(num_threads(), tiles));
  parallel_for(tiles, threads, tile);
}

/// Calls f(b0, b1) over a split of the rows [0, rows) among the threads, when there are at
/// least `min_elements` elements (rows * width) to share. For element-wise work only: any split
/// gives the same results.
template <class F>
void parallel_rows(index_t rows, index_t width, F&& f, index_t min_elements = index_t(1) << 14) {
  const int threads = static_cast<int>(std::min<index_t>(num_threads(), rows));
#ifdef _OPENMP
  if (threads > 1 && rows * width >= min_elements) {
#pragma omp parallel num_threads(threads)
    {
      const index_t n = omp_get_num_threads(), i = omp_get_thread_num();
      const index_t b0 = rows * i / n, b1 = rows * (i + 1) / n;
      if (b1 > b0) f(b0, b1);
    }
    return;
  }
#endif
  (void)threads;
  if (rows > 0) f(0, rows);
}

}  // namespace FASTRNN_ISA_NS
}  // namespace fastrnn::detail
