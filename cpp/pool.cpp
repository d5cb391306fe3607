// fastrnn's thread pool (see fastrnn/pool.hpp for the design): compiled once, not per ISA.
#include "fastrnn/pool.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#else
#include <condition_variable>
#endif
#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#endif
#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__) || defined(_M_IX86)
#include <immintrin.h>
#endif

namespace fastrnn::detail {
namespace {

using Clock = std::chrono::steady_clock;

/// How long a waiting thread spins, then yields its core, before it sleeps (measured on 2 cores
/// shared with a busy process, see docs/threads.md: a thread that keeps its core while its
/// partner waits for one holds both up).
struct WaitPolicy {
  std::chrono::nanoseconds spin, yield;
};
/// The caller waiting for the last items of a job (on idle cores its partners finish within
/// microseconds; longer, a partner has lost its core, and sleeping frees this one for it).
constexpr WaitPolicy kJobEnd{std::chrono::microseconds(20), std::chrono::microseconds(0)};
/// A worker waiting for the next job: the time loops start one every step, a layer call the
/// next one after some Python.
constexpr WaitPolicy kNextJob{std::chrono::microseconds(50), std::chrono::microseconds(200)};
/// A worker the last jobs did not need: it sleeps until a job does.
constexpr WaitPolicy kParked{std::chrono::microseconds(0), std::chrono::microseconds(0)};

void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__) || defined(_M_IX86)
  _mm_pause();
#elif defined(__aarch64__) || defined(__arm__)
  __asm__ __volatile__("yield");
#endif
}

#if defined(__linux__)
/// Sleeps while word == value (returns at once if it differs; may return spuriously).
void sleep_while(std::atomic<std::uint32_t>& word, std::uint32_t value) noexcept {
  syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAIT_PRIVATE, value, nullptr,
          nullptr, 0);
}
void wake_all(std::atomic<std::uint32_t>& word) noexcept {
  syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAKE_PRIVATE, INT_MAX, nullptr,
          nullptr, 0);
}
#else
std::mutex g_sleep_m;
std::condition_variable g_sleep_cv;
void sleep_while(std::atomic<std::uint32_t>& word, std::uint32_t value) noexcept {
  std::unique_lock<std::mutex> lock(g_sleep_m);
  if (word.load() == value) g_sleep_cv.wait_for(lock, std::chrono::milliseconds(10));
}
void wake_all(std::atomic<std::uint32_t>&) noexcept {
  std::lock_guard<std::mutex> lock(g_sleep_m);
  g_sleep_cv.notify_all();
}
#endif

/// Waits until done() holds: spins, yields, then sleeps on `word` (whose value changes before
/// done() can turn true; the thread that changes it wakes `word` when `sleepers` > 0).
template <class Done>
void wait_until(Done done, std::atomic<std::uint32_t>& word, std::atomic<int>& sleepers,
                WaitPolicy policy) {
  if (done()) return;
  const Clock::time_point t0 = Clock::now();
  for (unsigned i = 1;; ++i) {
    cpu_relax();
    if (done()) return;
    if (i % 64 == 0 && Clock::now() - t0 > policy.spin) break;
  }
  while (Clock::now() - t0 < policy.spin + policy.yield) {
    std::this_thread::yield();
    if (done()) return;
  }
  for (;;) {
    const std::uint32_t value = word.load();
    sleepers.fetch_add(1);
    if (done()) {
      sleepers.fetch_sub(1);
      return;
    }
    sleep_while(word, value);
    sleepers.fetch_sub(1);
    if (done()) return;
  }
}

thread_local bool t_in_job = false;  ///< this thread runs a job's items (a worker, or a caller)

constexpr std::uint64_t kLow = 0xffffffffu;

class Pool {
 public:
  /// False when another job holds the pool (the caller then runs its job serially).
  /// exact: only with one thread per item (pool_run_team), else nothing runs and false.
  bool run(index_t count, int threads, PoolItem fn, void* ctx, bool exact = false) {
    if (busy_.exchange(true, std::memory_order_acquire)) return false;
    struct Release {
      std::atomic<bool>& busy;
      ~Release() { busy.store(false, std::memory_order_release); }
    } release{busy_};
    const index_t want = std::min<index_t>(threads, count);  // never more threads than items
    const int n = static_cast<int>(std::min<index_t>(want, 1 + grow(static_cast<int>(want) - 1)));
    if (n <= 1 || (exact && n != count)) return false;
    const std::uint32_t g = publish(count, n, fn, ctx);
    t_in_job = true;
    work(g, 0);
    t_in_job = false;
    wait_until([&] { return done_.load(std::memory_order_acquire) == count_.load(); }, done_,
               caller_sleepers_, kJobEnd);
    if (error_) {
      std::exception_ptr e = error_;
      error_ = nullptr;
      std::rethrow_exception(e);
    }
    return true;
  }

