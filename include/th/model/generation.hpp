#pragma once
// Text generation for a decoder-only model (task = 'generate'): each prompt is fed after an EOS
// (the token that opens a document in the training stream) through the KV cache of translate
// (th/model/kv_cache.hpp), then tokens are sampled one at a time until EOS or max_new_tokens.
//
// Reproducible by construction: the random number of the j-th token of prompt k is
// uniform01(seed, k, j) (counter-based), and the prompts are decoded in fixed groups of
// consecutive prompts, so the text depends on neither the number of ranks nor the order in which
// ranks run.
#include <cstdint>
#include <vector>

#include "th/model/transformer.hpp"

namespace th {

struct SamplingOptions {
  double temperature = 1.0;         // 0: greedy (arg-max, lowest id on ties)
  int top_k = 0;                    // keep the k most likely tokens (0: all)
  double top_p = 1.0;               // keep the most likely tokens up to probability top_p (1: all)
  double repetition_penalty = 1.0;  // CTRL (Keskar et al. 2019): a seen token's logit z becomes z / p if z > 0, else z * p
};

// The next token from one row of raw logits [V] (changed in place), given the tokens seen so far
// (prompt and generated) and a uniform u in [0, 1). Order: repetition penalty; pad, unk and BOS
// never drawn; temperature; top-k; softmax; top-p (the smallest set, most likely first, ties by
// lower id, whose probability reaches top_p); the draw walks that set's cumulative
// probabilities. Everything after the logits is in double.
int sample_token(float* logits, int V, const std::vector<int>& seen, const SamplingOptions& opt, double u);

struct GenerateOptions {
  SamplingOptions sampling;
  int max_new_tokens = 64;
  std::uint64_t seed = 0;
};

struct Generated {
  std::vector<int> tokens;     // without EOS
  bool eos = false;            // stopped by EOS (else by max_new_tokens or model%max_len)
  bool truncated = false;      // the prompt was cut to its last tokens to fit model%max_len
};

// Continues every prompt (ids, no EOS), all rows decoded together. Prompt k is the
// (first_index + k)-th of the whole task (its random stream). A prompt keeps at most its last
// max_len - 2 tokens; generation also stops when the context reaches model%max_len.
std::vector<Generated> generate_ids(Transformer<float>& model, const std::vector<std::vector<int>>& prompts,
                                   std::int64_t first_index, const GenerateOptions& opt);

}  // namespace th
