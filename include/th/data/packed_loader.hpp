#pragma once
// The training data of a language model with data%packing = 'concat': the token streams of the
// text datasets (th/data/lm_dataset.hpp) cut into model%max_len blocks, sampled by the packed
// sampler's elastic rule (th/data/packing.hpp). Each rank reads only the token spans of its own
// blocks (MPI-IO, on the prefetch thread); the validation share is read once, collectively.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "th/data/batch_source.hpp"
#include "th/data/step_cursor.hpp"
#include "th/data/packing.hpp"

namespace th {

class LmDatasetReader;
class Prefetcher;

// The blocks of a stream for evaluation: every whole block, then the tail as one shorter block,
// so each token but the first is predicted once. Spans [first, count) of the stream (count =
// block length + 1), in stream order.
std::vector<std::pair<std::int64_t, std::int64_t>> evaluation_spans(std::int64_t stream_tokens, int L);

// This rank's evaluation batches of a stream: the spans dealt out in micro-batches of
// `per_batch` blocks (the tail alone), micro-batch k to rank k mod world. Collective (one
// collective read).
std::vector<Batch> evaluation_batches(LmDatasetReader& reader, int L, int per_batch, bool document_mask, int rank,
                                      int world);

class PackedLoader final : public BatchSource {
 public:
  // Collective. InputError, the same on every rank, for a bad file, a pair dataset, a vocabulary
  // larger than model%vocab_size, or too little data for one step.
  PackedLoader(const Config& cfg, Comm& comm);
  ~PackedLoader() override;  // collective (closes the training file)

  int vocab_size() const override { return vocab_; }
  std::int64_t examples() const override { return sampler_->blocks(); }
  const char* example_name() const override { return "blocks"; }
  std::int64_t steps_per_epoch() const override { return sampler_->steps(); }
  std::vector<Batch> next_step() override;
  State state() const override { return cursor_.state(); }
  void restore(const State& s) override;
  std::vector<Batch> valid_batches() const override { return valid_; }
  const std::string& tokenizer_model() const override { return tokenizer_; }
  const std::vector<float>& token_bytes() const override { return token_bytes_; }

 private:
  void submit_next();
  std::vector<Batch> fetch(const std::vector<std::vector<std::int64_t>>& blocks);  // prefetch thread

  int rank_, block_len_;
  bool document_mask_;
  int vocab_ = 0;
  std::string tokenizer_;
  std::vector<float> token_bytes_;
  std::unique_ptr<LmDatasetReader> reader_;
  std::unique_ptr<PackedSampler> sampler_;
  std::vector<Batch> valid_;
  StepCursor cursor_;
  std::unique_ptr<Prefetcher> prefetch_;  // declared last: stops before the reader it uses closes
};

// The vocabulary a text dataset gives the model: the dataset's, or model%vocab_size when that is
// larger (GPT-2's 50257 over a smaller tokenizer: the extra rows are never a target). InputError
// when model%vocab_size is set and smaller.
int lm_vocab_size(const Config& cfg, std::int64_t dataset_vocab, const std::string& key, const std::string& path);

}  // namespace th
