// A weight matrix packed once per call for Eigen's GEMM micro-kernel, then multiplied by a new
// small operand at every time step.
//
// An Eigen product packs both operands into the micro-kernel's panel layout every time it runs.
// In the time loop the weights are the large operand (W_hh is G*H x H, the step's states only
// B x H), so a per-step product spends much of its time re-packing the same weights. Here the
// weights are packed once (gemm_pack_lhs) and each step packs only its own small operand
// (gemm_pack_rhs) before calling Eigen's block-panel kernel (gebp_kernel) directly. Measured on
// the per-step shapes (one thread, float32, AVX-512): 64x256 by 256x1024 97 -> 108 GFLOP/s,
// 32x512 by 512x2048 87 -> 97, 128x1024 by 1024x4096 84-90 -> 100.
//
// Determinism: the weight rows are cut into blocks whose size depends on the matrix's shape only,
// each block packed as a matrix of its own, and depth and output columns are cut at fixed sizes
// too. Every output element is therefore computed by the same kernel code, in the same order,
// whatever the thread count: results are bit-identical across set_num_threads values, as with
// parallel.hpp's tiled products.
//
// Uses Eigen's internal (but long-stable) gebp interface: gemm_pack_lhs, gemm_pack_rhs,
// gebp_kernel, as in Eigen 3.4's GeneralMatrixMatrix.h.
//
// A call that runs only a few products of a few rows (batch at most kDirectMaxRows, at most
// kDirectMaxSteps steps: a generation loop calls one step at a time) does not pack: packing the
// weights cost several times the products it served (LSTM forward, T = B = 1, I = H = 512, one
// thread: 0.97 ms packed, 0.14 without), while a product of a few rows gains little from the
// panel layout. Such products read the weights where they are ("direct" mode, below), each
// weight once for all the rows, with the same partition into parts (LSTM forward, T = 1, B = 4,
// I = H = 512, one thread: 1.29 ms packed, 0.32 direct). Over more steps packing pays (LSTM
// forward, B = 1, I, H = 128, 256, one thread: T = 8 0.19 ms packed, 0.25 direct; T = 200 3.2 ms,
// 3.9).
//
// A packed product of fewer rows of `in` than the kernel's nr (a batch of 1 to 3 over many steps)
// does not call gebp_kernel, whose loop for a single column keeps three accumulators and waits on
// each multiply-add's latency: few_rows runs the same arithmetic on the same packed weights, bit
// for bit, with twelve independent accumulators.
#pragma once

#include "fastrnn/isa_namespace.hpp"  // first: only kernel units compile this

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <memory>
#include <new>
#include <tuple>
#include <type_traits>
#include <vector>

#include "fastrnn/fastrnn.hpp"
#include "fastrnn/parallel.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace fastrnn::detail {
inline namespace FASTRNN_ISA_NS {

/// a * b + c for the scalar tails of the SIMD loops: one fused operation where the target has
/// FMA (as the packet loops' pmadd then), a multiply and an add where it has not (std::fma
/// would be a slow library call there). Fixed per variant, so per-element paths still depend on
/// the shapes only.
template <class S>
EIGEN_STRONG_INLINE S madd(S a, S b, S c) {
#if defined(__FMA__) || defined(__aarch64__) || defined(_M_ARM64) || \
    (defined(_MSC_VER) && defined(__AVX2__))
  return std::fma(a, b, c);
#else
  return a * b + c;
#endif
}

/// The packet size of the left-hand side panels of Eigen's gebp kernel for S on this target.
template <class S>
inline constexpr index_t kLhsPacket = Eigen::internal::unpacket_traits<
    typename Eigen::internal::gebp_traits<S, S>::LhsPacket4Packing>::size;

/// A hint to fetch the cache line at p (nothing where the compiler has no such builtin).
EIGEN_STRONG_INLINE void prefetch(const void* p) {
#if defined(__GNUC__) || defined(__clang__)
  __builtin_prefetch(p);
#else
  (void)p;
#endif
}

/// n scalars aligned to 64 bytes (the micro-kernel loads packed weights with aligned loads),
/// not initialised; the memory comes from and goes back to the block cache (alloc_block, shared
/// by all variants: freed blocks stay mapped for the next call of the same sizes).
template <class S>
class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  explicit AlignedBuffer(index_t n) { reset(n); }
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  AlignedBuffer(AlignedBuffer&& o) noexcept : p_(o.p_), bytes_(o.bytes_) {
    o.p_ = nullptr;
    o.bytes_ = 0;
  }
  AlignedBuffer& operator=(AlignedBuffer&& o) noexcept {
    if (this != &o) {
      release();
      p_ = o.p_;
      bytes_ = o.bytes_;
      o.p_ = nullptr;
      o.bytes_ = 0;
    }
    return *this;
  }
  ~AlignedBuffer() { release(); }
  void reset(index_t n) {
    release();
    if (n <= 0) return;
    p_ = static_cast<S*>(alloc_block(sizeof(S) * static_cast<size_t>(n), bytes_));
  }
  S* data() { return p_; }
  const S* data() const { return p_; }

 private:
  void release() noexcept {
    if (p_) free_block(p_, bytes_);
    p_ = nullptr;
    bytes_ = 0;
  }
  S* p_ = nullptr;
  size_t bytes_ = 0;
};

/// out (n x m, row-major, leading dimension ldo) (+)= in (n x k, row-major, ldi) * A^T, with the
/// m x k matrix A packed once at construction. In the driver: A = W_hh (the step's recurrent
/// product h W_hh^T, A row-major) or A = W_hh^T (the backward's dG W_hh, A column-major).
///
/// Parts: A's rows are `gates` stacked blocks of U = m / gates rows (one per gate, U units
/// each). The units are cut into at most kBlocks unit blocks, in whole SIMD packets (a function of
/// U only); a unit block holds the rows of its units in every gate. multiply_part(i, n) computes
/// the output columns of the units [part_begin(U, i, n), part_begin(U, i + 1, n)) in every gate,
/// so a thread of a team can run its part of the product and then the pointwise work on the same
/// units, with no other thread's output needed (driver.hpp).
template <class S>
class PackedGemm {
  using Traits = Eigen::internal::gebp_traits<S, S>;
  using LhsRow = Eigen::internal::const_blas_data_mapper<S, index_t, Eigen::RowMajor>;
  using LhsCol = Eigen::internal::const_blas_data_mapper<S, index_t, Eigen::ColMajor>;
  using RhsMap = Eigen::internal::const_blas_data_mapper<S, index_t, Eigen::ColMajor>;
  using ResMap = Eigen::internal::blas_data_mapper<S, index_t, Eigen::ColMajor, Eigen::Unaligned, 1>;