  int workers() const noexcept { return started_.load(); }

 private:
  struct alignas(64) Cursor {
    std::atomic<std::uint64_t> v{0};  ///< (generation << 32) | next item of the block
  };

  /// Starts workers until there are `want` (fewer if the system refuses threads); returns how
  /// many there are. Called with the pool held.
  int grow(int want) {
    want = std::min(want, kMaxThreads - 1);
    while (static_cast<int>(threads_.size()) < want) {
      const int index = static_cast<int>(threads_.size()) + 1;
      try {
        threads_.emplace_back([this, index, g = gen_.load()] { worker(index, g); });
      } catch (...) {  // no more threads: run on those there are
        break;
      }
      started_.store(static_cast<int>(threads_.size()));
    }
    return static_cast<int>(threads_.size());
  }

  /// Job g's cursors, then its fields, then g itself. Every cursor the last job used is reset
  /// first, the blocks beyond this job's n to "exhausted": a worker late from an earlier job
  /// that reads some of this job's fields (release stores: it then sees the resets too) can
  /// never claim with its own generation, which no cursor holds any more; with one left
  /// holding it, such a worker took items of this job with another job's bounds (seen once:
  /// a job of 8 items counted 14 done, and its caller waited forever).
  std::uint32_t publish(index_t count, int n, PoolItem fn, void* ctx) {
    std::uint32_t g = gen_.load() + 1;
    if (g == 0) g = 1;
    done_.store(0, std::memory_order_relaxed);
    const int reset = std::max(n, last_n_);
    for (int b = 0; b < reset; ++b) {
      const std::uint64_t next = b < n ? static_cast<std::uint64_t>(begin(count, n, b)) : kLow;
      cursors_[b].v.store((std::uint64_t{g} << 32) | next, std::memory_order_release);
    }
    last_n_ = n;
    fn_.store(fn, std::memory_order_release);
    ctx_.store(ctx, std::memory_order_release);
    count_.store(count, std::memory_order_release);
    n_.store(n, std::memory_order_release);
    const std::uint32_t was = width_.exchange(static_cast<std::uint32_t>(n));
    if (static_cast<std::uint32_t>(n) > was && parked_sleepers_.load() > 0) wake_all(width_);
    gen_.store(g);  // seq_cst: ordered before the read of idle_sleepers_ (see wait_until)
    if (idle_sleepers_.load() > 0) wake_all(gen_);
    return g;
  }

  static index_t begin(index_t count, int n, int b) { return count * b / n; }

  /// Claims the next item of block b in job g, if one is left.
  bool claim(int b, std::uint32_t g, index_t end, index_t& item) {
    std::atomic<std::uint64_t>& c = cursors_[b].v;
    std::uint64_t cur = c.load(std::memory_order_acquire);
    for (;;) {
      if ((cur >> 32) != g || static_cast<index_t>(cur & kLow) >= end) return false;
      if (c.compare_exchange_weak(cur, cur + 1, std::memory_order_acq_rel)) {
        item = static_cast<index_t>(cur & kLow);
        return true;
      }
    }
  }

  /// Thread t's share of job g: its own block, then what is left of the others.
  void work(std::uint32_t g, int t) {
    const PoolItem fn = fn_.load(std::memory_order_acquire);  // acquire: see publish()
    void* const ctx = ctx_.load(std::memory_order_acquire);
    const index_t count = count_.load(std::memory_order_acquire);
    const int n = n_.load(std::memory_order_acquire);
    if (t >= n) return;
    for (int k = 0; k < n; ++k) {
      const int b = (t + k) % n;
      const index_t end = begin(count, n, b + 1);
      index_t item;
      while (claim(b, g, end, item)) {  // a claim in job g: fn, ctx, count are job g's
        try {
          fn(ctx, item, t);
        } catch (...) {
          std::lock_guard<std::mutex> lock(error_m_);
          if (!error_) error_ = std::current_exception();
        }
        if (done_.fetch_add(1) + 1 == static_cast<std::uint32_t>(count) &&
            caller_sleepers_.load() > 0) {
          wake_all(done_);
        }
      }
    }
  }

  void worker(int index, std::uint32_t seen) {
#if defined(__linux__)
    pthread_setname_np(pthread_self(), "fastrnn");  // as top, ps -L and gdb show it
#endif
    t_in_job = true;  // a job started from an item runs serially
    for (;;) {
      wait_until([&] { return gen_.load(std::memory_order_acquire) != seen; }, gen_, idle_sleepers_,
                 kNextJob);
      if (index >= static_cast<int>(width_.load())) {  // not needed by the jobs of late: park
        wait_until([&] { return index < static_cast<int>(width_.load()); }, width_,
                   parked_sleepers_, kParked);
        continue;  // then join the job that needs this worker (seen is older than it)
      }
      seen = gen_.load(std::memory_order_acquire);
      work(seen, index);
    }
  }

