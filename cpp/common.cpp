// The parts of the core that do not depend on the instruction set, compiled once: cell facts,
// the thread count, the interrupt hook, the block cache and the build facts.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#endif

#include "fastrnn/cpus.hpp"
#include "fastrnn/fastrnn.hpp"
#include "fastrnn/kernel_table.hpp"

namespace fastrnn {

int num_gates(CellKind cell) noexcept {
  switch (cell) {
    case CellKind::Lstm:
    case CellKind::LstmPeephole:
    case CellKind::LayerNormLstm: return 4;
    case CellKind::Gru:
    case CellKind::GruResetBefore:
    case CellKind::LayerNormGru: return 3;
    default: return 1;
  }
}

bool has_cell_state(CellKind cell) noexcept {
  return cell == CellKind::Lstm || cell == CellKind::LstmPeephole ||
         cell == CellKind::LayerNormLstm;
}

bool has_zoneout_cell(CellKind cell) noexcept {
  return has_cell_state(cell) && cell != CellKind::LstmPeephole;
}

index_t cell_params_size(CellKind cell, index_t H) noexcept {
  switch (cell) {
    case CellKind::LstmPeephole: return 3 * H;
    case CellKind::LayerNormLstm: return 10 * H;
    case CellKind::LayerNormGru: return 6 * H;
    default: return 0;
  }
}

const char* cell_name(CellKind cell) noexcept {
  switch (cell) {
    case CellKind::RnnTanh: return "rnn_tanh";
    case CellKind::RnnRelu: return "rnn_relu";
    case CellKind::Lstm: return "lstm";
    case CellKind::Gru: return "gru";
    case CellKind::GruResetBefore: return "gru_reset_before";
    case CellKind::LstmPeephole: return "lstm_peephole";
    case CellKind::LayerNormLstm: return "lnlstm";
    case CellKind::LayerNormGru: return "lngru";
  }
  return "unknown";
}

namespace {
int default_threads() noexcept {
  // FASTRNN_NUM_THREADS, OMP_NUM_THREADS, else the CPUs this process may use (cpus.hpp)
  return detail::default_thread_count();
}
std::atomic<int> g_threads{0};  // 0: not set yet
}  // namespace

int num_threads() noexcept {
  int n = g_threads.load(std::memory_order_relaxed);
  if (n == 0) {
    n = default_threads();
    int expected = 0;
    g_threads.compare_exchange_strong(expected, n);
    n = g_threads.load(std::memory_order_relaxed);
  }
  return n;
}

void set_num_threads(int n) {
  if (n < 1) throw std::invalid_argument("n: the number of threads must be >= 1");
  if (n > kMaxThreads) {
    throw std::invalid_argument("n: at most " + std::to_string(kMaxThreads) + " threads");
  }
  g_threads.store(n, std::memory_order_relaxed);
}

namespace {

void* aligned_alloc64(size_t bytes) {
#if defined(_MSC_VER)
  return _aligned_malloc(bytes, 64);
#else
  return std::aligned_alloc(64, bytes);  // bytes: a multiple of 64
#endif
}

void aligned_free(void* p) noexcept {
#if defined(_MSC_VER)
  _aligned_free(p);
#else
  std::free(p);
#endif
}

/// Freed scratch blocks kept for the next call. Every call packs its weights and allocates its
/// per-call scratch afresh; from the C library, blocks of more than 128 KiB are new mappings whose
/// pages fault on first touch (measured: ~590 faults per batch-1 GRU forward, T, I, H = 200,
/// 128, 256, which then took 2.1-2.2 ms instead of 1.3 at 2 threads). Calls with the same shapes
/// get their blocks back here, already mapped. At most kMaxBytes are kept (oldest freed first):
/// enough for a training step's workspace and scratch at S1's sizes with a layer-normalised LSTM
/// (~120 MB; with a 64 MiB cap its blocks were faulted in afresh on every call: fwd+bwd 1.43x
/// the plain LSTM's at T = 100, 1.25x at T = 20 where they fit).
class BlockCache {
 public:
  static constexpr size_t kMaxBytes = size_t{256} << 20;