 public:
  /// Depth (k) per packed panel, and output columns (rows of `in`) per packed right-hand side.
  static constexpr index_t kDepthBlock = 512;
  static constexpr index_t kColBlock = 128;
  /// The units are cut into kBlocks blocks of (nearly) equal size, in whole SIMD packets (a
  /// function of the unit count only). Equal blocks share evenly among 1, 2, 4 or 8 threads; the
  /// block size itself hardly matters to the kernel (measured: 109-114 GFLOP/s from 16 to 256 rows).
  static constexpr index_t kBlocks = 8;
  static constexpr index_t kPacket = Eigen::internal::packet_traits<S>::size;
  static constexpr index_t kAlign = 64 / sizeof(S);  ///< scalars per 64 bytes
  /// Direct mode (no packing) for at most this many products of at most kDirectMaxRows rows
  /// (see the top of this file).
  static constexpr index_t kDirectMaxSteps = 4;
  static constexpr index_t kDirectMaxRows = 4;

  /// Unit blocks of U units: min(kBlocks, packets of U).
  static index_t blocks_for(index_t U) {
    return std::min(kBlocks, std::max<index_t>((U + kPacket - 1) / kPacket, 1));
  }
  /// First unit of unit block bi (bi = blocks_for(U) gives U).
  static index_t block_begin(index_t U, index_t bi) {
    const index_t packets = (U + kPacket - 1) / kPacket;
    return std::min(U, packets * bi / blocks_for(U) * kPacket);
  }
  /// First unit of part i of n (the unit blocks split in n contiguous runs, as schedule(static)).
  static index_t part_begin(index_t U, index_t i, index_t n) {
    return block_begin(U, blocks_for(U) * i / n);
  }

  PackedGemm() = default;

  /// A(i, j) = a[i * lda + j] if row_major, else a[i + j * lda]. max_n: the most rows of `in`
  /// any multiply() will get (sizes the packing buffer of the right-hand side). gates: how many
  /// stacked gate blocks A's rows form (m must be a multiple). products: how many multiplies
  /// the caller will run (with max_n <= kDirectMaxRows, at most kDirectMaxSteps: direct
  /// mode). The mode depends on these shapes only, never on the thread count.
  PackedGemm(const S* a, index_t m, index_t k, index_t lda, bool row_major, index_t max_n,
             index_t gates = 1, index_t products = std::numeric_limits<index_t>::max())
      : m_(m), k_(k), gates_(gates), a_(a), lda_(lda), row_major_(row_major) {
    if (m <= 0 || k <= 0) return;
    const index_t U = m / gates;
    blocks_ = blocks_for(U);
    seg_row_.resize(static_cast<size_t>(blocks_ * gates));
    seg_rows_.resize(seg_row_.size());
    for (index_t bi = 0; bi < blocks_; ++bi) {
      const index_t u0 = block_begin(U, bi), u1 = block_begin(U, bi + 1);
      for (index_t g = 0; g < gates; ++g) {
        seg_row_[static_cast<size_t>(bi * gates + g)] = g * U + u0;
        seg_rows_[static_cast<size_t>(bi * gates + g)] = u1 - u0;
      }
    }
    rhs_parts_ = std::max(1, static_cast<int>(std::min<index_t>(num_threads(), blocks_)));
    if (max_n <= kDirectMaxRows && products <= kDirectMaxSteps) {  // read A where it is (file top)
      direct_ = true;
      return;
    }
    depth_blocks_ = (k + kDepthBlock - 1) / kDepthBlock;
    const index_t segs = blocks_ * gates;
    // (segment, depth block) offsets, each aligned
    seg_.assign(static_cast<size_t>(segs * depth_blocks_ + 1), 0);
    index_t off = 0;
    for (index_t si = 0; si < segs; ++si) {
      for (index_t kb = 0; kb < depth_blocks_; ++kb) {
        seg_[static_cast<size_t>(si * depth_blocks_ + kb)] = off;
        off += round_up(seg_rows_[static_cast<size_t>(si)] * depth_of(kb));
      }
    }
    packed_.reset(off);
    auto pack = [&](index_t si) {
      const index_t r0 = seg_row_[static_cast<size_t>(si)], rows = seg_rows_[static_cast<size_t>(si)];
      for (index_t kb = 0; kb < depth_blocks_; ++kb) {
        S* dst = packed_.data() + seg_[static_cast<size_t>(si * depth_blocks_ + kb)];
        const index_t k0 = kb * kDepthBlock, depth = depth_of(kb);
        if (row_major) {
          Eigen::internal::gemm_pack_lhs<S, index_t, LhsRow, Traits::mr, Traits::LhsProgress,
                                         typename Traits::LhsPacket4Packing, Eigen::RowMajor>
              p;
          p(dst, LhsRow(a, lda).getSubMapper(r0, k0), depth, rows);
        } else {
          Eigen::internal::gemm_pack_lhs<S, index_t, LhsCol, Traits::mr, Traits::LhsProgress,
                                         typename Traits::LhsPacket4Packing, Eigen::ColMajor>
              p;
          p(dst, LhsCol(a, lda).getSubMapper(r0, k0), depth, rows);
        }
      }
    };
    parallel_for(segs, pick_threads(m * k), pack);
    const index_t nmax = std::min(std::max<index_t>(max_n, 1), kColBlock);
    rhs_stride_ = round_up(std::min(kDepthBlock, k) * nmax);
    rhs_size_ = depth_blocks_ * rhs_stride_;
    rhs_.reset(rhs_parts_ * rhs_size_);
  }

