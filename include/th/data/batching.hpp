#pragma once
// Examples, token-budget batches with length bucketing, the distributed sampler rule, and the
// synthetic tasks (copy / reverse) that need no data files.
#include <cstdint>
#include <string>
#include <vector>

#include "th/model/transformer.hpp"

namespace th {

// Reserved token ids (the SentencePiece model is trained with the same ids).
struct SpecialTokens {
  static constexpr int pad = 0, unk = 1, bos = 2, eos = 3, first_regular = 4;
};

struct Example {
  std::vector<int> src, tgt;  // without BOS/EOS
};

// Encoder-decoder: src + EOS | BOS + tgt -> tgt + EOS. Decoder-only: one sequence
// src + EOS + tgt, fed as BOS + seq -> seq + EOS. Pads to the longest row.
Batch collate(const std::vector<Example>& data, const std::vector<std::int64_t>& rows, bool decoder_only);

// Positions a batch of these rows occupies, padding included (B * (S + T)).
std::int64_t padded_positions(const std::vector<Example>& data, const std::vector<std::int64_t>& rows,
                              bool decoder_only);

// One epoch's batches: order from (seed, epoch) when shuffling, sorted by length inside windows
// of 64 batches' worth of examples (bucketing keeps padding low), packed greedily under
// max_tokens padded positions, then the batch order shuffled again. Identical on every rank.
std::vector<std::vector<std::int64_t>> make_batches(const std::vector<Example>& data, std::int64_t max_tokens,
                                                    std::uint64_t seed, std::int64_t epoch, bool shuffle,
                                                    bool decoder_only);

// The distributed sampler rule: rank r takes batches r, r + world, ... and every rank gets the
// same count (floor(n / world)), so no rank waits in a collective for a batch that never comes.
std::vector<std::vector<std::int64_t>> shard_batches(const std::vector<std::vector<std::int64_t>>& all,
                                                     int rank, int world);

// Copy (tgt = src) or reverse (tgt = reversed src) over regular tokens [4, vocab).
std::vector<Example> make_synthetic(const std::string& kind, std::int64_t n, int min_len, int max_len,
                                    int vocab, std::uint64_t seed, std::uint64_t stream);

}  // namespace th