  /// A 64-byte aligned block of at least `bytes` (a multiple of 64, alloc_block rounds up); its
  /// usable size in `got`.
  void* take(size_t bytes, size_t& got) {
    {
      std::lock_guard<std::mutex> lock(m_);
      size_t best = blocks_.size();
      for (size_t i = 0; i < blocks_.size(); ++i) {  // smallest block that fits, within 2x
        const size_t b = blocks_[i].bytes;
        if (b >= bytes && b <= 2 * bytes && (best == blocks_.size() || b < blocks_[best].bytes))
          best = i;
      }
      if (best != blocks_.size()) {
        Block blk = blocks_[best];
        blocks_.erase(blocks_.begin() + static_cast<std::ptrdiff_t>(best));
        held_ -= blk.bytes;
        got = blk.bytes;
        return blk.p;
      }
    }
    void* p = aligned_alloc64(bytes);
    if (!p) throw std::bad_alloc();
    got = bytes;
    return p;
  }

  void give(void* p, size_t bytes) noexcept {
    if (bytes > kMaxBytes) {
      aligned_free(p);
      return;
    }
    std::vector<void*> drop;
    {
      std::lock_guard<std::mutex> lock(m_);
      while (held_ + bytes > kMaxBytes && !blocks_.empty()) {
        drop.push_back(blocks_.front().p);
        held_ -= blocks_.front().bytes;
        blocks_.erase(blocks_.begin());
      }
      try {
        blocks_.push_back(Block{p, bytes});
        held_ += bytes;
        p = nullptr;
      } catch (...) {  // no memory for the bookkeeping: just free the block
      }
    }
    for (void* q : drop) aligned_free(q);
    aligned_free(p);
  }

  ~BlockCache() {
    for (const Block& b : blocks_) aligned_free(b.p);
  }

  /// Never destroyed: a block may come back after static destructors ran (a NumPy array owning a
  /// workspace block, freed at interpreter exit). A child of fork() starts a fresh, empty cache:
  /// another thread of the parent may have held the lock at the fork, and no thread of the child
  /// would ever release it (the parent's blocks then leak in the child, once).
  static BlockCache& instance() {
    BlockCache* cache = current().load(std::memory_order_acquire);
    if (cache) return *cache;
    static std::mutex m;
    std::lock_guard<std::mutex> lock(m);
    cache = current().load();
    if (!cache) {
#if defined(__unix__) || defined(__APPLE__)
      static const bool registered =
          pthread_atfork(nullptr, nullptr, [] { current().store(nullptr); }) == 0;
      (void)registered;
#endif
      cache = new BlockCache;
      current().store(cache, std::memory_order_release);
    }
    return *cache;
  }

 private:
  struct Block {
    void* p;
    size_t bytes;
  };
  static std::atomic<BlockCache*>& current() {
    static std::atomic<BlockCache*> cache{nullptr};
    return cache;
  }

  std::mutex m_;
  std::vector<Block> blocks_;
  size_t held_ = 0;
};

}  // namespace

void* alloc_block(std::size_t bytes, std::size_t& got) {
  return BlockCache::instance().take((std::max<size_t>(bytes, 1) + 63) / 64 * 64, got);
}

void free_block(void* p, std::size_t bytes) noexcept { BlockCache::instance().give(p, bytes); }

namespace detail {
thread_local ScopedInterruptHook::Poll t_poll = nullptr;
thread_local void* t_poll_ctx = nullptr;
thread_local std::chrono::steady_clock::time_point t_last_poll{};

void check_interrupt() {
  if (!t_poll) return;
  const auto now = std::chrono::steady_clock::now();
  if (now - t_last_poll < std::chrono::milliseconds(20)) return;
  t_last_poll = now;
  if (t_poll(t_poll_ctx)) throw Interrupted();
}
}  // namespace detail

ScopedInterruptHook::ScopedInterruptHook(Poll poll, void* ctx) noexcept
    : prev_poll_(detail::t_poll), prev_ctx_(detail::t_poll_ctx) {
  detail::t_poll = poll;
  detail::t_poll_ctx = ctx;
  detail::t_last_poll = std::chrono::steady_clock::now();
}

ScopedInterruptHook::~ScopedInterruptHook() {
  detail::t_poll = prev_poll_;
  detail::t_poll_ctx = prev_ctx_;
}

BuildInfo build_info() {
  const detail::KernelTable& k = detail::kernels();
  BuildInfo info{};
  info.eigen_version = k.eigen_version;
  info.simd = k.simd();
  info.isa = k.name;
  return info;
}

}  // namespace fastrnn
