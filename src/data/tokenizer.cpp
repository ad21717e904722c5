#include "th/data/tokenizer.hpp"

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <string_view>
#include <unordered_map>

#include "th/core/error.hpp"
#include "th/data/batching.hpp"

namespace th {

namespace {
// Feeds the sentences to the trainer from memory (no temporary file).
class VectorIterator : public sentencepiece::SentenceIterator {
 public:
  explicit VectorIterator(const std::vector<std::string>& v) : v_(v) {}
  bool done() const override { return i_ >= v_.size(); }
  void Next() override { ++i_; }
  const std::string& value() const override { return v_[i_]; }
  sentencepiece::util::Status status() const override { return {}; }

 private:
  const std::vector<std::string>& v_;
  std::size_t i_ = 0;
};
}  // namespace

std::string train_sentencepiece(const std::vector<std::string>& sentences, const TokenizerOptions& opt) {
  if (sentences.empty()) throw InputError("SentencePiece: no training sentence");
  const std::unordered_map<std::string, std::string> args = {
      {"model_type", opt.model_type},
      {"vocab_size", std::to_string(opt.vocab_size)},
      {"hard_vocab_limit", opt.hard_vocab_limit ? "true" : "false"},
      {"character_coverage", "1.0"},
      {"pad_id", std::to_string(SpecialTokens::pad)},
      {"unk_id", std::to_string(SpecialTokens::unk)},
      {"bos_id", std::to_string(SpecialTokens::bos)},
      {"eos_id", std::to_string(SpecialTokens::eos)},
      {"num_threads", std::to_string(opt.threads > 0 ? opt.threads : 1)},
      // Sampled down to this many sentences if there are more (4M are enough for a 32k vocabulary).
      {"input_sentence_size", std::to_string(opt.input_sentence_size)},
      {"shuffle_input_sentence", "true"},
      {"minloglevel", "2"},  // the trainer's progress log would drown the run's own output
  };
  VectorIterator it(sentences);
  std::string model;
  const auto status = sentencepiece::SentencePieceTrainer::Train(args, &it, &model);
  if (!status.ok()) throw InputError("SentencePiece training failed: " + status.ToString());
  return model;
}

Tokenizer::Tokenizer(const std::string& serialized_model, const std::string& what)
    : sp_(std::make_unique<sentencepiece::SentencePieceProcessor>()), what_(what) {
  const auto status = sp_->LoadFromSerializedProto(serialized_model);
  if (!status.ok()) throw InputError(what + ": not a SentencePiece model: " + status.ToString());
  if (sp_->pad_id() != SpecialTokens::pad || sp_->unk_id() != SpecialTokens::unk || sp_->bos_id() != SpecialTokens::bos ||
      sp_->eos_id() != SpecialTokens::eos)
    throw InputError(what + ": the SentencePiece model's special ids (pad " + std::to_string(sp_->pad_id()) + ", unk " +
                     std::to_string(sp_->unk_id()) + ", bos " + std::to_string(sp_->bos_id()) + ", eos " +
                     std::to_string(sp_->eos_id()) + ") are not pad 0, unk 1, bos 2, eos 3");
}

Tokenizer::~Tokenizer() = default;

int Tokenizer::vocab_size() const { return sp_->GetPieceSize(); }

std::vector<int> Tokenizer::encode(const std::string& text) const {
  std::vector<int> ids;
  const auto status = sp_->Encode(text, &ids);
  if (!status.ok()) throw Error(what_ + ": SentencePiece encode failed: " + status.ToString());
  return ids;
}

std::string Tokenizer::decode(const std::vector<int>& ids) const {
  std::string text;
  const auto status = sp_->Decode(ids, &text);
  if (!status.ok()) throw Error(what_ + ": SentencePiece decode failed: " + status.ToString());
  return text;
}

std::vector<float> Tokenizer::piece_bytes() const {
  const int V = vocab_size();
  std::vector<float> bytes(static_cast<std::size_t>(V), 0.0f);
  const std::string mark = "\xE2\x96\x81";  // U+2581, SentencePiece's space
  for (int id = 0; id < V; ++id) {
    float b = 0;
    if (sp_->IsUnknown(id) || sp_->IsByte(id)) {
      b = 1;
    } else if (!sp_->IsControl(id)) {
      const std::string piece = sp_->IdToPiece(id);
      std::size_t marks = 0;
      for (std::size_t at = piece.find(mark); at != std::string::npos; at = piece.find(mark, at + mark.size())) ++marks;
      b = static_cast<float>(piece.size() - 2 * marks);
    }
    bytes[static_cast<std::size_t>(id)] = b;
  }
  return bytes;
}

struct CachedEncoder::Cache {
  std::unordered_map<std::string, std::pair<std::uint32_t, std::uint32_t>> where;  // word -> [first, count) in ids
  std::vector<int> ids;
  std::size_t max_words = 0;
};

CachedEncoder::CachedEncoder(const Tokenizer& tok, std::size_t max_words) : tok_(tok), cache_(std::make_unique<Cache>()) {
  cache_->max_words = max_words;
  cache_->where.reserve(std::min<std::size_t>(max_words, 1 << 16));
}

CachedEncoder::~CachedEncoder() = default;

std::size_t CachedEncoder::words_cached() const { return cache_->where.size(); }

void CachedEncoder::encode(const std::string& text, std::vector<int>& out) {
  Cache& c = *cache_;
  std::string word;
  std::size_t start = 0;
  while (start < text.size()) {
    std::size_t end = text.find(' ', start);
    if (end == std::string::npos) end = text.size();
    word.assign(text, start, end - start);
    start = end + 1;
    if (word.empty()) continue;
    const auto it = c.where.find(word);
    if (it != c.where.end()) {
      out.insert(out.end(), c.ids.begin() + it->second.first, c.ids.begin() + it->second.first + it->second.second);
      continue;
    }
    const std::vector<int> ids = tok_.encode(word);
    out.insert(out.end(), ids.begin(), ids.end());
    if (c.where.size() < c.max_words && word.size() <= 64) {
      c.where.emplace(word, std::make_pair(static_cast<std::uint32_t>(c.ids.size()), static_cast<std::uint32_t>(ids.size())));
      c.ids.insert(c.ids.end(), ids.begin(), ids.end());
    }
  }
}

}  // namespace th
