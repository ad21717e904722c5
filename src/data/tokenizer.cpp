#include "th/data/tokenizer.hpp"

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

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
      {"model_type", "unigram"},
      {"vocab_size", std::to_string(opt.vocab_size)},
      {"hard_vocab_limit", opt.hard_vocab_limit ? "true" : "false"},
      {"character_coverage", "1.0"},
      {"pad_id", std::to_string(SpecialTokens::pad)},
      {"unk_id", std::to_string(SpecialTokens::unk)},
      {"bos_id", std::to_string(SpecialTokens::bos)},
      {"eos_id", std::to_string(SpecialTokens::eos)},
      {"num_threads", std::to_string(opt.threads > 0 ? opt.threads : 1)},
      // Up to 4M sentences, sampled if there are more: enough for a 32k vocabulary.
      {"input_sentence_size", "4000000"},
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

}  // namespace th
