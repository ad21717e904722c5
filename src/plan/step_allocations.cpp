// The Activations and Workspace blocks of one training step, allocation by allocation, through a
// model of the caching allocator (th/core/memory.hpp: every block rounded up to the alignment; a
// request takes the smallest cached block of at least its size and at most `reuse` times it, else
// a new block; released blocks are cached). The sequence restates what src/model does, layer by
// layer: forward saves (Activations) and its per-layer scratch (Workspace), then backward's
// scratch, with checkpointing a block's forward again inside its backward.
// Legend: B sequences, S / T source / target positions, Ns = B*S, Nt = B*T rows, D d_model,
// H heads, F d_ff, V vocabulary; sizes in elements of `elem_bytes` until the pool rounds them.
#include <algorithm>
#include <cmath>
#include <map>
#include <vector>

#include "th/plan/memory.hpp"

namespace th {

namespace {

enum Cat { kAct = 0, kWork = 1 };

// The caching allocator, by block sizes (blocks of one size are interchangeable).
class PoolModel {
 public:
  PoolModel(double elem_bytes, double align, double reuse) : eb_(elem_bytes), align_(align), reuse_(reuse) {}
  void cache(double bytes) { free_.emplace(round(bytes), 0); }

  int alloc(Cat c, double elems) {
    const double want = round(elems * eb_);
    double size = want;
    auto it = free_.lower_bound(want);
    if (it != free_.end() && it->first <= reuse_ * want) {
      size = it->first;
      free_.erase(it);
    }
    blocks_.push_back({c, size, want, true});
    live_[c] += size, req_[c] += want;
    peak_[c] = std::max(peak_[c], live_[c]);
    req_peak_[c] = std::max(req_peak_[c], req_[c]);
    return static_cast<int>(blocks_.size()) - 1;
  }
  void release(int h) {
    if (h < 0) return;
    Block& b = blocks_[static_cast<std::size_t>(h)];
    if (!b.live) return;
    b.live = false;
    live_[b.cat] -= b.size, req_[b.cat] -= b.want;
    free_.emplace(b.size, 0);
  }
  double peak(Cat c) const { return peak_[c]; }
  double requested_peak(Cat c) const { return req_peak_[c]; }

 private:
  double round(double bytes) const { return std::max(1.0, std::ceil(bytes / align_)) * align_; }
  struct Block {
    Cat cat;
    double size, want;
    bool live;
  };
  double eb_, align_, reuse_;
  std::multimap<double, int> free_;
  std::vector<Block> blocks_;
  double live_[2] = {0, 0}, req_[2] = {0, 0}, peak_[2] = {0, 0}, req_peak_[2] = {0, 0};
};

// The step, layer by layer. Handles of live tensors are kept where the model keeps the tensors.
// A saved activation (th/model/saved.hpp) is made wide and, with a 16-bit store narrower than
// the compute storage (bf16 / fp16 on the CPU backend), packed into a 2-byte Activations block
// where the model calls pack(), its wide Workspace block freed; backward widens it into scratch.
class StepWalk {
 public:
  StepWalk(const PlanModel& m, const PlanBatch& b, bool ckpt, PoolModel& pool, double elem_bytes, double store_bytes)
      : m_(m), pool_(pool), ckpt_(ckpt), drop_(m.dropout > 0), stash_(store_bytes < elem_bytes),
        ratio_(store_bytes / elem_bytes), B(b.micro_batch), S(b.src), T(b.tgt), D(m.d_model), H(m.n_heads),
        F(m.d_ff), V(double(m.vocab)) {}

