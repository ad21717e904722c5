#pragma once
// Autoregressive decoding: greedy and beam search, batched over sentences, with a per-layer
// key/value cache so each new token costs one position. A second, cache-free path recomputes the
// whole prefix with the training forward at every step; tests hold the two to the same tokens
// and scores.
#include <cstdint>
#include <vector>

#include "th/model/transformer.hpp"

namespace th {

struct DecodeOptions {
  int beam_size = 1;             // 1: greedy
  double max_len_ratio = 1.5;    // stop after ceil(ratio * source length) + 5 tokens
  double length_penalty = 1.0;   // beam ranking: score / length^length_penalty
  bool use_cache = true;         // false: recompute the full prefix each step (reference path)
  bool force_beam = false;       // beam_size 1 through the beam-search code (tests: == greedy)
};

struct Hypothesis {
  std::vector<int> tokens;  // generated ids, EOS excluded
  double score = 0;         // sum of log-probabilities, EOS included when emitted
  double normalized = 0;    // score / length^length_penalty (length counts EOS)
  bool finished = false;    // EOS emitted (otherwise stopped by the length limit)
};

// One best hypothesis per source sentence (ids without BOS/EOS). For a decoder-only model the
// source is the prompt: generation continues after prompt + EOS (the training layout).
std::vector<Hypothesis> decode(Transformer<float>& model, const std::vector<std::vector<int>>& sources,
                               const DecodeOptions& options);

}  // namespace th
