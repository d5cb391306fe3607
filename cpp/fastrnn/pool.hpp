// fastrnn's thread pool (compiled once, cpp/pool.cpp): the one place where the kernels' threads
// are started, woken, put to sleep and shared out. The kernels reach it through parallel.hpp.
//
// A job is `count` independent items. The calling thread is thread 0 of the job and works on
// it too; up to threads - 1 pool workers join it. Each thread starts with its own block of
// items (thread i: items [count*i/n, count*(i+1)/n)), so that on idle cores every thread runs
// the same items from job to job (the time loops keep a part of the weights in each core's
// cache), and when its block is done it takes the items no thread has started from the other
// blocks. The job ends when every item is done -- not when every worker has arrived: a worker
// that the OS has descheduled (another process on its core) and that has not started an item
// never holds the others up; its items are run by the threads that are running. Which thread
// runs an item never changes its result (the kernels' rule, parallel.hpp), so results stay
// bit-identical whatever the scheduling.
//
// Waiting: a thread waiting for a job's last items, or a worker waiting for the next job, spins
// briefly, then yields its core, then sleeps on a futex (Linux; a condition variable elsewhere);
// a sleeping thread frees its core at once, so the OS can move a descheduled team member onto
// it. A job started while another thread's job runs (two Python threads calling the kernels at
// once) or from inside a job's item runs serially in its calling thread. After fork() the child
// starts a fresh pool on its first job (pthread_atfork; the parent's workers do not exist in
// the child).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>

#include "fastrnn/fastrnn.hpp"

namespace fastrnn::detail {

/// One item of a job: fn(ctx, item, thread), thread in [0, threads) unique among the job's
/// threads at any moment (an index into per-thread scratch). An item may throw: the first
/// exception is rethrown in the calling thread once every item started has finished (items not
/// started by then may or may not run).
using PoolItem = void (*)(void* ctx, index_t item, int thread);

/// Runs fn(ctx, i, thread) for every i in [0, count) on at most min(threads, count) threads,
/// the caller included, and returns when all are done.
void pool_run(index_t count, int threads, PoolItem fn, void* ctx);

/// How many worker threads the pool has started in this process (for tests and diagnostics).
int pool_workers() noexcept;

/// Runs fn(ctx, i, i) for every i in [0, n) on n threads at the same time (the caller runs item
/// 0, worker i item i), or returns false having run nothing when n threads are not free now (the
/// pool holds another job, the caller is a job's item, or the system gives fewer threads): for
/// items that wait for each other (TeamPhases), which all must run at once. An exception from an
/// item is rethrown in the caller once every item has returned.
bool pool_run_team(int n, PoolItem fn, void* ctx);

/// The phases of the n members of a pool_run_team job (parallel.hpp's TeamMember): every
/// member calls the same sequence of phases p = 1, 2, ...; each phase has n parts, part m
/// member m's own. A member runs its own part if nobody has claimed it, then any other part
/// nobody has claimed yet (a member that another process keeps off its core has its part run
/// by the others), then waits until all n parts of the phase are done (spinning for a while,
/// then sleeping). A member behind the others finds their phases done and catches up.
class TeamPhases {
 public:
  explicit TeamPhases(int n);
  TeamPhases(const TeamPhases&) = delete;
  TeamPhases& operator=(const TeamPhases&) = delete;
  int size() const noexcept { return n_; }
  /// True for the one caller that gets part j of phase p.
  bool claim(int j, std::uint32_t p) noexcept;
  /// After running a claimed part of phase p.
  void part_done(std::uint32_t p) noexcept;
  /// Waits until phase p is done; false once abort() was called (then at once).
  bool wait(std::uint32_t p) noexcept;
  /// A member failed: every wait, now and later, returns false.
  void abort() noexcept;

 private:
  std::unique_ptr<std::atomic<std::uint32_t>[]> claimed_;  ///< the last phase part j ran in
  alignas(64) std::atomic<std::uint32_t> completed_{0};    ///< phases done, all parts
  alignas(64) std::atomic<int> parts_done_{0};             ///< of the phase running
  std::atomic<int> sleepers_{0};
  std::atomic<bool> aborted_{false};
  const int n_;
};

}  // namespace fastrnn::detail