  void micro_batch() {
    const bool enc = !m_.decoder_only;
    const double Ns = B * S, Nt = B * T;
    // Forward: both embeddings, the encoder, the decoder, logits.
    std::vector<int> xs, xt;  // block inputs (and the stack output last)
    if (enc) xs.push_back(m_.encoder_layers > 0 ? make(Ns * D) : act(Ns * D));
    xt.push_back(m_.decoder_layers > 0 ? make(Nt * D) : act(Nt * D));
    std::vector<Saved> enc_blocks(m_.encoder_layers), dec_blocks(m_.decoder_layers);
    for (int i = 0; enc && i < m_.encoder_layers; ++i) {
      const bool is_memory = !m_.pre_norm && i + 1 == m_.encoder_layers;  // kept in fp32
      xs.push_back(is_memory ? act(Ns * D) : make(Ns * D));
      block_forward(enc_blocks[i], false, false);
      if (ckpt_) release(enc_blocks[i]);
      pack(xs[static_cast<std::size_t>(i)], Ns * D);
    }
    int memory = -1, enc_stats[2] = {-1, -1};
    if (enc && m_.pre_norm) {
      memory = act(Ns * D), enc_stats[0] = act(Ns), enc_stats[1] = act(Ns);
      pack(xs.back(), Ns * D);
    }
    for (int i = 0; i < m_.decoder_layers; ++i) {
      xt.push_back(make(Nt * D));
      block_forward(dec_blocks[i], true, enc);
      if (ckpt_) release(dec_blocks[i]);
      pack(xt[static_cast<std::size_t>(i)], Nt * D);
    }
    int final = -1, dec_stats[2] = {-1, -1};
    if (m_.pre_norm) {
      final = make(Nt * D), dec_stats[0] = act(Nt), dec_stats[1] = act(Nt);
      pack(xt.back(), Nt * D);
    }
    int logits = make(Nt * V);
    pack(m_.pre_norm ? final : xt.back(), Nt * D);
    const int losses = act(Nt), lse = act(Nt);
    pack(logits, Nt * V);
    // Backward. Without a final norm the stack output is also the memory / the final hidden
    // state, held until the end of the step (shared with the last block input).
    int wide = -1;
    const int wide_logits = widen(Nt * V);
    const int g = work(Nt * D), g2 = work(Nt * D);
    rewiden(wide, Nt * D);  // the final hidden state
    pool_.release(logits), pool_.release(wide_logits);
    if (m_.pre_norm) pool_.release(final);
    if (m_.pre_norm) rewiden(wide, Nt * D);  // the decoder norm's input
    const int dmemory = enc ? work(Ns * D) : -1;
    for (int i = m_.decoder_layers; i-- > 0;) {
      rewiden(wide, Nt * D);
      block_backward(dec_blocks[i], true, enc);
      pool_.release(xt[static_cast<std::size_t>(i) + 1]);  // final_ (the same tensor without a norm) is gone
    }
    if (enc) {
      const int e = work(Ns * D), e2 = work(Ns * D);
      if (m_.pre_norm) rewiden(wide, Ns * D);
      for (int i = m_.encoder_layers; i-- > 0;) {
        rewiden(wide, Ns * D);
        block_backward(enc_blocks[i], false, false);
        if (m_.pre_norm || i + 1 < m_.encoder_layers) pool_.release(xs[static_cast<std::size_t>(i) + 1]);
      }
      pool_.release(e), pool_.release(e2);
    }
    // discard(): whatever forward kept to the end, then backward's own pair.
    for (int h : xs) pool_.release(h);
    for (int h : xt) pool_.release(h);
    for (int h : {memory, enc_stats[0], enc_stats[1], dec_stats[0], dec_stats[1], losses, lse, dmemory})
      pool_.release(h);
    pool_.release(g), pool_.release(g2), pool_.release(wide);
  }

 private:
  // What a block keeps between its forward and its backward.
  struct Saved {
    std::vector<int> handles;
  };
  int act(double n) { return pool_.alloc(kAct, n); }
  int work(double n) { return pool_.alloc(kWork, n); }
  // Saved<T>::make / pack / widen.
  int make(double n) { return stash_ ? work(n) : act(n); }
  void pack(int& h, double n) {
    if (!stash_ || h < 0) return;
    const int narrow = pool_.alloc(kAct, n * ratio_);
    pool_.release(h);
    h = narrow;
  }
  int widen(double n) { return stash_ ? work(n) : -1; }
  void rewiden(int& h, double n) {  // `scratch = widened`: the new block first, then the old one freed
    const int w = widen(n);
    if (w < 0) return;
    pool_.release(h);
    h = w;
  }
  void release(Saved& s) {
    for (int h : s.handles) pool_.release(h);
    s.handles.clear();
  }

