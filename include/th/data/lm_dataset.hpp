#pragma once
// The text dataset of a language model (task='prepare' from 'text:', 'jsonl:' or 'bible:MODULE'
// sources), one file per split, and its parallel reader. Schema: docs/data-format.md ("Text
// datasets"). In short: /tokens (int32) is the split's token stream, every document followed by
// EOS; /doc_offsets (int64, documents + 1) where each document starts (its EOS is its last
// token); /tokenizer/model the SentencePiece model; counts and provenance as root attributes.
//
// Writing is collective: every rank of the prepare job encodes its share of the documents into
// spill files, then each rank writes its own ranges of the file through MPI-IO (parallel HDF5)
// at offsets agreed by one all-reduce; the file is the same whatever the number of ranks.
// Reading: every rank opens the file with MPI-IO and reads only the token spans of its own
// blocks (independent reads from the prefetch thread, or collective ones).
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "th/parallel/comm.hpp"

namespace th {

constexpr const char* kLmDatasetFormat = "torch-handle-lm-dataset";
constexpr std::int64_t kLmDatasetFormatVersion = 1;

// Attributes written with every split (the same on every rank).
struct LmProvenance {
  std::string split;            // train, valid, test
  std::string tokenizer_model;  // serialized SentencePiece ModelProto
  std::int64_t vocab_size = 0;
  std::string source;           // prepare%source
  std::string documents;        // how documents were delimited (text_documents, or 'chapter', 'line')
  std::string spm_type;         // unigram, bpe
  std::string split_key;        // what the split hash is taken of
  double valid_fraction = 0, test_fraction = 0;
  std::int64_t corpus_documents = 0, skipped_empty = 0;  // documents read, empty ones skipped (all splits)
  std::string created_by;
  std::string deck;
};

// One rank's part of one split: spill files written in document order (native int32 tokens,
// documents with their EOS back to back; native int64 end offset of each document in the part).
struct LmSplitPart {
  std::string tokens_path, ends_path;
  std::int64_t tokens = 0, documents = 0, text_bytes = 0;
};

// Collective over comm: writes `path` holding every rank's part in rank order. Every rank learns
// of a failure on any rank (same th::Error everywhere) after the file is closed.
void write_lm_dataset(const std::string& path, Comm& comm, const LmSplitPart& mine, const LmProvenance& prov);

struct LmDatasetInfo {
  std::string path, split, source, tokenizer_fingerprint;
  std::int64_t documents = 0, tokens = 0, vocab_size = 0, text_bytes = 0;
};

// The root attribute `format` of an HDF5 file ('' when the file cannot be read or has none):
// tells a text dataset from a pair dataset (kDatasetFormat) for a clear error.
std::string dataset_format_of(const std::string& path);

// Checks the file on the calling rank alone (serial driver): HDF5, format and version, datasets
// with their types and lengths, document offsets from 0 to the token count, never going back
// (read in chunks). InputError naming the file.
LmDatasetInfo inspect_lm_dataset(const std::string& path);

class LmDatasetReader {
 public:
  // Collective: rank 0 inspects the file and every rank gets its verdict (the same InputError
  // everywhere), then every rank opens it with MPI-IO and reads the attributes and tokenizer.
  LmDatasetReader(const std::string& path, Comm& comm);
  ~LmDatasetReader();  // collective (closes the MPI-IO file)
  LmDatasetReader(const LmDatasetReader&) = delete;
  LmDatasetReader& operator=(const LmDatasetReader&) = delete;

  const LmDatasetInfo& info() const;
  const std::string& tokenizer_model() const;

  // The tokens of each span [first, first + count) of the stream, in the order given (spans may
  // overlap). collective = true: every rank of comm calls together (any span count, also none).
  // Throws th::Error on an HDF5 failure or a token id outside [0, vocab_size).
  std::vector<std::vector<int>> read_spans(const std::vector<std::pair<std::int64_t, std::int64_t>>& spans,
                                           bool collective);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace th
