#include "th/data/packing.hpp"

#include <algorithm>

#include "th/core/error.hpp"
#include "th/core/rng.hpp"
#include "th/data/batching.hpp"

namespace th {

Packing parse_packing(const std::string& name) {
  if (name == "none") return Packing::None;
  if (name == "concat") return Packing::Concat;
  throw Error("data%packing = '" + name + "' is not 'none' or 'concat'");
}

std::int64_t whole_blocks(std::int64_t stream_tokens, int L) {
  TH_CHECK(L >= 1, "block length must be >= 1");
  return stream_tokens <= 1 ? 0 : (stream_tokens - 1) / L;
}

Permutation::Permutation(std::uint64_t n, std::uint64_t seed, std::uint64_t stream) : n_(n) {
  half_bits_ = 1;
  while (half_bits_ < 32 && (std::uint64_t{1} << (2 * half_bits_)) < n) ++half_bits_;
  for (int r = 0; r < 4; ++r) key_[r] = mix64(seed, stream, static_cast<std::uint64_t>(r));
}

std::uint64_t Permutation::operator()(std::uint64_t i) const {
  TH_CHECK(i < n_, "permutation index outside its range");
  const std::uint64_t mask = (std::uint64_t{1} << half_bits_) - 1;
  std::uint64_t x = i;
  do {  // cycle walking: a permutation of [0, 4^h) restricted to [0, n) stays a permutation
    std::uint64_t left = x >> half_bits_, right = x & mask;
    for (int r = 0; r < 4; ++r) {
      const std::uint64_t f = mix64(key_[r], 0, right) & mask;
      const std::uint64_t next = left ^ f;
      left = right;
      right = next;
    }
    x = (left << half_bits_) | right;
  } while (x >= n_);
  return x;
}

int blocks_per_micro_batch(std::int64_t max_tokens, int block_len) {
  return static_cast<int>(std::max<std::int64_t>(1, max_tokens / std::max(1, block_len)));
}

PackedSampler::PackedSampler(std::int64_t blocks, const PackedSamplerOptions& opt)
    : blocks_(blocks), opt_(opt), perm_(static_cast<std::uint64_t>(std::max<std::int64_t>(blocks, 0)), opt.seed, 0) {
  TH_CHECK(opt_.world >= 1 && opt_.accum >= 1 && opt_.blocks_per_micro >= 1, "packed sampler: bad options");
}

void PackedSampler::set_epoch(std::int64_t epoch) {
  epoch_ = epoch;
  // Stream 0x9ac4 + epoch: the data stream of the run's seed, one permutation per epoch.
  perm_ = Permutation(static_cast<std::uint64_t>(blocks_), opt_.seed, 0x9ac40000ULL + static_cast<std::uint64_t>(epoch));
}

std::int64_t PackedSampler::steps() const {
  const std::int64_t per_step = static_cast<std::int64_t>(opt_.blocks_per_micro) * opt_.world * opt_.accum;
  return blocks_ / per_step;
}

std::vector<std::int64_t> PackedSampler::micro_batch(std::int64_t k) const {
  TH_CHECK(epoch_ >= 0, "packed sampler used before set_epoch");
  const std::int64_t b = opt_.blocks_per_micro;
  TH_CHECK(k >= 0 && (k + 1) * b <= blocks_, "micro-batch outside the epoch");
  std::vector<std::int64_t> out(static_cast<std::size_t>(b));
  for (std::int64_t j = 0; j < b; ++j) {
    const auto i = static_cast<std::uint64_t>(k * b + j);
    out[static_cast<std::size_t>(j)] = static_cast<std::int64_t>(opt_.shuffle ? perm_(i) : i);
  }
  return out;
}

std::vector<std::vector<std::int64_t>> PackedSampler::step_blocks(std::int64_t step, int rank) const {
  TH_CHECK(step >= 0 && step < steps(), "step " + std::to_string(step) + " outside the epoch's " +
                                            std::to_string(steps()) + " steps");
  TH_CHECK(rank >= 0 && rank < opt_.world, "rank outside the world");
  const std::int64_t G = static_cast<std::int64_t>(opt_.world) * opt_.accum;
  std::vector<std::vector<std::int64_t>> out;
  for (int a = 0; a < opt_.accum; ++a)
    out.push_back(micro_batch(step * G + static_cast<std::int64_t>(a) * opt_.world + rank));
  return out;
}

std::vector<int> document_starts(const int* inputs, int L, int eos_id) {
  std::vector<int> start(static_cast<std::size_t>(L));
  int s = 0;
  for (int t = 0; t < L; ++t) {
    if (inputs[t] == eos_id) s = t;  // EOS opens the next document (it is that document's BOS)
    start[static_cast<std::size_t>(t)] = s;
  }
  return start;
}

Batch packed_batch(const std::vector<std::vector<int>>& spans, bool document_mask) {
  TH_CHECK(!spans.empty(), "a packed batch needs at least one block");
  Batch b;
  b.B = static_cast<int>(spans.size());
  b.S = 0;
  b.T = static_cast<int>(spans[0].size()) - 1;
  TH_CHECK(b.T >= 1, "a block needs at least two tokens (an input and its target)");
  const std::size_t T = static_cast<std::size_t>(b.T);
  for (const auto& s : spans) {
    TH_CHECK(s.size() == T + 1, "blocks of one packed batch must have the same length");
    b.tgt_in.insert(b.tgt_in.end(), s.begin(), s.end() - 1);
    b.tgt_out.insert(b.tgt_out.end(), s.begin() + 1, s.end());
    b.tgt_len.push_back(b.T);
    if (document_mask) {
      const std::vector<int> d = document_starts(s.data(), b.T, SpecialTokens::eos);
      b.doc_start.insert(b.doc_start.end(), d.begin(), d.end());
    }
  }
  return b;
}

}  // namespace th
