#include "th/data/loader.hpp"

#include "th/core/error.hpp"

namespace th {

TrainLoader::TrainLoader(const Config& cfg, Comm& comm)
    : cfg_(cfg), rank_(comm.rank()), world_(comm.size()), accum_(cfg.optim.grad_accum),
      decoder_only_(cfg.model.arch == "decoder-only") {
  if (cfg.data.synthetic == "none")
    throw InputError("data%synthetic = 'none' needs data%train_file from task='prepare', which is not "
                     "available in this build yet; use data%synthetic = 'copy' or 'reverse'");
  const auto seed = static_cast<std::uint64_t>(cfg.run.seed);
  vocab_ = cfg.model.vocab_size;
  train_ = make_synthetic(cfg.data.synthetic, cfg.data.synthetic_samples, cfg.data.synthetic_min_len,
                          cfg.data.synthetic_max_len, vocab_, seed, 1);
  valid_ = make_synthetic(cfg.data.synthetic, cfg.data.synthetic_valid_samples, cfg.data.synthetic_min_len,
                          cfg.data.synthetic_max_len, vocab_, seed, 2);
  plan_epoch();
  steps_per_epoch_ = static_cast<std::int64_t>(epoch_batches_.size()) / (static_cast<std::int64_t>(world_) * accum_);
  if (steps_per_epoch_ == 0)
    throw InputError("the training set gives no optimizer step per epoch (" + std::to_string(epoch_batches_.size()) +
                     " micro-batches for " + std::to_string(world_) + " ranks x optim%grad_accum = " +
                     std::to_string(accum_) + "): lower data%max_tokens or grad_accum, or add samples");
}

TrainLoader::~TrainLoader() = default;

void TrainLoader::plan_epoch() {
  epoch_batches_ = make_batches(train_, cfg_.data.max_tokens, static_cast<std::uint64_t>(cfg_.run.seed), epoch_,
                                cfg_.data.shuffle, decoder_only_);
}

std::vector<Batch> TrainLoader::next_step() {
  if (step_in_epoch_ == steps_per_epoch_) {
    ++epoch_;
    step_in_epoch_ = 0;
    plan_epoch();
  }
  const std::int64_t G = static_cast<std::int64_t>(world_) * accum_;
  std::vector<Batch> out;
  for (int a = 0; a < accum_; ++a) {
    const std::int64_t k = step_in_epoch_ * G + static_cast<std::int64_t>(a) * world_ + rank_;
    out.push_back(collate(train_, epoch_batches_[static_cast<std::size_t>(k)], decoder_only_));
  }
  ++step_in_epoch_;
  return out;
}

void TrainLoader::restore(const State& s) {
  TH_CHECK(s.step_in_epoch >= 0 && s.step_in_epoch <= steps_per_epoch_, "sampler state outside the epoch");
  epoch_ = s.epoch;
  step_in_epoch_ = s.step_in_epoch;
  plan_epoch();
}

std::vector<Batch> TrainLoader::valid_batches() const {
  const auto batches = make_batches(valid_, cfg_.data.max_tokens, 0, 0, false, decoder_only_);
  std::vector<Batch> mine;
  for (std::size_t k = static_cast<std::size_t>(rank_); k < batches.size(); k += static_cast<std::size_t>(world_))
    mine.push_back(collate(valid_, batches[k], decoder_only_));
  return mine;
}

}  // namespace th
