#pragma once
// The held-out loss of a model: negative log-likelihood per target token (without label
// smoothing), perplexity and token accuracy of teacher-forced batches, summed over ranks. The
// trainer's validation and the evaluate tasks (th/eval/evaluate.hpp) share this one code path.
#include <vector>

#include "th/model/transformer.hpp"
#include "th/parallel/comm.hpp"

namespace th {

struct EvalStats {
  double loss = 0;        // mean NLL per non-pad target token (nats), label smoothing not applied
  double perplexity = 0;  // exp(loss)
  double accuracy = 0;    // share of non-pad targets whose arg-max prediction is right
  double tokens = 0;      // non-pad targets counted, all ranks
  // With token_bytes (text datasets): the UTF-8 bytes the targets stand for, the perplexity per
  // byte exp(total NLL / bytes) and bits per byte (total NLL / (bytes ln 2)), which compare
  // across vocabularies.
  double bytes = 0, byte_perplexity = 0, bits_per_byte = 0;
};

// Teacher-forced forward passes (dropout off) over this rank's batches; sums over all ranks
// (collective: every rank calls, with any number of batches, also none). token_bytes[id]: the
// bytes of text a target id stands for (Tokenizer::piece_bytes), or empty.
EvalStats evaluate_batches(Transformer<float>& model, const std::vector<Batch>& batches, Comm& comm,
                           const std::vector<float>& token_bytes = {});

}  // namespace th
