// The CPUs this process may use and the default thread count (internal; cpp/cpus.cpp, compiled
// once). The machine's core count overstates them in a container with a CPU quota or under
// taskset, and threads beyond them wait for each other at every step of a time loop.
//
// The default thread count, in order of precedence:
//   1. FASTRNN_NUM_THREADS, a positive integer: fastrnn's threads alone (OpenMP libraries such as
//      PyTorch's and OpenBLAS's read OMP_NUM_THREADS too);
//   2. OMP_NUM_THREADS, read as OpenMP does: a comma list of positive integers, the first for the
//      outer level;
//   3. available_cpus().
// An unset, empty or malformed variable, or one <= 0, counts as unset. The result is cut to
// [1, kMaxThreads]; a variable's value is not cut to the CPUs (asking for more is allowed).
#pragma once

#include <string>

namespace fastrnn::detail {

/// The CPUs this process may use, >= 1: the fewest of its affinity mask (Linux, Windows) and the
/// CPU quota of its cgroups rounded up (Linux); elsewhere std::thread::hardware_concurrency().
/// Reads the system each call; a source that fails gives no limit.
int available_cpus() noexcept;

/// The CPUs of this process's affinity mask (Linux, Windows), else the machine's; >= 1.
int affinity_cpus() noexcept;

/// The CPU limit of this process's cgroups from their files: the smallest ceil(quota / period)
/// over its cgroup and every parent up to the mount point, in the cgroup v2 hierarchy (cpu.max)
/// and in the v1 hierarchy of the cpu controller (cpu.cfs_quota_us, cpu.cfs_period_us); 0 = no
/// limit (no quota, or no file readable and well formed). The hierarchies are where mountinfo
/// mounts them (v2 without a cgroup2 mount there: /sys/fs/cgroup). `root` is prefixed to every
/// path ("" for the real system, a directory for a test); the other two arguments are the
/// contents of /proc/self/cgroup and /proc/self/mountinfo.
int cgroup_cpu_limit(const std::string& root, const std::string& proc_self_cgroup,
                     const std::string& mountinfo) noexcept;
/// The same for this process (Linux; 0 elsewhere).
int cgroup_cpu_limit() noexcept;

/// The threads the variables ask for (see the top of this file), 0 if neither does; nullptr is
/// an unset variable.
int threads_from_env(const char* fastrnn_num_threads, const char* omp_num_threads) noexcept;
/// The same for this process's environment.
int threads_from_env() noexcept;

/// The default thread count: threads_from_env(), else available_cpus(), cut to [1, kMaxThreads].
int default_thread_count() noexcept;

}  // namespace fastrnn::detail
