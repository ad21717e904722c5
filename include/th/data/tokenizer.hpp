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
  std::string model_type = "unigram";  // prepare%spm_type: unigram or bpe
  // The trainer samples this many sentences when given more (prepare%spm_sample_sentences).
  int input_sentence_size = 4000000;
  // Soft limit: a corpus too small for vocab_size gets fewer pieces instead of an error.
  bool hard_vocab_limit = false;
};

// Trains a unigram (or BPE) model on the sentences with ids pad 0, unk 1, bos 2, eos 3 (SpecialTokens)
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
  // The UTF-8 bytes of text each id stands for (per-byte perplexity): the piece's bytes with the
  // word-boundary mark U+2581 counted as the one space it stands for; unknown and byte pieces 1;
  // pad, BOS and EOS 0. A document's ids then stand for its normalized text plus one byte (the
  // mark SentencePiece puts before the first word, which stands for the break between documents).
  std::vector<float> piece_bytes() const;

 private:
  std::unique_ptr<sentencepiece::SentencePieceProcessor> sp_;
  std::string what_;
};

// Encodes whitespace-normalized text (single spaces, no leading or trailing one) word by word
// through a cache: with SentencePiece's split_by_whitespace (how train_sentencepiece trains) no
// piece holds a word boundary inside, so a text's ids are its words' ids back to back, and each
// distinct word is segmented once. Makes prepare's encode stage several times faster on natural
// text (tests/unit/test_text_prepare.cpp checks it against Tokenizer::encode).
class CachedEncoder {
 public:
  // max_words: distinct words kept (later new words are encoded without being kept).
  explicit CachedEncoder(const Tokenizer& tok, std::size_t max_words = 1 << 19);
  ~CachedEncoder();
  CachedEncoder(const CachedEncoder&) = delete;
  CachedEncoder& operator=(const CachedEncoder&) = delete;
  // Appends the ids of `text` to out.
  void encode(const std::string& text, std::vector<int>& out);
  std::size_t words_cached() const;

 private:
  struct Cache;
  const Tokenizer& tok_;
  std::unique_ptr<Cache> cache_;
};

}  // namespace th
