#include <cmath>
#include <limits>

#include "th/core/half.hpp"
#include "th/kernels/host_loop.hpp"
#include "th/kernels/cpu.hpp"

namespace th::cpu {

template <typename T>
void embedding_forward(T* y, const int* tokens, const T* table, const T* pe, int B, int L, int D, T scale) {
  const std::int64_t N = static_cast<std::int64_t>(B) * L;
  host_for("Embedding::forward", N, [=](std::int64_t n) {
    const T* e = table + static_cast<std::int64_t>(tokens[n]) * D;
    const T* p = pe + (n % L) * D;
    T* yn = y + n * D;
    for (int j = 0; j < D; ++j) yn[j] = e[j] * scale + p[j];
  });
}

void embedding_forward_bf16(float* y, const int* tokens, const std::uint16_t* table16, const float* pe, int B, int L,
                            int D, float scale) {
  const std::int64_t N = static_cast<std::int64_t>(B) * L;
  host_for("Embedding::forward_bf16", N, [=](std::int64_t n) {
    const std::uint16_t* e = table16 + static_cast<std::int64_t>(tokens[n]) * D;
    const float* p = pe + (n % L) * D;
    float* yn = y + n * D;
    for (int j = 0; j < D; ++j) yn[j] = half::from_bf16(e[j]) * scale + p[j];
  });
}

template <typename T>
void embedding_backward_rows(T* dtable, const int* tokens, const T* dy, std::int64_t N, int D, T scale, int row_begin,
                             int row_end) {
  constexpr int kBlock = 64;
  const std::int64_t nblocks = (D + kBlock - 1) / kBlock;
  host_for("Embedding::backward", nblocks, [=](std::int64_t blk) {
    const int j0 = static_cast<int>(blk) * kBlock, j1 = std::min(D, j0 + kBlock);
    for (std::int64_t n = 0; n < N; ++n) {
      if (tokens[n] < row_begin || tokens[n] >= row_end) continue;
      T* row = dtable + static_cast<std::int64_t>(tokens[n]) * D;
      const T* g = dy + n * D;
      for (int j = j0; j < j1; ++j) row[j] += scale * g[j];
    }
  });
}

template <typename T>
void embedding_backward(T* dtable, const int* tokens, const T* dy, std::int64_t N, int D, T scale) {
  embedding_backward_rows(dtable, tokens, dy, N, D, scale, std::numeric_limits<int>::min(), std::numeric_limits<int>::max());
}

template <typename T>
void position_backward(T* dpe, const T* dy, int B, int L, int D) {
  host_for("Embedding::position_backward", L, [=](std::int64_t t) {
    T* row = dpe + t * D;
    for (int b = 0; b < B; ++b) {
      const T* g = dy + (static_cast<std::int64_t>(b) * L + t) * D;
      for (int j = 0; j < D; ++j) row[j] += g[j];
    }
  });
}

template <typename T> void sinusoidal_table(T* pe, int L, int D) {
  host_for("Embedding::sinusoidal_table", L, [=](std::int64_t p) {
    for (int i = 0; 2 * i < D; ++i) {
      // Computed in double so every rank and every backend gets the identical table.
      const double freq = std::exp(-std::log(10000.0) * (2.0 * i) / D);
      pe[p * D + 2 * i] = static_cast<T>(std::sin(static_cast<double>(p) * freq));
      if (2 * i + 1 < D) pe[p * D + 2 * i + 1] = static_cast<T>(std::cos(static_cast<double>(p) * freq));
    }
  });
}

#define TH_INSTANTIATE(T)                                                                     \
  template void embedding_forward<T>(T*, const int*, const T*, const T*, int, int, int, T);   \
  template void embedding_backward<T>(T*, const int*, const T*, std::int64_t, int, T);        \
  template void embedding_backward_rows<T>(T*, const int*, const T*, std::int64_t, int, T, int, int); \
  template void position_backward<T>(T*, const T*, int, int, int);                            \
  template void sinusoidal_table<T>(T*, int, int);
TH_INSTANTIATE(float)
TH_INSTANTIATE(double)
#undef TH_INSTANTIATE

}  // namespace th::cpu
