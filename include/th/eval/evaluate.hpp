#pragma once
// Evaluation of a trained model: the held-out loss (negative log-likelihood per target token,
// without label smoothing), perplexity and token accuracy of teacher-forced batches, and the
// translation of sentences (greedy or beam search with the KV cache), both data-parallel.
// Tasks 'evaluate' and 'translate' (th/train/tasks.hpp) are built from these pieces.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "th/config/config.hpp"
#include "th/data/batching.hpp"
#include "th/model/decoding.hpp"
#include "th/model/teacher_forced.hpp"
#include "th/model/transformer.hpp"
#include "th/parallel/comm.hpp"

namespace th {

// The model of the deck with the weights of a checkpoint: checkpoint%resume names it ('auto': the
// newest that verifies in the run's checkpoint folder). InputError when there is none, and when
// the checkpoint's tokenizer is not the one of the data it is used with (`data_what` names that
// data, of tokenizer fingerprint `data_fingerprint`: th/data/dataset_h5.hpp). Collective.
struct LoadedModel {
  std::unique_ptr<Transformer<float>> model;
  std::string path;
  std::int64_t step = 0;
};
LoadedModel load_trained_model(const Config& cfg, Comm& comm, int vocab_size, const std::string& data_what,
                               const std::string& data_fingerprint);

// Text <-> ids: the SentencePiece model of the dataset, or (synthetic data) the ids written as
// decimal numbers separated by spaces.
class TextCodec {
 public:
  virtual ~TextCodec() = default;
  virtual std::vector<int> encode(const std::string& text) const = 0;
  virtual std::string decode(const std::vector<int>& ids) const = 0;
};
std::unique_ptr<TextCodec> make_codec(const std::string& sentencepiece_model, const std::string& what);

struct TranslateOptions {
  DecodeOptions decode;
  int batch_sentences = 32;  // sentences decoded together (sorted by length first)
};

// Translates this rank's sources (ids); the result is in the order given. Sentences are sorted by
// length and decoded in batches of options.batch_sentences.
std::vector<Hypothesis> translate_ids(Transformer<float>& model, const std::vector<std::vector<int>>& sources,
                                      const TranslateOptions& options);

// Rank r's contiguous share [first, last) of n items (the first n % size ranks get one more), so
// concatenating every rank's results in rank order gives input order.
std::pair<std::int64_t, std::int64_t> block_share(std::int64_t n, int rank, int size);

// Every rank's lines gathered on rank 0 in rank order (other ranks get an empty vector).
std::vector<std::string> gather_lines(Comm& comm, const std::vector<std::string>& mine);

}  // namespace th
