#include "th/model/decoding.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <functional>
#include <memory>

#include "th/core/error.hpp"
#include "th/data/batching.hpp"

namespace th {

namespace {
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

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
      for (const auto& s : src_) b.S = std::max(b.S, static_cast<int>(s.size()) + 1);
      b.src.assign(static_cast<std::size_t>(R) * b.S, SpecialTokens::pad);
      for (int r = 0; r < R; ++r) {
        const auto& s = src_[r / K_];
        std::copy(s.begin(), s.end(), b.src.begin() + static_cast<std::ptrdiff_t>(r) * b.S);
        b.src[static_cast<std::size_t>(r) * b.S + s.size()] = SpecialTokens::eos;
        b.src_len.push_back(static_cast<int>(s.size()) + 1);
      }
    }
    for (int r = 0; r < R; ++r) b.tgt_in.insert(b.tgt_in.end(), prefix_[r].begin(), prefix_[r].end());
    b.tgt_out.assign(b.tgt_in.size(), SpecialTokens::pad);  // no loss needed
    b.tgt_len.assign(R, T);
    m_.forward(b, 0, 0, /*train=*/false);
    const float* logits = m_.logits().data<float>();
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

// Incremental decoding: each layer keeps the keys and values of every position fed so far
// (self-attention) and of the source (cross-attention, computed once), so a step costs one
// position. Reads the weights by name from the model's parameter store.
class KvCacheStep final : public StepModel {
 public:
  KvCacheStep(Transformer<float>& m, const std::vector<std::vector<int>>& sources, int K, int max_pos);
  const std::vector<float>& step(const std::vector<int>& tokens, int pos) override;
  void reorder(const std::vector<int>& parent, int pos) override;

 private:
  const float* w(const std::string& name) const { return ps_.value(ps_.find(name).offset); }
  void layer_norm(std::vector<float>& x, const std::string& prefix);
  void residual(std::vector<float>& x, const std::string& norm, const std::function<void(const float*, float*)>& f);
  void self_attention(int l, const float* in, float* out, int pos);
  void cross_attention(int l, const float* in, float* out);
  void feed_forward(int l, const float* in, float* out);
  void attend(const float* q, int r, const float* keys, const float* values, int ld, int n_keys, float* ctx);

