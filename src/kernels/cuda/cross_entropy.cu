// Label-smoothed cross-entropy over logits[N,V] (V = 8000..50000): one block per row, block
// reductions in fp32; the loss sum and the count are reduced by one block in a fixed order.
#include "device_utils.cuh"
#include "scratch.hpp"
#include "th/kernels/cuda.hpp"
#include "th/kernels/element_rules.hpp"

namespace th::cuda {

constexpr int kRowBlock = 256;   // threads per row: V / 256 ~ 30..200 columns each
constexpr int kSumBlock = 1024;  // the single block that sums losses over rows

// ---- kernels --------------------------------------------------------------------------------

// losses[n], lse[n] for row n = blockIdx.x: max pass, then sum of exp(z - max) and of z.
__global__ void cross_entropy_forward_kernel(float* losses, float* lse, const float* logits, const int* targets,
                                             int V, float smoothing, int ignore) {
  __shared__ float shared[kWarpSize];
  const std::int64_t n = blockIdx.x;
  const float* z = logits + n * V;
  float mx = -INFINITY;
  for (int v = threadIdx.x; v < V; v += blockDim.x) mx = fmaxf(mx, z[v]);
  mx = block_max(mx, shared);
  float sum = 0.0f, zsum = 0.0f;
  for (int v = threadIdx.x; v < V; v += blockDim.x) {
    sum += expf(z[v] - mx);
    zsum += z[v];
  }
  sum = block_sum(sum, shared);
  zsum = block_sum(zsum, shared);
  if (threadIdx.x == 0) {
    const float l = mx + logf(sum);
    const int t = targets[n];
    lse[n] = l;
    if (t == ignore) losses[n] = 0.0f;
    else if (t < 0 || t >= V) losses[n] = NAN;  // a bad label must not pass silently
    else losses[n] = rules::ce_loss(l, z[t], zsum, smoothing, V);
  }
}

// *loss_sum = sum of losses[0, N) (double), *count = rows whose target is not `ignore`.
__global__ void cross_entropy_sum_kernel(double* loss_sum, std::int64_t* count, const float* losses,
                                         const int* targets, std::int64_t N, int ignore) {
  __shared__ double shared[kWarpSize];
  double s = 0.0, c = 0.0;
  for (std::int64_t n = threadIdx.x; n < N; n += blockDim.x) {
    s += static_cast<double>(losses[n]);
    c += targets[n] == ignore ? 0.0 : 1.0;
  }
  s = block_sum(s, shared);
  c = block_sum(c, shared);
  if (threadIdx.x == 0) {
    if (loss_sum) *loss_sum = s;
    if (count) *count = static_cast<std::int64_t>(c);
  }
}

// dlogits[n,:] = dloss * (exp(z - lse) - eps/V - (v == t) (1-eps)); zero row when ignored.
// Each element is read and written by the same thread, so dlogits may alias logits.
__global__ void cross_entropy_backward_kernel(float* dlogits, const float* logits, const float* lse,
                                              const int* targets, int V, float smoothing, int ignore, float dloss) {
  const std::int64_t n = blockIdx.x;
  float* d = dlogits + n * V;
  const float* z = logits + n * V;
  const int t = targets[n];
  if (t == ignore) {
    for (int v = threadIdx.x; v < V; v += blockDim.x) d[v] = 0.0f;
    return;
  }
  if (t < 0 || t >= V) {
    for (int v = threadIdx.x; v < V; v += blockDim.x) d[v] = NAN;
    return;
  }
  const float l = lse[n], u = smoothing / static_cast<float>(V), hit = rules::ce_target_correction(dloss, smoothing);
  for (int v = threadIdx.x; v < V; v += blockDim.x) {
    const float g = rules::ce_grad(z[v], l, dloss, u);
    d[v] = v == t ? g - hit : g;
  }
}

// ---- launchers ------------------------------------------------------------------------------

namespace {
void check_ce_args(const char* who, std::int64_t N, int V) {
  TH_CHECK(N >= 0 && V > 0, std::string(who) + ": need N >= 0, V > 0");
  TH_CHECK(N <= 0x7fffffff, std::string(who) + ": too many rows for one block per row");
}
}  // namespace

void cross_entropy_forward_async(float* losses, float* lse, const float* logits, const int* targets, std::int64_t N,
                                 int V, float smoothing, int ignore, double* loss_sum, std::int64_t* count_dev,
                                 cudaStream_t stream) {
  check_ce_args("cross_entropy_forward", N, V);
  if (N > 0) {
    TH_CHECK(losses && lse && logits && targets, "cross_entropy_forward: null pointer");
    cross_entropy_forward_kernel<<<static_cast<unsigned>(N), kRowBlock, 0, stream>>>(losses, lse, logits, targets, V,
                                                                                     smoothing, ignore);
    TH_CUDA_CHECK_LAUNCH();
  }
  if (loss_sum || count_dev) {  // N == 0 still writes 0 and 0
    cross_entropy_sum_kernel<<<1, kSumBlock, 0, stream>>>(loss_sum, count_dev, losses, targets, N, ignore);
    TH_CUDA_CHECK_LAUNCH();
  }
}

double cross_entropy_forward(float* losses, float* lse, const float* logits, const int* targets, std::int64_t N,
                             int V, float smoothing, int ignore, std::int64_t* count, cudaStream_t stream) {
  struct Totals {
    double sum;
    std::int64_t count;
  };
  Scratch totals(sizeof(Totals), stream);
  Totals* d = totals.as<Totals>();
  cross_entropy_forward_async(losses, lse, logits, targets, N, V, smoothing, ignore, &d->sum, &d->count, stream);
  Totals host{};
  TH_CUDA_CHECK(cudaMemcpyAsync(&host, d, sizeof(Totals), cudaMemcpyDeviceToHost, stream));
  TH_CUDA_CHECK(cudaStreamSynchronize(stream));
  if (count) *count = host.count;
  return host.sum;
}

void cross_entropy_backward(float* dlogits, const float* logits, const float* lse, const int* targets,
                            std::int64_t N, int V, float smoothing, int ignore, float dloss, cudaStream_t stream) {
  check_ce_args("cross_entropy_backward", N, V);
  if (N == 0) return;
  TH_CHECK(dlogits && logits && lse && targets, "cross_entropy_backward: null pointer");
  cross_entropy_backward_kernel<<<static_cast<unsigned>(N), kRowBlock, 0, stream>>>(dlogits, logits, lse, targets, V,
                                                                                    smoothing, ignore, dloss);
  TH_CUDA_CHECK_LAUNCH();
}

}  // namespace th::cuda
