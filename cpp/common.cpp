// Non-template helpers of the core.
#include <Eigen/Core>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <stdexcept>

#include "fastrnn/fastrnn.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace fastrnn {

int num_gates(CellKind cell) noexcept {
  switch (cell) {
    case CellKind::Lstm: return 4;
    case CellKind::Gru:
    case CellKind::GruResetBefore: return 3;
    default: return 1;
  }
}

bool has_cell_state(CellKind cell) noexcept { return cell == CellKind::Lstm; }

const char* cell_name(CellKind cell) noexcept {
  switch (cell) {
    case CellKind::RnnTanh: return "rnn_tanh";
    case CellKind::RnnRelu: return "rnn_relu";
    case CellKind::Lstm: return "lstm";
    case CellKind::Gru: return "gru";
    case CellKind::GruResetBefore: return "gru_reset_before";
  }
  return "unknown";
}

namespace {
int default_threads() noexcept {
#ifdef _OPENMP
  return std::max(1, omp_get_max_threads());  // OMP_NUM_THREADS, else the cores
#else
  return 1;
#endif
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
  g_threads.store(n, std::memory_order_relaxed);
}

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

#define FASTRNN_STR2(x) #x
#define FASTRNN_STR(x) FASTRNN_STR2(x)

BuildInfo build_info() noexcept {
  BuildInfo info{};
  info.eigen_version = FASTRNN_STR(EIGEN_WORLD_VERSION) "." FASTRNN_STR(
      EIGEN_MAJOR_VERSION) "." FASTRNN_STR(EIGEN_MINOR_VERSION);
  info.simd = Eigen::SimdInstructionSetsInUse();
#ifdef _OPENMP
  info.openmp = true;
#else
  info.openmp = false;
#endif
  return info;
}

}  // namespace fastrnn
