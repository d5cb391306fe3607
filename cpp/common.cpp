// Non-template helpers of the core.
#include <Eigen/Core>

#include "fastrnn/fastrnn.hpp"

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