  index_t rows() const { return m_; }
  index_t depth() const { return k_; }
  /// The most parts multiply_part() accepts (one right-hand-side buffer each).
  int max_parts() const { return rhs_parts_; }

  /// out = in * A^T + bias (accumulate: out += in * A^T), in n <= max_n rows: part `part` of
  /// `parts` (< max_parts()), in the calling thread, i.e. the output columns of its units
  /// (part_begin). bias: m values added to every row, nullptr = none; the kernel accumulates
  /// onto it, so it costs no pass of its own. Each part packs the right-hand side for itself
  /// (n x k scalars, small next to its share of the product), so parts never wait for each other.
  void multiply_part(S* out, index_t ldo, const S* in, index_t ldi, index_t n, bool accumulate,
                     index_t part, index_t parts, const S* bias = nullptr) {
    multiply_part(out, ldo, in, ldi, n, accumulate, part, parts, bias, Tail{});
  }

  /// The last gates of A (from `gate` on) sent elsewhere: their output columns are
  /// tail.out[(g - gate) * U + u] (leading dimension tail.ldo), set to tail.bias (m values, the
  /// tail's part used; nullptr = zeros) + the product. Lets a GRU add its r and z products
  /// onto the gates while the n product, which the reset gate scales, goes to a buffer.
  struct Tail {
    index_t gate = std::numeric_limits<index_t>::max();
    S* out = nullptr;
    index_t ldo = 0;
    const S* bias = nullptr;
  };

  void multiply_part(S* out, index_t ldo, const S* in, index_t ldi, index_t n, bool accumulate,
                     index_t part, index_t parts, const S* bias, const Tail& tail) {
    if (n <= 0 || m_ <= 0) return;
    const index_t b0 = blocks_ * part / parts, b1 = blocks_ * (part + 1) / parts;
    if (b1 <= b0) return;
    const index_t s0 = b0 * gates_, s1 = b1 * gates_;
    const index_t tail_col = tail.gate < gates_ ? tail.gate * (m_ / gates_) : 0;
    // segment si's output: (buffer, leading dimension, accumulate?, bias, the buffer's first
    // column of A)
    auto target = [&](index_t si) {
      const bool in_tail = si % gates_ >= tail.gate;
      return std::make_tuple(in_tail ? tail.out : out, in_tail ? tail.ldo : ldo,
                             in_tail ? false : accumulate, in_tail ? tail.bias : bias,
                             in_tail ? tail_col : index_t(0));
    };
    if (k_ <= 0) {
      for (index_t si = s0; si < s1; ++si) {
        const auto [o, ld, acc, bs, shift] = target(si);
        if (!acc) init_cols(o, ld, n, si, bs, shift);
      }
      return;
    }
    if (direct_) {  // all n <= kDirectMaxRows rows of `in` at once: A is read once
      if (row_major_) {
        for (index_t si = s0; si < s1; ++si) direct_rows(target(si), si, in, ldi, n);
      } else if (gates_ == 1) {  // one target: all the part's rows in one pass
        direct_cols(target(s0), s0, s1, in, ldi, n);
      } else {
        for (index_t si = s0; si < s1; ++si) direct_cols(target(si), si, si + 1, in, ldi, n);
      }
      return;
    }
    if (n < Traits::nr && whole_packets(s0, s1)) {  // batch 1-3: gebp's one-column path
      few_rows(s0, s1, target, in, ldi, n);
      return;
    }
    S* rhs = rhs_.data() + part * rhs_size_;
    Eigen::internal::gemm_pack_rhs<S, index_t, RhsMap, Traits::nr, Eigen::ColMajor> pack;
    Eigen::internal::gebp_kernel<S, S, index_t, ResMap, Traits::mr, Traits::nr, false, false> gebp;
    for (index_t c0 = 0; c0 < n; c0 += kColBlock) {
      const index_t nc = std::min(kColBlock, n - c0);
      const RhsMap x(in + c0 * ldi, ldi);
      for (index_t kb = 0; kb < depth_blocks_; ++kb) {
        pack(rhs + kb * rhs_stride_, x.getSubMapper(kb * kDepthBlock, 0), depth_of(kb), nc);
      }
      for (index_t si = s0; si < s1; ++si) {
        const index_t r0 = seg_row_[static_cast<size_t>(si)], rows = seg_rows_[static_cast<size_t>(si)];
        const auto [o0, ld, acc, bs, shift] = target(si);
        S* o = o0 + c0 * ld;
        if (!acc) init_cols(o, ld, nc, si, bs, shift);
        for (index_t kb = 0; kb < depth_blocks_; ++kb) {
          gebp(ResMap(o + (r0 - shift), ld),
               packed_.data() + seg_[static_cast<size_t>(si * depth_blocks_ + kb)],
               rhs + kb * rhs_stride_, rows, depth_of(kb), nc, S(1));
        }
      }
    }
  }

 private:
  static index_t round_up(index_t n) { return (n + kAlign - 1) / kAlign * kAlign; }
  index_t depth_of(index_t kb) const { return std::min(kDepthBlock, k_ - kb * kDepthBlock); }

  using Packet = typename Eigen::internal::packet_traits<S>::type;
  using Target = std::tuple<S*, index_t, bool, const S*, index_t>;

  /// out(c, r) = (accumulate ? out(c, r) : bias[r] or 0) + sum, for A's row r
  static void store(const Target& t, index_t c, index_t r, S sum) {
    const auto& [o, ld, acc, bias, shift] = t;
    S& dst = o[c * ld + (r - shift)];
    dst = (acc ? dst : bias ? bias[r] : S(0)) + sum;
  }

