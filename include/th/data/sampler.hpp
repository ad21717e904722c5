#pragma once
// The distributed sampler: which examples go into which optimizer step on which rank.
//
// set_epoch rule: an epoch's micro-batches are a pure function of (lengths, seed, epoch,
// max_tokens, G = world * grad_accum): make_batches (shuffle from (seed, epoch), length bucketing,
// token-budget packing, batch-order shuffle), then split_to_multiple(G) so the epoch fills whole
// optimizer steps and every example is used exactly once. Every rank computes the same list from
// the lengths alone (no communication).
//
// Elastic rule: step s takes micro-batches s*G .. s*G+G-1, and micro-batch s*G + a*world + r is
// rank r's a-th accumulation micro-batch. Since the list depends on world and grad_accum only
// through their product, 4 ranks x accum 1, 2 x 2 and 1 x 4 put the same examples into the
// same optimizer steps.
#include <cstdint>
#include <vector>

#include "th/data/batching.hpp"

namespace th {

struct SamplerOptions {
  std::int64_t max_tokens = 4096;  // padded positions of one micro-batch
  std::uint64_t seed = 0;
  bool shuffle = true;
  bool decoder_only = false;
  int world = 1;  // ranks
  int accum = 1;  // micro-batches per rank and optimizer step
};

class DistributedSampler {
 public:
  DistributedSampler(std::vector<ExampleLength> lengths, const SamplerOptions& opt);

  // Plans the micro-batches of this epoch (the set_epoch rule above).
  void set_epoch(std::int64_t epoch);
  std::int64_t epoch() const { return epoch_; }
  std::int64_t examples() const { return static_cast<std::int64_t>(lengths_.size()); }
  const std::vector<ExampleLength>& lengths() const { return lengths_; }

  // Optimizer steps of the planned epoch (may differ by a few between epochs: the packing
  // depends on the shuffle).
  std::int64_t steps() const { return steps_; }
  // Rows (example indices) of rank's grad_accum micro-batches in step `step` of the epoch.
  std::vector<std::vector<std::int64_t>> step_rows(std::int64_t step, int rank) const;
  // Every micro-batch of the epoch, in step order (those beyond steps() * G are not used).
  const std::vector<std::vector<std::int64_t>>& micro_batches() const { return batches_; }
  // Share of padding among the positions of the epoch's used micro-batches.
  double padding_fraction() const { return padding_; }
  // Examples of the epoch in no step (0 unless every batch had a single row; see split_to_multiple).
  std::int64_t unused_examples() const { return unused_; }

 private:
  std::vector<ExampleLength> lengths_;
  SamplerOptions opt_;
  std::int64_t epoch_ = -1, steps_ = 0, unused_ = 0;
  double padding_ = 0;
  std::vector<std::vector<std::int64_t>> batches_;
};

}  // namespace th
