// The weight gradients' products: C = A^T B with both operands running along the long
// dimension (all T*B rows of a layer), several products sharing the operand A (gemm_tn), and
// the packers they use (pack_rhs_by_rows, pack_lhs_by_rows: Eigen's panel layouts, read row by
// row). Every element of every C is computed by the same code in the same order whatever the
// thread count (see gemm_tn).
#pragma once

#include "fastrnn/isa_namespace.hpp"  // first: only kernel units compile this

#include <Eigen/Core>
#include <algorithm>
#include <cstring>
#include <initializer_list>
#include <type_traits>
#include <vector>

#include "fastrnn/fastrnn.hpp"
#include "fastrnn/packed.hpp"  // AlignedBuffer, madd, prefetch, kLhsPacket
#include "fastrnn/parallel.hpp"

namespace fastrnn::detail {
inline namespace FASTRNN_ISA_NS {

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
void pack_rhs_by_rows(S* dst, const S* a, index_t lda, index_t depth, index_t cols,
                      index_t stride) {
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

/// gemm_tn's packed path (see gemm_tn below): the plan of its tiles and work items, B packed
/// once, then the runs of items, one per thread (any thread may run any run).
template <class S>
class TnPacked {
  using Traits = Eigen::internal::gebp_traits<S, S>;
  using ResMap =
      Eigen::internal::blas_data_mapper<S, index_t, Eigen::ColMajor, Eigen::Unaligned, 1>;

 public:
  // depth block: the kernel's 48-row panel of packed B (48 x kDepth) stays in L1; sub-blocks
  // of A of kSubM columns keep a packed block of A and one of B in L2
  static constexpr index_t kTileN = 256, kSubM = 128, kDepth = 128, kStride = kDepth + 16;
  // measured (float32, 1 and 2 threads, the weight gradients of LSTM S1 S2 S4): tiles of 256
  // columns of A and groups of up to 1 MiB of C beat 512 / 512 KiB (no sharing on S2 and S4,
  // 3-8% slower) and 128-column tiles (B packed blocks re-read more often)
  static constexpr index_t kGroupBytes = index_t(1) << 20;
  static constexpr index_t kSlot = kTileN * kDepth;  ///< scalars of one packed block of B

  /// K > kTnDirectMaxDepth; bf16: B's values rounded to bfloat16 as they are packed
  TnPacked(const S* A, index_t lda, index_t K, const std::vector<TnProduct<S>>& ps, bool bf16)
      : A_(A), lda_(lda), K_(K), ps_(ps), kb_count_((K + kDepth - 1) / kDepth), bf16_(bf16) {
    plan_tiles();
  }

  void run() {
    if (ntiles_.empty()) return;
    pack_b();
    plan_items();
    const index_t count = static_cast<index_t>(items_.size());
    const bool small = work_ < kParallelMinWork;
    const int threads = small ? 1 : static_cast<int>(std::min<index_t>(num_threads(), count));
    rhs_.reset(threads * kStride * kSubM);  // each thread's packed block of A
    parallel_for_threads(threads, threads, [&](index_t run, int thread) {
      run_items(run, threads, rhs_.data() + thread * kStride * kSubM);
    });
  }

 private:
  /// Columns [n0, n0 + n) of product p's B: one tile of B_p^T, packed in kb_count_ blocks.
  struct NTile {
    index_t p, n0, n;
  };
  /// A work item: A's columns [m0, m0 + m) times n tile j.
  struct Item {
    index_t m0, m, j;
  };

  const NTile& ntile(index_t j) const { return ntiles_[static_cast<size_t>(j)]; }
  const TnProduct<S>& product(const NTile& t) const { return ps_[static_cast<size_t>(t.p)]; }
  const Item& item(index_t g) const { return items_[static_cast<size_t>(g)]; }

  /// The n tiles of every non-empty product, the columns of A where a product starts or ends
  /// (bounds_), and the multiply-adds (work_).
  void plan_tiles() {
    for (index_t p = 0; p < static_cast<index_t>(ps_.size()); ++p) {
      const TnProduct<S>& q = ps_[static_cast<size_t>(p)];
      if (q.m1 <= q.m0 || q.N <= 0) continue;
      for (index_t n0 = 0; n0 < q.N; n0 += kTileN) {
        ntiles_.push_back({p, n0, std::min(kTileN, q.N - n0)});
      }
      bounds_.push_back(q.m0);
      bounds_.push_back(q.m1);
      work_ += (q.m1 - q.m0) * q.N * K_;
    }
    std::sort(bounds_.begin(), bounds_.end());
    bounds_.erase(std::unique(bounds_.begin(), bounds_.end()), bounds_.end());
  }

  /// B_p^T in packed blocks (n tile, depth block kb), each kSlot scalars, for the kernel's
  /// left-hand side (pack_lhs_by_rows, or Eigen's packer for a tile that is not whole SIMD
  /// packets wide).
  void pack_b() {
    using LhsCol = Eigen::internal::const_blas_data_mapper<S, index_t, Eigen::ColMajor>;
    constexpr index_t kPacket = kLhsPacket<S>;  // pack_lhs_by_rows takes whole packets
    const index_t tn = static_cast<index_t>(ntiles_.size());
    packed_b_.reset(tn * kb_count_ * kSlot);
    const int threads = work_ < kParallelMinWork ? 1 : num_threads();
    parallel_for(tn * kb_count_, threads, [&](index_t block) {
      const NTile& t = ntile(block / kb_count_);
      const TnProduct<S>& p = product(t);
      const index_t k0 = block % kb_count_ * kDepth;
      S* dst = packed_b_.data() + block * kSlot;
      const S* src = p.B + k0 * p.ldb + t.n0;
      const index_t kd = std::min(kDepth, K_ - k0);
      if (t.n % kPacket == 0) {
        pack_lhs_by_rows(dst, src, p.ldb, kd, t.n);
      } else {
        Eigen::internal::gemm_pack_lhs<S, index_t, LhsCol, Traits::mr, Traits::LhsProgress,
                                       typename Traits::LhsPacket4Packing, Eigen::ColMajor>
            pack_lhs;
        pack_lhs(dst, LhsCol(src, p.ldb), kd, t.n);
      }
      if (bf16_) round_bf16_inplace(dst, kd * t.n);
    });
  }

  /// The work items, (tile of A's columns, n tile), tiles in column order: tiles of 256
  /// columns, halved (down to kSubM) until there are at least 8 items where the columns allow,
  /// to share among threads.
  void plan_items() {
    const index_t tn = static_cast<index_t>(ntiles_.size());
    auto make_items = [&](index_t tile_m) {
      items_.clear();
      for (size_t b = 0; b + 1 < bounds_.size(); ++b) {
        for (index_t m0 = bounds_[b]; m0 < bounds_[b + 1]; m0 += tile_m) {
          const index_t m = std::min(tile_m, bounds_[b + 1] - m0);
          for (index_t j = 0; j < tn; ++j) {
            const TnProduct<S>& p = product(ntile(j));
            if (p.m0 <= m0 && m0 < p.m1) items_.push_back({m0, m, j});
          }
        }
      }
    };
    index_t tile_m = 256;
    make_items(tile_m);
    while (tile_m > kSubM && items_.size() < 8) make_items(tile_m /= 2);
  }

  /// Run i of nt: a contiguous run of items, in groups (see group_end); rhs: the running
  /// thread's packed block of A.
  void run_items(index_t i, index_t nt, S* rhs) {
    const index_t count = static_cast<index_t>(items_.size());
    const index_t last = count * (i + 1) / nt;
    for (index_t g0 = count * i / nt, g1; g0 < last; g0 = g1) {
      g1 = group_end(g0, last);
      run_group(g0, g1, rhs);
    }
  }

  /// The end of the group that starts at item g0: the following items (before `last`) on the
  /// same tile of A, while their C holds at most kGroupBytes.
  index_t group_end(index_t g0, index_t last) const {
    const Item& first = item(g0);
    index_t width = ntile(first.j).n, g1 = g0 + 1;
    for (; g1 < last && item(g1).m0 == first.m0; ++g1) {
      const index_t w = width + ntile(item(g1).j).n;
      if (w * first.m * static_cast<index_t>(sizeof(S)) > kGroupBytes) break;
      width = w;
    }
    return g1;
  }

  /// Where item `it` writes: the kernel computes C^T, (n, m) at c + n + m * ldc.
  S* c_of(const Item& it) const {
    const NTile& t = ntile(it.j);
    const TnProduct<S>& p = product(t);
    return p.C + (it.m0 - p.m0) * p.ldc + t.n0;
  }

  /// The items [g0, g1) on one tile of A: their C zeroed, then for each depth block the tile's
  /// block of A packed once (in sub-blocks of kSubM columns, into rhs) and the kernel run for
  /// each item.
  void run_group(index_t g0, index_t g1, S* rhs) const {
    Eigen::internal::gebp_kernel<S, S, index_t, ResMap, Traits::mr, Traits::nr, false, false> gebp;
    const Item& first = item(g0);
    for (index_t g = g0; g < g1; ++g) {
      const NTile& t = ntile(item(g).j);
      const index_t ldc = product(t).ldc, m = item(g).m;
      S* c = c_of(item(g));
      for (index_t r = 0; r < m; ++r) std::fill(c + r * ldc, c + r * ldc + t.n, S(0));
    }
    for (index_t kb = 0; kb < kb_count_; ++kb) {
      const index_t k0 = kb * kDepth, kd = std::min(kDepth, K_ - k0);
      for (index_t s0 = 0; s0 < first.m; s0 += kSubM) {
        const index_t ms = std::min(kSubM, first.m - s0);
        pack_rhs_by_rows(rhs, A_ + k0 * lda_ + first.m0 + s0, lda_, kd, ms, kStride);  // (k, m)
        for (index_t g = g0; g < g1; ++g) {
          const Item& it = item(g);
          const NTile& t = ntile(it.j);
          const index_t ldc = product(t).ldc;
          const S* lhs = packed_b_.data() + (it.j * kb_count_ + kb) * kSlot;
          gebp(ResMap(c_of(it) + s0 * ldc, ldc), lhs, rhs, t.n, kd, ms, S(1), -1, kStride);
        }
      }
    }
  }

  const S* A_;
  index_t lda_, K_;
  const std::vector<TnProduct<S>>& ps_;
  index_t kb_count_;  ///< depth blocks
  bool bf16_;
  std::vector<NTile> ntiles_;
  std::vector<index_t> bounds_;
  index_t work_ = 0;
  std::vector<Item> items_;
  AlignedBuffer<S> packed_b_;
  AlignedBuffer<S> rhs_;
};

/// gemm_tn with bfloat16 products on a variant that has bf16 product instructions: each product
/// a PackedGemm of A[:, m0:m1]^T (packed once as bfloat16 pairs, A read column by column) by the
/// columns of B_p (converted as they are read), written transposed into C, in the parts of a
/// team. Every element is one sum over K in the kernel's order whatever the thread count.
template <class S>
void gemm_tn_pairs(const S* A, index_t lda, index_t K, const std::vector<TnProduct<S>>& ps) {
  for (const TnProduct<S>& p : ps) {
    const index_t M = p.m1 - p.m0;
    if (M <= 0 || p.N <= 0) continue;
    PackedGemm<S> g(A + p.m0, M, K, lda, /*row_major=*/false, p.N, 1, 1, Compute::Bf16);
    const int threads = M * p.N * K < kParallelMinWork ? 1 : std::min(num_threads(), g.max_parts());
    const Team team(threads);
    team.run([&](Part part) {
      g.multiply_part(Rows<S>{p.B, p.ldb, p.N, /*transposed=*/true},
                      Dest<S>::set_transposed(p.C, p.ldc), part);
    });
  }
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
/// Items of one run on the same tile of A form a group (up to kGroupBytes of C): for each
/// depth block the group packs that tile's block of A once (pack_rhs_by_rows) and runs the
/// kernel for each of its items; A, which is the largest operand and the slowest to pack (its
/// rows are a page apart), is packed once for both weight gradients instead of once each (and
/// Eigen's own product spent ~14% of an LSTM backward packing A and B again for every tile,
/// measured). Every element of every C is computed by one item in the same order whatever the
/// grouping: results do not depend on the thread count. A depth of at most kTnDirectMaxDepth
/// goes to gemm_tn_direct instead (a choice made by K alone). (TnPacked above.)
///
/// bf16 (Compute::Bf16): on a variant with bf16 product instructions (kNativeBf16) the products
/// run there (gemm_tn_pairs); elsewhere the B_p are rounded to bfloat16 as they are packed
/// (copied rounded for gemm_tn_direct) and A must hold bfloat16 values already (the caller
/// rounds it in place).
template <class S>
void gemm_tn(const S* A, index_t lda, index_t K, std::initializer_list<TnProduct<S>> products,
             bool bf16 = false) {
  std::vector<TnProduct<S>> ps(products);
  if (bf16 && kNativeBf16 && std::is_same_v<S, float> && K > 0) {
    gemm_tn_pairs(A, lda, K, ps);
  } else if (K <= 0) {
    for (const auto& p : ps) {
      for (index_t r = 0; r < p.m1 - p.m0; ++r) {
        std::fill(p.C + r * p.ldc, p.C + r * p.ldc + p.N, S(0));
      }
    }
  } else if (K <= kTnDirectMaxDepth) {
    std::vector<S> rounded;  // K rows of each B (K is small here)
    if (bf16) {
      index_t n = 0;
      for (const auto& p : ps) n += p.B ? K * p.N : 0;
      rounded.resize(static_cast<size_t>(n));
      S* r = rounded.data();
      for (auto& p : ps) {
        if (!p.B) continue;
        for (index_t k = 0; k < K; ++k) copy_round_bf16(r + k * p.N, p.B + k * p.ldb, p.N);
        p.B = r;
        p.ldb = p.N;
        r += K * p.N;
      }
    }
    gemm_tn_direct(A, lda, K, ps);
  } else {
    TnPacked<S>(A, lda, K, ps, bf16).run();
  }
}

/// C (M x N, row-major, ldc) = A^T B, with A (K x M, lda) and B (K x N, ldb) row-major: one
/// product of the gemm_tn above.
template <class S>
void gemm_tn(S* C, index_t ldc, const S* A, index_t lda, const S* B, index_t ldb, index_t M,
             index_t N, index_t K, bool bf16 = false) {
  gemm_tn(A, lda, K, {TnProduct<S>{C, ldc, B, ldb, N, 0, M}}, bf16);
}

}  // namespace FASTRNN_ISA_NS
}  // namespace fastrnn::detail
