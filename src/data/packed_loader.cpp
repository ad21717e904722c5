#include "th/data/packed_loader.hpp"

#include <algorithm>
#include <cstdio>

#include "th/core/error.hpp"
#include "th/data/dataset_h5.hpp"
#include "th/data/lm_dataset.hpp"
#include "th/data/loader.hpp"
#include "th/data/prefetcher.hpp"
#include "th/data/tokenizer.hpp"

namespace th {

int lm_vocab_size(const Config& cfg, std::int64_t dataset_vocab, const std::string& key, const std::string& path) {
  if (cfg.model.vocab_size == 0) return static_cast<int>(dataset_vocab);
  if (cfg.model.vocab_size < dataset_vocab)
    throw InputError(key + " = '" + path + "' was made with a SentencePiece vocabulary of " +
                     std::to_string(dataset_vocab) + " pieces, more than model%vocab_size = " +
                     std::to_string(cfg.model.vocab_size) + "; set model%vocab_size = 0 (take it from the dataset)");
  return cfg.model.vocab_size;
}

std::vector<std::pair<std::int64_t, std::int64_t>> evaluation_spans(std::int64_t n, int L) {
  std::vector<std::pair<std::int64_t, std::int64_t>> spans;
  const std::int64_t whole = whole_blocks(n, L);
  for (std::int64_t i = 0; i < whole; ++i) spans.push_back({i * L, L + 1});
  const std::int64_t tail = n - 1 - whole * L;  // predictions left over
  if (tail > 0) spans.push_back({whole * L, tail + 1});
  return spans;
}

std::vector<Batch> evaluation_batches(LmDatasetReader& reader, int L, int per_batch, bool document_mask, int rank,
                                      int world) {
  const auto spans = evaluation_spans(reader.info().tokens, L);
  // Micro-batches in stream order: runs of per_batch whole blocks, the tail alone.
  std::vector<std::vector<std::size_t>> batches;
  for (std::size_t i = 0; i < spans.size(); ++i) {
    const bool tail = spans[i].second != L + 1;
    if (batches.empty() || tail || static_cast<int>(batches.back().size()) == per_batch ||
        spans[batches.back().back()].second != L + 1)
      batches.emplace_back();
    batches.back().push_back(i);
  }
  std::vector<std::pair<std::int64_t, std::int64_t>> mine;
  std::vector<std::size_t> sizes;
  for (std::size_t k = static_cast<std::size_t>(rank); k < batches.size(); k += static_cast<std::size_t>(world)) {
    for (const std::size_t i : batches[k]) mine.push_back(spans[i]);
    sizes.push_back(batches[k].size());
  }
  const auto tokens = reader.read_spans(mine, /*collective=*/true);
  std::vector<Batch> out;
  std::size_t at = 0;
  for (const std::size_t n : sizes) {
    out.push_back(packed_batch({tokens.begin() + static_cast<std::ptrdiff_t>(at),
                                tokens.begin() + static_cast<std::ptrdiff_t>(at + n)},
                               document_mask));
    at += n;
  }
  return out;
}

PackedLoader::PackedLoader(const Config& cfg, Comm& comm)
    : rank_(comm.rank()), block_len_(cfg.model.max_len), document_mask_(cfg.data.document_mask) {
  if (cfg.data.synthetic != "none")
    throw InputError("data%packing = 'concat' reads a text dataset, but data%synthetic = '" + cfg.data.synthetic +
                     "'; set data%synthetic = 'none'");
  if (cfg.data.train_file.empty())
    throw InputError("data%packing = 'concat' needs data%train_file, a text dataset made by run%task = 'prepare'");
  reader_ = std::make_unique<LmDatasetReader>(cfg.data.train_file, comm);
  const LmDatasetInfo& info = reader_->info();
  vocab_ = lm_vocab_size(cfg, info.vocab_size, "data%train_file", info.path);
  tokenizer_ = reader_->tokenizer_model();
  token_bytes_ = Tokenizer(tokenizer_, info.path).piece_bytes();
  token_bytes_.resize(static_cast<std::size_t>(vocab_), 0.0f);
  PackedSamplerOptions opt;
  opt.block_len = block_len_;
  opt.blocks_per_micro = blocks_per_micro_batch(cfg.data.max_tokens, block_len_);
  opt.seed = static_cast<std::uint64_t>(cfg.run.seed);
  opt.shuffle = cfg.data.shuffle;
  opt.world = comm.size();
  opt.accum = cfg.optim.grad_accum;
  sampler_ = std::make_unique<PackedSampler>(whole_blocks(info.tokens, block_len_), opt);
  sampler_->set_epoch(0);
  if (sampler_->steps() == 0)
    throw InputError("data%train_file = '" + info.path + "' gives no optimizer step: " +
                     std::to_string(sampler_->blocks()) + " blocks of model%max_len = " + std::to_string(block_len_) +
                     " tokens, and a step takes " + std::to_string(opt.blocks_per_micro) + " block(s) per micro-batch x " +
                     std::to_string(opt.world) + " ranks x optim%grad_accum = " + std::to_string(opt.accum) +
                     "; lower data%max_tokens, model%max_len or grad_accum, or add text");
  if (!cfg.data.valid_file.empty()) {
    LmDatasetReader valid(cfg.data.valid_file, comm);
    if (valid.info().tokenizer_fingerprint != info.tokenizer_fingerprint)
      throw InputError("data%valid_file = '" + valid.info().path + "' was made with another SentencePiece model than "
                       "data%train_file = '" + info.path + "' (tokenizer_fingerprint " +
                       valid.info().tokenizer_fingerprint + " vs " + info.tokenizer_fingerprint +
                       "); make both with one run of task='prepare'");
    valid_ = evaluation_batches(valid, block_len_, opt.blocks_per_micro, document_mask_, comm.rank(), comm.size());
  }
  if (rank_ == 0) {
    std::printf("data: %lld tokens in %lld documents, %lld blocks of %d tokens (%d per micro-batch, no padding%s), "
                "vocabulary %d; %lld steps per epoch\n",
                static_cast<long long>(info.tokens), static_cast<long long>(info.documents),
                static_cast<long long>(sampler_->blocks()), block_len_, opt.blocks_per_micro,
                document_mask_ ? ", document mask" : "", vocab_, static_cast<long long>(sampler_->steps()));
    std::fflush(stdout);
  }
  prefetch_ = std::make_unique<Prefetcher>(DatasetReader::background_reads_allowed());
  submit_next();
}

PackedLoader::~PackedLoader() = default;

std::vector<Batch> PackedLoader::fetch(const std::vector<std::vector<std::int64_t>>& blocks) {
  // One read for the whole step: every block of every micro-batch, L + 1 tokens each.
  std::vector<std::pair<std::int64_t, std::int64_t>> spans;
  for (const auto& micro : blocks)
    for (const std::int64_t b : micro) spans.push_back({b * block_len_, block_len_ + 1});
  const auto tokens = reader_->read_spans(spans, /*collective=*/false);
  std::vector<Batch> out;
  std::size_t at = 0;
  for (const auto& micro : blocks) {
    out.push_back(packed_batch({tokens.begin() + static_cast<std::ptrdiff_t>(at),
                                tokens.begin() + static_cast<std::ptrdiff_t>(at + micro.size())},
                               document_mask_));
    at += micro.size();
  }
  return out;
}

void PackedLoader::submit_next() {
  auto blocks = sampler_->step_blocks(cursor_.plan_next(sampler_->steps(), *sampler_), rank_);
  prefetch_->submit([this, blocks = std::move(blocks)] { return fetch(blocks); });
}

std::vector<Batch> PackedLoader::next_step() {
  std::vector<Batch> out = prefetch_->take();
  cursor_.advance();
  submit_next();
  return out;
}

void PackedLoader::restore(const State& s) {
  TH_CHECK(s.epoch >= 0 && s.step_in_epoch >= 0, "sampler state is negative");
  prefetch_->discard();
  cursor_.restore(s, *sampler_);
  submit_next();
}

std::unique_ptr<BatchSource> make_batch_source(const Config& cfg, Comm& comm) {
  if (parse_packing(cfg.data.packing) == Packing::Concat) return std::make_unique<PackedLoader>(cfg, comm);
  return std::make_unique<TrainLoader>(cfg, comm);
}

}  // namespace th
