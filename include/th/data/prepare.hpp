#pragma once
// task = 'prepare': corpus -> normalized pairs -> train/valid/test split by key hash -> joint
// SentencePiece model (trained on the training split) -> one HDF5 dataset per split
// (docs/data-format.md).
//
// Outputs: data%train_file, data%valid_file, data%test_file where set, else
// <run%output_dir>/{train,valid,test}.h5; and <run%output_dir>/sentencepiece.model (the same
// model the datasets embed, for tools that want a file).
#include <cstdint>
#include <string>

#include "th/config/config.hpp"
#include "th/parallel/comm.hpp"

namespace th {

struct PrepareSummary {
  std::int64_t records = 0, pairs = 0, skipped_empty = 0, skipped_missing = 0;
  std::int64_t split_pairs[3] = {0, 0, 0};       // train, valid, test
  std::int64_t split_tokens[3] = {0, 0, 0};      // source + target tokens
  std::string files[3];
  int vocab_size = 0;
  double read_s = 0, tokenizer_s = 0, write_s = 0, total_s = 0;
};

// The whole task on the calling rank alone (no communication). InputError for bad input.
PrepareSummary prepare_datasets(const Config& cfg);

// The task for the driver. Collective: rank 0 does the work while the other ranks wait without
// spinning; a failure is decided on rank 0 and raised as the same InputError on every rank.
// Monolingual text sources ('text:', 'jsonl:', 'bible:MODULE') go to run_prepare_text.
void run_prepare(const Config& cfg, Comm& comm);

// A language model's text datasets (docs/data-format.md, "Text datasets"), streamed: rank 0
// reads the corpus once (split by a hash of each document, a bounded sample of the training
// split for SentencePiece), then every rank encodes its share of the documents and writes its
// ranges of each split's file with parallel HDF5. Collective; the files do not depend on the
// number of ranks.
struct TextPrepareSummary {
  std::int64_t documents = 0, skipped_empty = 0, sample_sentences = 0;
  std::int64_t split_documents[3] = {0, 0, 0}, split_tokens[3] = {0, 0, 0};
  std::string files[3];
  int vocab_size = 0;
  double read_s = 0, tokenizer_s = 0, encode_s = 0, write_s = 0, total_s = 0;  // encode, write: the slowest rank's
  double tokens_per_s_per_rank = 0;  // encode + write, the slowest rank's own tokens / its time
};
TextPrepareSummary prepare_text_datasets(const Config& cfg, Comm& comm);
void run_prepare_text(const Config& cfg, Comm& comm);

}  // namespace th
