#pragma once
// Examples, token-budget batches with length bucketing, the distributed sampler rule, and the
// synthetic tasks (copy / reverse) that need no data files.
#include <cstdint>
#include <string>
#include <vector>

#include "th/model/tokens.hpp"
#include "th/model/transformer.hpp"

namespace th {

struct Example {
  std::vector<int> src, tgt;  // without BOS/EOS
};

// Token counts of one example (without BOS/EOS). Batching needs only these, so a rank can plan
// every batch of an epoch from the lengths alone and read just the token rows it will use.
struct ExampleLength {
  std::int32_t src = 0, tgt = 0;
};
std::vector<ExampleLength> lengths_of(const std::vector<Example>& data);

// Positions one example occupies on each side of a batch: encoder-decoder src + EOS and
// BOS + tgt; decoder-only no source side and BOS + src + EOS + tgt.
int source_positions(const ExampleLength& e, bool decoder_only);
int target_positions(const ExampleLength& e, bool decoder_only);
// Whether an example fits the model's positional table (model%max_len) on both sides.
bool fits_max_len(const ExampleLength& e, int max_len, bool decoder_only);

// Encoder-decoder: src + EOS | BOS + tgt -> tgt + EOS. Decoder-only: one sequence
// src + EOS + tgt, fed as BOS + seq -> seq + EOS. Pads to the longest row.
Batch collate(const std::vector<Example>& data, const std::vector<std::int64_t>& rows, bool decoder_only);

// Positions a batch of these rows occupies, padding included (B * (S + T)).
std::int64_t padded_positions(const std::vector<Example>& data, const std::vector<std::int64_t>& rows,
                              bool decoder_only);
std::int64_t padded_positions(const std::vector<ExampleLength>& lengths, const std::vector<std::int64_t>& rows,
                              bool decoder_only);
// Positions without padding (the sum of every row's own S + T).
std::int64_t real_positions(const std::vector<ExampleLength>& lengths, const std::vector<std::int64_t>& rows,
                            bool decoder_only);

// One epoch's batches: order from (seed, epoch) when shuffling, sorted by length (the longer
// side, then the sum) inside windows of 64 batches' worth of examples (bucketing keeps padding
// low), packed greedily under
// max_tokens padded positions, then the batch order shuffled again. Identical on every rank.
std::vector<std::vector<std::int64_t>> make_batches(const std::vector<ExampleLength>& lengths, std::int64_t max_tokens,
                                                    std::uint64_t seed, std::int64_t epoch, bool shuffle,
                                                    bool decoder_only);
std::vector<std::vector<std::int64_t>> make_batches(const std::vector<Example>& data, std::int64_t max_tokens,
                                                    std::uint64_t seed, std::int64_t epoch, bool shuffle,
                                                    bool decoder_only);

// Makes the batch count a multiple of `multiple` by splitting the k batches with the most rows
// (ties: the earlier) in two, halves side by side, k being the shortfall; repeated if fewer than
// k could be split. So an epoch fills whole optimizer steps and no example is dropped; a half
// never needs more positions than the whole, so budgets still hold. Stops early only when every
// batch has one row (the caller then leaves the remainder unused).
void split_to_multiple(std::vector<std::vector<std::int64_t>>& batches, std::int64_t multiple);

// The distributed sampler rule: rank r takes batches r, r + world, ... and every rank gets the
// same count (floor(n / world)), so no rank waits in a collective for a batch that never comes.
std::vector<std::vector<std::int64_t>> shard_batches(const std::vector<std::vector<std::int64_t>>& all,
                                                     int rank, int world);

// Copy (tgt = src) or reverse (tgt = reversed src) over regular tokens [4, vocab).
std::vector<Example> make_synthetic(const std::string& kind, std::int64_t n, int min_len, int max_len,
                                    int vocab, std::uint64_t seed, std::uint64_t stream);

}  // namespace th
