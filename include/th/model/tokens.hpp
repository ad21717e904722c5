#pragma once
// The reserved token ids. They belong to the model's vocabulary contract: the data layer writes
// them into batches, the SentencePiece model is trained with the same ids, and decoding starts
// from bos and stops at eos.

namespace th {

struct SpecialTokens {
  static constexpr int pad = 0, unk = 1, bos = 2, eos = 3, first_regular = 4;
};

}  // namespace th