  /// Calls f(std::integral_constant<int, N>{}) for n = N in [1, kDirectMaxRows]
  template <class F>
  static void with_rows(index_t n, F&& f) {
    static_assert(kDirectMaxRows == 4);
    eigen_assert(n >= 1 && n <= kDirectMaxRows);  // direct mode: n <= max_n <= kDirectMaxRows
    switch (n) {
      case 1: f(std::integral_constant<int, 1>{}); break;
      case 2: f(std::integral_constant<int, 2>{}); break;
      case 3: f(std::integral_constant<int, 3>{}); break;
      default: f(std::integral_constant<int, 4>{}); break;
    }
  }

  /// Direct mode, A row-major: sums[q * N + c] = A's row (a + q * lda) . (x + c * ldx) over k,
  /// for kRows rows and N rows of x at a time (independent chains), each dot product summed the
  /// same way whatever kRows and N: one packet accumulator over the whole packets in order,
  /// reduced, then the remaining scalars in order.
  template <int kRows, int N>
  static void dot_rows(const S* a, index_t lda, index_t k, const S* x, index_t ldx, S* sums) {
    using namespace Eigen::internal;
    constexpr index_t P = kPacket;
    Packet acc[kRows][N];
    for (int q = 0; q < kRows; ++q) {
      for (int c = 0; c < N; ++c) acc[q][c] = pset1<Packet>(S(0));
    }
    index_t j = 0;
    for (; j + P <= k; j += P) {
      Packet xj[N];
      for (int c = 0; c < N; ++c) xj[c] = ploadu<Packet>(x + c * ldx + j);
      for (int q = 0; q < kRows; ++q) {
        const Packet aj = ploadu<Packet>(a + q * lda + j);
        for (int c = 0; c < N; ++c) acc[q][c] = pmadd(aj, xj[c], acc[q][c]);
      }
    }
    for (int q = 0; q < kRows; ++q) {
      for (int c = 0; c < N; ++c) {
        S sum = predux(acc[q][c]);
        for (index_t jj = j; jj < k; ++jj) sum = madd(a[q * lda + jj], x[c * ldx + jj], sum);
        sums[q * N + c] = sum;
      }
    }
  }

  /// Direct mode, A row-major: segment si's outputs for the n rows of `in` (rows of the output)
  void direct_rows(const Target& t, index_t si, const S* in, index_t ldi, index_t n) const {
    with_rows(n, [&](auto rows_of_in) {
      constexpr int N = decltype(rows_of_in)::value;
      constexpr int kRows = N == 1 ? 8 : N == 2 ? 4 : 2;  // at most 8 accumulators
      const index_t r0 = seg_row_[static_cast<size_t>(si)];
      const index_t r1 = r0 + seg_rows_[static_cast<size_t>(si)];
      S sums[kRows * N];
      index_t r = r0;
      for (; r + kRows <= r1; r += kRows) {
        dot_rows<kRows, N>(a_ + r * lda_, lda_, k_, in, ldi, sums);
        for (int q = 0; q < kRows; ++q) {
          for (int c = 0; c < N; ++c) store(t, c, r + q, sums[q * N + c]);
        }
      }
      for (; r < r1; ++r) {
        dot_rows<1, N>(a_ + r * lda_, lda_, k_, in, ldi, sums);
        for (int c = 0; c < N; ++c) store(t, c, r, sums[c]);
      }
    });
  }

  /// Direct mode, A column-major (A(r, j) = a[r + j * lda], one contiguous run of rows per j):
  /// the outputs of segments [s0, s1) (one target) for the n rows of `in`. Each output sums
  /// x[j] * A(r, j) over j in order in one accumulator, kChunks packets of rows and all n rows
  /// of `in` at a time (independent chains); a segment's rows past its last whole packet one by
  /// one, the same way. Which path an element takes depends on the segments only (fixed by the
  /// shapes), so every element's sum is the same whatever the grouping and the thread count.
  void direct_cols(const Target& t, index_t s0, index_t s1, const S* in, index_t ldi,
                   index_t n) const {
    with_rows(n, [&](auto rows_of_in) {
      using namespace Eigen::internal;
      constexpr int N = decltype(rows_of_in)::value;
      constexpr index_t P = kPacket;
      constexpr int kChunks = N == 1 ? 8 : N == 2 ? 4 : 2;  // at most 8 accumulators
      index_t first[kChunks];
      int got = 0;
      auto flush = [&] {
        Packet acc[kChunks][N];
        for (int q = 0; q < got; ++q) {
          for (int c = 0; c < N; ++c) acc[q][c] = pset1<Packet>(S(0));
        }
        for (index_t j = 0; j < k_; ++j) {
          Packet xj[N];
          for (int c = 0; c < N; ++c) xj[c] = pset1<Packet>(in[c * ldi + j]);
          const S* col = a_ + j * lda_;
          for (int q = 0; q < got; ++q) {
            const Packet aj = ploadu<Packet>(col + first[q]);
            for (int c = 0; c < N; ++c) acc[q][c] = pmadd(aj, xj[c], acc[q][c]);
          }
        }
        alignas(64) S lanes[P];
        for (int q = 0; q < got; ++q) {
          for (int c = 0; c < N; ++c) {
            pstore(lanes, acc[q][c]);
            for (index_t l = 0; l < P; ++l) store(t, c, first[q] + l, lanes[l]);
          }
        }
        got = 0;
      };
      for (index_t si = s0; si < s1; ++si) {
        const index_t r0 = seg_row_[static_cast<size_t>(si)];
        const index_t r1 = r0 + seg_rows_[static_cast<size_t>(si)];
        index_t r = r0;
        for (; r + P <= r1; r += P) {
          first[got++] = r;
          if (got == kChunks) flush();
        }
        for (; r < r1; ++r) {  // the segment's last rows, not a whole packet
          for (int c = 0; c < N; ++c) {
            S sum(0);
            for (index_t j = 0; j < k_; ++j) sum = madd(in[c * ldi + j], a_[r + j * lda_], sum);
            store(t, c, r, sum);
          }
        }
      }
      if (got) flush();
    });
  }

  /// An output packet of a product with fewer rows of `in` than the kernel's nr: the packed
  /// weights of its rows advance by `step` scalars per k, its sums go to `out`.
  struct Chain {
    const S* a;
    index_t step;
    S* out;
  };

