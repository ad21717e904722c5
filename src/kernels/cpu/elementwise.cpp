#include <algorithm>
#include <type_traits>

#include "th/kernels/host_loop.hpp"
#include "th/kernels/cpu.hpp"
#include "cpu/isa_clones.hpp"

namespace th::cpu {

template <typename T> void bias_add(T* y, const T* b, std::int64_t N, int D) {
  host_for("Bias::add", N, [=](std::int64_t i) {
    T* row = y + i * D;
    for (int j = 0; j < D; ++j) row[j] += b[j];
  });
}

namespace {
// Columns [j0, j0 + w) of dy summed down its N rows into acc, row by row: each column's order is the
// same whatever the block width or ISA clone, so the sums are too. float: blocks of up to 512
// columns (long contiguous reads per row; at least two blocks from 128 columns, for two threads),
// compiled per ISA level (isa_clones.hpp).
constexpr int kMaxBlock = 512;
template <typename T> int block_width(int D) {
  if (!std::is_same_v<T, float>) return 64;
  return std::clamp((D / 2 + 63) / 64 * 64, 64, kMaxBlock);
}
template <typename T> void column_block_sums(T* acc, const T* dy, std::int64_t N, int D, int j0, int w) {
  for (std::int64_t i = 0; i < N; ++i)
    for (int j = 0; j < w; ++j) acc[j] += dy[i * D + j0 + j];
}
TH_ISA_CLONES void column_block_sums_f32(float* __restrict acc, const float* __restrict dy, std::int64_t N, int D,
                                        int j0, int w) {
  for (std::int64_t i = 0; i < N; ++i) {
    const float* row = dy + i * D + j0;
    for (int j = 0; j < w; ++j) acc[j] += row[j];
  }
}
}  // namespace

// Column sums: parallel over column blocks so no two iterations write the same db element; the
// row loop inside keeps reads contiguous.
template <typename T> void bias_grad(T* db, const T* dy, std::int64_t N, int D) {
  const int block = block_width<T>(D);
  const std::int64_t nblocks = (D + block - 1) / block;
  host_for("Bias::grad", nblocks, [=](std::int64_t blk) {
    const int j0 = static_cast<int>(blk) * block, j1 = std::min(D, j0 + block);
    T acc[kMaxBlock] = {};
    if constexpr (std::is_same_v<T, float>) column_block_sums_f32(acc, dy, N, D, j0, j1 - j0);
    else column_block_sums(acc, dy, N, D, j0, j1 - j0);
    for (int j = j0; j < j1; ++j) db[j] += acc[j - j0];
  });
}

template <typename T> void add(T* out, const T* a, const T* b, std::int64_t n) {
  host_for("Residual::add", n, [=](std::int64_t i) { out[i] = a[i] + b[i]; });
}

template <typename T> void add_inplace(T* a, const T* b, std::int64_t n) {
  host_for("Residual::add_inplace", n, [=](std::int64_t i) { a[i] += b[i]; });
}

template <typename T> void scale_inplace(T* a, T s, std::int64_t n) {
  host_for("Tensor::scale", n, [=](std::int64_t i) { a[i] *= s; });
}

// In double, over chunks of kLanes independent partial sums (a fixed order, so the result does
// not depend on the vector width; the compiler may not reorder one serial double sum into lanes).
template <typename T> double sum_squares(const T* a, std::int64_t n) {
  constexpr std::int64_t kLanes = 8, kChunk = 4096;
  return host_sum("Tensor::sum_squares", (n + kChunk - 1) / kChunk, [=](std::int64_t c) {
    const std::int64_t i0 = c * kChunk, i1 = std::min(n, i0 + kChunk);
    double lane[kLanes] = {};
    std::int64_t i = i0;
    for (; i + kLanes <= i1; i += kLanes)
      for (std::int64_t k = 0; k < kLanes; ++k) {
        const double v = static_cast<double>(a[i + k]);
        lane[k] += v * v;
      }
    double total = 0.0;
    for (; i < i1; ++i) total += static_cast<double>(a[i]) * static_cast<double>(a[i]);
    for (std::int64_t k = 0; k < kLanes; ++k) total += lane[k];
    return total;
  });
}

#define TH_INSTANTIATE(T)                                                   \
  template void bias_add<T>(T*, const T*, std::int64_t, int);               \
  template void bias_grad<T>(T*, const T*, std::int64_t, int);              \
  template void add<T>(T*, const T*, const T*, std::int64_t);               \
  template void add_inplace<T>(T*, const T*, std::int64_t);                 \
  template void scale_inplace<T>(T*, T, std::int64_t);                      \
  template double sum_squares<T>(const T*, std::int64_t);
TH_INSTANTIATE(float)
TH_INSTANTIATE(double)
#undef TH_INSTANTIATE

}  // namespace th::cpu
