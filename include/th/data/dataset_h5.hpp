#pragma once
// The dataset file made by task='prepare' (one per split) and its parallel reader. Schema:
// docs/data-format.md. In short: /src/tokens and /tgt/tokens hold every example's token ids
// back to back (int32, no BOS/EOS), /src/offsets and /tgt/offsets (int64, examples + 1) where
// each example starts, /key the stable key of each example, /tokenizer/model the serialized
// SentencePiece model (uint8), counts and provenance as attributes of the root group.
//
// Parallel reading rule: every rank opens the file with the MPI-IO driver. The offsets arrays
// (16 bytes per example) are read whole by every rank in one collective read, because the
// sampler plans batches from every example's length; the token arrays are never read whole:
// a rank reads only the rows of its own batches, as one hyperslab selection per array (the
// union of the rows' ranges, adjacent rows merged), independently from the prefetch thread or
// collectively when every rank reads at the same moment (the validation share).
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "th/data/batching.hpp"
#include "th/parallel/comm.hpp"

namespace th {

constexpr const char* kDatasetFormat = "torch-handle-dataset";
constexpr std::int64_t kDatasetFormatVersion = 1;

// The examples of one split, as prepare builds them.
struct DatasetContent {
  std::vector<std::string> keys;
  std::vector<std::int32_t> src_tokens, tgt_tokens;
  std::vector<std::int64_t> src_offsets{0}, tgt_offsets{0};
  void add(const std::string& key, const std::vector<int>& src, const std::vector<int>& tgt);
  std::int64_t size() const { return static_cast<std::int64_t>(keys.size()); }
};

// Attributes written with every split.
struct DatasetProvenance {
  std::string split;            // train, valid, test
  std::string tokenizer_model;  // serialized SentencePiece ModelProto
  std::int64_t vocab_size = 0;
  std::string source;           // prepare%source
  std::string split_key;        // what the split hash is taken of
  double valid_fraction = 0, test_fraction = 0;
  std::int64_t corpus_records = 0, corpus_pairs = 0, skipped_empty = 0, skipped_missing = 0;
  std::string created_by;       // program and version
  std::string deck;             // the resolved deck of the prepare run
};

// Writes one file with the serial driver (one rank). Throws th::Error on an HDF5 failure.
void write_dataset(const std::string& path, const DatasetContent& content, const DatasetProvenance& prov);

struct DatasetInfo {
  std::string path, split, source, tokenizer_fingerprint;
  std::int64_t examples = 0, src_tokens = 0, tgt_tokens = 0, vocab_size = 0;
};

// The tokenizer is part of the data's identity: the same token id means another piece under
// another SentencePiece model, even of the same vocabulary size. Fingerprints:
//   16 hex digits  FNV-1a 64 of the serialized model (dataset root attribute tokenizer_fingerprint;
//                  the checkpoints of a run record the one of their training data)
//   kNoTokenizer   data without a tokenizer (data%synthetic ids)
//   ""             a checkpoint written before fingerprints were recorded: unknown
constexpr const char* kNoTokenizer = "none";
std::string tokenizer_fingerprint(const std::string& sentencepiece_model);
// "" when a checkpoint (its path and fingerprint) may be used with data of `data_fingerprint`
// (`data_what` names it: "data%test_file = '...'"); else the problem, naming both fingerprints.
// An unknown checkpoint fingerprint is accepted only with data that has no tokenizer either.
std::string tokenizer_mismatch(const std::string& checkpoint_path, const std::string& checkpoint_fingerprint,
                               const std::string& data_what, const std::string& data_fingerprint);

// Opens the file on the calling rank alone (serial driver) and checks it is a dataset of this
// format: HDF5 at all, not truncated, the format attribute and version, every dataset with its
// type and shape, offsets consistent with the token arrays. Token values are checked when read.
// Throws InputError naming the file.
DatasetInfo inspect_dataset(const std::string& path);

class DatasetReader {
 public:
  // Collective over comm: rank 0 inspects the file first and every rank gets its verdict (a bad
  // file is the same InputError on every rank, never a hang in MPI-IO); then every rank opens
  // it with the MPI-IO driver and reads the attributes, the offsets and the tokenizer model.
  DatasetReader(const std::string& path, Comm& comm);
  // Collective (closes the MPI-IO file), except while an exception unwinds: the file is then left
  // open (HDF5 closes it when MPI finalizes), since the other ranks may never close theirs.
  ~DatasetReader();
  DatasetReader(const DatasetReader&) = delete;
  DatasetReader& operator=(const DatasetReader&) = delete;

  const DatasetInfo& info() const;
  const std::vector<ExampleLength>& lengths() const;
  const std::string& tokenizer_model() const;

  // The examples of these rows, in the order given (rows must be distinct). collective = true:
  // every rank of comm calls at the same time (any row count, also none); false: this rank
  // alone (the prefetch thread). Throws th::Error on an HDF5 failure, a token id outside
  // [0, vocab_size) (naming the file, the example's row and the id), or a file that changed
  // since it was opened (truncated, rewritten or replaced: its size, modification time or
  // inode differ), on the rank that finds it.
  std::vector<Example> read(const std::vector<std::int64_t>& rows, bool collective);

  // Whether read(..., false) may run on a thread other than the one that initialised MPI
  // (MPI_THREAD_MULTIPLE granted).
  static bool background_reads_allowed();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace th