  std::atomic<bool> busy_{false};
  std::vector<std::thread> threads_;  ///< never joined: the workers live as long as the process
  std::atomic<int> started_{0};
  /// Fixed for the pool's life: a worker late from an earlier job may still read them.
  std::unique_ptr<Cursor[]> cursors_{new Cursor[kMaxThreads]};
  alignas(64) std::atomic<std::uint32_t> gen_{0};
  std::atomic<PoolItem> fn_{nullptr};
  std::atomic<void*> ctx_{nullptr};
  std::atomic<index_t> count_{0};
  std::atomic<int> n_{0};
  int last_n_ = 0;  ///< the threads of the last job (written with the pool held)
  alignas(64) std::atomic<std::uint32_t> done_{0};
  alignas(64) std::atomic<int> idle_sleepers_{0};
  std::atomic<int> caller_sleepers_{0};
  /// The threads of the last job: workers at or above it park (sleep on it) rather than wake for
  /// every job (after set_num_threads(64) then (2), 62 workers would otherwise spin at each step).
  alignas(64) std::atomic<std::uint32_t> width_{0};
  std::atomic<int> parked_sleepers_{0};
  std::mutex error_m_;
  std::exception_ptr error_;
};

std::atomic<Pool*> g_pool{nullptr};

#if defined(__unix__) || defined(__APPLE__)
/// In a child of fork() only the forking thread exists: the parent's workers are gone, and a
/// job waiting for them would wait forever. The child leaks the parent's pool (destroying it
/// would join threads that do not exist) and starts a fresh one on its first job.
void after_fork_in_child() { g_pool.store(nullptr); }
#endif

Pool& pool() {
  Pool* p = g_pool.load(std::memory_order_acquire);
  if (p) return *p;
  static std::mutex m;  // held only while the first pool is made
  std::lock_guard<std::mutex> lock(m);
  p = g_pool.load();
  if (!p) {
#if defined(__unix__) || defined(__APPLE__)
    static const bool registered = pthread_atfork(nullptr, nullptr, after_fork_in_child) == 0;
    (void)registered;
#endif
    p = new Pool;  // never destroyed: workers may still wait on it at exit
    g_pool.store(p, std::memory_order_release);
  }
  return *p;
}

}  // namespace

void pool_run(index_t count, int threads, PoolItem fn, void* ctx) {
  constexpr index_t kMaxItems = INT32_MAX;
  if (count <= 0) return;
  if (threads > 1 && count > 1 && count <= kMaxItems && !t_in_job &&
      pool().run(count, threads, fn, ctx)) {
    return;
  }
  for (index_t i = 0; i < count; ++i) fn(ctx, i, 0);
}

bool pool_run_team(int n, PoolItem fn, void* ctx) {
  return n > 1 && !t_in_job && pool().run(n, n, fn, ctx, /*exact=*/true);
}

TeamPhases::TeamPhases(int n) : claimed_(new std::atomic<std::uint32_t>[n]), n_(n) {
  for (int j = 0; j < n; ++j) claimed_[j].store(0, std::memory_order_relaxed);
}

bool TeamPhases::claim(int j, std::uint32_t p) noexcept {
  std::uint32_t c = claimed_[j].load(std::memory_order_acquire);
  while (c < p) {
    if (claimed_[j].compare_exchange_weak(c, p, std::memory_order_acq_rel)) return true;
  }
  return false;
}

void TeamPhases::part_done(std::uint32_t p) noexcept {
  // the phase's parts finish one by one; the last resets the count before publishing the
  // phase done, and nobody claims a part of the next phase before that
  if (parts_done_.fetch_add(1, std::memory_order_acq_rel) + 1 == n_) {
    parts_done_.store(0, std::memory_order_relaxed);
    completed_.store(p);  // seq_cst: ordered before the read of sleepers_ (see wait_until)
    if (sleepers_.load() > 0) wake_all(completed_);
  }
}

bool TeamPhases::wait(std::uint32_t p) noexcept {
  // as a worker waits for the next job: the next phase is usually a step away
  wait_until(
      [&] {
        return completed_.load(std::memory_order_acquire) >= p ||
               aborted_.load(std::memory_order_acquire);
      },
      completed_, sleepers_, kNextJob);
  return !aborted_.load(std::memory_order_acquire);
}

void TeamPhases::abort() noexcept {
  aborted_.store(true);  // seq_cst: a waiter about to sleep sees it (wait_until), the others wake
  wake_all(completed_);
}

int pool_workers() noexcept {
  Pool* p = g_pool.load();
  return p ? p->workers() : 0;
}

}  // namespace fastrnn::detail
