// The CPUs this process may use (its affinity mask, its cgroups' CPU quota) and the default thread
// count (cpus.hpp). Compiled once; plain C++17 and the OS's C API, no OpenMP. Every source fails
// safe: an unreadable or malformed one gives no limit, and nothing throws.
#include "fastrnn/cpus.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <thread>

#include "fastrnn/fastrnn.hpp"

#if defined(_WIN32)
#ifndef NOMINMAX
#define NOMINMAX
#endif
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#ifndef _WIN32_WINNT
#define _WIN32_WINNT 0x0601  // GetProcessGroupAffinity, GetActiveProcessorCount: Windows 7
#endif
#include <windows.h>
#else
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#if defined(__linux__)
#include <sched.h>
#endif
#endif

namespace fastrnn::detail {
namespace {

/// Counts are cut to this: far above kMaxThreads, and an int.
constexpr long long kBig = 1LL << 30;
/// Parsed numbers saturate here (a quota in microseconds may exceed kBig; no overflow below).
constexpr long long kSaturate = 1000000000000000LL;

bool is_space(char c) noexcept { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

std::string_view trim(std::string_view s) noexcept {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

/// A decimal integer >= 0 (digits only: no sign, no spaces), saturated; -1 if `s` is not one.
long long parse_count(std::string_view s) noexcept {
  if (s.empty()) return -1;
  long long v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return -1;
    v = std::min(v * 10 + (c - '0'), kSaturate);
  }
  return v;
}

/// A positive integer, with spaces around it and a '+' allowed (as libgomp reads it), cut to
/// kBig; 0 if `s` is not one.
int parse_threads(std::string_view s) noexcept {
  s = trim(s);
  if (!s.empty() && s.front() == '+') s.remove_prefix(1);
  const long long v = parse_count(s);
  return v > 0 ? static_cast<int>(std::min(v, kBig)) : 0;
}

/// ceil(quota / period) CPUs, cut to kBig; 0 (no limit) unless both are > 0. A quota of half a
/// CPU still needs one thread.
int quota_cpus(long long quota, long long period) noexcept {
  if (quota <= 0 || period <= 0) return 0;
  return static_cast<int>(std::min(quota / period + (quota % period != 0 ? 1 : 0), kBig));
}

/// The whole of a small file into `out`; false if unreadable or larger than `max_bytes` (a
/// truncated /proc file would be parsed wrong). /proc files have no size: read to the end.
bool read_small_file(const std::string& path, std::string& out, std::size_t max_bytes) {
  out.clear();
  char buf[4096];
#if defined(_WIN32)
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return false;
  bool ok = true;
  for (;;) {
    const std::size_t got = std::fread(buf, 1, sizeof buf, f);
    if (got == 0) {
      ok = !std::ferror(f);
      break;
    }
    if (out.size() + got > max_bytes) {
      ok = false;
      break;
    }
    out.append(buf, got);
  }
  std::fclose(f);
  return ok;
#else
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);  // no descriptor leaks into a fork
  if (fd < 0) return false;
  bool ok = true;
  for (;;) {
    const ssize_t got = ::read(fd, buf, sizeof buf);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) {
      ok = got == 0;
      break;
    }
    if (out.size() + static_cast<std::size_t>(got) > max_bytes) {
      ok = false;
      break;
    }
    out.append(buf, static_cast<std::size_t>(got));
  }
  ::close(fd);
  return ok;
#endif
}

/// The next line of `text` (without its '\n'), consumed from it; false at the end.
bool next_line(std::string_view& text, std::string_view& line) noexcept {
  if (text.empty()) return false;
  const std::size_t nl = text.find('\n');
  line = text.substr(0, nl);
  text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
  return true;
}

/// The fields of a string between the separators, empty ones included: "a,,b" has "a", "", "b"
/// and "" has one empty field.
class Fields {
 public:
  Fields(std::string_view text, char sep) noexcept : rest_(text), sep_(sep) {}
  /// The next field; false after the last.
  bool next(std::string_view& field) noexcept {
    if (done_) return false;
    const std::size_t at = rest_.find(sep_);
    field = rest_.substr(0, at);
    if (at == std::string_view::npos) {
      done_ = true;
    } else {
      rest_.remove_prefix(at + 1);
    }
    return true;
  }
  /// What follows the fields read so far; false after the last.
  bool rest(std::string_view& text) const noexcept {
    text = rest_;
    return !done_;
  }