  /// True when every segment of [s0, s1) has whole SIMD packets of rows (then its packed panels
  /// are mr rows, then one of the rest: the layout pack_lhs_by_rows describes).
  bool whole_packets(index_t s0, index_t s1) const {
    constexpr index_t P = kLhsPacket<S>;
    for (index_t si = s0; si < s1; ++si) {
      if (seg_rows_[static_cast<size_t>(si)] % P != 0) return false;
    }
    return true;
  }

  /// G chains over one depth block: acc = sum over k of a[k * step] * x[k], one fused
  /// multiply-add per k in order from zero, then out += acc -- gebp_kernel's arithmetic for a
  /// single column of the right-hand side, bit for bit, with G independent chains instead of
  /// gebp's three (its "3pX1" loop waits on the latency of each multiply-add: half the speed
  /// or less for a batch of one).
  template <int G>
  static void run_chains(const Chain* c, const S* x, index_t depth) {
    using namespace Eigen::internal;
    Packet acc[G];
    for (int g = 0; g < G; ++g) acc[g] = pset1<Packet>(S(0));
    for (index_t k = 0; k < depth; ++k) {
      const Packet b = pset1<Packet>(x[k]);
      for (int g = 0; g < G; ++g) acc[g] = pmadd(ploadu<Packet>(c[g].a + k * c[g].step), b, acc[g]);
    }
    for (int g = 0; g < G; ++g) pstoreu(c[g].out, padd(acc[g], ploadu<Packet>(c[g].out)));
  }

  /// The packed product for n < nr rows of `in` (a batch of 1 to 3): for each row of `in` and
  /// depth block, the output packets of segments [s0, s1) in chains of kChains (see run_chains).
  /// Every output packet is computed as gebp computes it, so the results are those of the gebp
  /// path and do not depend on the grouping or the thread count.
  template <class TargetOf>
  void few_rows(index_t s0, index_t s1, const TargetOf& target, const S* in, index_t ldi,
                index_t n) const {
    constexpr index_t P = kLhsPacket<S>;
    constexpr index_t kMr = Eigen::internal::gebp_traits<S, S>::mr;
    constexpr int kChains = 12;  // 12 accumulators: with AVX2's 16 registers, room for the rest
    static_assert(Eigen::internal::unpacket_traits<Packet>::size == P,
                  "run_chains loads the packed panels in packets of the kernel's lhs packet");
    for (index_t si = s0; si < s1; ++si) {
      const auto [o, ld, acc, bs, shift] = target(si);
      if (!acc) init_cols(o, ld, n, si, bs, shift);
    }
    Chain chain[kChains];
    int got = 0;
    const S* x = nullptr;
    index_t depth = 0;
    auto flush = [&] {
      int g = 0;
      for (; g + kChains <= got; g += kChains) run_chains<kChains>(chain + g, x, depth);
      for (; g + 4 <= got; g += 4) run_chains<4>(chain + g, x, depth);
      for (; g < got; ++g) run_chains<1>(chain + g, x, depth);
      got = 0;
    };
    for (index_t c = 0; c < n; ++c) {
      for (index_t kb = 0; kb < depth_blocks_; ++kb) {
        x = in + c * ldi + kb * kDepthBlock;
        depth = depth_of(kb);
        for (index_t si = s0; si < s1; ++si) {
          const index_t r0 = seg_row_[static_cast<size_t>(si)];
          const index_t rows = seg_rows_[static_cast<size_t>(si)];
          const auto [o, ld, acc, bs, shift] = target(si);
          (void)acc;
          (void)bs;
          const S* a = packed_.data() + seg_[static_cast<size_t>(si * depth_blocks_ + kb)];
          S* out = o + c * ld + (r0 - shift);
          for (index_t p0 = 0; p0 < rows;) {  // panels of mr rows, then one of the rest
            const index_t w = std::min(kMr, rows - p0);
            for (index_t q = 0; q < w; q += P) {
              chain[got++] = Chain{a + p0 * depth + q, w, out + p0 + q};
              if (got == kChains) flush();
            }
            p0 += w;
          }
        }
        flush();
      }
    }
  }

  int pick_threads(index_t work) const {
    if (work < kParallelMinWork) return 1;
    return static_cast<int>(std::min<index_t>(num_threads(), blocks_));
  }

  /// sets segment si's output columns in n rows of o to the bias (nullptr: zeros); o's column 0
  /// is column `shift` of A's rows (a Tail buffer), the bias is indexed by A's row
  void init_cols(S* o, index_t ldo, index_t n, index_t si, const S* bias, index_t shift) const {
    using Row = Eigen::Map<Eigen::Array<S, 1, Eigen::Dynamic>>;
    using CRow = Eigen::Map<const Eigen::Array<S, 1, Eigen::Dynamic>>;
    const index_t c0 = seg_row_[static_cast<size_t>(si)], cols = seg_rows_[static_cast<size_t>(si)];
    S* first = o + (c0 - shift);
    if (bias) {
      const CRow b(bias + c0, cols);
      for (index_t r = 0; r < n; ++r) Row(first + r * ldo, cols) = b;
    } else {
      for (index_t r = 0; r < n; ++r) Row(first + r * ldo, cols).setZero();
    }
  }

  index_t m_ = 0, k_ = 0, gates_ = 1;
  const S* a_ = nullptr;  ///< A itself, read by the direct mode
  index_t lda_ = 0;
  bool row_major_ = true;
  bool direct_ = false;
  index_t blocks_ = 0, depth_blocks_ = 0;
  index_t rhs_stride_ = 0, rhs_size_ = 0;  ///< per depth block, per part
  /// parts with a right-hand-side buffer (direct mode: unit blocks, at most the thread count);
  /// an empty product (m or k zero) needs none: no limit
  int rhs_parts_ = std::numeric_limits<int>::max();
  std::vector<index_t> seg_row_;   ///< first row of A of each (unit block, gate) segment
  std::vector<index_t> seg_rows_;  ///< its rows
  std::vector<index_t> seg_;       ///< offset of each (segment, depth block) in packed_
  AlignedBuffer<S> packed_;
  AlignedBuffer<S> rhs_;
};

