#pragma once
// The training data as the trainer sees it: optimizer steps of micro-batches for this rank.
//
// Elastic rule: an epoch is a list of micro-batches that depends only on (seed, epoch, data,
// max_tokens); optimizer step s consumes the G = world * grad_accum micro-batches
// s*G .. s*G+G-1, and micro-batch s*G + a*world + r goes to rank r as its a-th accumulation
// micro-batch. So 4 ranks x accum 1, 2 x 2 and 1 x 4 put the same examples into the same steps.
#include <cstdint>
#include <memory>
#include <vector>

#include "io/config.hpp"
#include "th/data/batching.hpp"
#include "th/parallel/comm.hpp"

namespace th {

class TrainLoader {
 public:
  TrainLoader(const Config& cfg, Comm& comm);
  ~TrainLoader();
  int vocab_size() const { return vocab_; }
  std::int64_t examples() const { return static_cast<std::int64_t>(train_.size()); }
  std::int64_t steps_per_epoch() const { return steps_per_epoch_; }

  // The grad_accum micro-batches of this rank for the next optimizer step (crosses epochs).
  std::vector<Batch> next_step();

  // Where the sampler stands; restore() continues with exactly the batches it would have given.
  struct State {
    std::int64_t epoch = 0, step_in_epoch = 0;
  };
  State state() const { return {epoch_, step_in_epoch_}; }
  void restore(const State& s);

  // This rank's share of the validation set (rank r takes batches r, r + world, ...).
  std::vector<Batch> valid_batches() const;

 private:
  void plan_epoch();
  const Config& cfg_;
  int rank_, world_, accum_;
  bool decoder_only_;
  int vocab_ = 0;
  std::vector<Example> train_, valid_;
  std::vector<std::vector<std::int64_t>> epoch_batches_;  // all micro-batches of the epoch
  std::int64_t steps_per_epoch_ = 0, epoch_ = 0, step_in_epoch_ = 0;
};

}  // namespace th
