#include "th/model/decoding.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>

#include "th/core/error.hpp"
#include "th/model/kv_cache.hpp"
#include "th/model/tokens.hpp"
#include "source_batch.hpp"

namespace th {

Batch source_batch(const std::vector<std::vector<int>>& sources, int copies) {
  Batch b;
  b.B = static_cast<int>(sources.size()) * copies;
  for (const auto& s : sources) b.S = std::max(b.S, static_cast<int>(s.size()) + 1);
  b.src.assign(static_cast<std::size_t>(b.B) * b.S, SpecialTokens::pad);
  for (int r = 0; r < b.B; ++r) {
    const auto& s = sources[static_cast<std::size_t>(r / copies)];
    std::copy(s.begin(), s.end(), b.src.begin() + static_cast<std::ptrdiff_t>(r) * b.S);
    b.src[static_cast<std::size_t>(r) * b.S + s.size()] = SpecialTokens::eos;
    b.src_len.push_back(static_cast<int>(s.size()) + 1);
  }
  return b;
}


namespace {

void log_softmax_rows(std::vector<float>& x, std::int64_t rows, int V) {
  for (std::int64_t r = 0; r < rows; ++r) {
    float* z = x.data() + r * V;
    const float mx = *std::max_element(z, z + V);
    double sum = 0;
    for (int v = 0; v < V; ++v) sum += std::exp(static_cast<double>(z[v] - mx));
    const float lse = mx + static_cast<float>(std::log(sum));
    for (int v = 0; v < V; ++v) z[v] -= lse;
  }
}

// Next-token log-probabilities for R rows of hypotheses, all at position `pos` (every row starts
// at position 0 together: the forced prefix is fed token by token, like generated tokens).
class StepModel {
 public:
  virtual ~StepModel() = default;
  virtual const std::vector<float>& step(const std::vector<int>& tokens, int pos) = 0;  // [R, V]
  virtual void reorder(const std::vector<int>& parent, int pos) = 0;  // row r continues old row parent[r]
};

// The reference: the training forward over the whole prefix, every step.
class RecomputeStep final : public StepModel {
 public:
  RecomputeStep(Transformer<float>& m, const std::vector<std::vector<int>>& sources, int K)
      : m_(m), src_(sources), K_(K), prefix_(sources.size() * static_cast<std::size_t>(K)) {}
  const std::vector<float>& step(const std::vector<int>& tokens, int pos) override {
    const int R = static_cast<int>(prefix_.size()), V = m_.spec().vocab_size, T = pos + 1;
    for (int r = 0; r < R; ++r) prefix_[r].push_back(tokens[r]);
    Batch b;
    b.B = R;
    b.T = T;
    if (!m_.spec().decoder_only) {
      const Batch enc = source_batch(src_, K_);
      b.S = enc.S;
      b.src = enc.src;
      b.src_len = enc.src_len;
    }
    for (int r = 0; r < R; ++r) b.tgt_in.insert(b.tgt_in.end(), prefix_[r].begin(), prefix_[r].end());
    b.tgt_out.assign(b.tgt_in.size(), SpecialTokens::pad);  // no loss needed
    b.tgt_len.assign(R, T);
    m_.forward(b, 0, 0, /*train=*/false);
    Tensor staging;  // the logits on the host: an explicit copy (the CPU backend aliases)
    const float* logits = host_view(m_.backend(), m_.logits().data<float>(), m_.logits().numel(), staging);
    out_.resize(static_cast<std::size_t>(R) * V);
    for (int r = 0; r < R; ++r)
      std::copy(logits + (static_cast<std::int64_t>(r) * T + pos) * V, logits + (static_cast<std::int64_t>(r) * T + pos + 1) * V,
                out_.begin() + static_cast<std::ptrdiff_t>(r) * V);
    m_.discard();
    log_softmax_rows(out_, R, V);
    return out_;
  }
  void reorder(const std::vector<int>& parent, int) override {
    std::vector<std::vector<int>> next(prefix_.size());
    for (std::size_t r = 0; r < parent.size(); ++r) next[r] = prefix_[static_cast<std::size_t>(parent[r])];
    prefix_ = std::move(next);
  }