/// Packs rows [0, depth) x columns [0, cols) of the row-major matrix a (leading dimension lda) as
/// the right-hand side of Eigen's gebp kernel, with `stride` scalars per column (the layout of
/// gemm_pack_rhs for nr = 4 when stride = depth: panels of 4 columns, 4 values per k, column j's
/// panel at j * stride; then the remaining columns one by one). Eigen's own packer walks a
/// row-major operand down each 4-column panel, one row (often one page) per load, where the
/// hardware prefetcher cannot follow; this one reads each row once, front to back. A stride of
/// depth + 16 keeps the panels' store streams off one cache set (depth * 16 bytes is often a
/// multiple of 4 KiB). Where the kernel's panels are not 4 columns wide (nr is Eigen's choice
/// for the target), Eigen's packer does it.
template <class S>
void pack_rhs_by_rows(S* dst, const S* a, index_t lda, index_t depth, index_t cols, index_t stride) {
  constexpr int kNr = Eigen::internal::gebp_traits<S, S>::nr;
  if constexpr (kNr != 4) {
    using Map = Eigen::internal::const_blas_data_mapper<S, index_t, Eigen::RowMajor>;
    Eigen::internal::gemm_pack_rhs<S, index_t, Map, kNr, Eigen::RowMajor, false, true> pack;
    pack(dst, Map(a, lda), depth, cols, stride, 0);
  } else {
    const index_t c4 = cols / 4 * 4;
    constexpr index_t kAhead = 8, kLine = 64 / sizeof(S);
    for (index_t k = 0; k < depth; ++k) {
      const S* row = a + k * lda;
      if (k + kAhead < depth) {
        const S* next = row + kAhead * lda;
        for (index_t j = 0; j < cols; j += kLine) prefetch(next + j);
      }
      for (index_t p = 0; p < c4; p += 4) {
        std::memcpy(dst + p * stride + 4 * k, row + p, 4 * sizeof(S));
      }
      for (index_t j = c4; j < cols; ++j) dst[j * stride + k] = row[j];
    }
  }
}

/// Packs rows [0, depth) x columns [0, cols) of the row-major matrix a (leading dimension lda),
/// cols a multiple of the packet size P (kLhsPacket), as the left-hand side of Eigen's gebp
/// kernel: the layout of gemm_pack_lhs for a column-major (cols x depth) operand, i.e. panels
/// of mr columns (the kernel's register block, Eigen's choice for the target: 3P with FMA, on
/// x86 with AVX2 or AVX-512 and on NEON, 2P without), then one panel of the rest (fewer than mr
/// columns, a multiple of P: gemm_pack_lhs peels 3, 2 and 1 packets in that order, which leaves
/// one panel), each panel holding its values of row 0, then row 1, ... contiguously.
/// gemm_pack_lhs reads the operand one panel at a time, down all the rows (rows 1 KiB or more
/// apart); this reads each row once, front to back.
template <class S>
void pack_lhs_by_rows(S* dst, const S* a, index_t lda, index_t depth, index_t cols) {
  constexpr index_t P = kLhsPacket<S>;
  constexpr index_t kMr = Eigen::internal::gebp_traits<S, S>::mr;
  static_assert(kMr % P == 0 && kMr >= P && kMr <= 3 * P,
                "gemm_pack_lhs's panels are mr columns, then one of the rest, for mr <= 3P");
  const index_t cm = cols / kMr * kMr;
  const index_t w = cols - cm;  // the rest: one panel (cols is a multiple of P)
  for (index_t k = 0; k < depth; ++k) {
    const S* row = a + k * lda;
    for (index_t p = 0; p < cm; p += kMr) {
      std::memcpy(dst + p * depth + kMr * k, row + p, kMr * sizeof(S));
    }
    if (w) std::memcpy(dst + cm * depth + w * k, row + cm, static_cast<size_t>(w) * sizeof(S));
  }
}

/// One product of gemm_tn: C (m1 - m0 rows x N, row-major, ldc) = A[:, m0:m1]^T B, with B (K x N,
/// row-major, ldb) and A gemm_tn's shared operand.
template <class S>
struct TnProduct {
  S* C;
  index_t ldc;
  const S* B;
  index_t ldb;
  index_t N;
  index_t m0, m1;
};

/// gemm_tn's products for a small depth K (at most kTnDirectMaxDepth rows: a training step on a
/// few steps of one sequence), without packing: C(m, :) = sum over k of A(k, m) B(k, :), each
/// row of C written once. The packed path zeroes C and has the kernel read and write it again,
/// three passes over C where there are only K multiply-adds per element (an LSTM's W_hh
/// gradient for one step, H = 512: a 4 MiB C for 2 MFLOP). Every element is summed over k in
/// order (a product, then one fused multiply-add per k), in packets of columns and the row's
/// last columns one by one: its path depends on N only, and rows are independent, so the
/// results do not depend on the split among threads. Measured (float32, I, H = 256, 512, a
/// forward and backward, min of 3 processes): T = B = 1 LSTM 1.41 -> 0.60 ms at 1 thread, 0.64
/// -> 0.31 at 2, GRU 0.75 -> 0.35; K = 8 (T = 4, B = 2) 1.03-1.24x; K = 16 0.90-1.13x and K = 32
/// 0.72-0.82x (packed is faster there: the kernel's FLOPs per element grow with K).
inline constexpr index_t kTnDirectMaxDepth = 8;

