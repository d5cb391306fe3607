// The namespace of one ISA variant's kernels. Included first by every kernel header.
//
// The kernel units (cpp/kernels/*.cpp) are compiled once per variant, with
//   FASTRNN_ISA_NS=<identifier>   the variant's namespace: the kernel headers open
//                                 `namespace fastrnn::detail { inline namespace FASTRNN_ISA_NS`,
//                                 so every kernel function and type is a distinct entity per
//                                 variant (its own symbol), while the code names them as before;
//   Eigen=<identifier>            Eigen's namespace renamed the same way, so that no Eigen
//                                 function compiled for one instruction set is linked into
//                                 another variant (the linker keeps one body of each inline
//                                 function: an AVX-512 body would run on an AVX2 machine);
//   the variant's -march flags, and the same defines for all (CMakeLists.txt).
// Anything else the kernels use from outside is compiled once for the lowest level
// (kernel_table.hpp: check_interrupt, num_threads, the block cache) or comes from the standard
// library; see CMakeLists.txt for why its inline functions are safe.
#pragma once

#ifndef FASTRNN_ISA_NS
#error \
    "fastrnn's kernel headers are compiled only in the per-ISA kernel units (cpp/kernels/); \
outside them include fastrnn/fastrnn.hpp and call the kernels through it"
#endif
