// The oneDNN provider when the build has no oneDNN (CMake did not find it): every GEMM falls
// back to OpenBLAS, and the probe says so.
#include "cpu/gemm_providers.hpp"

namespace th::cpu::detail {

bool onednn_gemm(bool, bool, bool, int, int, int, float, const void*, int, std::int64_t, const void*, int,
                 std::int64_t, float, float*, int, std::int64_t, int) {
  return false;
}

OnednnProbe onednn_probe() { return OnednnProbe{}; }

}  // namespace th::cpu::detail
