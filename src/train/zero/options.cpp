// The engine's options from the resolved deck: the &parallel and &optim keys ZeRO needs, with the
// deck's strings parsed into enums here, once (th/train/tasks.hpp declares zero_options()).
#include "th/config/config.hpp"
#include "th/train/tasks.hpp"
#include "th/train/zero.hpp"

namespace th {

ZeroOptions zero_options(const Config& cfg) {
  ZeroOptions z;
  z.stage = cfg.parallel.zero_stage;
  z.bucket_mb = cfg.parallel.bucket_mb;
  z.overlap = cfg.parallel.overlap_comm;
  z.prefetch = cfg.parallel.stage3_prefetch;
  z.persistence_threshold = cfg.parallel.param_persistence_threshold;
  z.seed = static_cast<std::uint64_t>(cfg.run.seed);
  z.compute = parse_dtype(cfg.precision.dtype);
  z.two_byte_params = cfg.precision.param_storage == "auto";
  z.two_byte_grads = cfg.precision.grad_storage == "auto";
  z.grad_accum = cfg.optim.grad_accum;
  z.adam = AdamWConfig{cfg.optim.lr, cfg.optim.betas[0], cfg.optim.betas[1], cfg.optim.eps, cfg.optim.weight_decay};
  z.offload.optimizer = parse_offload_target(cfg.parallel.offload_optimizer, "parallel%offload_optimizer");
  z.offload.param = parse_offload_target(cfg.parallel.offload_param, "parallel%offload_param");
  z.offload.nvme_path = cfg.parallel.nvme_path;
  z.offload.nvme_chunk_mb = cfg.parallel.nvme_chunk_mb;
  return z;
}

}  // namespace th