  Transformer<float>& m_;
  ParamStore<float>& ps_;
  const ModelSpec& s_;
  int K_, R_, D_, max_pos_, S_ = 0;
  std::vector<int> src_len_;
  std::string out_name_, embed_name_;
  std::vector<float> pe_;
  std::vector<std::vector<float>> kc_, vc_;  // per layer [R, max_pos, D]
  std::vector<std::vector<float>> mem_kv_;   // per layer [n_src * S, 2D]
  std::vector<float> x_, tmp_, out_;
};

KvCacheStep::KvCacheStep(Transformer<float>& m, const std::vector<std::vector<int>>& sources, int K, int max_pos)
    : m_(m), ps_(m.params()), s_(m.spec()), K_(K), R_(static_cast<int>(sources.size()) * K), D_(m.spec().d_model),
      max_pos_(max_pos) {
  const bool tied = s_.tie_embeddings;
  embed_name_ = tied ? "embed/weight" : "decoder/embed/weight";
  out_name_ = tied ? "embed/weight" : "output/weight";
  pe_.resize(static_cast<std::size_t>(max_pos) * D_);
  cpu::sinusoidal_table(pe_.data(), max_pos, D_);
  const std::size_t cache = static_cast<std::size_t>(R_) * max_pos * D_;
  kc_.assign(static_cast<std::size_t>(s_.n_decoder_layers), std::vector<float>(cache));
  vc_.assign(static_cast<std::size_t>(s_.n_decoder_layers), std::vector<float>(cache));
  if (!s_.decoder_only) {
    const Batch b = collate([&] {
      std::vector<Example> ex(sources.size());
      for (std::size_t i = 0; i < sources.size(); ++i) { ex[i].src = sources[i]; ex[i].tgt = {SpecialTokens::eos}; }
      return ex;
    }(), [&] {
      std::vector<std::int64_t> rows(sources.size());
      for (std::size_t i = 0; i < rows.size(); ++i) rows[i] = static_cast<std::int64_t>(i);
      return rows;
    }(), false);
    S_ = b.S;
    src_len_ = b.src_len;
    const Tensor memory = m_.encode(b);
    for (int l = 0; l < s_.n_decoder_layers; ++l) {
      const std::string p = "decoder/layer_" + std::to_string(l) + "/cross_attn/";
      std::vector<float> kv(static_cast<std::size_t>(b.B) * S_ * 2 * D_);
      // [Wk; Wv] and [bk; bv] are contiguous in the flat buffer (declared k, v in a row).
      cpu::linear_forward(kv.data(), memory.data<float>(), w(p + "k_proj/weight"), w(p + "k_proj/bias"),
                          static_cast<std::int64_t>(b.B) * S_, D_, 2 * D_);
      mem_kv_.push_back(std::move(kv));
    }
  }
}

void KvCacheStep::layer_norm(std::vector<float>& x, const std::string& prefix) {
  std::vector<float> mean(static_cast<std::size_t>(R_)), rstd(static_cast<std::size_t>(R_));
  tmp_ = x;
  cpu::layernorm_forward(x.data(), mean.data(), rstd.data(), tmp_.data(), w(prefix + "/weight"), w(prefix + "/bias"),
                         R_, D_, 1e-5f);
}

void KvCacheStep::residual(std::vector<float>& x, const std::string& norm,
                           const std::function<void(const float*, float*)>& f) {
  std::vector<float> y(x.size());
  if (s_.pre_norm) {
    std::vector<float> n = x;
    layer_norm(n, norm);
    f(n.data(), y.data());
    cpu::add_inplace(x.data(), y.data(), static_cast<std::int64_t>(x.size()));
  } else {
    f(x.data(), y.data());
    cpu::add_inplace(x.data(), y.data(), static_cast<std::int64_t>(x.size()));
    layer_norm(x, norm);
  }
}

// ctx[D] for row r: per head, softmax over n_keys of q.k / sqrt(Dh), then the weighted values.
void KvCacheStep::attend(const float* q, int, const float* keys, const float* values, int ld, int n_keys, float* ctx) {
  const int H = s_.n_heads, Dh = D_ / H;
  const float scale = 1.0f / std::sqrt(static_cast<float>(Dh));
  std::vector<float> p(static_cast<std::size_t>(n_keys));
  for (int h = 0; h < H; ++h) {
    float mx = kNegInf;
    for (int j = 0; j < n_keys; ++j) {
      float dot = 0;
      for (int c = 0; c < Dh; ++c) dot += q[h * Dh + c] * keys[static_cast<std::int64_t>(j) * ld + h * Dh + c];
      p[j] = dot * scale;
      mx = std::max(mx, p[j]);
    }
    float sum = 0;
    for (int j = 0; j < n_keys; ++j) { p[j] = std::exp(p[j] - mx); sum += p[j]; }
    for (int c = 0; c < Dh; ++c) ctx[h * Dh + c] = 0;
    for (int j = 0; j < n_keys; ++j) {
      const float pj = p[j] / sum;
      for (int c = 0; c < Dh; ++c) ctx[h * Dh + c] += pj * values[static_cast<std::int64_t>(j) * ld + h * Dh + c];
    }
  }
}

void KvCacheStep::self_attention(int l, const float* in, float* out, int pos) {
  const std::string p = "decoder/layer_" + std::to_string(l) + "/self_attn/";
  std::vector<float> qkv(static_cast<std::size_t>(R_) * 3 * D_), ctx(static_cast<std::size_t>(R_) * D_);
  cpu::linear_forward(qkv.data(), in, w(p + "q_proj/weight"), w(p + "q_proj/bias"), R_, D_, 3 * D_);
  float* K = kc_[l].data();
  float* V = vc_[l].data();
  for (int r = 0; r < R_; ++r) {
    const std::int64_t row = static_cast<std::int64_t>(r) * max_pos_ * D_;
    std::copy_n(qkv.data() + static_cast<std::int64_t>(r) * 3 * D_ + D_, D_, K + row + static_cast<std::int64_t>(pos) * D_);
    std::copy_n(qkv.data() + static_cast<std::int64_t>(r) * 3 * D_ + 2 * D_, D_, V + row + static_cast<std::int64_t>(pos) * D_);
    attend(qkv.data() + static_cast<std::int64_t>(r) * 3 * D_, r, K + row, V + row, D_, pos + 1,
           ctx.data() + static_cast<std::int64_t>(r) * D_);
  }
  cpu::linear_forward(out, ctx.data(), w(p + "out_proj/weight"), w(p + "out_proj/bias"), R_, D_, D_);
}

void KvCacheStep::cross_attention(int l, const float* in, float* out) {
  const std::string p = "decoder/layer_" + std::to_string(l) + "/cross_attn/";
  std::vector<float> q(static_cast<std::size_t>(R_) * D_), ctx(q.size());
  cpu::linear_forward(q.data(), in, w(p + "q_proj/weight"), w(p + "q_proj/bias"), R_, D_, D_);
  for (int r = 0; r < R_; ++r) {
    const int sent = r / K_;
    const float* kv = mem_kv_[l].data() + static_cast<std::int64_t>(sent) * S_ * 2 * D_;
    attend(q.data() + static_cast<std::int64_t>(r) * D_, r, kv, kv + D_, 2 * D_, src_len_[sent],
           ctx.data() + static_cast<std::int64_t>(r) * D_);
  }
  cpu::linear_forward(out, ctx.data(), w(p + "out_proj/weight"), w(p + "out_proj/bias"), R_, D_, D_);
}

void KvCacheStep::feed_forward(int l, const float* in, float* out) {
  const std::string p = "decoder/layer_" + std::to_string(l) + "/ffn/";
  const int F = s_.d_ff;
  std::vector<float> pre(static_cast<std::size_t>(R_) * F), h(pre.size());
  cpu::linear_forward<float>(pre.data(), in, w(p + "fc1/weight"), nullptr, R_, D_, F);
  cpu::bias_act_forward(h.data(), pre.data(), w(p + "fc1/bias"), R_, F, s_.activation);
  cpu::linear_forward(out, h.data(), w(p + "fc2/weight"), w(p + "fc2/bias"), R_, F, D_);
}

const std::vector<float>& KvCacheStep::step(const std::vector<int>& tokens, int pos) {
  TH_CHECK(pos < max_pos_, "decoding past the cache length");
  x_.resize(static_cast<std::size_t>(R_) * D_);
  const float* table = w(embed_name_);
  const float scale = std::sqrt(static_cast<float>(D_));
  for (int r = 0; r < R_; ++r)
    for (int c = 0; c < D_; ++c)
      x_[static_cast<std::size_t>(r) * D_ + c] =
          table[static_cast<std::int64_t>(tokens[r]) * D_ + c] * scale + pe_[static_cast<std::size_t>(pos) * D_ + c];
  const bool enc = !s_.decoder_only;
  for (int l = 0; l < s_.n_decoder_layers; ++l) {
    const std::string p = "decoder/layer_" + std::to_string(l);
    residual(x_, p + "/norm1", [&](const float* in, float* out) { self_attention(l, in, out, pos); });
    if (enc) residual(x_, p + "/norm2", [&](const float* in, float* out) { cross_attention(l, in, out); });
    residual(x_, p + (enc ? "/norm3" : "/norm2"), [&](const float* in, float* out) { feed_forward(l, in, out); });
  }
  if (s_.pre_norm) layer_norm(x_, "decoder/final_norm");
  const int V = s_.vocab_size;
  out_.resize(static_cast<std::size_t>(R_) * V);
  cpu::linear_forward<float>(out_.data(), x_.data(), w(out_name_), nullptr, R_, D_, V);
  log_softmax_rows(out_, R_, V);
  return out_;
}

void KvCacheStep::reorder(const std::vector<int>& parent, int pos) {
  const std::size_t span = static_cast<std::size_t>(pos + 1) * D_, row = static_cast<std::size_t>(max_pos_) * D_;
  for (auto* caches : {&kc_, &vc_})
    for (auto& c : *caches) {
      std::vector<float> old = c;
      for (int r = 0; r < R_; ++r)
        std::copy_n(old.data() + static_cast<std::size_t>(parent[r]) * row, span, c.data() + static_cast<std::size_t>(r) * row);
    }
}

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