template <class S>
void gemm_tn_direct(const S* A, index_t lda, index_t K, const std::vector<TnProduct<S>>& ps) {
  using namespace Eigen::internal;
  using Packet = typename packet_traits<S>::type;
  constexpr index_t P = packet_traits<S>::size;
  constexpr index_t kTileRows = 16, kChunks = 4;
  struct Tile {
    size_t p;
    index_t r0, r1;  // rows of A's columns
  };
  std::vector<Tile> tiles;
  index_t work = 0;
  for (size_t p = 0; p < ps.size(); ++p) {
    if (ps[p].N <= 0) continue;
    for (index_t r0 = ps[p].m0; r0 < ps[p].m1; r0 += kTileRows) {
      tiles.push_back({p, r0, std::min(r0 + kTileRows, ps[p].m1)});
    }
    work += (ps[p].m1 - ps[p].m0) * ps[p].N * std::max<index_t>(K, 4);
  }
  const index_t count = static_cast<index_t>(tiles.size());
  auto run = [&](index_t i) {
    const Tile& t = tiles[static_cast<size_t>(i)];
    const TnProduct<S>& p = ps[t.p];
    for (index_t m = t.r0; m < t.r1; ++m) {
      S* c = p.C + (m - p.m0) * p.ldc;
      index_t n = 0;
      // Q packets of columns from n on (independent chains), while Q whole packets remain
      auto packets = [&](auto chunks) {
        constexpr index_t Q = decltype(chunks)::value;
        for (; n + Q * P <= p.N; n += Q * P) {
          Packet acc[Q];
          const Packet a0 = pset1<Packet>(A[m]);
          for (index_t q = 0; q < Q; ++q) acc[q] = pmul(a0, ploadu<Packet>(p.B + n + q * P));
          for (index_t k = 1; k < K; ++k) {
            const Packet ak = pset1<Packet>(A[k * lda + m]);
            const S* b = p.B + k * p.ldb + n;
            for (index_t q = 0; q < Q; ++q) acc[q] = pmadd(ak, ploadu<Packet>(b + q * P), acc[q]);
          }
          for (index_t q = 0; q < Q; ++q) pstoreu(c + n + q * P, acc[q]);
        }
      };
      packets(std::integral_constant<index_t, kChunks>{});
      packets(std::integral_constant<index_t, 1>{});
      for (; n < p.N; ++n) {
        S acc = A[m] * p.B[n];
        for (index_t k = 1; k < K; ++k) acc = madd(A[k * lda + m], p.B[k * p.ldb + n], acc);
        c[n] = acc;
      }
    }
  };
  parallel_for(count, work < kParallelMinWork ? 1 : num_threads(), run);
}

