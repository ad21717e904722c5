#include "th/model/kv_cache.hpp"

#include <algorithm>
#include <cmath>

#include "th/core/error.hpp"
#include "source_batch.hpp"

namespace th {

KvCache::KvCache(Transformer<float>& m, const std::vector<std::vector<int>>& sources, int K, int max_pos)
    : m_(m), be_(m.backend()), ps_(m.params()), s_(m.spec()), K_(K), R_(static_cast<int>(sources.size()) * K),
      D_(m.spec().d_model), max_pos_(max_pos) {
  const bool tied = s_.tie_embeddings;
  embed_name_ = tied ? "embed/weight" : "decoder/embed/weight";
  out_name_ = tied ? "embed/weight" : "output/weight";
  // The model's own table (sinusoidal buffer or learned parameter), rows [0, max_pos).
  TH_CHECK(max_pos <= s_.max_len, "decoding past model%max_len");
  pe_ = m.positional_table();
  const std::int64_t cache = static_cast<std::int64_t>(R_) * max_pos * D_;
  for (int l = 0; l < s_.n_decoder_layers; ++l) {
    kc_.push_back(be_.zeros({cache}, DType::F32, MemCategory::Activations));
    vc_.push_back(be_.zeros({cache}, DType::F32, MemCategory::Activations));
  }
  if (!s_.decoder_only) {
    const Batch b = source_batch(sources, 1);
    S_ = b.S;
    src_len_ = b.src_len;
    const Tensor memory = m_.encode(b);
    for (int l = 0; l < s_.n_decoder_layers; ++l) {
      const std::string p = "decoder/layer_" + std::to_string(l) + "/cross_attn/";
      Tensor kv = dev(static_cast<std::int64_t>(b.B) * S_ * 2 * D_);
      // [Wk; Wv] and [bk; bv] are contiguous in the flat buffer (declared k, v in a row).
      k().linear_forward(kv.data<float>(), memory.data<float>(), w(p + "k_proj/weight"), w(p + "k_proj/bias"),
                         static_cast<std::int64_t>(b.B) * S_, D_, 2 * D_);
      mem_kv_.push_back(std::move(kv));
    }
  }
}

Tensor KvCache::dev(std::int64_t n) const {
  return be_.empty({std::max<std::int64_t>(n, 1)}, DType::F32, MemCategory::Activations);
}

void KvCache::layer_norm(Tensor& x, const std::string& prefix) {
  Tensor mean = dev(R_), rstd = dev(R_), in = dev(x.numel());
  copy_device(be_, in.data<float>(), x.data<float>(), x.numel());
  k().layernorm_forward(x.data<float>(), mean.data<float>(), rstd.data<float>(), in.data<float>(),
                        w(prefix + "/weight"), w(prefix + "/bias"), R_, D_, 1e-5f);
}

void KvCache::residual(Tensor& x, const std::string& norm, const std::function<void(const float*, float*)>& f) {
  Tensor y = dev(x.numel());
  if (s_.pre_norm) {
    Tensor n = dev(x.numel());
    copy_device(be_, n.data<float>(), x.data<float>(), x.numel());
    layer_norm(n, norm);
    f(n.data<float>(), y.data<float>());
    k().add_inplace(x.data<float>(), y.data<float>(), x.numel());
  } else {
    f(x.data<float>(), y.data<float>());
    k().add_inplace(x.data<float>(), y.data<float>(), x.numel());
    layer_norm(x, norm);
  }
}

// Head h: scores[h, j] = q[h] . keys[j, h] (an [1 x Dh] x [Dh x n_keys] GEMM, batched over the heads
// at stride Dh), the softmax kernel with scale 1/sqrt(Dh), ctx[h] = P[h] values[:, h].
void KvCache::attend(const float* q, const float* keys, const float* values, int ld, int n_keys, float* ctx) {
  const int H = s_.n_heads, Dh = D_ / H;
  Tensor P = dev(static_cast<std::int64_t>(H) * n_keys);
  float* p = P.data<float>();
  k().gemm_strided_batched(false, true, 1, n_keys, Dh, 1.0f, q, Dh, Dh, keys, ld, Dh, 0.0f, p, n_keys, n_keys, H);
  k().attention_softmax_forward(p, 1, H, 1, n_keys, nullptr, false, 0, 1.0f / std::sqrt(static_cast<float>(Dh)));
  k().gemm_strided_batched(false, false, 1, Dh, n_keys, 1.0f, p, n_keys, n_keys, values, ld, Dh, 0.0f, ctx, Dh, Dh, H);
}

void KvCache::self_attention(int l, const float* in, float* out, int pos) {
  const std::string p = "decoder/layer_" + std::to_string(l) + "/self_attn/";
  Tensor qkv_t = dev(static_cast<std::int64_t>(R_) * 3 * D_), ctx_t = dev(static_cast<std::int64_t>(R_) * D_);
  float *qkv = qkv_t.data<float>(), *ctx = ctx_t.data<float>();
  k().linear_forward(qkv, in, w(p + "q_proj/weight"), w(p + "q_proj/bias"), R_, D_, 3 * D_);
  float* K = kc_[static_cast<std::size_t>(l)].data<float>();
  float* V = vc_[static_cast<std::size_t>(l)].data<float>();
  for (int r = 0; r < R_; ++r) {
    const std::int64_t row = static_cast<std::int64_t>(r) * max_pos_ * D_, at = row + static_cast<std::int64_t>(pos) * D_;
    const float* qr = qkv + static_cast<std::int64_t>(r) * 3 * D_;
    copy_device(be_, K + at, qr + D_, D_);
    copy_device(be_, V + at, qr + 2 * D_, D_);
    attend(qr, K + row, V + row, D_, pos + 1, ctx + static_cast<std::int64_t>(r) * D_);
  }
  k().linear_forward(out, ctx, w(p + "out_proj/weight"), w(p + "out_proj/bias"), R_, D_, D_);
}

void KvCache::cross_attention(int l, const float* in, float* out) {
  const std::string p = "decoder/layer_" + std::to_string(l) + "/cross_attn/";
  Tensor q_t = dev(static_cast<std::int64_t>(R_) * D_), ctx_t = dev(static_cast<std::int64_t>(R_) * D_);
  float *q = q_t.data<float>(), *ctx = ctx_t.data<float>();
  k().linear_forward(q, in, w(p + "q_proj/weight"), w(p + "q_proj/bias"), R_, D_, D_);
  for (int r = 0; r < R_; ++r) {
    const int sent = r / K_;
    const float* kv = mem_kv_[static_cast<std::size_t>(l)].data<float>() + static_cast<std::int64_t>(sent) * S_ * 2 * D_;
    attend(q + static_cast<std::int64_t>(r) * D_, kv, kv + D_, 2 * D_, src_len_[static_cast<std::size_t>(sent)],
           ctx + static_cast<std::int64_t>(r) * D_);
  }
  k().linear_forward(out, ctx, w(p + "out_proj/weight"), w(p + "out_proj/bias"), R_, D_, D_);
}

void KvCache::feed_forward(int l, const float* in, float* out) {
  const std::string p = "decoder/layer_" + std::to_string(l) + "/ffn/";
  const int F = s_.d_ff;
  Tensor pre = dev(static_cast<std::int64_t>(R_) * F), h = dev(static_cast<std::int64_t>(R_) * F);
  k().linear_forward(pre.data<float>(), in, w(p + "fc1/weight"), nullptr, R_, D_, F);
  k().bias_act_forward(h.data<float>(), pre.data<float>(), w(p + "fc1/bias"), R_, F, s_.activation);
  k().linear_forward(out, h.data<float>(), w(p + "fc2/weight"), w(p + "fc2/bias"), R_, F, D_);
}

const std::vector<float>& KvCache::logits(const std::vector<int>& tokens, int pos) {
  TH_CHECK(pos < max_pos_, "decoding past the cache length");
  TH_CHECK(static_cast<int>(tokens.size()) == R_, "one token per row");
  x_ = dev(static_cast<std::int64_t>(R_) * D_);
  // x = E[token] * sqrt(D) + PE[pos]: the embedding kernel on R rows of length 1, the table from row pos.
  k().embedding_forward(x_.data<float>(), tokens.data(), w(embed_name_), pe_ + static_cast<std::int64_t>(pos) * D_, R_,
                        1, D_, std::sqrt(static_cast<float>(D_)));
  const bool enc = !s_.decoder_only;
  for (int l = 0; l < s_.n_decoder_layers; ++l) {
    const std::string p = "decoder/layer_" + std::to_string(l);
    residual(x_, p + "/norm1", [&](const float* in, float* out) { self_attention(l, in, out, pos); });
    if (enc) residual(x_, p + "/norm2", [&](const float* in, float* out) { cross_attention(l, in, out); });
    residual(x_, p + (enc ? "/norm3" : "/norm2"), [&](const float* in, float* out) { feed_forward(l, in, out); });
  }
  if (s_.pre_norm) layer_norm(x_, "decoder/final_norm");
  const int V = s_.vocab_size;
  Tensor out = dev(static_cast<std::int64_t>(R_) * V);
  k().linear_forward(out.data<float>(), x_.data<float>(), w(out_name_), nullptr, R_, D_, V);
  out_.resize(static_cast<std::size_t>(R_) * V);
  copy_to_host(be_, out_.data(), out.data<float>(), static_cast<std::int64_t>(out_.size()));  // the one host read
  return out_;
}

void KvCache::reorder(const std::vector<int>& parent, int pos) {
  const std::int64_t span = static_cast<std::int64_t>(pos + 1) * D_, row = static_cast<std::int64_t>(max_pos_) * D_;
  for (auto* caches : {&kc_, &vc_})
    for (Tensor& c : *caches) {
      Tensor old = dev(c.numel());
      copy_device(be_, old.data<float>(), c.data<float>(), c.numel());
      for (int r = 0; r < R_; ++r)
        copy_device(be_, c.data<float>() + static_cast<std::int64_t>(r) * row,
                    old.data<float>() + static_cast<std::int64_t>(parent[static_cast<std::size_t>(r)]) * row, span);
    }
}

}  // namespace th
