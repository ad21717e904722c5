#pragma once
// The joint source+target SentencePiece tokenizer (library libsentencepiece-dev). Trained in
// memory and kept as its serialized model, which the dataset embeds, so a dataset file carries
// the exact tokenizer that made it.
#include <memory>
#include <string>
#include <vector>

namespace sentencepiece {
class SentencePieceProcessor;
}

namespace th {

struct TokenizerOptions {
  int vocab_size = 8000;
  int threads = 1;
  // Soft limit: a corpus too small for vocab_size gets fewer pieces instead of an error.
  bool hard_vocab_limit = false;
};

// Trains a unigram model on the sentences with ids pad 0, unk 1, bos 2, eos 3 (SpecialTokens)
// and character coverage 1.0 (every character of the corpus gets a piece: the Spanish accents
// and the typographic quotes of the WEB are not rare enough to drop). Returns the serialized
// ModelProto. InputError when SentencePiece refuses the input.
std::string train_sentencepiece(const std::vector<std::string>& sentences, const TokenizerOptions& opt);

class Tokenizer {
 public:
  // `what` names the model's origin in error messages (a dataset file, "prepare").
  Tokenizer(const std::string& serialized_model, const std::string& what);
  ~Tokenizer();
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

  int vocab_size() const;
  std::vector<int> encode(const std::string& text) const;
  std::string decode(const std::vector<int>& ids) const;

 private:
  std::unique_ptr<sentencepiece::SentencePieceProcessor> sp_;
  std::string what_;
};

}  // namespace th