 private:
  Transformer<float>& m_;
  const std::vector<std::vector<int>>& src_;
  int K_;
  std::vector<std::vector<int>> prefix_;
  std::vector<float> out_;
};

// Incremental decoding through the model's key/value cache (th/model/kv_cache.hpp): each step
// costs one position.
class KvCacheStep final : public StepModel {
 public:
  KvCacheStep(Transformer<float>& m, const std::vector<std::vector<int>>& sources, int K, int max_pos)
      : cache_(m, sources, K, max_pos), V_(m.spec().vocab_size) {}
  const std::vector<float>& step(const std::vector<int>& tokens, int pos) override {
    out_ = cache_.logits(tokens, pos);
    log_softmax_rows(out_, static_cast<std::int64_t>(tokens.size()), V_);
    return out_;
  }
  void reorder(const std::vector<int>& parent, int pos) override { cache_.reorder(parent, pos); }

 private:
  KvCache cache_;
  int V_;
  std::vector<float> out_;
};

// Per sentence: the tokens fed before generation (BOS, or BOS + prompt + EOS) and the length cap.
struct Plan {
  std::vector<std::vector<int>> forced;
  std::vector<int> limit;
  int max_pos = 0;
};

Plan make_plan(const ModelSpec& s, const std::vector<std::vector<int>>& sources, const DecodeOptions& o) {
  Plan p;
  for (const auto& src : sources) {
    std::vector<int> f = {SpecialTokens::bos};
    if (s.decoder_only) {
      f.insert(f.end(), src.begin(), src.end());
      f.push_back(SpecialTokens::eos);
    }
    const int room = s.max_len - static_cast<int>(f.size());
    if (room < 1) throw InputError("a source of " + std::to_string(src.size()) + " tokens leaves no room to generate "
                                   "within model%max_len = " + std::to_string(s.max_len));
    const int cap = static_cast<int>(std::ceil(o.max_len_ratio * static_cast<double>(src.size()))) + 5;
    p.limit.push_back(std::min(cap, room));
    p.max_pos = std::max(p.max_pos, static_cast<int>(f.size()) + p.limit.back());
    p.forced.push_back(std::move(f));
  }
  return p;
}

double normalized(double score, std::size_t length, double penalty) {
  return score / std::pow(static_cast<double>(std::max<std::size_t>(length, 1)), penalty);
}

// Greedy: the most likely token at every step, one row per sentence.
std::vector<Hypothesis> greedy(StepModel& sm, const Plan& plan, int V, double penalty) {
  const int n = static_cast<int>(plan.forced.size());
  std::vector<Hypothesis> h(static_cast<std::size_t>(n));
  std::vector<char> done(static_cast<std::size_t>(n), 0);
  std::vector<int> tokens(static_cast<std::size_t>(n));
  for (int pos = 0; pos < plan.max_pos; ++pos) {
    for (int i = 0; i < n; ++i) {
      const auto& f = plan.forced[i];
      tokens[i] = pos < static_cast<int>(f.size()) ? f[pos] : (h[i].tokens.empty() ? SpecialTokens::pad : h[i].tokens.back());
    }
    const std::vector<float>& logp = sm.step(tokens, pos);
    bool all_done = true;
    for (int i = 0; i < n; ++i) {
      const int generated = pos - static_cast<int>(plan.forced[i].size()) + 2;  // see decode() below
      if (!done[i] && generated >= 1) {
        const float* row = logp.data() + static_cast<std::size_t>(i) * V;
        const int v = static_cast<int>(std::max_element(row, row + V) - row);
        h[i].score += row[v];
        if (v == SpecialTokens::eos) h[i].finished = true;
        else h[i].tokens.push_back(v);
        done[i] = h[i].finished || generated >= plan.limit[i];
      }
      all_done = all_done && done[i];
    }
    if (all_done) break;
  }
  for (auto& x : h) x.normalized = normalized(x.score, x.tokens.size() + (x.finished ? 1 : 0), penalty);
  return h;
}
}  // namespace

std::vector<Hypothesis> decode(Transformer<float>& model, const std::vector<std::vector<int>>& sources,
                               const DecodeOptions& o) {
  if (sources.empty()) return {};
  const ModelSpec& s = model.spec();
  const int K = std::max(1, o.beam_size), n = static_cast<int>(sources.size()), R = n * K, V = s.vocab_size;
  const Plan plan = make_plan(s, sources, o);
  std::unique_ptr<StepModel> sm;
  if (o.use_cache) sm = std::make_unique<KvCacheStep>(model, sources, K, plan.max_pos);
  else sm = std::make_unique<RecomputeStep>(model, sources, K);
  if (K == 1 && !o.force_beam) return greedy(*sm, plan, V, o.length_penalty);

  // Row r = sentence r / K, beam r % K. Only beam 0 of each sentence is live at first.
  std::vector<double> score(static_cast<std::size_t>(R), -std::numeric_limits<double>::infinity());
  std::vector<std::vector<int>> hist(static_cast<std::size_t>(R));
  for (int i = 0; i < n; ++i) score[static_cast<std::size_t>(i) * K] = 0.0;
  std::vector<std::vector<Hypothesis>> finished(static_cast<std::size_t>(n));
  std::vector<char> done(static_cast<std::size_t>(n), 0);
  std::vector<int> tokens(static_cast<std::size_t>(R), SpecialTokens::pad);
  for (int pos = 0; pos < plan.max_pos; ++pos) {
    for (int r = 0; r < R; ++r) {
      const auto& f = plan.forced[static_cast<std::size_t>(r / K)];
      tokens[r] = pos < static_cast<int>(f.size()) ? f[pos] : (hist[r].empty() ? SpecialTokens::pad : hist[r].back());
    }
    const std::vector<float>& logp = sm->step(tokens, pos);
    std::vector<int> parent(static_cast<std::size_t>(R));
    for (int r = 0; r < R; ++r) parent[r] = r;
    bool all_done = true;
    for (int i = 0; i < n; ++i) {
      // The output at position pos predicts position pos + 1: the first choice is made at the last
      // forced position; `generated` counts the tokens chosen once this step is done.
      const int generated = pos - static_cast<int>(plan.forced[i].size()) + 2;
      if (done[i] || generated < 1) {
        all_done = all_done && done[i];
        continue;
      }
      // Candidates: every live beam extended by every token; keep the best 2K.
      std::vector<std::pair<double, std::pair<int, int>>> cand;
      for (int k = 0; k < K; ++k) {
        const int r = i * K + k;
        if (!std::isfinite(score[r])) continue;
        for (int v = 0; v < V; ++v) cand.push_back({score[r] + logp[static_cast<std::size_t>(r) * V + v], {r, v}});
      }
      const std::size_t keep = std::min(cand.size(), static_cast<std::size_t>(2 * K));
      std::partial_sort(cand.begin(), cand.begin() + static_cast<std::ptrdiff_t>(keep), cand.end(),
                        [](const auto& a, const auto& b) { return a.first > b.first; });
      std::vector<double> nscore;
      std::vector<std::vector<int>> nhist;
      std::vector<int> nparent;
      for (std::size_t c = 0; c < keep && static_cast<int>(nscore.size()) < K; ++c) {
        const int r = cand[c].second.first, v = cand[c].second.second;
        if (v == SpecialTokens::eos) {
          if (static_cast<int>(finished[i].size()) < K)
            finished[i].push_back({hist[r], cand[c].first, normalized(cand[c].first, hist[r].size() + 1, o.length_penalty), true});
          continue;
        }
        nscore.push_back(cand[c].first);
        nhist.push_back(hist[r]);
        nhist.back().push_back(v);
        nparent.push_back(r);
      }
      for (int k = 0; k < K; ++k) {
        const int r = i * K + k;
        const bool live = k < static_cast<int>(nscore.size());
        parent[r] = live ? nparent[k] : r;
        score[r] = live ? nscore[k] : -std::numeric_limits<double>::infinity();
        hist[r] = live ? nhist[k] : std::vector<int>{};
      }
      done[i] = static_cast<int>(finished[i].size()) >= K || nscore.empty() || generated >= plan.limit[i];
      all_done = all_done && done[i];
    }
    sm->reorder(parent, pos);
    if (all_done) break;
  }
  std::vector<Hypothesis> best(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) {
    std::vector<Hypothesis> pool = finished[i];
    if (pool.empty())
      for (int k = 0; k < K; ++k) {
        const int r = i * K + k;
        if (std::isfinite(score[r])) pool.push_back({hist[r], score[r], normalized(score[r], hist[r].size(), o.length_penalty), false});
      }
    best[i] = *std::max_element(pool.begin(), pool.end(),
                                [](const Hypothesis& a, const Hypothesis& b) { return a.normalized < b.normalized; });
  }
  return best;
}

}  // namespace th
