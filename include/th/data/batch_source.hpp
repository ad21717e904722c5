#pragma once
// What the trainer trains on: optimizer steps of this rank's micro-batches, the validation share,
// the sampler position (for checkpoints). Two sources: TrainLoader (examples padded into batches:
// pairs, or synthetic data) and PackedLoader (a language model's token stream cut into blocks,
// data%packing = 'concat'). Both follow the elastic rule: the global batches of a step depend on
// the ranks and grad_accum only through their product.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "th/config/config.hpp"
#include "th/data/dataset_h5.hpp"
#include "th/model/transformer.hpp"
#include "th/parallel/comm.hpp"

namespace th {

class BatchSource {
 public:
  // The epoch of the last step given and how many of its steps were given.
  struct State {
    std::int64_t epoch = 0, step_in_epoch = 0;
  };
  virtual ~BatchSource() = default;
  virtual int vocab_size() const = 0;
  virtual std::int64_t examples() const = 0;  // training examples in use (packed: blocks)
  virtual const char* example_name() const { return "training examples"; }
  virtual std::int64_t steps_per_epoch() const = 0;
  virtual std::vector<Batch> next_step() = 0;  // this rank's grad_accum micro-batches
  virtual State state() const = 0;
  // Continue with exactly the batches a run at that position would see (a step count past the
  // epoch's end counts as its end).
  virtual void restore(const State& s) = 0;
  virtual std::vector<Batch> valid_batches() const = 0;  // this rank's validation share
  virtual const std::string& tokenizer_model() const = 0;  // '' for synthetic data
  // The data's tokenizer identity (th/data/dataset_h5.hpp): the fingerprint of tokenizer_model(),
  // or kNoTokenizer for synthetic data. Checkpoints record it; resume, evaluate, translate and
  // generate compare it.
  virtual std::string tokenizer_fingerprint() const {
    return tokenizer_model().empty() ? std::string(kNoTokenizer) : th::tokenizer_fingerprint(tokenizer_model());
  }
  // UTF-8 bytes each token id stands for (per-byte perplexity), or empty when unknown.
  virtual const std::vector<float>& token_bytes() const {
    static const std::vector<float> none;
    return none;
  }
};

// TrainLoader, or PackedLoader with data%packing = 'concat'. Collective.
std::unique_ptr<BatchSource> make_batch_source(const Config& cfg, Comm& comm);

}  // namespace th
