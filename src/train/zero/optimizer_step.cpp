#include "optimizer_step.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "precision.hpp"
#include "th/core/error.hpp"
#include "th/core/profiler.hpp"
#include "th/parallel/agree.hpp"
#include "th/train/optimizer.hpp"

namespace th::zero {

OptimizerStep::OptimizerStep(Comm& comm, const OwnedSpans& spans, ParamHome& params, OptimizerStore& store,
                             DType compute, int summed_over, int divide_by, std::int64_t moments, Backend& backend)
    : comm_(comm), be_(backend), spans_(spans), params_(params), store_(store), compute_(compute),
      summed_over_(summed_over), divide_by_(divide_by) {
  TH_CHECK(compute == DType::F32 || compute == DType::BF16 || compute == DType::F16,
           std::string("compute type ") + to_string(compute));
  if (compute != DType::F32)
    master_ = be_.zeros({std::max<std::int64_t>(moments, 1)}, DType::F32, MemCategory::OptimizerState);
  for (const OwnedSpan& s : spans_)
    TH_CHECK(!s.grad != !s.grad16, "an owned span has gradients in fp32 or in 2 bytes");
  if (std::any_of(spans_.begin(), spans_.end(), [](const OwnedSpan& s) { return s.grad16; }))
    chunk_ = be_.empty({kChunk}, DType::F32, MemCategory::Workspace);
}

float* OptimizerStep::widened(const OwnedSpan& s, std::int64_t i, std::int64_t m, bool scaled) const {
  float* t = chunk_.data<float>();
  be_.widen_16bit(compute_, t, s.grad16 + i, m);
  if (scaled)
    for (float f : pending_) be_.f32().scale_inplace(t, f, m);
  return t;
}

double OptimizerStep::clip_and_norm(double max_norm, double loss_scale) {
  pending_.clear();
  // 2-byte gradients at stage 0 hold sums over ranks: first the averaging that the fp32 store's
  // all-reduce does (GradientSync::finish, the same factor), so the bits are the same.
  if (divide_by_ != summed_over_) pending_.push_back(1.0f / static_cast<float>(divide_by_));
  // Sums over ranks -> averages (and the loss scale undone).
  if (summed_over_ != 1 || loss_scale != 1.0) {
    const float inv = loss_scale == 1.0 ? 1.0f / static_cast<float>(summed_over_)
                                        : static_cast<float>(1.0 / (summed_over_ * loss_scale));
    for (const OwnedSpan& s : spans_)
      if (s.grad) be_.f32().scale_inplace(s.grad, inv, s.n);
    pending_.push_back(inv);
  }
  double sq = 0;
  for (const OwnedSpan& s : spans_) {
    if (s.grad) sq += be_.f32().sum_squares(s.grad, s.n);
    else each_chunk(s, [&](std::int64_t i, std::int64_t m) { sq += be_.f32().sum_squares(widened(s, i, m), m); });
  }
  if (summed_over_ != 1) sq = comm_.sum(sq);  // each rank holds a part of the gradients
  for (const OwnedSpan& s : spans_)
    if (s.grad) clip_by_global_norm(s.grad, s.n, sq, max_norm, be_);
  if (const double factor = clip_factor(sq, max_norm); factor < 1.0) pending_.push_back(static_cast<float>(factor));
  return std::sqrt(sq);
}

bool OptimizerStep::local_overflow() const {
  // fp16: the reduction of a real fp16 run carries averages (DeepSpeed divides by N before the
  // all-reduce); stage 0's buffer holds the average already, stages 1-3 hold the sum over ranks.
  const float limit = compute_ == DType::F16 ? 65504.0f * static_cast<float>(summed_over_)
                                             : std::numeric_limits<float>::max();
  bool bad = false;
  auto check = [&](const float* g, std::int64_t n) {
    for (std::int64_t i = 0; i < n && !bad; ++i) bad = !(std::fabs(g[i]) <= limit);  // NaN too
  };
  for (const OwnedSpan& s : spans_) {
    Tensor staging;  // the gradients read on the host: an explicit copy (the CPU backend aliases)
    if (s.grad) {
      check(host_view(be_, s.grad, s.n, staging), s.n);
      continue;
    }
    // 2-byte gradients: widened chunk by chunk, averaged as the fp32 store is at stage 0.
    each_chunk(s, [&](std::int64_t i, std::int64_t m) {
      float* t = widened(s, i, m, false);
      if (divide_by_ != summed_over_) be_.f32().scale_inplace(t, 1.0f / static_cast<float>(divide_by_), m);
      if (!bad) check(host_view(be_, t, m, staging), m);
    });
  }
  return bad;
}

void OptimizerStep::inject_overflow() {
  for (const OwnedSpan& s : spans_)
    if (s.n > 0) {
      if (s.grad16) {  // an inf of the gradients' 16-bit type
        const std::uint16_t inf = compute_ == DType::F16 ? 0x7C00 : 0x7F80;
        be_.host_to_device(s.grad16, &inf, sizeof inf);
      } else {
        be_.f32().fill(s.grad, std::numeric_limits<float>::infinity(), 1);
      }
      return;
    }
}

void OptimizerStep::master_to_compute() {
  if (params_.file()) {  // the compute values of the partition live in the NVMe file (host I/O)
    Tensor staging;
    params_.write_partition(host_view(be_, master_.data<float>(), master_.numel(), staging), compute_);
    return;
  }
  if (params_.owned_on_host()) params_.drop_prefetched();  // the host writes the partition: uploads end first
  for (const OwnedSpan& s : spans_) {
    if (params_.owned_on_host() && s.value16) {  // host-resident 2-byte partition on a device backend
      Tensor staging;
      narrow_16bit_on_host(compute_, s.value16, host_view(be_, master_.data<float>() + s.shard, s.n, staging), s.n);
      continue;
    }
    if (params_.owned_on_host()) {  // host-resident partition on a device backend
      copy_to_host(be_, s.value, master_.data<float>() + s.shard, s.n);
      round_to_compute_on_host(compute_, s.value, s.n);
      continue;
    }
    if (s.value16) {  // the 2-byte compute copy
      be_.narrow_16bit(compute_, s.value16, master_.data<float>() + s.shard, s.n);
      continue;
    }
    copy_device(be_, s.value, master_.data<float>() + s.shard, s.n);
    round_to_compute(be_, compute_, s.value, s.n);
  }
}

void OptimizerStep::update(double lr) {
  // Mixed precision: Adam updates the fp32 master, the compute copy is rounded from it.
  float* master = this->master();
  const bool two_byte_grads = chunk_.defined();
  TH_CHECK(!two_byte_grads || (!params_.file() && !store_.does_io()),
           "2-byte gradients with offloaded optimizer state or parameters");
  params_.drop_prefetched();  // nothing gathered ahead may outlive the old values
  store_.next_step();
  // The parameter file and the offloaded store work on the host: the gradients go down first, by
  // an explicit device -> host copy (the CPU backend aliases: no copy).
  std::vector<Tensor> staged(spans_.size());
  auto host_grads = [&] {
    std::vector<const float*> g(spans_.size());
    for (std::size_t i = 0; i < spans_.size(); ++i) g[i] = host_view(be_, spans_[i].grad, spans_[i].n, staged[i]);
    return g;
  };
  if (ChunkFile* file = params_.file(); file && !master) {
    // offload_param = 'nvme', fp32: the partition values stream through the file's two slots;
    // each chunk is updated in its slot and written back (an I/O error on any rank stops all).
    const std::vector<const float*> g = host_grads();
    agree_each(comm_, [&] {
      file->stream([&](float* x, float*, std::int64_t c0, std::int64_t c1) {
        std::vector<AdamSpan> spans;
        for (std::size_t i = 0; i < spans_.size(); ++i) {
          const OwnedSpan& s = spans_[i];
          const std::int64_t lo = std::max(c0, s.shard), hi = std::min(c1, s.shard + s.n);
          if (lo < hi) spans.push_back({x + (lo - c0), g[i] + (lo - s.shard), lo, hi - lo});
        }
        store_.update(spans, lr);
      }, true);
    });
  } else if (store_.does_io() && !be_.device_is_host()) {
    update_offloaded_streamed(master, lr);
  } else if (store_.does_io()) {
    // Offloaded moments: host copies of the gradients and values, updated on the host, the values
    // copied back up (an I/O error on any rank stops every rank).
    const std::vector<const float*> g = host_grads();
    std::vector<Tensor> values(spans_.size());
    std::vector<AdamSpan> spans;
    spans.reserve(spans_.size());
    for (std::size_t i = 0; i < spans_.size(); ++i) {
      const OwnedSpan& s = spans_[i];
      float* p = master ? master + s.shard : s.value;
      // A host-resident value (stage 3 offload_param = 'cpu', fp32) is updated in place; a device
      // one through a host copy (host_target stages it; the CPU backend aliases).
      float* host = host_target(be_, p, s.n, values[i]);
      if (values[i].defined()) copy_to_host(be_, host, p, s.n);
      spans.push_back({host, g[i], s.shard, s.n});
    }
    agree_each(comm_, [&] { store_.update(spans, lr); });
    for (std::size_t i = 0; i < spans_.size(); ++i)
      if (values[i].defined())
        copy_to_device(be_, master ? master + spans_[i].shard : spans_[i].value, spans[i].param, spans_[i].n);
  } else {
    // Moments with the parameters: the backend's AdamW kernel in place.
    std::vector<AdamSpan> spans;
    spans.reserve(spans_.size());
    for (const OwnedSpan& s : spans_) {
      float* p = master ? master + s.shard : s.value;
      if (s.grad) {
        spans.push_back({p, s.grad, s.shard, s.n});
        continue;
      }
      each_chunk(s, [&](std::int64_t i, std::int64_t m) {  // 2-byte gradients: widened chunk by chunk
        store_.update({{p + i, widened(s, i, m), s.shard + i, m}}, lr);
      });
    }
    store_.update(spans, lr);
  }
  pending_.clear();
  if (master) master_to_compute();
  params_.regather();
  params_.order_recorded();
}

void OptimizerStep::update_offloaded_streamed(float* master, double lr) {
  using Stream = Backend::Stream;
  // The copy stream starts after the compute stream has produced the gradients.
  be_.stream_wait(Stream::Copy, be_.record(Stream::Compute));
  const std::size_t count = spans_.size();
  const bool values_on_host = !master && params_.owned_on_host();  // stage 3, offload_param = 'cpu', fp32
  std::vector<Tensor> grads(count), values(count);
  std::vector<Backend::Event> down(count);
  std::vector<AdamSpan> spans(count);
  auto pinned = [&](std::int64_t n) {
    return be_.empty({std::max<std::int64_t>(n, 1)}, DType::F32, MemCategory::Workspace, MemorySpace::Pinned);
  };
  auto value_of = [&](std::size_t i) { return master ? master + spans_[i].shard : spans_[i].value; };
  {
    for (std::size_t i = 0; i < count; ++i) {
      const OwnedSpan& s = spans_[i];
      const std::size_t bytes = sizeof(float) * static_cast<std::size_t>(s.n);
      grads[i] = pinned(s.n);
      be_.copy_to_host_async(grads[i].raw(), s.grad, bytes, Stream::Copy);
      float* host_value = value_of(i);
      if (!values_on_host) {
        values[i] = pinned(s.n);
        be_.copy_to_host_async(values[i].raw(), host_value, bytes, Stream::Copy);
        host_value = values[i].data<float>();
      }
      down[i] = be_.record(Stream::Copy);
      spans[i] = {host_value, grads[i].data<float>(), s.shard, s.n};
    }
  }
  auto upload = [&](std::size_t i) {
    if (values[i].defined())
      be_.copy_to_device_async(value_of(i), values[i].raw(), sizeof(float) * static_cast<std::size_t>(spans_[i].n),
                               Stream::Copy);
  };
  // Moments resident on the host: each span's AdamW needs only that span, so span i is updated
  // as soon as it has arrived while the next ones are still coming down and the previous ones
  // go back up. Moments in the NVMe file: one streamed pass over the file, after every span.
  const bool by_span = store_.exp_avg() != nullptr;
  auto arrived = [&](Backend::Event e) {  // the host's time waiting for the copy stream
    ProfileScope scope(profiler(), "offload/copy_wait", Category::Offload);
    be_.wait(e);
  };
  agree_each(comm_, [&] {
    if (by_span) {
      for (std::size_t i = 0; i < count; ++i) {
        arrived(down[i]);
        store_.update({spans[i]}, lr);
        upload(i);
      }
    } else {
      if (count) arrived(down.back());  // one in-order stream: every span is down
      store_.update(spans, lr);
      for (std::size_t i = 0; i < count; ++i) upload(i);
    }
  });
  // The compute stream uses the values after they are up; the pinned buffers go back to the
  // pool only once the copies out of them are done.
  const Backend::Event up = be_.record(Stream::Copy);
  be_.stream_wait(Stream::Compute, up);
  arrived(up);
}

void OptimizerStep::skip_update() {
  pending_.clear();
  params_.drop_prefetched();  // as after an update: the recorded order is complete after the first step
  params_.order_recorded();
}

}  // namespace th::zero
