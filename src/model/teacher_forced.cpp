// Teacher-forced evaluation of a model over batches (th/model/teacher_forced.hpp).
#include "th/model/teacher_forced.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>

#include "th/core/error.hpp"
#include "th/core/profiler.hpp"

namespace th {

EvalStats evaluate_batches(Transformer<float>& model, const std::vector<Batch>& batches, Comm& comm,
                           const std::vector<float>& token_bytes) {
  const int V = model.spec().vocab_size, pad = model.spec().pad_id;
  double sums[4] = {0, 0, 0, 0};  // nll, correct, tokens, bytes
  static std::atomic<std::int64_t> evaluated{0};  // batches of this process, for TH_FAULT kind 'evaluate'
  for (const Batch& b : batches) {
    inject_fault("evaluate", comm.rank(), ++evaluated, "evaluating a batch");
    ProfileScope scope(profiler(), "evaluate/forward", Category::Compute);
    model.forward(b, 0, 0, /*train=*/false);
    // Host statistics of device data: explicit copies (the CPU backend aliases, at no cost).
    const std::int64_t rows = static_cast<std::int64_t>(b.B) * b.T;
    Tensor logits_host, lse_host;
    const float* logits = host_view(model.backend(), model.logits().data<float>(), rows * V, logits_host);
    const float* lse = host_view(model.backend(), model.log_sum_exp().data<float>(), rows, lse_host);  // per row
    for (std::int64_t r = 0; r < rows; ++r) {
      const int target = b.tgt_out[static_cast<std::size_t>(r)];
      if (target == pad) continue;
      const float* z = logits + r * V;
      const int best = static_cast<int>(std::max_element(z, z + V) - z);
      sums[0] += static_cast<double>(lse[r]) - z[target];
      sums[1] += best == target ? 1.0 : 0.0;
      sums[2] += 1.0;
      if (!token_bytes.empty()) sums[3] += token_bytes[static_cast<std::size_t>(target)];
    }
    model.discard();
  }
  comm.allreduce(sums, 4, ReduceOp::Sum);
  EvalStats s;
  s.tokens = sums[2];
  if (s.tokens > 0) {
    s.loss = sums[0] / s.tokens;
    s.accuracy = sums[1] / s.tokens;
  }
  s.perplexity = std::exp(s.loss);
  s.bytes = sums[3];
  if (s.bytes > 0) {
    s.byte_perplexity = std::exp(sums[0] / s.bytes);
    s.bits_per_byte = sums[0] / (s.bytes * std::log(2.0));
  }
  return s;
}

}  // namespace th
