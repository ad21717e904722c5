#include "stage_policy.hpp"

#include <algorithm>
#include <string>

#include "th/core/error.hpp"

namespace th::zero {

StagePolicy stage_policy(int stage) {
  TH_CHECK(stage >= 0 && stage <= 3, "ZeRO stage " + std::to_string(stage));
  StagePolicy p;
  p.stage = stage;
  p.replicated = stage == 0;
  p.grads_partitioned = stage >= 2;
  p.params_partitioned = stage == 3;
  const double whole[4] = {16, 8, 4, 0}, split[4] = {0, 8, 12, 16};
  p.formula_whole = whole[stage];
  p.formula_split = split[stage];
  p.comm_psi = stage == 3 ? 3 : 2;
  p.comm_formula = stage == 3 ? "3" : "2";
  p.comm_grad_psi = stage == 0 ? 2 : 1;
  return p;
}

int layout_align(const StagePolicy& policy, int world, DType compute) {
  if (policy.replicated) return 1;
  return compute != DType::F32 ? 2 * world : world;
}

void configure_layout(ModelSpec& spec, const StagePolicy& policy, double bucket_mb, int world, DType compute) {
  if (policy.replicated) return;
  spec.param_align = layout_align(policy, world, compute);
  const auto bucket = static_cast<std::int64_t>(bucket_mb * 1024 * 1024 / sizeof(float));
  spec.param_segment_max = std::max<std::int64_t>(world, bucket / world * world);
  spec.external_param_storage = policy.grads_partitioned;
}

}  // namespace th::zero
