#pragma once
// Packed language-model batches (data%packing = 'concat'), the way nanoGPT, Megatron and
// DeepSpeed feed a decoder-only model: a split's token stream (documents back to back, an EOS
// after each) is cut into blocks of L = model%max_len positions with no padding; documents cross
// block edges.
//
// Block rule: block i of a stream of n tokens has the inputs tokens[iL, iL + L) and the targets
// tokens[iL + 1, iL + L + 1) (so it reads the L + 1 tokens [iL, iL + L]); a stream has
// floor((n - 1) / L) whole blocks. Validation and evaluation add the tail (the remaining
// (n - 1) mod L predictions) as one shorter block, so every token but the first is predicted once.
//
// Sampler rule (the elastic rule of th/data/sampler.hpp, unchanged): a micro-batch holds
// b = max(1, floor(data%max_tokens / L)) blocks; epoch e visits the blocks in the order of a
// permutation drawn from (seed, e) (the identity without data%shuffle); micro-batch k of the epoch
// is blocks perm(kb) .. perm(kb + b - 1); with G = ranks x optim%grad_accum, step s takes
// micro-batches sG .. sG + G - 1 and micro-batch sG + a*world + r is rank r's a-th accumulation
// micro-batch. The list depends on the ranks and accumulation only through G, so 4 ranks x 1,
// 2 x 2 and 1 x 4 train on the same global batches. An epoch has floor(blocks / (bG)) steps; the
// last blocks of its permutation that do not fill a step wait for the next epoch's shuffle.
//
// Document mask (data%document_mask): EOS opens the next document. Position t of a block sees
// the keys [s(t), t], s(t) the last position <= t holding EOS (0 if none: the document began in
// an earlier block). So the EOS that ends one document acts as the BOS of the next, as in
// generation, which feeds EOS before a prompt.
#include <cstdint>
#include <string>
#include <vector>

#include "th/model/transformer.hpp"

namespace th {

enum class Packing { None, Concat };
Packing parse_packing(const std::string& name);  // data%packing; th::Error for another name

// Whole blocks of L positions in a stream of n tokens: floor((n - 1) / L) (0 for n <= 1).
std::int64_t whole_blocks(std::int64_t stream_tokens, int L);

// A bijection of [0, n) drawn from (seed, stream): a 4-round Feistel network on the smallest
// even-bit power of two >= n, cycle-walked into range. O(1) memory, so a corpus of billions of
// tokens needs no permutation table.
class Permutation {
 public:
  Permutation(std::uint64_t n, std::uint64_t seed, std::uint64_t stream);
  std::uint64_t operator()(std::uint64_t i) const;
  std::uint64_t size() const { return n_; }

 private:
  std::uint64_t n_, key_[4];
  int half_bits_ = 0;
};

struct PackedSamplerOptions {
  int block_len = 256;        // L = model%max_len
  int blocks_per_micro = 1;   // b
  std::uint64_t seed = 0;
  bool shuffle = true;
  int world = 1;
  int accum = 1;
};

// b for a token budget: max(1, floor(max_tokens / L)).
int blocks_per_micro_batch(std::int64_t max_tokens, int block_len);

class PackedSampler {
 public:
  PackedSampler(std::int64_t blocks, const PackedSamplerOptions& opt);
  void set_epoch(std::int64_t epoch);
  std::int64_t epoch() const { return epoch_; }
  std::int64_t blocks() const { return blocks_; }
  std::int64_t steps() const;  // optimizer steps per epoch: floor(blocks / (b G))
  // Block indices of rank's grad_accum micro-batches in step `step` of the epoch.
  std::vector<std::vector<std::int64_t>> step_blocks(std::int64_t step, int rank) const;
  // Block indices of micro-batch k of the epoch (global numbering).
  std::vector<std::int64_t> micro_batch(std::int64_t k) const;

 private:
  std::int64_t blocks_;
  PackedSamplerOptions opt_;
  std::int64_t epoch_ = -1;
  Permutation perm_;
};

// For a block's input tokens [L]: the position where each position's document starts (the
// document-mask rule above).
std::vector<int> document_starts(const int* inputs, int L, int eos_id);

// A decoder-only batch of equal-length spans: each span holds the L + 1 stream tokens of one
// block (inputs are span[0, L), targets span[1, L + 1)). No padding; doc_start filled when
// document_mask.
Batch packed_batch(const std::vector<std::vector<int>>& spans, bool document_mask);

}  // namespace th
