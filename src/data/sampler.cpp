#include "th/data/sampler.hpp"

#include "th/core/error.hpp"

namespace th {

DistributedSampler::DistributedSampler(std::vector<ExampleLength> lengths, const SamplerOptions& opt)
    : lengths_(std::move(lengths)), opt_(opt) {
  TH_CHECK(opt_.world >= 1 && opt_.accum >= 1, "sampler needs world >= 1 and accum >= 1");
}

void DistributedSampler::set_epoch(std::int64_t epoch) {
  epoch_ = epoch;
  batches_ = make_batches(lengths_, opt_.max_tokens, opt_.seed, epoch, opt_.shuffle, opt_.decoder_only);
  const std::int64_t G = static_cast<std::int64_t>(opt_.world) * opt_.accum;
  split_to_multiple(batches_, G);
  steps_ = static_cast<std::int64_t>(batches_.size()) / G;
  std::int64_t padded = 0, real = 0, used = 0;
  for (std::int64_t k = 0; k < steps_ * G; ++k) {
    const auto& rows = batches_[static_cast<std::size_t>(k)];
    padded += padded_positions(lengths_, rows, opt_.decoder_only);
    real += real_positions(lengths_, rows, opt_.decoder_only);
    used += static_cast<std::int64_t>(rows.size());
  }
  padding_ = padded > 0 ? 1.0 - static_cast<double>(real) / static_cast<double>(padded) : 0.0;
  unused_ = examples() - used;
}

std::vector<std::vector<std::int64_t>> DistributedSampler::step_rows(std::int64_t step, int rank) const {
  TH_CHECK(step >= 0 && step < steps_, "step " + std::to_string(step) + " outside the epoch's " +
                                           std::to_string(steps_) + " steps");
  TH_CHECK(rank >= 0 && rank < opt_.world, "rank outside the world");
  const std::int64_t G = static_cast<std::int64_t>(opt_.world) * opt_.accum;
  std::vector<std::vector<std::int64_t>> out;
  for (int a = 0; a < opt_.accum; ++a)
    out.push_back(batches_[static_cast<std::size_t>(step * G + static_cast<std::int64_t>(a) * opt_.world + rank)]);
  return out;
}

}  // namespace th
