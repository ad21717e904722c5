#include "th/model/kv_cache.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "th/core/error.hpp"
#include "source_batch.hpp"

namespace th {

namespace {
constexpr float kNegInf = -std::numeric_limits<float>::infinity();
}  // namespace

KvCache::KvCache(Transformer<float>& m, const std::vector<std::vector<int>>& sources, int K, int max_pos)
    : m_(m), ps_(m.params()), s_(m.spec()), K_(K), R_(static_cast<int>(sources.size()) * K), D_(m.spec().d_model),
      max_pos_(max_pos) {
  const bool tied = s_.tie_embeddings;
  embed_name_ = tied ? "embed/weight" : "decoder/embed/weight";
  out_name_ = tied ? "embed/weight" : "output/weight";
  // The model's own table (sinusoidal buffer or learned parameter), rows [0, max_pos).
  TH_CHECK(max_pos <= s_.max_len, "decoding past model%max_len");
  const float* table = m.positional_table();
  pe_.assign(table, table + static_cast<std::size_t>(max_pos) * D_);
  const std::size_t cache = static_cast<std::size_t>(R_) * max_pos * D_;
  kc_.assign(static_cast<std::size_t>(s_.n_decoder_layers), std::vector<float>(cache));
  vc_.assign(static_cast<std::size_t>(s_.n_decoder_layers), std::vector<float>(cache));
  if (!s_.decoder_only) {
    const Batch b = source_batch(sources, 1);
    S_ = b.S;
    src_len_ = b.src_len;
    const Tensor memory = m_.encode(b);
    for (int l = 0; l < s_.n_decoder_layers; ++l) {
      const std::string p = "decoder/layer_" + std::to_string(l) + "/cross_attn/";
      std::vector<float> kv(static_cast<std::size_t>(b.B) * S_ * 2 * D_);
      // [Wk; Wv] and [bk; bv] are contiguous in the flat buffer (declared k, v in a row).
      k().linear_forward(kv.data(), memory.data<float>(), w(p + "k_proj/weight"), w(p + "k_proj/bias"),
                          static_cast<std::int64_t>(b.B) * S_, D_, 2 * D_);
      mem_kv_.push_back(std::move(kv));
    }
  }
}

void KvCache::layer_norm(std::vector<float>& x, const std::string& prefix) {
  std::vector<float> mean(static_cast<std::size_t>(R_)), rstd(static_cast<std::size_t>(R_));
  tmp_ = x;
  k().layernorm_forward(x.data(), mean.data(), rstd.data(), tmp_.data(), w(prefix + "/weight"), w(prefix + "/bias"),
                         R_, D_, 1e-5f);
}

void KvCache::residual(std::vector<float>& x, const std::string& norm,
                           const std::function<void(const float*, float*)>& f) {
  std::vector<float> y(x.size());
  if (s_.pre_norm) {
    std::vector<float> n = x;
    layer_norm(n, norm);
    f(n.data(), y.data());
    k().add_inplace(x.data(), y.data(), static_cast<std::int64_t>(x.size()));
  } else {
    f(x.data(), y.data());
    k().add_inplace(x.data(), y.data(), static_cast<std::int64_t>(x.size()));
    layer_norm(x, norm);
  }
}

// ctx[D] for row r: per head, softmax over n_keys of q.k / sqrt(Dh), then the weighted values.
void KvCache::attend(const float* q, int, const float* keys, const float* values, int ld, int n_keys, float* ctx) {
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

void KvCache::self_attention(int l, const float* in, float* out, int pos) {
  const std::string p = "decoder/layer_" + std::to_string(l) + "/self_attn/";
  std::vector<float> qkv(static_cast<std::size_t>(R_) * 3 * D_), ctx(static_cast<std::size_t>(R_) * D_);
  k().linear_forward(qkv.data(), in, w(p + "q_proj/weight"), w(p + "q_proj/bias"), R_, D_, 3 * D_);
  float* K = kc_[l].data();
  float* V = vc_[l].data();
  for (int r = 0; r < R_; ++r) {
    const std::int64_t row = static_cast<std::int64_t>(r) * max_pos_ * D_;
    std::copy_n(qkv.data() + static_cast<std::int64_t>(r) * 3 * D_ + D_, D_, K + row + static_cast<std::int64_t>(pos) * D_);
    std::copy_n(qkv.data() + static_cast<std::int64_t>(r) * 3 * D_ + 2 * D_, D_, V + row + static_cast<std::int64_t>(pos) * D_);
    attend(qkv.data() + static_cast<std::int64_t>(r) * 3 * D_, r, K + row, V + row, D_, pos + 1,
           ctx.data() + static_cast<std::int64_t>(r) * D_);
  }
  k().linear_forward(out, ctx.data(), w(p + "out_proj/weight"), w(p + "out_proj/bias"), R_, D_, D_);
}

void KvCache::cross_attention(int l, const float* in, float* out) {
  const std::string p = "decoder/layer_" + std::to_string(l) + "/cross_attn/";
  std::vector<float> q(static_cast<std::size_t>(R_) * D_), ctx(q.size());
  k().linear_forward(q.data(), in, w(p + "q_proj/weight"), w(p + "q_proj/bias"), R_, D_, D_);
  for (int r = 0; r < R_; ++r) {
    const int sent = r / K_;
    const float* kv = mem_kv_[l].data() + static_cast<std::int64_t>(sent) * S_ * 2 * D_;
    attend(q.data() + static_cast<std::int64_t>(r) * D_, r, kv, kv + D_, 2 * D_, src_len_[sent],
           ctx.data() + static_cast<std::int64_t>(r) * D_);
  }
  k().linear_forward(out, ctx.data(), w(p + "out_proj/weight"), w(p + "out_proj/bias"), R_, D_, D_);
}

void KvCache::feed_forward(int l, const float* in, float* out) {
  const std::string p = "decoder/layer_" + std::to_string(l) + "/ffn/";
  const int F = s_.d_ff;
  std::vector<float> pre(static_cast<std::size_t>(R_) * F), h(pre.size());
  k().linear_forward(pre.data(), in, w(p + "fc1/weight"), nullptr, R_, D_, F);
  k().bias_act_forward(h.data(), pre.data(), w(p + "fc1/bias"), R_, F, s_.activation);
  k().linear_forward(out, h.data(), w(p + "fc2/weight"), w(p + "fc2/bias"), R_, F, D_);
}

const std::vector<float>& KvCache::logits(const std::vector<int>& tokens, int pos) {
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
  k().linear_forward(out_.data(), x_.data(), w(out_name_), nullptr, R_, D_, V);
  return out_;
}

void KvCache::reorder(const std::vector<int>& parent, int pos) {
  const std::size_t span = static_cast<std::size_t>(pos + 1) * D_, row = static_cast<std::size_t>(max_pos_) * D_;
  for (auto* caches : {&kc_, &vc_})
    for (auto& c : *caches) {
      std::vector<float> old = c;
      for (int r = 0; r < R_; ++r)
        std::copy_n(old.data() + static_cast<std::size_t>(parent[r]) * row, span, c.data() + static_cast<std::size_t>(r) * row);
    }
}

}  // namespace th