  // Residual::forward around a sublayer (`f` allocates the sublayer's saved tensors).
  template <typename Fn>
  void residual_forward(Saved& s, double N, Fn f) {
    const int fx = work(N * D);
    const std::size_t k = s.handles.size();
    s.handles.push_back(make(N * D));  // the norm's input (post) / output (pre)
    if (m_.pre_norm) {
      s.handles.push_back(act(N)), s.handles.push_back(act(N));  // mean, 1/std
      f();
      pack(s.handles[k], N * D);
    } else {
      f();
      s.handles.push_back(act(N)), s.handles.push_back(act(N));
      pack(s.handles[k], N * D);
    }
    pool_.release(fx);
  }
  void attention_forward(Saved& s, double Lq, double Lk, bool cross) {
    const double Nq = B * Lq, Nk = B * Lk, probs = B * H * Lq * Lk;
    const std::size_t q = s.handles.size();
    if (!cross) {
      s.handles.push_back(make(Nq * 3 * D));
    } else {
      s.handles.push_back(make(Nq * D));
      s.handles.push_back(make(Nk * 2 * D));
    }
    const std::size_t p = s.handles.size();
    s.handles.push_back(make(probs));
    const int dropped = drop_ ? work(probs) : -1;
    const std::size_t c = s.handles.size();
    s.handles.push_back(make(Nq * D));  // head outputs
    pack(s.handles[p], probs);
    pack(s.handles[q], Nq * (cross ? 1 : 3) * D);
    if (cross) pack(s.handles[q + 1], Nk * 2 * D);
    pack(s.handles[c], Nq * D);
    pool_.release(dropped);
  }
  void feed_forward_forward(Saved& s, double N) {
    const std::size_t k = s.handles.size();
    s.handles.push_back(make(N * F));
    s.handles.push_back(make(N * F));
    pack(s.handles[k], N * F);
    const int dropped = drop_ ? work(N * F) : -1;
    pack(s.handles[k + 1], N * F);
    pool_.release(dropped);
  }
  // Block::run_forward: sublayer outputs between parts are saved, the last goes to the caller;
  // each is packed once the next part has read it.
  void block_forward(Saved& s, bool decoder, bool cross) {
    const double L = decoder ? T : S, N = B * L;
    const int parts = decoder && cross ? 3 : 2;
    std::vector<std::size_t> inner;
    auto part = [&](int i, auto sub) {
      if (i + 1 < parts) inner.push_back(s.handles.size()), s.handles.push_back(make(N * D));
      residual_forward(s, N, sub);
      if (i > 0) pack(s.handles[inner[static_cast<std::size_t>(i) - 1]], N * D);
    };
    int i = 0;
    part(i++, [&] { attention_forward(s, L, L, false); });
    if (decoder && cross) part(i++, [&] { attention_forward(s, T, S, true); });
    part(i++, [&] { feed_forward_forward(s, N); });
  }
  // Block::backward: recompute (checkpointing) into a scratch output, then the parts last to
  // first, each a residual's pair around its sublayer's scratch; the saved tensors go at the end.
  void block_backward(Saved& s, bool decoder, bool cross) {
    const double L = decoder ? T : S, N = B * L;
    if (s.handles.empty()) {
      const int out = work(N * D);
      block_forward(s, decoder, cross);
      pool_.release(out);
    }
    const int g = work(N * D), g2 = work(N * D);
    auto residual_backward = [&](bool first, auto sub) {
      const int in = first ? -1 : widen(N * D);  // the part's input (an inner output)
      const int dfx = work(N * D), tmp = work(N * D);
      int saved = widen(N * D);                  // the norm's input / output
      if (!m_.pre_norm) pool_.release(saved), saved = -1;
      sub();
      pool_.release(dfx), pool_.release(tmp), pool_.release(saved), pool_.release(in);
    };
    auto attention_backward = [&](double Lq, double Lk, bool x) {
      const double Nq = B * Lq, Nk = B * Lk, probs = B * H * Lq * Lk;
      std::vector<int> h{work(Nq * D)};
      pool_.release(widen(Nq * D));  // the head outputs, for the output projection
      h.push_back(work(Nq * (x ? 1 : 3) * D));
      if (x) h.push_back(work(Nk * 2 * D));
      h.push_back(widen(Nq * (x ? 1 : 3) * D));
      if (x) h.push_back(widen(Nk * 2 * D));
      h.push_back(widen(probs));
      if (drop_) h.push_back(work(probs));
      h.push_back(work(probs));
      for (int k : h) pool_.release(k);
    };
    residual_backward(false, [&] {  // the feed-forward part: its input is an inner output
      const int dh = work(N * F), wide_h = widen(N * F), dropped = drop_ ? work(N * F) : -1;
      pool_.release(wide_h), pool_.release(dropped);
      const int wide_pre = widen(N * F);
      pool_.release(dh), pool_.release(wide_pre);
    });
    if (decoder && cross) residual_backward(false, [&] { attention_backward(T, S, true); });
    residual_backward(true, [&] { attention_backward(L, L, false); });
    release(s);
    pool_.release(g), pool_.release(g2);
  }

  const PlanModel& m_;
  PoolModel& pool_;
  bool ckpt_, drop_, stash_;
  double ratio_;  // 16-bit store bytes / compute storage bytes
  double B, S, T, D, H, F, V;
};

}  // namespace

StepAllocations step_allocations(const PlanModel& m, const PlanBatch& b, bool checkpointing, double elem_bytes,
                                 double store_bytes, const Machine& machine, double cached_bytes) {
  PoolModel pool(elem_bytes, double(machine.alloc_align_bytes), machine.alloc_reuse);
  if (cached_bytes > 0) pool.cache(cached_bytes);
  StepWalk walk(m, b, checkpointing, pool, elem_bytes, store_bytes);
  for (int a = 0; a < std::max(1, b.grad_accum); ++a) walk.micro_batch();
  StepAllocations s;
  s.activations = pool.peak(kAct);
  s.workspace = pool.peak(kWork);
  s.activations_requested = pool.requested_peak(kAct);
  s.workspace_requested = pool.requested_peak(kWork);
  return s;
}

}  // namespace th