 private:
  std::string_view rest_;
  char sep_;
  bool done_ = false;
};

/// True if the comma list `list` has the entry `name`.
bool has_entry(std::string_view list, std::string_view name) noexcept {
  Fields entries(list, ',');
  std::string_view entry;
  while (entries.next(entry)) {
    if (entry == name) return true;
  }
  return false;
}

/// A path of /proc/self/mountinfo with its octal escapes ("\040" is a space) decoded.
std::string unescape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    const auto octal = [&](std::size_t k, char top) { return s[k] >= '0' && s[k] <= top; };
    if (s[i] == '\\' && i + 3 < s.size() && octal(i + 1, '3') && octal(i + 2, '7') &&
        octal(i + 3, '7')) {
      out += static_cast<char>((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0'));
      i += 3;
    } else {
      out += s[i];
    }
  }
  return out;
}

/// This process's cgroup path in /proc/self/cgroup ("id:controllers:path" lines): the v2 one
/// ("0::/path"), or the v1 one of the hierarchy whose controllers include "cpu".
bool find_cgroup(std::string_view cgroups, bool v2, std::string_view& path) noexcept {
  std::string_view line;
  while (next_line(cgroups, line)) {
    Fields fields(line, ':');
    std::string_view id, controllers, rest;  // the path may hold ':'
    if (!fields.next(id) || !fields.next(controllers) || !fields.rest(rest)) continue;
    if (rest.empty() || rest.front() != '/') continue;
    if (v2 ? id == "0" && controllers.empty() : has_entry(controllers, "cpu")) {
      path = rest;
      return true;
    }
  }
  return false;
}

/// The mount of the v2 hierarchy (file system type cgroup2) or of the v1 hierarchy of the cpu
/// controller (type cgroup, "cpu" in its super options) in /proc/self/mountinfo: the path inside
/// the hierarchy that is mounted (`root`) and where (`point`). A line is "id parent major:minor
/// root point options [optional fields] - type source super-options".
bool find_mount(std::string_view mountinfo, bool v2, std::string& root, std::string& point) {
  std::string_view line;
  while (next_line(mountinfo, line)) {
    Fields fields(line, ' ');
    std::string_view f[5], field;
    int n = 0;
    while (n < 5 && fields.next(f[n])) ++n;
    if (n < 5) continue;
    bool dash = false;
    while (!dash && fields.next(field)) dash = field == "-";
    std::string_view type, source, super_options;
    if (!dash || !fields.next(type) || !fields.next(source) || !fields.next(super_options)) {
      continue;
    }
    if (v2 ? type == "cgroup2" : type == "cgroup" && has_entry(super_options, "cpu")) {
      root = unescape(f[3]);
      point = unescape(f[4]);
      return !point.empty() && point.front() == '/';
    }
  }
  return false;
}

/// The directory of the cgroup `path` below the mount of the hierarchy's `mount_root`, relative
/// to the mount point: "" or "/a/b". The mount shows part of the hierarchy: all of it ("/"), or
/// the cgroup itself (a container's bind mount; with a cgroup namespace, /proc/self/cgroup then
/// says "/"), or a parent of the cgroup. A path outside the mount, or with a ".." (a cgroup
/// outside this namespace), gives the mount point itself.
std::string cgroup_dir(std::string_view mount_root, std::string_view path) {
  if (mount_root != "/") {
    while (mount_root.size() > 1 && mount_root.back() == '/') mount_root.remove_suffix(1);
    if (path.substr(0, mount_root.size()) != mount_root ||
        (path.size() > mount_root.size() && path[mount_root.size()] != '/')) {
      return std::string();
    }
    path.remove_prefix(mount_root.size());
  }
  std::string dir;
  Fields parts(path, '/');
  std::string_view part;
  while (parts.next(part)) {
    if (part.empty() || part == ".") continue;
    if (part == "..") return std::string();
    dir += '/';
    dir += part;
  }
  return dir;
}

/// The CPU limit of one cgroup directory, 0 if none: cgroup v2's cpu.max ("max 100000" or
/// "150000 100000"), or v1's cpu.cfs_quota_us (-1: none) and cpu.cfs_period_us.
int dir_limit(const std::string& dir, bool v2) {
  std::string a, b;
  if (v2) {
    if (!read_small_file(dir + "/cpu.max", a, 256)) return 0;
    const std::string_view s = trim(a);
    const std::size_t sp = s.find_first_of(" \t");
    if (sp == std::string_view::npos || s.substr(0, sp) == "max") return 0;
    return quota_cpus(parse_count(s.substr(0, sp)), parse_count(trim(s.substr(sp))));
  }
  if (!read_small_file(dir + "/cpu.cfs_quota_us", a, 256) ||
      !read_small_file(dir + "/cpu.cfs_period_us", b, 256)) {
    return 0;
  }
  return quota_cpus(parse_count(trim(a)), parse_count(trim(b)));
}

/// The smallest limit over the cgroup directory `base + dir` and each parent up to `base` (the
/// mount point): a parent's quota caps its children.
int smallest_limit_up(const std::string& base, const std::string& dir, bool v2) {
  std::string d = base + dir;
  int best = 0;
  for (;;) {
    const int n = dir_limit(d, v2);
    if (n > 0 && (best == 0 || n < best)) best = n;
    if (d.size() <= base.size()) break;
    d.resize(d.rfind('/'));  // `dir` is "/a/b": the last '/' is at or after base.size()
  }
  return best;
}

int hardware_cpus() noexcept {
  const unsigned n = std::thread::hardware_concurrency();  // 0 if unknown
  return n == 0 ? 1 : static_cast<int>(std::min<long long>(n, kBig));
}

}  // namespace

