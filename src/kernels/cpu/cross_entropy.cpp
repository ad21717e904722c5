#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

#include "th/kernels/host_loop.hpp"
#include "th/kernels/cpu.hpp"
#include "th/kernels/element_rules.hpp"
#include "cpu/convert_rows.hpp"
#include "cpu/softmax_rows.hpp"

namespace th::cpu {

namespace {
// One row of the forward: writes lse[n] and losses[n] (0 for an ignored target).
template <typename T>
void forward_row(T* losses, T* lse, const T* logits, const int* targets, std::int64_t n, int V, T smoothing,
                 int ignore) {
  const T* z = logits + n * V;
  T mx = -std::numeric_limits<T>::infinity();
  T sum = 0, zsum = 0;
  if constexpr (std::is_same_v<T, float>) {  // vectorised rows (softmax_rows.hpp)
    mx = rows::max(z, V);
    rows::exp_sums(z, V, mx, &sum, &zsum);
  } else {
    for (int v = 0; v < V; ++v) mx = std::max(mx, z[v]);
    for (int v = 0; v < V; ++v) {
      sum += std::exp(z[v] - mx);
      zsum += z[v];
    }
  }
  const T l = mx + std::log(sum);
  lse[n] = l;
  losses[n] = targets[n] == ignore ? T(0) : rules::ce_loss(l, z[targets[n]], zsum, smoothing, V);
}
// Sets *count to the rows not ignored and returns the sum of the losses.
template <typename T>
double finish(const T* losses, const int* targets, std::int64_t N, int ignore, std::int64_t* count) {
  *count = static_cast<std::int64_t>(
      host_sum("CrossEntropy::count", N, [=](std::int64_t n) { return targets[n] == ignore ? 0.0 : 1.0; }));
  return host_sum("CrossEntropy::sum", N, [=](std::int64_t n) { return static_cast<double>(losses[n]); });
}
}  // namespace

template <typename T>
double cross_entropy_forward(T* losses, T* lse, const T* logits, const int* targets, std::int64_t N,
                             int V, T smoothing, int ignore, std::int64_t* count) {
  host_for("CrossEntropy::forward", N,
           [=](std::int64_t n) { forward_row(losses, lse, logits, targets, n, V, smoothing, ignore); });
  return finish(losses, targets, N, ignore, count);
}

template <typename T>
void cross_entropy_backward(T* dlogits, const T* logits, const T* lse, const int* targets,
                            std::int64_t N, int V, T smoothing, int ignore, T dloss) {
  host_for("CrossEntropy::backward", N, [=](std::int64_t n) {
    T* d = dlogits + n * V;
    const T* z = logits + n * V;
    if (targets[n] == ignore) {
      for (int v = 0; v < V; ++v) d[v] = T(0);
      return;
    }
    const T l = lse[n], u = smoothing / T(V);
    // float: rules::ce_grad in 16 lanes with exp_rule for the exponential (softmax_rows.hpp).
    if constexpr (std::is_same_v<T, float>) rows::exp_affine(d, z, V, l, dloss, u);
    else
      for (int v = 0; v < V; ++v) d[v] = rules::ce_grad(z[v], l, dloss, u);
    d[targets[n]] -= rules::ce_target_correction(dloss, smoothing);
  });
}

double cross_entropy_forward_grad_bf16(float* losses, float* lse, std::uint16_t* grad16, const float* logits,
                                       const int* targets, std::int64_t N, int V, float smoothing, int ignore,
                                       std::int64_t* count) {
  host_for("CrossEntropy::forward_grad_bf16", N, [=](std::int64_t n) {
    forward_row(losses, lse, logits, targets, n, V, smoothing, ignore);
    std::uint16_t* g = grad16 + n * V;
    if (targets[n] == ignore) {
      std::fill_n(g, V, std::uint16_t(0));
      return;
    }
    // The row's gradient in fp32 (cross_entropy_backward's rule, dloss = 1), then rounded once.
    thread_local std::vector<float> row;
    if (row.size() < static_cast<std::size_t>(V)) row.resize(static_cast<std::size_t>(V));
    rows::exp_affine(row.data(), logits + n * V, V, lse[n], 1.0f, smoothing / float(V));
    row[targets[n]] -= rules::ce_target_correction(1.0f, smoothing);
    rows::narrow_bf16(g, row.data(), V);
  });
  return finish(losses, targets, N, ignore, count);
}

#define TH_INSTANTIATE(T)                                                                          \
  template double cross_entropy_forward<T>(T*, T*, const T*, const int*, std::int64_t, int, T, int, \
                                           std::int64_t*);                                        \
  template void cross_entropy_backward<T>(T*, const T*, const T*, const int*, std::int64_t, int, T, \
                                          int, T);
TH_INSTANTIATE(float)
TH_INSTANTIATE(double)
#undef TH_INSTANTIATE

}  // namespace th::cpu
