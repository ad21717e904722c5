#pragma once
// The training data as the trainer sees it: optimizer steps of micro-batches for this rank.
//
// Data: data%synthetic ('copy', 'reverse': generated in memory) or, with data%synthetic = 'none',
// the HDF5 datasets of task='prepare' (data%train_file, data%valid_file), read in parallel:
// every rank reads the lengths of all examples and the tokens of its own batches only
// (th/data/dataset_h5.hpp). Examples longer than model%max_len are skipped (and counted).
//
// Elastic rule (th/data/sampler.hpp): an epoch is a list of micro-batches that depends only on
// (seed, epoch, data, max_tokens, world * grad_accum); optimizer step s consumes the
// G = world * grad_accum micro-batches s*G .. s*G+G-1, and micro-batch s*G + a*world + r goes to
// rank r as its a-th accumulation micro-batch. So 4 ranks x accum 1, 2 x 2 and 1 x 4 put the same
// examples into the same steps.
//
// Prefetching: the next step's micro-batches are read, padded and masked on a background thread
// while the current step computes (th/data/prefetcher.hpp).
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "th/config/config.hpp"
#include "th/data/batch_source.hpp"
#include "th/data/step_cursor.hpp"
#include "th/data/batching.hpp"
#include "th/parallel/comm.hpp"

namespace th {

class DatasetReader;
class DistributedSampler;
class Prefetcher;

class TrainLoader final : public BatchSource {
 public:
  // Collective over comm (the dataset files are opened with MPI-IO). InputError, identical on
  // every rank, for a bad file or a vocabulary other than model%vocab_size (when that is > 0;
  // when it is 0 the vocabulary comes from the dataset).
  TrainLoader(const Config& cfg, Comm& comm);
  ~TrainLoader() override;  // collective when it holds a dataset file
  int vocab_size() const override { return vocab_; }
  std::int64_t examples() const override;  // training examples in use
  // Optimizer steps of the first epoch (later epochs may differ by a few: packing follows the
  // shuffle; next_step() moves to the next epoch when the current one is used up).
  std::int64_t steps_per_epoch() const override { return steps_per_epoch_; }

  // The grad_accum micro-batches of this rank for the next optimizer step (crosses epochs).
  std::vector<Batch> next_step() override;

  // Where the sampler stands: the epoch of the last step given and how many steps of it were
  // given. restore() continues with exactly the batches it would have given (a step count past
  // the epoch's end counts as its end).
  using State = BatchSource::State;
  State state() const override { return cursor_.state(); }
  void restore(const State& s) override;

  // This rank's share of the validation set (rank r takes batches r, r + world, ...); empty
  // when there is no validation file.
  std::vector<Batch> valid_batches() const override;

  double padding_fraction() const { return padding_; }  // of the current epoch's micro-batches
  std::int64_t skipped_too_long() const { return too_long_; }
  // The dataset's serialized SentencePiece model ('' for synthetic data), and its fingerprint
  // (th/data/dataset_h5.hpp; kNoTokenizer for synthetic data).
  const std::string& tokenizer_model() const override { return tokenizer_; }
  std::string tokenizer_fingerprint() const override { return fingerprint_; }
  bool prefetching_in_background() const;

 private:
  void open_datasets(Comm& comm);
  void submit_next();
  std::vector<Batch> fetch(const std::vector<std::vector<std::int64_t>>& rows);  // on the prefetch thread

  const Config cfg_;  // a copy: callers (tests) may pass a temporary
  int rank_, world_, accum_;
  bool decoder_only_;
  int vocab_ = 0;
  std::vector<Example> train_;  // synthetic data only (files are read batch by batch)
  std::vector<Example> valid_;  // synthetic: every example; files: this rank's share
  std::vector<std::vector<std::int64_t>> valid_rows_;  // this rank's validation batches, into valid_
  std::unique_ptr<DatasetReader> reader_;
  std::vector<std::int64_t> file_rows_;  // sampler index -> row of the training file
  std::unique_ptr<DistributedSampler> sampler_;
  std::string tokenizer_, fingerprint_;
  std::int64_t steps_per_epoch_ = 0, epoch_steps_ = 0;  // of the first epoch, of the current one
  StepCursor cursor_;
  double padding_ = 0;
  std::int64_t too_long_ = 0;
  std::unique_ptr<Prefetcher> prefetch_;  // declared last: stops before the reader it uses closes
};

}  // namespace th
