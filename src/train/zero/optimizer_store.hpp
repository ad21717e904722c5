#pragma once
// The optimizer-state store: where the rank's Adam moments live and the AdamW step that runs
// where they are. One interface, chosen by parallel%offload_optimizer (OffloadTarget):
//
//   None  moments with the parameters (the compute device; th::AdamW)
//   Cpu   moments on the host, the step in host loops       (th/train/offload.hpp, OffloadedAdamW)
//   Nvme  moments streamed from <nvme_path>/th_optim_rank<r>.bin through two host slots
//
// The moment space is the rank's owned-span layout (stage 0: the whole buffer, else the partition).
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "th/train/offload.hpp"
#include "th/train/optimizer.hpp"

namespace th::zero {

class OptimizerStore {
 public:
  virtual ~OptimizerStore() = default;
  virtual void next_step() = 0;  // t += 1, before the update of step t
  virtual std::int64_t steps() const = 0;
  virtual void set_steps(std::int64_t t) = 0;  // resuming: the bias corrections continue from t
  // The AdamW step t of every span (spans in increasing offset).
  virtual void update(const std::vector<AdamSpan>& spans, double lr) = 0;
  // The update does file I/O that can fail on one rank: the caller agrees on it (agree_each).
  virtual bool does_io() const = 0;
  // The moments as arrays when they are resident (device or host), else nullptr; checkpoints of a
  // store without resident moments go through read_moments / write_moments.
  // on_device(): they are in the backend's device memory (host code reads them through copies).
  virtual float* exp_avg() = 0;
  virtual float* exp_avg_sq() = 0;
  virtual bool on_device() const = 0;
  virtual void read_moments(float* m, float* v) = 0;
  virtual void write_moments(const float* m, const float* v) = 0;
  virtual OffloadMemory memory() const = 0;  // offloaded bytes (none: zero)
  virtual std::string where() const = 0;     // "" (with the parameters), "host", or the NVMe file
};

// n: elements of the moment space. Nvme: throws th::Error (naming the file) when the file cannot
// be created; the caller agrees on it over ranks.
// `backend`: the model's (moments with the parameters live in its device memory).
std::unique_ptr<OptimizerStore> make_optimizer_store(const OffloadOptions& opt, std::int64_t n, const AdamWConfig& cfg,
                                                     int rank, Backend& backend);

}  // namespace th::zero
