// Threads: the kernels' ways into the pool (pool.hpp), and a matrix product whose result does
// not depend on the thread count.
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
#include <type_traits>

#include "fastrnn/fastrnn.hpp"
#include "fastrnn/pool.hpp"

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

/// f(0), ..., f(count - 1) on at most `threads` threads (1: in this thread), through the pool
/// (pool.hpp). The items must be independent: which thread runs an item never changes its
/// result.
template <class F>
void parallel_for(index_t count, int threads, F&& f) {
  using Fn = std::remove_reference_t<F>;
  if (threads <= 1 || count <= 1) {
    for (index_t i = 0; i < count; ++i) f(i);
    return;
  }
  pool_run(
      count, threads, [](void* ctx, index_t i, int) { (*static_cast<Fn*>(ctx))(i); },
      const_cast<void*>(static_cast<const void*>(&f)));
}

/// As parallel_for, f(i, thread): thread in [0, threads), unique among the threads running
/// items at any moment (an index into per-thread scratch).
template <class F>
void parallel_for_threads(index_t count, int threads, F&& f) {
  using Fn = std::remove_reference_t<F>;
  if (threads <= 1 || count <= 1) {
    for (index_t i = 0; i < count; ++i) f(i, 0);
    return;
  }
  pool_run(
      count, threads, [](void* ctx, index_t i, int t) { (*static_cast<Fn*>(ctx))(i, t); },
      const_cast<void*>(static_cast<const void*>(&f)));
}

/// Part `index` of `count` of a step's work: the units it owns (driver.hpp), the output
/// columns of a product (PackedGemm::multiply_part).
struct Part {
  index_t index, count;
};

/// The time loops' team: each step is cut into `size` parts (Part{i, size}: the units part i
/// owns, driver.hpp), and run() runs one phase of a step -- f(part) for every part, each part
/// on whichever thread of the team takes it -- and returns when all parts are done: the
/// barrier between phases. On idle cores part i runs on thread i in every phase (the pool's
/// first choice), so its packed weights stay in that core's cache; a part whose thread has lost
/// its core is run by another.
class Team {
 public:
  explicit Team(int size) : size_(std::max(size, 1)) {}
  int size() const { return size_; }
  /// The caller runs every phase (and so is the one to poll for interrupts).
  bool leader() const { return true; }
  template <class F>
  void run(F&& f) const {
    const index_t n = size_;
    parallel_for(n, size_, [&](index_t i) { f(Part{i, n}); });
  }

 private:
  int size_;
};

/// Thrown out of a TeamMember's phase when another member failed (run_team).
struct TeamAborted {};

/// One of the n threads that run a whole loop together (run_team): run(f) is one phase of the
/// loop, f(part) for the n parts (TeamPhases: the member's own part, then any part nobody else
/// has started), returning when all n are done, so that as with Team the next phase starts when
/// all of this one is done. The members stay from the first phase to the last, each with its
/// part (and that part's weights in its core's cache) unless another process keeps its thread
/// off its core, and a phase costs no job handed to the pool. Only the leader (member 0, the
/// caller's thread) does what must be done once.
class TeamMember {
 public:
  TeamMember(int index, TeamPhases& phases) : index_(index), phases_(phases) {}
  int size() const { return phases_.size(); }
  bool leader() const { return index_ == 0; }
  template <class F>
  void run(F&& f) const {
    const std::uint32_t p = ++phase_;
    const int n = phases_.size();
    for (int k = 0; k < n; ++k) {
      const int j = (index_ + k) % n;
      if (phases_.claim(j, p)) {
        f(Part{j, n});
        phases_.part_done(p);
      }
    }
    if (!phases_.wait(p)) throw TeamAborted{};
  }

 private:
  int index_;
  TeamPhases& phases_;
  mutable std::uint32_t phase_ = 0;  ///< the phases run so far (the same count in every member)
};

/// body(member) on n threads at once, each a TeamMember of part i of n; false (nothing run) when
/// n threads are not free (pool_run_team): the caller then runs the loop with a Team. An
/// exception from a member stops the others at their next meeting and is rethrown here.
template <class F>
bool run_team(int n, F&& body) {
  struct Ctx {
    F& body;
    TeamPhases phases;
  } ctx{body, TeamPhases(n)};
  return pool_run_team(
      n,
      [](void* p, index_t i, int) {
        auto& c = *static_cast<Ctx*>(p);
        try {
          c.body(TeamMember(static_cast<int>(i), c.phases));
        } catch (const TeamAborted&) {
          // another member failed; its exception is the one rethrown
        } catch (...) {
          c.phases.abort();
          throw;
        }
      },
      &ctx);
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
  if (rows <= 0) return;
  const index_t n = rows * width >= min_elements ? std::min<index_t>(num_threads(), rows) : 1;
  parallel_for(n, static_cast<int>(n), [&](index_t i) {
    const index_t b0 = rows * i / n, b1 = rows * (i + 1) / n;
    if (b1 > b0) f(b0, b1);
  });
}

}  // namespace FASTRNN_ISA_NS
}  // namespace fastrnn::detail
