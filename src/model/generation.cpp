#include "th/model/generation.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "th/core/error.hpp"
#include "th/core/rng.hpp"
#include "th/model/tokens.hpp"
#include "th/model/kv_cache.hpp"

namespace th {

int sample_token(float* logits, int V, const std::vector<int>& seen, const SamplingOptions& opt, double u) {
  constexpr double kNegInf = -std::numeric_limits<double>::infinity();
  std::vector<double> z(logits, logits + V);
  if (opt.repetition_penalty != 1.0) {
    std::vector<char> done(static_cast<std::size_t>(V), 0);
    for (const int t : seen) {
      if (t < 0 || t >= V || done[static_cast<std::size_t>(t)]) continue;
      done[static_cast<std::size_t>(t)] = 1;
      double& v = z[static_cast<std::size_t>(t)];
      v = v > 0 ? v / opt.repetition_penalty : v * opt.repetition_penalty;
    }
  }
  for (const int t : {SpecialTokens::pad, SpecialTokens::unk, SpecialTokens::bos})
    if (t < V) z[static_cast<std::size_t>(t)] = kNegInf;
  // Candidates, most likely first (ties: lower id), so every cut below is well defined.
  std::vector<int> order(static_cast<std::size_t>(V));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return z[static_cast<std::size_t>(a)] > z[static_cast<std::size_t>(b)]; });
  if (opt.temperature <= 0) return order[0];
  std::size_t keep = order.size();
  while (keep > 1 && !std::isfinite(z[static_cast<std::size_t>(order[keep - 1])])) --keep;
  if (opt.top_k > 0) keep = std::min(keep, static_cast<std::size_t>(opt.top_k));
  const double top = z[static_cast<std::size_t>(order[0])] / opt.temperature;
  std::vector<double> p(keep);
  double sum = 0;
  for (std::size_t i = 0; i < keep; ++i) {
    p[i] = std::exp(z[static_cast<std::size_t>(order[i])] / opt.temperature - top);
    sum += p[i];
  }
  if (opt.top_p < 1.0) {
    double mass = 0;
    std::size_t n = 0;
    while (n < keep && mass < opt.top_p * sum) mass += p[n++];
    keep = std::max<std::size_t>(n, 1);
    sum = 0;
    for (std::size_t i = 0; i < keep; ++i) sum += p[i];
  }
  const double target = u * sum;
  double acc = 0;
  for (std::size_t i = 0; i < keep; ++i) {
    acc += p[i];
    if (target < acc) return order[i];
  }
  return order[keep - 1];
}

std::vector<Generated> generate_ids(Transformer<float>& model, const std::vector<std::vector<int>>& prompts,
                                   std::int64_t first_index, const GenerateOptions& opt) {
  const ModelSpec& s = model.spec();
  TH_CHECK(s.decoder_only, "generate_ids needs a decoder-only model");
  TH_CHECK(s.max_len >= 2, "generation needs model%max_len >= 2");
  const int R = static_cast<int>(prompts.size()), V = s.vocab_size;
  std::vector<Generated> out(static_cast<std::size_t>(R));
  if (R == 0) return out;
  // Per row: the forced tokens (EOS, then the prompt) and the context the penalty looks at.
  std::vector<std::vector<int>> forced(static_cast<std::size_t>(R)), context(static_cast<std::size_t>(R));
  int max_pos = 0;
  for (int r = 0; r < R; ++r) {
    const auto& p = prompts[static_cast<std::size_t>(r)];
    const std::size_t keep = std::min(p.size(), static_cast<std::size_t>(s.max_len - 2));
    out[static_cast<std::size_t>(r)].truncated = keep < p.size();
    context[static_cast<std::size_t>(r)].assign(p.end() - static_cast<std::ptrdiff_t>(keep), p.end());
    forced[static_cast<std::size_t>(r)] = {SpecialTokens::eos};
    forced[static_cast<std::size_t>(r)].insert(forced[static_cast<std::size_t>(r)].end(),
                                               context[static_cast<std::size_t>(r)].begin(),
                                               context[static_cast<std::size_t>(r)].end());
    max_pos = std::max(max_pos, std::min(s.max_len, static_cast<int>(forced[static_cast<std::size_t>(r)].size()) +
                                                        opt.max_new_tokens - 1));
  }
  KvCache cache(model, prompts, 1, max_pos);
  std::vector<char> done(static_cast<std::size_t>(R), 0);
  std::vector<int> tokens(static_cast<std::size_t>(R), SpecialTokens::pad);
  std::vector<float> row(static_cast<std::size_t>(V));
  for (int pos = 0; pos < max_pos; ++pos) {
    for (int r = 0; r < R; ++r) {
      const auto& f = forced[static_cast<std::size_t>(r)];
      const auto& g = out[static_cast<std::size_t>(r)].tokens;
      tokens[static_cast<std::size_t>(r)] =
          pos < static_cast<int>(f.size()) ? f[static_cast<std::size_t>(pos)] : (g.empty() ? SpecialTokens::pad : g.back());
    }
    const std::vector<float>& logits = cache.logits(tokens, pos);
    bool all_done = true;
    for (int r = 0; r < R; ++r) {
      Generated& gen = out[static_cast<std::size_t>(r)];
      // The output at position pos predicts position pos + 1: the first draw comes at the last
      // forced position.
      if (!done[static_cast<std::size_t>(r)] && pos + 1 >= static_cast<int>(forced[static_cast<std::size_t>(r)].size())) {
        std::copy_n(logits.begin() + static_cast<std::ptrdiff_t>(r) * V, V, row.begin());
        const double u = uniform01(opt.seed, static_cast<std::uint64_t>(first_index + r), gen.tokens.size());
        const int t = sample_token(row.data(), V, context[static_cast<std::size_t>(r)], opt.sampling, u);
        if (t == SpecialTokens::eos) {
          gen.eos = true;
        } else {
          gen.tokens.push_back(t);
          context[static_cast<std::size_t>(r)].push_back(t);
        }
        // Done at EOS, at max_new_tokens, or when the next token has no position left to be fed.
        done[static_cast<std::size_t>(r)] = gen.eos || static_cast<int>(gen.tokens.size()) >= opt.max_new_tokens ||
                                            pos + 1 >= max_pos;
      }
      all_done = all_done && done[static_cast<std::size_t>(r)];
    }
    if (all_done) break;
  }
  return out;
}

}  // namespace th
