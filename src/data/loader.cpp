#include "th/data/loader.hpp"

#include <algorithm>
#include <cstdio>

#include "th/core/error.hpp"
#include "th/data/dataset_h5.hpp"
#include "th/data/prefetcher.hpp"
#include "th/data/sampler.hpp"

namespace th {

namespace {
// Rank r's validation batches: r, r + world, ... of the unshuffled, bucketed packing.
std::vector<std::vector<std::int64_t>> my_valid_batches(const std::vector<ExampleLength>& lengths, const Config& cfg,
                                                        int rank, int world, bool decoder_only) {
  const auto all = make_batches(lengths, cfg.data.max_tokens, 0, 0, false, decoder_only);
  std::vector<std::vector<std::int64_t>> mine;
  for (std::size_t k = static_cast<std::size_t>(rank); k < all.size(); k += static_cast<std::size_t>(world))
    mine.push_back(all[k]);
  return mine;
}
}  // namespace

TrainLoader::TrainLoader(const Config& cfg, Comm& comm)
    : cfg_(cfg), rank_(comm.rank()), world_(comm.size()), accum_(cfg.optim.grad_accum),
      decoder_only_(cfg.model.arch == "decoder-only") {
  const auto seed = static_cast<std::uint64_t>(cfg.run.seed);
  std::vector<ExampleLength> train_lengths;
  if (cfg.data.synthetic == "none") {
    open_datasets(comm);
    for (const std::int64_t r : file_rows_) train_lengths.push_back(reader_->lengths()[static_cast<std::size_t>(r)]);
  } else {
    fingerprint_ = kNoTokenizer;
    vocab_ = cfg.model.vocab_size;
    train_ = make_synthetic(cfg.data.synthetic, cfg.data.synthetic_samples, cfg.data.synthetic_min_len,
                            cfg.data.synthetic_max_len, vocab_, seed, 1);
    valid_ = make_synthetic(cfg.data.synthetic, cfg.data.synthetic_valid_samples, cfg.data.synthetic_min_len,
                            cfg.data.synthetic_max_len, vocab_, seed, 2);
    valid_rows_ = my_valid_batches(lengths_of(valid_), cfg, rank_, world_, decoder_only_);
    train_lengths = lengths_of(train_);
  }
  SamplerOptions opt;
  opt.max_tokens = cfg.data.max_tokens;
  opt.seed = seed;
  opt.shuffle = cfg.data.shuffle;
  opt.decoder_only = decoder_only_;
  opt.world = world_;
  opt.accum = accum_;
  sampler_ = std::make_unique<DistributedSampler>(std::move(train_lengths), opt);
  sampler_->set_epoch(0);
  steps_per_epoch_ = epoch_steps_ = sampler_->steps();
  padding_ = sampler_->padding_fraction();
  if (steps_per_epoch_ == 0)
    throw InputError("the training set gives no optimizer step per epoch (" +
                     std::to_string(sampler_->micro_batches().size()) + " micro-batches for " + std::to_string(world_) +
                     " ranks x optim%grad_accum = " + std::to_string(accum_) +
                     "): lower data%max_tokens or grad_accum, or add samples");
  if (rank_ == 0) {
    std::printf("data: %lld training examples", static_cast<long long>(examples()));
    if (too_long_ > 0)
      std::printf(" (%lld longer than model%%max_len = %d skipped)", static_cast<long long>(too_long_), cfg.model.max_len);
    std::printf(", vocabulary %d; %lld micro-batches of <= %d positions per epoch, padding %.1f%%\n", vocab_,
                static_cast<long long>(sampler_->micro_batches().size()), cfg.data.max_tokens, 100.0 * padding_);
    std::fflush(stdout);
  }
  // Synthetic data is collated from memory; files are read with MPI-IO, which may only run on
  // a second thread when MPI granted MPI_THREAD_MULTIPLE.
  prefetch_ = std::make_unique<Prefetcher>(!reader_ || DatasetReader::background_reads_allowed());
  submit_next();
}

TrainLoader::~TrainLoader() = default;

void TrainLoader::open_datasets(Comm& comm) {
  if (cfg_.data.train_file.empty())
    throw InputError("data%synthetic = 'none' needs data%train_file, a dataset made by run%task = 'prepare'");
  reader_ = std::make_unique<DatasetReader>(cfg_.data.train_file, comm);
  const DatasetInfo& info = reader_->info();
  // Every rank read the same attributes: these errors are the same on every rank.
  if (cfg_.model.vocab_size > 0 && cfg_.model.vocab_size != info.vocab_size)
    throw InputError("data%train_file = '" + info.path + "' was made with a SentencePiece vocabulary of " +
                     std::to_string(info.vocab_size) + " pieces, but model%vocab_size = " +
                     std::to_string(cfg_.model.vocab_size) + "; set model%vocab_size = 0 (take it from the dataset) or " +
                     std::to_string(info.vocab_size));
  vocab_ = static_cast<int>(info.vocab_size);
  tokenizer_ = reader_->tokenizer_model();
  fingerprint_ = info.tokenizer_fingerprint;
  if (info.examples == 0)
    throw InputError("data%train_file = '" + info.path + "' holds no examples (num_examples = 0); make it again "
                     "with run%task = 'prepare' from a source with pairs");
  const int max_len = cfg_.model.max_len;
  for (std::size_t r = 0; r < reader_->lengths().size(); ++r) {
    if (fits_max_len(reader_->lengths()[r], max_len, decoder_only_)) {
      file_rows_.push_back(static_cast<std::int64_t>(r));
    } else {
      ++too_long_;
    }
  }
  if (file_rows_.empty())
    throw InputError("data%train_file = '" + info.path + "': no example fits model%max_len = " + std::to_string(max_len));
  if (cfg_.data.valid_file.empty()) return;
  DatasetReader valid(cfg_.data.valid_file, comm);
  if (valid.info().examples == 0)
    throw InputError("data%valid_file = '" + valid.info().path + "' holds no examples (num_examples = 0); set "
                     "data%valid_file = '' to train without validation, or make it again with a larger "
                     "prepare%valid_fraction");
  if (valid.info().tokenizer_fingerprint != info.tokenizer_fingerprint)
    throw InputError("data%valid_file = '" + valid.info().path + "' was made with another SentencePiece model than "
                     "data%train_file = '" + info.path + "' (tokenizer_fingerprint " + valid.info().tokenizer_fingerprint +
                     " vs " + info.tokenizer_fingerprint + "); make both with one run of task='prepare'");
  std::vector<std::int64_t> rows;
  std::vector<ExampleLength> lengths;
  for (std::size_t r = 0; r < valid.lengths().size(); ++r)
    if (fits_max_len(valid.lengths()[r], max_len, decoder_only_)) {
      rows.push_back(static_cast<std::int64_t>(r));
      lengths.push_back(valid.lengths()[r]);
    }
  // Read this rank's share in one collective read; renumber the batches into it.
  std::vector<std::int64_t> mine;
  for (auto& batch : my_valid_batches(lengths, cfg_, rank_, world_, decoder_only_)) {
    for (auto& i : batch) {
      mine.push_back(rows[static_cast<std::size_t>(i)]);
      i = static_cast<std::int64_t>(mine.size()) - 1;
    }
    valid_rows_.push_back(std::move(batch));
  }
  valid_ = valid.read(mine, /*collective=*/true);
}

std::int64_t TrainLoader::examples() const { return sampler_->examples(); }

bool TrainLoader::prefetching_in_background() const { return prefetch_->background(); }

std::vector<Batch> TrainLoader::fetch(const std::vector<std::vector<std::int64_t>>& rows) {
  std::vector<Batch> out;
  if (!reader_) {
    for (const auto& r : rows) out.push_back(collate(train_, r, decoder_only_));
    return out;
  }
  // One read for the whole step: the micro-batches are disjoint, so every row is distinct.
  std::vector<std::int64_t> file_rows;
  std::vector<std::vector<std::int64_t>> local(rows.size());
  for (std::size_t a = 0; a < rows.size(); ++a)
    for (const std::int64_t i : rows[a]) {
      local[a].push_back(static_cast<std::int64_t>(file_rows.size()));
      file_rows.push_back(file_rows_[static_cast<std::size_t>(i)]);
    }
  const std::vector<Example> examples = reader_->read(file_rows, /*collective=*/false);
  for (const auto& l : local) out.push_back(collate(examples, l, decoder_only_));
  return out;
}

void TrainLoader::submit_next() {
  auto rows = sampler_->step_rows(cursor_.plan_next(epoch_steps_, *sampler_), rank_);
  prefetch_->submit([this, rows = std::move(rows)] { return fetch(rows); });
}

std::vector<Batch> TrainLoader::next_step() {
  std::vector<Batch> out = prefetch_->take();
  if (cursor_.advance()) {  // the sampler already plans this epoch (submit_next moved it)
    epoch_steps_ = sampler_->steps();
    padding_ = sampler_->padding_fraction();
  }
  submit_next();
  return out;
}

void TrainLoader::restore(const State& s) {
  TH_CHECK(s.epoch >= 0 && s.step_in_epoch >= 0, "sampler state (epoch " + std::to_string(s.epoch) + ", step " +
                                                      std::to_string(s.step_in_epoch) + ") is negative");
  prefetch_->discard();
  cursor_.restore(s, *sampler_);
  epoch_steps_ = sampler_->steps();
  padding_ = sampler_->padding_fraction();
  submit_next();
}

std::vector<Batch> TrainLoader::valid_batches() const {
  std::vector<Batch> out;
  for (const auto& rows : valid_rows_) out.push_back(collate(valid_, rows, decoder_only_));
  return out;
}

}  // namespace th
