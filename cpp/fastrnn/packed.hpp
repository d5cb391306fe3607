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
#include <limits>
#include <memory>
#include <new>
#include <type_traits>
#include <vector>

#include "fastrnn/bf16.hpp"
#include "fastrnn/bf16_kernel.hpp"
#include "fastrnn/fastrnn.hpp"
#include "fastrnn/gates.hpp"
#include "fastrnn/int8.hpp"
#include "fastrnn/int8_kernel.hpp"
#include "fastrnn/parallel.hpp"

namespace fastrnn::detail {
inline namespace FASTRNN_ISA_NS {

/// Whether this variant runs bfloat16 products on the CPU's bf16 dot-product instructions
/// (bf16_kernel.hpp); the others round the operands and multiply in float.
#if defined(__AVX512BF16__)
inline constexpr bool kNativeBf16 = true;
#else
inline constexpr bool kNativeBf16 = false;
#endif
/// Whether they run on AMX tiles (bf16_kernel.hpp) rather than vdpbf16ps.
#if defined(__AVX512BF16__) && defined(__AMX_TILE__) && defined(__AMX_BF16__)
#define FASTRNN_AMX_BF16 1
inline constexpr bool kBf16OnAmx = true;
#else
inline constexpr bool kBf16OnAmx = false;
#endif

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

/// The small operand of a PackedGemm product: n rows of `in`, leading dimension ld; transposed
/// (native bfloat16 products only): row c's value j at in[c + j * ld] (a column of a row-major
/// matrix).
template <class S>
struct Rows {
  const S* in;
  index_t ld;
  index_t n;
  bool transposed = false;
};

/// Where a PackedGemm product's output columns go: `out` (row-major, leading dimension ld) set to
/// bias + the product, or, with accumulate, out += the product. bias: indexed by A's row (m
/// values, the part used), nullptr = zeros; the kernel accumulates onto it, so it costs no pass
/// of its own.
/// transposed (native bfloat16 products only): output column r of row c at out[r * ld + c].
template <class S>
struct Dest {
  S* out = nullptr;
  index_t ld = 0;
  bool accumulate = false;
  const S* bias = nullptr;
  bool transposed = false;

  static Dest set(S* out, index_t ld, const S* bias = nullptr) { return {out, ld, false, bias}; }
  static Dest add(S* out, index_t ld) { return {out, ld, true, nullptr}; }
  static Dest set_transposed(S* out, index_t ld) { return {out, ld, false, nullptr, true}; }
};

/// The last gates of A (from `gate` on) sent elsewhere: their output columns go to dest (which
/// must not accumulate), the column of unit u of gate g at (g - gate) * U + u. Lets a GRU add its
/// r and z products onto the gates while the n product, which the reset gate scales, goes to a
/// buffer.
template <class S>
struct Tail {
  index_t gate = std::numeric_limits<index_t>::max();
  Dest<S> dest;
};

/// The weights' side of a PackedGemm: the m x k matrix A cut into segments and (unless the
/// product reads A in place, "direct" mode) packed once into the panel layout of Eigen's gebp
/// kernel (gemm_pack_lhs). Owns the packed copy; A itself must outlive it.
///
/// A's rows are `gates` stacked gate blocks (GateLayout) of U = m / gates units. The units are cut
/// into at most kBlocks unit blocks, in whole SIMD packets (a function of U only); segment
/// si = bi * gates + g holds the rows of unit block bi in gate g. Each segment is packed in depth
/// blocks of kDepthBlock, each as a matrix of its own, so that the packing (and every product
/// over it) depends on A's shape only.
template <class S>
class PackedMatrix {
  using Traits = Eigen::internal::gebp_traits<S, S>;

 public:
  /// Depth (k) per packed panel.
  static constexpr index_t kDepthBlock = 512;
  /// The units are cut into kBlocks blocks of (nearly) equal size, in whole SIMD packets (a
  /// function of the unit count only). Equal blocks share evenly among 1, 2, 4 or 8 threads; the
  /// block size itself hardly matters to the kernel (measured: 109-114 GFLOP/s from 16 to 256
  /// rows).
  static constexpr index_t kBlocks = 8;
  static constexpr index_t kPacket = Eigen::internal::packet_traits<S>::size;
  static constexpr index_t kAlign = 64 / sizeof(S);  ///< scalars per 64 bytes

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
  static index_t round_up(index_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

  PackedMatrix() = default;

  /// A(i, j) = a[i * lda + j] if row_major, else a[i + j * lda], m a multiple of gates; packed
  /// when `pack`, else only cut into segments (direct mode). An empty A (m or k zero) has none.
  /// bf16: the packed values rounded to bfloat16 (Compute::Bf16; packed only).
  PackedMatrix(const S* a, index_t m, index_t k, index_t lda, bool row_major, index_t gates,
               bool pack, bool bf16 = false)
      : m_(m), k_(k), gates_(gates), a_(a), lda_(lda), row_major_(row_major), bf16_(bf16) {
    if (m <= 0 || k <= 0) return;
    const index_t U = m / gates;
    const GateLayout layout{U};
    blocks_ = blocks_for(U);
    seg_row_.resize(static_cast<size_t>(blocks_ * gates));
    seg_rows_.resize(seg_row_.size());
    for (index_t bi = 0; bi < blocks_; ++bi) {
      const index_t u0 = block_begin(U, bi), u1 = block_begin(U, bi + 1);
      for (index_t g = 0; g < gates; ++g) {
        seg_row_[static_cast<size_t>(bi * gates + g)] = layout.at(g, u0);
        seg_rows_[static_cast<size_t>(bi * gates + g)] = u1 - u0;
      }
    }
    if (pack && bf16_ && kNativeBf16) {
      pack_pairs();
    } else if (pack) {
      pack_all();
    }
  }

  index_t rows() const { return m_; }
  index_t depth() const { return k_; }
  index_t gates() const { return gates_; }
  /// Unit blocks (0 for an empty A).
  index_t blocks() const { return blocks_; }
  /// First row of A of segment si, and its rows.
  index_t seg_row(index_t si) const { return seg_row_[static_cast<size_t>(si)]; }
  index_t seg_rows(index_t si) const { return seg_rows_[static_cast<size_t>(si)]; }
  /// Packed: depth blocks (0 in direct mode), the depth of block kb, segment si's panel of it.
  index_t depth_blocks() const { return depth_blocks_; }
  index_t depth_of(index_t kb) const { return std::min(kDepthBlock, k_ - kb * kDepthBlock); }
  const S* panel(index_t si, index_t kb) const {
    return packed_.data() + seg_[static_cast<size_t>(si * depth_blocks_ + kb)];
  }
  /// Native bfloat16 (pack_pairs): pairs of the depth (with AMX, whole tile steps: the pad
  /// zero), and segment si's panels.
  index_t pairs() const {
    const index_t p = (k_ + 1) / 2;
    if constexpr (kBf16OnAmx) return (p + 15) / 16 * 16;  // kAmxPairs
    return p;
  }
  const std::uint16_t* pairs_of(index_t si) const {
    return packed16_.data() + seg_[static_cast<size_t>(si)];
  }
  /// Rows of the panel of a segment that starts p0 rows in, `left` = rows - p0 of them left:
  /// 32, or 16 for the last 16 or fewer (zero-padded).
  static index_t pair_panel_rows(index_t left) { return left > 16 ? 32 : 16; }

  /// A where it is (direct mode).
  const S* a() const { return a_; }
  index_t lda() const { return lda_; }
  bool row_major() const { return row_major_; }

  /// True when every segment of [s0, s1) has whole SIMD packets of rows (then its packed panels
  /// are mr rows, then one of the rest: the layout pack_lhs_by_rows describes, gemm_tn.hpp).
  bool whole_packets(index_t s0, index_t s1) const {
    for (index_t si = s0; si < s1; ++si) {
      if (seg_rows(si) % kLhsPacket<S> != 0) return false;
    }
    return true;
  }

 private:
  /// Every (segment, depth block) at an aligned offset of one buffer, packed by its segments'
  /// threads.
  void pack_all() {
    depth_blocks_ = (k_ + kDepthBlock - 1) / kDepthBlock;
    const index_t segs = blocks_ * gates_;
    seg_.assign(static_cast<size_t>(segs * depth_blocks_ + 1), 0);
    index_t off = 0;
    for (index_t si = 0; si < segs; ++si) {
      for (index_t kb = 0; kb < depth_blocks_; ++kb) {
        seg_[static_cast<size_t>(si * depth_blocks_ + kb)] = off;
        off += round_up(seg_rows(si) * depth_of(kb));
      }
    }
    packed_.reset(off);
    const int threads = m_ * k_ < kParallelMinWork
                            ? 1
                            : static_cast<int>(std::min<index_t>(num_threads(), blocks_));
    parallel_for(segs, threads, [&](index_t si) { pack_segment(si); });
  }

  /// Native bfloat16: each segment's rows in panels of pair_panel_rows() rows, each panel the
  /// pairs of its rows along the depth (bf16_kernel.hpp's layout), at an aligned offset of one
  /// buffer, packed by the segments' threads.
  void pack_pairs() {
    const index_t segs = blocks_ * gates_, pairs = this->pairs();
    seg_.assign(static_cast<size_t>(segs + 1), 0);
    index_t off = 0;
    for (index_t si = 0; si < segs; ++si) {
      seg_[static_cast<size_t>(si)] = off;
      off += (seg_rows(si) + 15) / 16 * 16 * 2 * pairs;  // a multiple of 64 bytes
    }
    packed16_.reset(off);
    const bool small = m_ * k_ < kParallelMinWork;
    if (row_major_) {  // a segment's rows, each read front to back
      const int threads = small ? 1 : static_cast<int>(std::min<index_t>(num_threads(), blocks_));
      parallel_for(segs, threads, [&](index_t si) { pack_pair_rows(si); });
    } else {  // A's columns (rows of the matrix A is the transpose of), each read once
      constexpr index_t kCols = 64;
      const index_t chunks = (k_ + kCols - 1) / kCols;
      const int threads = small ? 1 : static_cast<int>(std::min<index_t>(num_threads(), chunks));
      parallel_for(chunks, threads,
                   [&](index_t ch) { pack_pair_cols(ch * kCols, std::min(k_, (ch + 1) * kCols)); });
      parallel_for(segs, small ? 1 : num_threads(), [&](index_t si) { zero_pair_pads(si); });
    }
  }

  /// Visits the panels of segment si: f(first row of the panel in the segment, its rows w, the
  /// rows that are A's, its pairs).
  template <class F>
  void for_panels(index_t si, F&& f) {
    std::uint16_t* dst = packed16_.data() + seg_[static_cast<size_t>(si)];
    const index_t rows = seg_rows(si), pairs = this->pairs();
    for (index_t p0 = 0; p0 < rows;) {
      const index_t w = pair_panel_rows(rows - p0);
      f(p0, w, std::min(w, rows - p0), dst);
      dst += w * 2 * pairs;
      p0 += w;
    }
  }

  /// Row-major A: segment si's rows, each converted whole, its pairs (32-bit words) w words apart.
  void pack_pair_rows(index_t si) {
#if defined(__AVX512BF16__)
    if constexpr (std::is_same_v<S, float>) {
      const index_t r0 = seg_row(si), pairs = this->pairs();
      std::vector<std::uint16_t> line(static_cast<size_t>(2 * pairs), 0);  // the pad stays 0
      for_panels(si, [&](index_t p0, index_t w, index_t valid, std::uint16_t* dst) {
        std::fill(dst, dst + w * 2 * pairs, std::uint16_t(0));
        for (index_t r = 0; r < valid; ++r) {
          to_bf16_pairs(line.data(), a_ + (r0 + p0 + r) * lda_, k_);
          for (index_t p = 0; p < pairs; ++p) {
            std::memcpy(dst + (p * w + r) * 2, line.data() + 2 * p, 2 * sizeof(std::uint16_t));
          }
        }
      });
    }
#else
    (void)si;
#endif
  }

  /// Column-major A: its columns [j0, j1) (each m contiguous values), each converted whole, its
  /// value of row r to half j % 2 of pair j / 2 of row r of every panel.
  void pack_pair_cols(index_t j0, index_t j1) {
#if defined(__AVX512BF16__)
    if constexpr (std::is_same_v<S, float>) {
      std::vector<std::uint16_t> line(static_cast<size_t>(m_ + 1));
      const index_t segs = blocks_ * gates_;
      for (index_t j = j0; j < j1; ++j) {
        to_bf16_pairs(line.data(), a_ + j * lda_, m_);
        for (index_t si = 0; si < segs; ++si) {
          const std::uint16_t* col = line.data() + seg_row(si);
          for_panels(si, [&](index_t p0, index_t w, index_t valid, std::uint16_t* dst) {
            std::uint16_t* d = dst + (j / 2) * w * 2 + (j % 2);
            for (index_t r = 0; r < valid; ++r) d[2 * r] = col[p0 + r];
          });
        }
      }
    }
#else
    (void)j0, (void)j1;
#endif
  }

  /// Column-major A: the zeros of segment si's panels that pack_pair_cols does not write (rows
  /// past the segment's, the half past an odd depth, the pairs of the pad).
  void zero_pair_pads(index_t si) {
    const index_t pairs = this->pairs(), kp = (k_ + 1) / 2;
    for_panels(si, [&](index_t, index_t w, index_t valid, std::uint16_t* dst) {
      for (index_t p = 0; p < kp; ++p) {
        std::fill(dst + (p * w + valid) * 2, dst + (p + 1) * w * 2, std::uint16_t(0));
      }
      if (k_ % 2) {
        for (index_t r = 0; r < valid; ++r) dst[((kp - 1) * w + r) * 2 + 1] = 0;
      }
      std::fill(dst + kp * w * 2, dst + pairs * w * 2, std::uint16_t(0));
    });
  }

  void pack_segment(index_t si) {
    using LhsRow = Eigen::internal::const_blas_data_mapper<S, index_t, Eigen::RowMajor>;
    using LhsCol = Eigen::internal::const_blas_data_mapper<S, index_t, Eigen::ColMajor>;
    const index_t r0 = seg_row(si), rows = seg_rows(si);
    for (index_t kb = 0; kb < depth_blocks_; ++kb) {
      S* dst = packed_.data() + seg_[static_cast<size_t>(si * depth_blocks_ + kb)];
      const index_t k0 = kb * kDepthBlock, depth = depth_of(kb);
      if (row_major_) {
        Eigen::internal::gemm_pack_lhs<S, index_t, LhsRow, Traits::mr, Traits::LhsProgress,
                                       typename Traits::LhsPacket4Packing, Eigen::RowMajor>
            p;
        p(dst, LhsRow(a_, lda_).getSubMapper(r0, k0), depth, rows);
      } else {
        Eigen::internal::gemm_pack_lhs<S, index_t, LhsCol, Traits::mr, Traits::LhsProgress,
                                       typename Traits::LhsPacket4Packing, Eigen::ColMajor>
            p;
        p(dst, LhsCol(a_, lda_).getSubMapper(r0, k0), depth, rows);
      }
      if (bf16_) round_bf16_inplace(dst, rows * depth);
    }
  }

  index_t m_ = 0, k_ = 0, gates_ = 1;
  const S* a_ = nullptr;
  index_t lda_ = 0;
  bool row_major_ = true;
  bool bf16_ = false;
  index_t blocks_ = 0, depth_blocks_ = 0;
  std::vector<index_t> seg_row_;   ///< first row of A of each (unit block, gate) segment
  std::vector<index_t> seg_rows_;  ///< its rows
  std::vector<index_t> seg_;       ///< offset of each (segment, depth block) in packed_
  AlignedBuffer<S> packed_;
  AlignedBuffer<std::uint16_t> packed16_;  ///< native bfloat16: the panels of pairs
};

/// Calls f(std::integral_constant<int, N>{}) for n = N in [1, 4] (the direct mode's rows).
template <class F>
void with_rows(index_t n, F&& f) {
  eigen_assert(n >= 1 && n <= 4);
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
template <int kRows, int N, class S>
void dot_rows(const S* a, index_t lda, index_t k, const S* x, index_t ldx, S* sums) {
  using namespace Eigen::internal;
  using Packet = typename packet_traits<S>::type;
  constexpr index_t P = packet_traits<S>::size;
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

/// An output packet of a product with fewer rows of `in` than the kernel's nr: the packed
/// weights of its rows advance by `step` scalars per k, its sums go to `out`.
template <class S>
struct Chain {
  const S* a;
  index_t step;
  S* out;
};

/// G chains over one depth block: acc = sum over k of a[k * step] * x[k], one fused
/// multiply-add per k in order from zero, then out += acc -- gebp_kernel's arithmetic for a
/// single column of the right-hand side, bit for bit, with G independent chains instead of
/// gebp's three (its "3pX1" loop waits on the latency of each multiply-add: half the speed
/// or less for a batch of one).
template <int G, class S>
void run_chains(const Chain<S>* c, const S* x, index_t depth) {
  using namespace Eigen::internal;
  using Packet = typename packet_traits<S>::type;
  Packet acc[G];
  for (int g = 0; g < G; ++g) acc[g] = pset1<Packet>(S(0));
  for (index_t k = 0; k < depth; ++k) {
    const Packet b = pset1<Packet>(x[k]);
    for (int g = 0; g < G; ++g) acc[g] = pmadd(ploadu<Packet>(c[g].a + k * c[g].step), b, acc[g]);
  }
  for (int g = 0; g < G; ++g) pstoreu(c[g].out, padd(acc[g], ploadu<Packet>(c[g].out)));
}

/// out (n x m, row-major) (+)= in (n x k, row-major) * A^T, with the m x k matrix A packed once at
/// construction (PackedMatrix), then multiplied by a new small operand `in` at every step. In the
/// driver: A = W_hh (the step's recurrent product h W_hh^T, A row-major) or A = W_hh^T (the
/// backward's dG W_hh, A column-major).
///
/// Parts: multiply_part(..., Part{i, n}) computes the output columns of the unit blocks of part
/// i of n, i.e. of the units [part_begin(U, i, n), part_begin(U, i + 1, n)) in every gate, so a
/// thread of a team can run its part of the product and then the pointwise work on the same
/// units, with no other thread's output needed (driver.hpp). Three ways to multiply, chosen by
/// the shapes only: direct (A read in place, few products of few rows), few_rows (the packed
/// panels, fewer rows of `in` than the kernel's nr) and gebp (Eigen's kernel on the panels).
template <class S>
class PackedGemm {
  using Traits = Eigen::internal::gebp_traits<S, S>;
  using Packet = typename Eigen::internal::packet_traits<S>::type;

 public:
  /// Output columns (rows of `in`) per packed right-hand side.
  static constexpr index_t kColBlock = 128;
  /// Direct mode (no packing) for at most this many products of at most kDirectMaxRows rows
  /// (see the top of this file).
  static constexpr index_t kDirectMaxSteps = 4;
  static constexpr index_t kDirectMaxRows = 4;
  static_assert(kDirectMaxRows == 4, "with_rows covers 1 to 4 rows");

  static index_t part_begin(index_t U, index_t i, index_t n) {
    return PackedMatrix<S>::part_begin(U, i, n);
  }

  PackedGemm() = default;

  /// A as PackedMatrix takes it. max_n: the most rows of `in` any multiply will get (sizes the
  /// packing buffer of the right-hand side). products: how many multiplies the caller will run
  /// (with max_n <= kDirectMaxRows, at most kDirectMaxSteps: direct mode). The mode depends on
  /// these shapes only, never on the thread count. compute: Bf16 rounds both operands to
  /// bfloat16 as they are packed (never direct: A is read packed).
  PackedGemm(const S* a, index_t m, index_t k, index_t lda, bool row_major, index_t max_n,
             index_t gates = 1, index_t products = std::numeric_limits<index_t>::max(),
             Compute compute = Compute::Exact)
      : bf16_(compute == Compute::Bf16),
        // bfloat16: direct only with the bf16 instructions and A row-major (a generation loop)
        direct_((!bf16_ || (kNativeBf16 && std::is_same_v<S, float> && row_major)) &&
                max_n <= kDirectMaxRows && products <= kDirectMaxSteps),
        a_(a, m, k, lda, row_major, gates, /*pack=*/!direct_, bf16_) {
    if (a_.blocks() == 0) return;
    rhs_parts_ = std::max(1, static_cast<int>(std::min<index_t>(num_threads(), a_.blocks())));
    if (direct_ && bf16_) {  // each part's rows of `in` as bfloat16 pairs, whole vectors
      x16_size_ = kDirectMaxRows * direct_ldx();
      x16_.reset(rhs_parts_ * x16_size_);
    }
    if (direct_) return;  // read A where it is (file top)
    if (native()) {       // each part's rows of `in` as bfloat16 pairs, kColBlock at a time
      // (AMX reads x in tiles of 16 rows: whole tiles)
      x16_size_ =
          (std::min(std::max<index_t>(max_n, 1), kColBlock) + 15) / 16 * 16 * 2 * a_.pairs();
      x16_.reset(rhs_parts_ * x16_size_);
      return;
    }
    const index_t nmax = std::min(std::max<index_t>(max_n, 1), kColBlock);
    rhs_stride_ = a_.round_up(std::min(PackedMatrix<S>::kDepthBlock, k) * nmax);
    rhs_size_ = a_.depth_blocks() * rhs_stride_;
    rhs_.reset(rhs_parts_ * rhs_size_);
  }

  /// Compute::Int8: the packed int8 weights v (int8.hpp; not owned, read in place), max_n as
  /// above. Each part quantizes the rows of `in` it multiplies (kColBlock at a time) into a
  /// buffer of its own.
  PackedGemm(const Int8View& v, index_t max_n)
      : a_(static_cast<const S*>(nullptr), v.rows, v.depth, v.depth, true, v.gates, false),
        int8_(true),
        q_(v) {
    if (a_.blocks() == 0) return;
    rhs_parts_ = std::max(1, static_cast<int>(std::min<index_t>(num_threads(), a_.blocks())));
    qrows_ = (std::min(std::max<index_t>(max_n, 1), kColBlock) + 15) / 16 * 16;  // whole tiles
    qld_ = v.quads * 4;
    qx_.reset(rhs_parts_ * qrows_ * qld_);
    std::fill(qx_.data(), qx_.data() + rhs_parts_ * qrows_ * qld_, std::uint8_t(kI8Offset));
    qs_.reset(rhs_parts_ * qrows_);
  }

  /// Int8: rows of `in` quantized once for all the parts (quantize_rows), then multiplied by
  /// each: n rows of int8_row_bytes() bytes, in a buffer of whole tiles (n rounded up to 16
  /// rows; the rows past n of any value), and their scales.
  struct QuantRows {
    const std::uint8_t* q;
    const float* scale;
    index_t n;
  };
  index_t int8_row_bytes() const { return qld_; }
  /// Int8: rows [r0, r1) of x quantized into q (int8_row_bytes() a row, from row r0) and scale.
  void quantize_rows(const Rows<S>& x, index_t r0, index_t r1, std::uint8_t* q,
                     float* scale) const {
    if constexpr (std::is_same_v<S, float>) {
      quantize_rows_i8(x.in + r0 * x.ld, x.ld, r1 - r0, q_.depth, q + r0 * qld_, qld_, scale + r0);
    }
  }
  /// Int8: multiply_part for rows quantized already.
  void multiply_part(const QuantRows& x, const Dest<S>& dest, Part part) const {
    if (x.n <= 0 || a_.rows() <= 0) return;
    index_t s0, s1;
    const Targets to = targets(dest, Tail<S>{}, part, s0, s1);
    if (s1 <= s0) return;
    multiply_int8(to, s0, s1, x.n, kColBlock, [&](index_t c0, index_t nc) {
      return QuantRows{x.q + c0 * qld_, x.scale + c0, nc};
    });
  }

  index_t rows() const { return a_.rows(); }
  index_t depth() const { return a_.depth(); }
  /// The most parts multiply_part() accepts (one right-hand-side buffer each).
  int max_parts() const { return rhs_parts_; }

  /// dest (+)= x.in * A^T in x.n <= max_n rows, the output columns of part `part` (< max_parts()
  /// parts), in the calling thread; the gates from tail.gate on go to tail.dest instead. Each
  /// part packs the right-hand side for itself (n x k scalars, small next to its share of the
  /// product), so parts never wait for each other.
  void multiply_part(const Rows<S>& x, const Dest<S>& dest, Part part,
                     const Tail<S>& tail = Tail<S>{}) {
    if (x.n <= 0 || a_.rows() <= 0) return;
    index_t s0, s1;
    const Targets to = targets(dest, tail, part, s0, s1);
    if (s1 <= s0) return;
    eigen_assert(native() || (!x.transposed && !dest.transposed));
    if (int8_) {
      std::uint8_t* xq = qx_.data() + part.index * qrows_ * qld_;
      float* sx = qs_.data() + part.index * qrows_;
      multiply_int8(to, s0, s1, x.n, qrows_, [&](index_t c0, index_t nc) {
        quantize_rows(Rows<S>{x.in + c0 * x.ld, x.ld, nc}, 0, nc, xq, sx);
        return QuantRows{xq, sx, nc};
      });
    } else if (direct_ && bf16_) {
      multiply_direct_bf16(to, s0, s1, x, x16_.data() + part.index * x16_size_);
    } else if (native()) {
      multiply_pairs(to, s0, s1, x, x16_.data() + part.index * x16_size_);
    } else if (direct_) {
      multiply_direct(to, s0, s1, x);
    } else if (x.n < Traits::nr && a_.whole_packets(s0, s1)) {  // batch 1-3
      few_rows(to, s0, s1, bf16_ ? rounded_rows(x, part) : x);
    } else {
      multiply_gebp(to, s0, s1, x, rhs_.data() + part.index * rhs_size_);
    }
  }

 private:
  /// Whether the products run on the bf16 dot-product kernel (bf16_kernel.hpp).
  bool native() const { return bf16_ && kNativeBf16 && std::is_same_v<S, float>; }

  /// A segment's output: buffer, leading dimension, accumulate?, bias, and the buffer's column
  /// 0 as a row of A (a Tail's buffer starts at its first gate).
  struct Target {
    S* out;
    index_t ld;
    bool accumulate;
    const S* bias;
    index_t shift;
    bool transposed;
  };
  /// Segment si's Target: dest's, or the tail's for the gates from tail.gate on.
  struct Targets {
    Dest<S> dest;
    Tail<S> tail;
    index_t gates, tail_shift;
    Target operator()(index_t si) const {
      if (si % gates >= tail.gate) {
        return {tail.dest.out, tail.dest.ld, false, tail.dest.bias, tail_shift, false};
      }
      return {dest.out, dest.ld, dest.accumulate, dest.bias, 0, dest.transposed};
    }
  };

  /// out(c, r) = (accumulate ? out(c, r) : bias[r] or 0) + sum, for A's row r
  static void store(const Target& t, index_t c, index_t r, S sum) {
    S& dst = t.out[c * t.ld + (r - t.shift)];
    dst = (t.accumulate ? dst : t.bias ? t.bias[r] : S(0)) + sum;
  }

  /// Unless it accumulates, sets segment si's output columns in rows [c0, c0 + n) of t.out to
  /// the bias (nullptr: zeros).
  void init_cols(const Target& t, index_t si, index_t c0, index_t n) const {
    using Row = Eigen::Map<Eigen::Array<S, 1, Eigen::Dynamic>>;
    using CRow = Eigen::Map<const Eigen::Array<S, 1, Eigen::Dynamic>>;
    if (t.accumulate) return;
    const index_t r0 = a_.seg_row(si), cols = a_.seg_rows(si);
    S* first = t.out + c0 * t.ld + (r0 - t.shift);
    if (t.bias) {
      const CRow b(t.bias + r0, cols);
      for (index_t r = 0; r < n; ++r) Row(first + r * t.ld, cols) = b;
    } else {
      for (index_t r = 0; r < n; ++r) Row(first + r * t.ld, cols).setZero();
    }
  }

  /// Direct mode: all n <= kDirectMaxRows rows of `in` at once, A read once.
  void multiply_direct(const Targets& to, index_t s0, index_t s1, const Rows<S>& x) const {
    if (a_.row_major()) {
      for (index_t si = s0; si < s1; ++si) direct_rows(to(si), si, x);
    } else if (a_.gates() == 1) {  // one target: all the part's rows in one pass
      direct_cols(to(s0), s0, s1, x);
    } else {
      for (index_t si = s0; si < s1; ++si) direct_cols(to(si), si, si + 1, x);
    }
  }

  /// Direct mode, A row-major: segment si's outputs for the n rows of `in` (rows of the output)
  void direct_rows(const Target& t, index_t si, const Rows<S>& x) const {
    with_rows(x.n, [&](auto rows_of_in) {
      constexpr int N = decltype(rows_of_in)::value;
      constexpr int kRows = N == 1 ? 8 : N == 2 ? 4 : 2;  // at most 8 accumulators
      const index_t r0 = a_.seg_row(si), r1 = r0 + a_.seg_rows(si);
      const S* a = a_.a();
      const index_t lda = a_.lda(), k = a_.depth();
      S sums[kRows * N];
      index_t r = r0;
      for (; r + kRows <= r1; r += kRows) {
        dot_rows<kRows, N>(a + r * lda, lda, k, x.in, x.ld, sums);
        for (int q = 0; q < kRows; ++q) {
          for (int c = 0; c < N; ++c) store(t, c, r + q, sums[q * N + c]);
        }
      }
      for (; r < r1; ++r) {
        dot_rows<1, N>(a + r * lda, lda, k, x.in, x.ld, sums);
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
  void direct_cols(const Target& t, index_t s0, index_t s1, const Rows<S>& x) const {
    with_rows(x.n, [&](auto rows_of_in) {
      constexpr int N = decltype(rows_of_in)::value;
      constexpr index_t P = PackedMatrix<S>::kPacket;
      constexpr int kChunks = N == 1 ? 8 : N == 2 ? 4 : 2;  // at most 8 accumulators
      index_t first[kChunks];
      int got = 0;
      auto flush = [&] {
        direct_col_packets<N>(t, first, got, x);
        got = 0;
      };
      for (index_t si = s0; si < s1; ++si) {
        const index_t r0 = a_.seg_row(si), r1 = r0 + a_.seg_rows(si);
        index_t r = r0;
        for (; r + P <= r1; r += P) {
          first[got++] = r;
          if (got == kChunks) flush();
        }
        for (; r < r1; ++r) {  // the segment's last rows, not a whole packet
          for (int c = 0; c < N; ++c) {
            S sum(0);
            for (index_t j = 0; j < a_.depth(); ++j) {
              sum = madd(x.in[c * x.ld + j], a_.a()[r + j * a_.lda()], sum);
            }
            store(t, c, r, sum);
          }
        }
      }
      if (got) flush();
    });
  }

  /// direct_cols's packets: the rows [first[q], first[q] + P) for q < got, N rows of `in`.
  template <int N>
  void direct_col_packets(const Target& t, const index_t* first, int got, const Rows<S>& x) const {
    using namespace Eigen::internal;
    constexpr index_t P = PackedMatrix<S>::kPacket;
    constexpr int kMaxChunks = 8;
    Packet acc[kMaxChunks][N];
    for (int q = 0; q < got; ++q) {
      for (int c = 0; c < N; ++c) acc[q][c] = pset1<Packet>(S(0));
    }
    for (index_t j = 0; j < a_.depth(); ++j) {
      Packet xj[N];
      for (int c = 0; c < N; ++c) xj[c] = pset1<Packet>(x.in[c * x.ld + j]);
      const S* col = a_.a() + j * a_.lda();
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
  }

  /// The packed product for n < nr rows of `in` (a batch of 1 to 3): for each row of `in` and
  /// depth block, the output packets of segments [s0, s1) in chains of kChains (see run_chains).
  /// Every output packet is computed as gebp computes it, so the results are those of the gebp
  /// path and do not depend on the grouping or the thread count.
  void few_rows(const Targets& to, index_t s0, index_t s1, const Rows<S>& x) const {
    constexpr index_t P = kLhsPacket<S>;
    constexpr index_t kMr = Traits::mr;
    constexpr int kChains = 12;  // 12 accumulators: with AVX2's 16 registers, room for the rest
    static_assert(Eigen::internal::packet_traits<S>::size == P,
                  "run_chains loads the packed panels in packets of the kernel's lhs packet");
    for (index_t si = s0; si < s1; ++si) init_cols(to(si), si, 0, x.n);
    Chain<S> chain[kChains];
    int got = 0;
    const S* in = nullptr;
    index_t depth = 0;
    auto flush = [&] {
      int g = 0;
      for (; g + kChains <= got; g += kChains) run_chains<kChains>(chain + g, in, depth);
      for (; g + 4 <= got; g += 4) run_chains<4>(chain + g, in, depth);
      for (; g < got; ++g) run_chains<1>(chain + g, in, depth);
      got = 0;
    };
    for (index_t c = 0; c < x.n; ++c) {
      for (index_t kb = 0; kb < a_.depth_blocks(); ++kb) {
        in = x.in + c * x.ld + kb * PackedMatrix<S>::kDepthBlock;
        depth = a_.depth_of(kb);
        for (index_t si = s0; si < s1; ++si) {
          const index_t rows = a_.seg_rows(si);
          const Target t = to(si);
          const S* a = a_.panel(si, kb);
          S* out = t.out + c * t.ld + (a_.seg_row(si) - t.shift);
          for (index_t p0 = 0; p0 < rows;) {  // panels of mr rows, then one of the rest
            const index_t w = std::min(kMr, rows - p0);
            for (index_t q = 0; q < w; q += P) {
              chain[got++] = Chain<S>{a + p0 * depth + q, w, out + p0 + q};
              if (got == kChains) flush();
            }
            p0 += w;
          }
        }
        flush();
      }
    }
  }

  /// Native bfloat16: kColBlock rows of `in` at a time converted to pairs (into xb, this part's
  /// buffer), then for each segment of [s0, s1) and each of its panels the kernel over all of
  /// them (bf16_kernel.hpp), its sums stored to the segment's target in packets of 16 rows.
  void multiply_pairs(const Targets& to, index_t s0, index_t s1, const Rows<S>& x,
                      std::uint16_t* xb) const {
#if defined(__AVX512BF16__)
    if constexpr (std::is_same_v<S, float>) {
      const index_t pairs = a_.pairs(), ldx = 2 * pairs;
      const index_t even = (a_.depth() + 1) / 2 * 2;  // the values to_bf16_pairs writes
#if FASTRNN_AMX_BF16
      amx_configure();
#endif
      for (index_t c0 = 0; c0 < x.n; c0 += kColBlock) {
        const index_t nc = std::min(kColBlock, x.n - c0);
        if (x.transposed) {  // row c is column c0 + c of x.in: x.in's rows read front to back,
          // 32 at a time, then written out as 64-byte runs of each row of xb (one value at a
          // time to rows of xb ldx apart would keep few of them in the cache)
          constexpr index_t kRun = 32, kLd = kColBlock + 32;
          alignas(64) std::uint16_t block[kRun * kLd];
          for (index_t j0 = 0; j0 < a_.depth(); j0 += kRun) {
            const index_t jn = std::min(kRun, a_.depth() - j0);
            for (index_t j = 0; j < jn; ++j) {
              to_bf16_pairs(block + j * kLd, x.in + (j0 + j) * x.ld + c0, nc);
            }
            for (index_t c = 0; c < nc; ++c) {
              std::uint16_t* row = xb + c * ldx + j0;
              for (index_t j = 0; j < jn; ++j) row[j] = block[j * kLd + c];
            }
          }
          for (index_t c = 0; c < nc; ++c) {
            std::fill(xb + c * ldx + a_.depth(), xb + (c + 1) * ldx, std::uint16_t(0));
          }
        } else {
          for (index_t c = 0; c < nc; ++c) {
            to_bf16_pairs(xb + c * ldx, x.in + (c0 + c) * x.ld, a_.depth());
            std::fill(xb + c * ldx + even, xb + (c + 1) * ldx, std::uint16_t(0));
          }
        }
        if constexpr (kBf16OnAmx) {  // whole tiles of 16 rows
          std::fill(xb + nc * ldx, xb + (nc + 15) / 16 * 16 * ldx, std::uint16_t(0));
        }
        for (index_t si = s0; si < s1; ++si) {
          const Target t = to(si);
          const index_t rows = a_.seg_rows(si), r0 = a_.seg_row(si);
          const std::uint16_t* a = a_.pairs_of(si);
          for (index_t p0 = 0; p0 < rows;) {
            const index_t w = PackedMatrix<S>::pair_panel_rows(rows - p0);
            auto store = [&](index_t c, int q, __m512 v) {
              const index_t rr = p0 + 16 * q;  // the packet's first row in the segment
              const index_t valid = std::min<index_t>(16, rows - rr);
              if (valid <= 0) return;
              const auto m = static_cast<__mmask16>(valid == 16 ? 0xffff : (1u << valid) - 1);
              if (t.transposed) {  // (no bias, no accumulation: Dest::set_transposed)
                alignas(64) float lanes[16];
                _mm512_store_ps(lanes, v);
                S* col = t.out + (r0 + rr - t.shift) * t.ld + (c0 + c);
                for (index_t l = 0; l < valid; ++l) col[l * t.ld] = lanes[l];
                return;
              }
              S* dst = t.out + (c0 + c) * t.ld + (r0 + rr - t.shift);
              const __m512 base = t.accumulate ? _mm512_maskz_loadu_ps(m, dst)
                                  : t.bias     ? _mm512_maskz_loadu_ps(m, t.bias + r0 + rr)
                                               : _mm512_setzero_ps();
              _mm512_mask_storeu_ps(dst, m, _mm512_add_ps(base, v));
            };
#if FASTRNN_AMX_BF16
            // whole tiles go straight to their destination (not a transposed one)
            AmxDest d{nullptr, 0, nullptr, std::min(w, rows - p0)};
            if (!t.transposed) {
              d.out = t.out + c0 * t.ld + (r0 + p0 - t.shift);
              d.ld = t.ld;
              d.init = t.accumulate ? d.out : t.bias ? t.bias + r0 + p0 : nullptr;
              d.init_ld = t.accumulate ? t.ld : 0;
            }
            amx_panel(a, w, pairs, xb, ldx, nc, store, d);
#else
            if (w == 32) {
              bf16_panel_rows<2>(a, pairs, xb, ldx, nc, store);
            } else {
              bf16_panel_rows<1>(a, pairs, xb, ldx, nc, store);
            }
#endif
            a += w * 2 * pairs;
            p0 += w;
          }
        }
      }
#if FASTRNN_AMX_BF16
      amx_done();
#endif
    }
#else
    (void)to, (void)s0, (void)s1, (void)x, (void)xb;
#endif
  }

  /// Direct bfloat16: a row of x as pairs, padded with zeros to whole vectors of 32.
  index_t direct_ldx() const { return (a_.depth() + 31) / 32 * 32; }

  /// Direct mode in bfloat16 (few products of few rows; A row-major, read in place): x's n <= 4
  /// rows converted to pairs (into xb, this part's buffer), then each output the sum over k of a
  /// row of A, converted 32 values at a time, by a row of x: 16 lanes of vdpbf16ps, reduced. Four
  /// rows of A at a time (independent chains); the order of every sum depends on k only.
  void multiply_direct_bf16(const Targets& to, index_t s0, index_t s1, const Rows<S>& x,
                            std::uint16_t* xb) const {
#if defined(__AVX512BF16__)
    if constexpr (std::is_same_v<S, float>) {
      const index_t k = a_.depth(), ldx = direct_ldx(), lda = a_.lda();
      for (index_t c = 0; c < x.n; ++c) {
        to_bf16_pairs(xb + c * ldx, x.in + c * x.ld, k);
        std::fill(xb + c * ldx + (k + 1) / 2 * 2, xb + (c + 1) * ldx, std::uint16_t(0));
      }
      const index_t tail = k % 32;
      const auto lo = static_cast<__mmask16>(tail >= 16 ? 0xffff : (1u << tail) - 1);
      const auto hi = static_cast<__mmask16>(tail <= 16 ? 0 : (1u << (tail - 16)) - 1);
      for (index_t si = s0; si < s1; ++si) {
        const Target t = to(si);
        const index_t r0 = a_.seg_row(si), r1 = r0 + a_.seg_rows(si);
        for (index_t r = r0; r < r1; r += 4) {
          const int nr = static_cast<int>(std::min<index_t>(4, r1 - r));
          __m512 acc[4][kDirectMaxRows];
          for (int q = 0; q < 4; ++q) {
            for (index_t c = 0; c < kDirectMaxRows; ++c) acc[q][c] = _mm512_setzero_ps();
          }
          for (index_t j = 0; j < k; j += 32) {
            const bool whole = j + 32 <= k;
            __m512bh xv[kDirectMaxRows];
            for (index_t c = 0; c < x.n; ++c) {
              xv[c] = (__m512bh)_mm512_loadu_si512(xb + c * ldx + j);
            }
            for (int q = 0; q < nr; ++q) {
              const S* arow = a_.a() + (r + q) * lda + j;
              const __m512bh av =
                  whole ? _mm512_cvtne2ps_pbh(_mm512_loadu_ps(arow + 16), _mm512_loadu_ps(arow))
                        : _mm512_cvtne2ps_pbh(_mm512_maskz_loadu_ps(hi, arow + 16),
                                              _mm512_maskz_loadu_ps(lo, arow));
              for (index_t c = 0; c < x.n; ++c) acc[q][c] = _mm512_dpbf16_ps(acc[q][c], av, xv[c]);
            }
          }
          for (int q = 0; q < nr; ++q) {
            for (index_t c = 0; c < x.n; ++c) store(t, c, r + q, _mm512_reduce_add_ps(acc[q][c]));
          }
        }
      }
    }
#else
    (void)to, (void)s0, (void)s1, (void)x, (void)xb;
#endif
  }

#if FASTRNN_AMX_BF16
  /// A panel's destination for whole tiles: out (x row 0, the panel's row 0) with ld floats per
  /// x row, or nullptr (no direct stores); init: where the sums start (ld init_ld; 0: a bias
  /// repeated), nullptr for zeros; rows: the panel's rows that are A's.
  struct AmxDest {
    S* out;
    index_t ld;
    const S* init;
    index_t init_ld;
    index_t rows;
  };

  /// AMX: a panel of w rows of A by the nc rows of x (whole tiles of 16 rows, zero past nc), in
  /// blocks of 32 rows of x; a block of whole tiles straight to d, the others through
  /// store(c, q, sums) for the rows c < nc of x.
  template <class Store>
  static void amx_panel(const std::uint16_t* a, index_t w, index_t pairs, const std::uint16_t* xb,
                        index_t ldx, index_t nc, Store&& store, const AmxDest& d) {
    alignas(64) float sums[16 * 16];
    const index_t steps = pairs / kAmxPairs;
    for (index_t cb = 0; cb < nc; cb += 32) {
      const int nx = nc - cb > 16 ? 2 : 1, na = w == 32 ? 2 : 1;
      if (d.out && cb + 16 * nx <= nc && 16 * na <= d.rows) {
        AmxTiles t{};
        t.stride = d.ld * static_cast<index_t>(sizeof(S));
        t.init_stride = d.init_ld * static_cast<index_t>(sizeof(S));
        for (int i = 0; i < nx; ++i) {
          for (int j = 0; j < na; ++j) {
            t.out[i][j] = d.out + (cb + 16 * i) * d.ld + 16 * j;
            t.init[i][j] = !d.init ? nullptr : d.init + (cb + 16 * i) * d.init_ld + 16 * j;
          }
        }
        const std::uint16_t* x = xb + cb * ldx;
        if (nx == 2 && na == 2) {
          amx_block_direct<2, 2>(x, ldx, a, w, steps, t);
        } else if (nx == 2) {
          amx_block_direct<2, 1>(x, ldx, a, w, steps, t);
        } else if (na == 2) {
          amx_block_direct<1, 2>(x, ldx, a, w, steps, t);
        } else {
          amx_block_direct<1, 1>(x, ldx, a, w, steps, t);
        }
        continue;
      }
      auto put = [&](int i, int j, const float* sm) {
        for (index_t r = 0; r < 16; ++r) {
          const index_t c = cb + 16 * i + r;
          if (c >= nc) break;
          store(c, j, _mm512_load_ps(sm + 16 * r));
        }
      };
      const std::uint16_t* x = xb + cb * ldx;
      if (nc - cb > 16) {
        if (w == 32) {
          amx_block<2, 2>(x, ldx, a, w, steps, sums, put);
        } else {
          amx_block<2, 1>(x, ldx, a, w, steps, sums, put);
        }
      } else if (w == 32) {
        amx_block<1, 2>(x, ldx, a, w, steps, sums, put);
      } else {
        amx_block<1, 1>(x, ldx, a, w, steps, sums, put);
      }
    }
  }
#endif

  /// The Targets of a product and the segments [s0, s1) of part `part`.
  Targets targets(const Dest<S>& dest, const Tail<S>& tail, Part part, index_t& s0,
                  index_t& s1) const {
    const index_t blocks = a_.blocks(), gates = a_.gates();
    s0 = blocks * part.index / part.count * gates;
    s1 = blocks * (part.index + 1) / part.count * gates;
    const index_t tail_shift = tail.gate < gates ? GateLayout{a_.rows() / gates}.at(tail.gate) : 0;
    return Targets{dest, tail, gates, tail_shift};
  }

  /// Int8: the n rows of x in blocks of `block` rows, block(c0, nc) giving rows [c0, c0 + nc)
  /// quantized (int8_kernel.hpp), each block multiplied by every segment of [s0, s1) (a segment:
  /// the units [u0, u1) of one gate).
  template <class Block>
  void multiply_int8(const Targets& to, index_t s0, index_t s1, index_t n, index_t block,
                     Block&& rows) const {
    if constexpr (std::is_same_v<S, float>) {
      const index_t gates = a_.gates(), U = q_.units;
#if FASTRNN_I8_AMX
      const bool amx = std::min(n, block) >= kI8AmxMinRows;
      if (amx) amx_configure();
#endif
      for (index_t c0 = 0; c0 < n; c0 += block) {
        const QuantRows x = rows(c0, std::min(block, n - c0));
        for (index_t si = s0; si < s1; ++si) {
          const Target t = to(si);
          const index_t g = si % gates, u0 = a_.seg_row(si) - g * U;
          const I8Out o{t.out + c0 * t.ld, t.ld, t.accumulate, t.bias, t.shift};
          i8_segment(q_, g, u0, u0 + a_.seg_rows(si), x.q, qld_, x.scale, x.n, o);
        }
      }
#if FASTRNN_I8_AMX
      if (amx) amx_done();
#endif
    } else {
      (void)to, (void)s0, (void)s1, (void)n, (void)block, (void)rows;
    }
  }

  /// Bf16: x's rows rounded to bfloat16, in this part's right-hand-side buffer (which holds at
  /// least max_n rows of k).
  Rows<S> rounded_rows(const Rows<S>& x, Part part) {
    const index_t k = a_.depth();
    S* buf = rhs_.data() + part.index * rhs_size_;
    for (index_t c = 0; c < x.n; ++c) copy_round_bf16(buf + c * k, x.in + c * x.ld, k);
    return Rows<S>{buf, k, x.n};
  }

  /// Eigen's kernel on the packed panels: `in` packed (into rhs, this part's buffer) in blocks
  /// of kColBlock rows, each block multiplied by every segment of [s0, s1).
  void multiply_gebp(const Targets& to, index_t s0, index_t s1, const Rows<S>& x, S* rhs) const {
    using RhsMap = Eigen::internal::const_blas_data_mapper<S, index_t, Eigen::ColMajor>;
    using ResMap =
        Eigen::internal::blas_data_mapper<S, index_t, Eigen::ColMajor, Eigen::Unaligned, 1>;
    Eigen::internal::gemm_pack_rhs<S, index_t, RhsMap, Traits::nr, Eigen::ColMajor> pack;
    Eigen::internal::gebp_kernel<S, S, index_t, ResMap, Traits::mr, Traits::nr, false, false> gebp;
    for (index_t c0 = 0; c0 < x.n; c0 += kColBlock) {
      const index_t nc = std::min(kColBlock, x.n - c0);
      const RhsMap in(x.in + c0 * x.ld, x.ld);
      for (index_t kb = 0; kb < a_.depth_blocks(); ++kb) {
        pack(rhs + kb * rhs_stride_, in.getSubMapper(kb * PackedMatrix<S>::kDepthBlock, 0),
             a_.depth_of(kb), nc);
        if (bf16_) round_bf16_inplace(rhs + kb * rhs_stride_, a_.depth_of(kb) * nc);
      }
      for (index_t si = s0; si < s1; ++si) {
        const Target t = to(si);
        init_cols(t, si, c0, nc);
        S* o = t.out + c0 * t.ld + (a_.seg_row(si) - t.shift);
        for (index_t kb = 0; kb < a_.depth_blocks(); ++kb) {
          gebp(ResMap(o, t.ld), a_.panel(si, kb), rhs + kb * rhs_stride_, a_.seg_rows(si),
               a_.depth_of(kb), nc, S(1));
        }
      }
    }
  }

  bool bf16_ = false;
  bool direct_ = false;
  PackedMatrix<S> a_;
  index_t rhs_stride_ = 0, rhs_size_ = 0;  ///< per depth block, per part
  /// parts with a right-hand-side buffer (direct mode: unit blocks, at most the thread count);
  /// an empty product (m or k zero) needs none: no limit
  int rhs_parts_ = std::numeric_limits<int>::max();
  AlignedBuffer<S> rhs_;
  index_t x16_size_ = 0;  ///< native bfloat16: per part
  AlignedBuffer<std::uint16_t> x16_;
  bool int8_ = false;  ///< Compute::Int8: q_ holds the weights
  Int8View q_;
  index_t qrows_ = 0, qld_ = 0;     ///< int8: rows of x per block (whole tiles), bytes per row
  AlignedBuffer<std::uint8_t> qx_;  ///< int8: each part's quantized rows
  AlignedBuffer<float> qs_;         ///< int8: their scales
};

}  // namespace FASTRNN_ISA_NS
}  // namespace fastrnn::detail