int affinity_cpus() noexcept {
#if defined(__linux__)
  // A set of CPU_SETSIZE (1024) CPUs is too small on bigger machines (EINVAL): double it.
  for (std::size_t cpus = 1024; cpus <= (std::size_t{1} << 22); cpus *= 2) {
    cpu_set_t* set = CPU_ALLOC(cpus);
    if (set == nullptr) break;
    const std::size_t size = CPU_ALLOC_SIZE(cpus);
    CPU_ZERO_S(size, set);
    const int rc = sched_getaffinity(0, size, set);
    const int err = errno;
    const int count = rc == 0 ? CPU_COUNT_S(size, set) : 0;
    CPU_FREE(set);
    if (rc == 0) {
      if (count > 0) return count;
      break;
    }
    if (err != EINVAL) break;
  }
#elif defined(_WIN32)
  const HANDLE self = GetCurrentProcess();
  USHORT groups = 0;
  // GetProcessAffinityMask sees one processor group (64 CPUs): a process spanning several counts
  // every active processor
  const bool several = !GetProcessGroupAffinity(self, &groups, nullptr) &&
                       GetLastError() == ERROR_INSUFFICIENT_BUFFER && groups > 1;
  DWORD_PTR mask = 0, system = 0;
  if (!several && GetProcessAffinityMask(self, &mask, &system) && mask != 0) {
    int count = 0;
    for (; mask != 0; mask &= mask - 1) ++count;
    return count;
  }
  const DWORD all = GetActiveProcessorCount(ALL_PROCESSOR_GROUPS);
  if (all > 0) return static_cast<int>(std::min<long long>(all, kBig));
#endif
  return hardware_cpus();
}

int cgroup_cpu_limit(const std::string& root, const std::string& proc_self_cgroup,
                     const std::string& mountinfo) noexcept {
  try {
    int best = 0;
    std::string_view path;
    std::string mount_root, point;
    for (const bool v2 : {true, false}) {
      if (!find_cgroup(proc_self_cgroup, v2, path)) continue;
      if (!find_mount(mountinfo, v2, mount_root, point)) {
        if (!v2) continue;
        mount_root = "/";  // v2 without a readable mount table: where it is usually mounted
        point = "/sys/fs/cgroup";
      }
      const int n = smallest_limit_up(root + point, cgroup_dir(mount_root, path), v2);
      if (n > 0 && (best == 0 || n < best)) best = n;
    }
    return best;
  } catch (...) {  // no memory for a path: no limit
    return 0;
  }
}

int cgroup_cpu_limit() noexcept {
#if defined(__linux__)
  try {
    std::string cgroups, mountinfo;
    if (!read_small_file("/proc/self/cgroup", cgroups, std::size_t{1} << 20)) return 0;
    // a few KB; hosts with thousands of mounts have MBs (without it, v1 gives no limit)
    if (!read_small_file("/proc/self/mountinfo", mountinfo, std::size_t{16} << 20)) {
      mountinfo.clear();
    }
    return cgroup_cpu_limit(std::string(), cgroups, mountinfo);
  } catch (...) {
    return 0;
  }
#else
  return 0;
#endif
}

int available_cpus() noexcept {
  int n = affinity_cpus();
  const int limit = cgroup_cpu_limit();
  if (limit > 0) n = std::min(n, limit);
  return std::max(n, 1);
}

int threads_from_env(const char* fastrnn_num_threads, const char* omp_num_threads) noexcept {
  if (fastrnn_num_threads != nullptr) {
    const int n = parse_threads(fastrnn_num_threads);
    if (n > 0) return n;
  }
  if (omp_num_threads == nullptr) return 0;
  // OpenMP's list, one entry per nesting level: all positive integers, else libgomp ignores it
  Fields entries(omp_num_threads, ',');
  std::string_view entry;
  int first = 0;
  while (entries.next(entry)) {
    const int n = parse_threads(entry);
    if (n == 0) return 0;
    if (first == 0) first = n;
  }
  return first;
}

int threads_from_env() noexcept {
  return threads_from_env(std::getenv("FASTRNN_NUM_THREADS"), std::getenv("OMP_NUM_THREADS"));
}

int default_thread_count() noexcept {
  int n = threads_from_env();
  if (n == 0) n = available_cpus();
  return std::clamp(n, 1, kMaxThreads);
}

}  // namespace fastrnn::detail

namespace fastrnn {
int available_cpus() noexcept { return detail::available_cpus(); }
int cgroup_cpu_limit(const std::string& root, const std::string& proc_self_cgroup,
                     const std::string& mountinfo) noexcept {
  return detail::cgroup_cpu_limit(root, proc_self_cgroup, mountinfo);
}
}  // namespace fastrnn