/// Several products C_p = A[:, m0_p:m1_p]^T B_p sharing one operand A (K x M, row-major, lda):
/// both operands run along the long dimension K, as in the weight gradients of a layer,
/// dW_ih = dG^T X and dW_hh = dG^T H over all T*B rows.
///
/// Each B_p is packed once, in blocks (n tile, depth block), for the kernel's left-hand side
/// (pack_lhs_by_rows, or Eigen's packer for a tile that is not whole SIMD packets wide). The
/// columns of A are cut into segments at every m0 and m1, each segment into tiles of tile_m
/// columns; a work item is (one such tile, one n tile of a product covering it),
/// the items run over the depth blocks in order, and the threads take contiguous runs of items.
/// Items of one thread on the same tile of A form a group (up to kGroupBytes of C): for each
/// depth block the group packs that tile's block of A once (pack_rhs_by_rows) and runs the
/// kernel for each of its items; A, which is the largest operand and the slowest to pack (its
/// rows are a page apart), is packed once for both weight gradients instead of once each (and
/// Eigen's own product spent ~14% of an LSTM backward packing A and B again for every tile,
/// measured). Every element of every C is computed by one item in the same order whatever the
/// grouping: results do not depend on the thread count. A depth of at most kTnDirectMaxDepth
/// goes to gemm_tn_direct instead (a choice made by K alone).
template <class S>
void gemm_tn(const S* A, index_t lda, index_t K, std::initializer_list<TnProduct<S>> products) {
  using Traits = Eigen::internal::gebp_traits<S, S>;
  using LhsCol = Eigen::internal::const_blas_data_mapper<S, index_t, Eigen::ColMajor>;
  using ResMap = Eigen::internal::blas_data_mapper<S, index_t, Eigen::ColMajor, Eigen::Unaligned, 1>;
  // depth block: the kernel's 48-row panel of packed B (48 x kDepth) stays in L1; sub-blocks
  // of A of kSubM columns keep a packed block of A and one of B in L2
  constexpr index_t kTileN = 256, kSubM = 128, kDepth = 128, kStride = kDepth + 16;
  // measured (float32, 1 and 2 threads, the weight gradients of LSTM S1 S2 S4): tiles of 256
  // columns of A and groups of up to 1 MiB of C beat 512 / 512 KiB (no sharing on S2 and S4,
  // 3-8% slower) and 128-column tiles (B packed blocks re-read more often)
  constexpr index_t kGroupBytes = index_t(1) << 20;
  constexpr index_t kPacket = kLhsPacket<S>;  // pack_lhs_by_rows takes whole packets
  const std::vector<TnProduct<S>> ps(products);
  if (K <= 0) {
    for (const auto& p : ps) {
      for (index_t r = 0; r < p.m1 - p.m0; ++r) {
        std::fill(p.C + r * p.ldc, p.C + r * p.ldc + p.N, S(0));
      }
    }
    return;
  }
  if (K <= kTnDirectMaxDepth) {
    gemm_tn_direct(A, lda, K, ps);
    return;
  }

  // B_p^T in packed blocks (n tile, depth block kb), each kTileN * kDepth scalars
  struct NTile {
    index_t p, n0, n;
  };
  std::vector<NTile> ntiles;
  std::vector<index_t> bounds;
  index_t work = 0;
  for (index_t p = 0; p < static_cast<index_t>(ps.size()); ++p) {
    if (ps[p].m1 <= ps[p].m0 || ps[p].N <= 0) continue;
    for (index_t n0 = 0; n0 < ps[p].N; n0 += kTileN) {
      ntiles.push_back({p, n0, std::min(kTileN, ps[p].N - n0)});
    }
    bounds.push_back(ps[p].m0);
    bounds.push_back(ps[p].m1);
    work += (ps[p].m1 - ps[p].m0) * ps[p].N * K;
  }
  if (ntiles.empty()) return;
  std::sort(bounds.begin(), bounds.end());
  bounds.erase(std::unique(bounds.begin(), bounds.end()), bounds.end());
  const index_t kb_count = (K + kDepth - 1) / kDepth;
  const index_t tn = static_cast<index_t>(ntiles.size());
  const bool small = work < kParallelMinWork;
  constexpr index_t kSlot = kTileN * kDepth;
  AlignedBuffer<S> packed_b(tn * kb_count * kSlot);
  parallel_for(tn * kb_count, small ? 1 : num_threads(), [&](index_t item) {
    const NTile& nt = ntiles[static_cast<size_t>(item / kb_count)];
    const TnProduct<S>& p = ps[static_cast<size_t>(nt.p)];
    const index_t k0 = item % kb_count * kDepth;
    S* dst = packed_b.data() + item * kSlot;
    const S* src = p.B + k0 * p.ldb + nt.n0;
    const index_t kd = std::min(kDepth, K - k0);
    if (nt.n % kPacket == 0) {
      pack_lhs_by_rows(dst, src, p.ldb, kd, nt.n);
    } else {
      Eigen::internal::gemm_pack_lhs<S, index_t, LhsCol, Traits::mr, Traits::LhsProgress,
                                     typename Traits::LhsPacket4Packing, Eigen::ColMajor>
          pack_lhs;
      pack_lhs(dst, LhsCol(src, p.ldb), kd, nt.n);
    }
  });

  // the work items: (tile of A's columns, n tile), tiles in column order
  struct Item {
    index_t m0, m, j;  // A's columns [m0, m0 + m), n tile j
  };
  std::vector<Item> items;
  auto make_items = [&](index_t tile_m) {
    items.clear();
    for (size_t b = 0; b + 1 < bounds.size(); ++b) {
      for (index_t m0 = bounds[b]; m0 < bounds[b + 1]; m0 += tile_m) {
        const index_t m = std::min(tile_m, bounds[b + 1] - m0);
        for (index_t j = 0; j < tn; ++j) {
          const TnProduct<S>& p = ps[static_cast<size_t>(ntiles[static_cast<size_t>(j)].p)];
          if (p.m0 <= m0 && m0 < p.m1) items.push_back({m0, m, j});
        }
      }
    }
  };
  index_t tile_m = 256;  // at least 8 items where the columns allow, to share among threads
  make_items(tile_m);
  while (tile_m > kSubM && items.size() < 8) make_items(tile_m /= 2);
  const index_t count = static_cast<index_t>(items.size());
  const int threads = small ? 1 : static_cast<int>(std::min<index_t>(num_threads(), count));

  AlignedBuffer<S> buf(threads * kStride * kSubM);  // each thread's packed block of A
  auto run = [&](index_t i, index_t nt) {
    S* rhs = buf.data() + i * kStride * kSubM;
    Eigen::internal::gebp_kernel<S, S, index_t, ResMap, Traits::mr, Traits::nr, false, false> gebp;
    const index_t last = count * (i + 1) / nt;
    for (index_t g0 = count * i / nt, g1; g0 < last; g0 = g1) {
      const Item& first = items[static_cast<size_t>(g0)];
      index_t width = ntiles[static_cast<size_t>(first.j)].n;
      for (g1 = g0 + 1; g1 < last && items[static_cast<size_t>(g1)].m0 == first.m0; ++g1) {
        const index_t w = width + ntiles[static_cast<size_t>(items[static_cast<size_t>(g1)].j)].n;
        if (w * first.m * static_cast<index_t>(sizeof(S)) > kGroupBytes) break;
        width = w;
      }
      auto c_of = [&](const Item& it) {  // the kernel computes C^T: (n, m) at c + n + m * ldc
        const NTile& t = ntiles[static_cast<size_t>(it.j)];
        const TnProduct<S>& p = ps[static_cast<size_t>(t.p)];
        return p.C + (it.m0 - p.m0) * p.ldc + t.n0;
      };
      for (index_t g = g0; g < g1; ++g) {
        const Item& it = items[static_cast<size_t>(g)];
        const NTile& t = ntiles[static_cast<size_t>(it.j)];
        const index_t ldc = ps[static_cast<size_t>(t.p)].ldc;
        S* c = c_of(it);
        for (index_t r = 0; r < it.m; ++r) std::fill(c + r * ldc, c + r * ldc + t.n, S(0));
      }
      for (index_t kb = 0; kb < kb_count; ++kb) {
        const index_t k0 = kb * kDepth, kd = std::min(kDepth, K - k0);
        for (index_t s0 = 0; s0 < first.m; s0 += kSubM) {
          const index_t ms = std::min(kSubM, first.m - s0);
          pack_rhs_by_rows(rhs, A + k0 * lda + first.m0 + s0, lda, kd, ms, kStride);  // A: (k, m)
          for (index_t g = g0; g < g1; ++g) {
            const Item& it = items[static_cast<size_t>(g)];
            const NTile& t = ntiles[static_cast<size_t>(it.j)];
            const index_t ldc = ps[static_cast<size_t>(t.p)].ldc;
            const S* lhs = packed_b.data() + (it.j * kb_count + kb) * kSlot;
            gebp(ResMap(c_of(it) + s0 * ldc, ldc), lhs, rhs, t.n, kd, ms, S(1), -1, kStride);
          }
        }
      }
    }
  };
#ifdef _OPENMP
  if (threads > 1) {
#pragma omp parallel num_threads(threads)
    run(omp_get_thread_num(), omp_get_num_threads());
    return;
  }
#endif
  run(0, 1);
}

/// C (M x N, row-major, ldc) = A^T B, with A (K x M, lda) and B (K x N, ldb) row-major: one
/// product of the gemm_tn above.
template <class S>
void gemm_tn(S* C, index_t ldc, const S* A, index_t lda, const S* B, index_t ldb, index_t M,
             index_t N, index_t K) {
  gemm_tn(A, lda, K, {TnProduct<S>{C, ldc, B, ldb, N, 0, M}});
}

}  // namespace FASTRNN_ISA_NS
}  // namespace fastrnn::detail
