#pragma once
// Incremental decoding (translate's greedy and beam search, generate's sampling): each decoder
// layer keeps the keys and values of every position fed so far (self-attention) and of the
// source (cross-attention, computed once), so feeding one more position costs one position.
// Reads the weights by name from the model's parameter store. All R rows advance together, one
// position per call; a row's forced prefix is fed token by token like generated tokens.
// Everything lives in the model backend's device memory and runs on its kernels (attention per
// row: one strided-batched GEMM over the heads for the scores, the masked softmax kernel, one for
// the context); the logits come back to the host by one explicit copy per call.
#include <functional>
#include <string>
#include <vector>

#include "th/model/transformer.hpp"

namespace th {

class KvCache {
 public:
  // R = sources.size() * K rows, positions [0, max_pos). An encoder-decoder model encodes the
  // sources once (row r reads source r / K); a decoder-only model only counts them.
  KvCache(Transformer<float>& m, const std::vector<std::vector<int>>& sources, int K, int max_pos);
  // Feeds tokens[r] at position pos to row r; the next-token logits [R, V] (raw, before softmax).
  const std::vector<float>& logits(const std::vector<int>& tokens, int pos);
  // Beam search: row r continues old row parent[r] (positions 0..pos copied).
  void reorder(const std::vector<int>& parent, int pos);

 private:
  const float* w(const std::string& name) const { return ps_.value(ps_.find(name).offset); }
  Kernels<float>& k() const { return be_.f32(); }  // every kernel through the model's backend
  Tensor dev(std::int64_t n) const;                 // a device workspace of n floats
  void layer_norm(Tensor& x, const std::string& prefix);
  void residual(Tensor& x, const std::string& norm, const std::function<void(const float*, float*)>& f);
  void self_attention(int l, const float* in, float* out, int pos);
  void cross_attention(int l, const float* in, float* out);
  void feed_forward(int l, const float* in, float* out);
  // ctx[D] of one row: per head softmax(q.k / sqrt(Dh)) over n_keys keys, then the values.
  void attend(const float* q, const float* keys, const float* values, int ld, int n_keys, float* ctx);

  Transformer<float>& m_;
  Backend& be_;
  ParamStore<float>& ps_;
  const ModelSpec& s_;
  int K_, R_, D_, max_pos_, S_ = 0;
  std::vector<int> src_len_;
  std::string out_name_, embed_name_;
  const float* pe_ = nullptr;           // the model's positional table (device), rows [0, max_pos)
  std::vector<Tensor> kc_, vc_;         // per layer [R, max_pos, D] (device)
  std::vector<Tensor> mem_kv_;          // per layer [n_src * S, 2D] (device)
  Tensor x_;                            // [R, D] (device)
  std::vector<float> out_;              // the logits of the last call (host)
};

}  // namespace th
