#include "th/train/grad_sync.hpp"

#include <algorithm>

#include "th/core/error.hpp"
#include "th/kernels/cpu.hpp"

namespace th {

GradientSync::GradientSync(Comm& comm, std::int64_t n, double bucket_mb, bool overlap)
    : comm_(comm), n_(n), overlap_(overlap) {
  const auto per_bucket = std::max<std::int64_t>(1, static_cast<std::int64_t>(bucket_mb * 1024 * 1024 / 4));
  for (std::int64_t end = n; end > 0; end -= per_bucket) buckets_.push_back({std::max<std::int64_t>(0, end - per_bucket), end});
  events_.resize(buckets_.size());
  comm_track_ = profiler().track("allreduce requests");
}

GradientSync::~GradientSync() = default;  // requests wait for themselves when destroyed

double GradientSync::since_begin() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
}

void GradientSync::begin_backward(float* grads, bool last_micro_batch) {
  active_ = last_micro_batch && comm_.size() > 1;
  grads_ = grads;
  next_ = 0;
  if (active_) {
    TH_CHECK(inflight_.empty(), "a gradient all-reduce is still in flight from the previous step");
    t0_ = std::chrono::steady_clock::now();
    launch_s_.clear();
  }
}

void GradientSync::launch_until(std::int64_t watermark) {
  while (next_ < buckets_.size() && buckets_[next_].begin >= watermark) {
    events_[next_].start(profiler(), "allreduce/bucket", Category::Communication, comm_track_,
                         {{"bytes", 4 * (buckets_[next_].end - buckets_[next_].begin)},
                          {"bucket", static_cast<std::int64_t>(next_)}});
    const Bucket& b = buckets_[next_++];
    launch_s_.push_back(since_begin());
    inflight_.push_back(comm_.iallreduce(grads_ + b.begin, static_cast<std::size_t>(b.end - b.begin), ReduceOp::Sum));
  }
}

void GradientSync::grads_ready(std::int64_t watermark) {
  if (!active_ || !overlap_) return;
  launch_until(watermark);
  for (std::size_t i = 0; i < inflight_.size(); ++i)  // lets MPI move the messages along between layers
    if (inflight_[i]->test()) events_[i].finish();
}

void GradientSync::finish() {
  if (!active_) return;
  backward_end_s_ = since_begin();
  ProfileScope scope(profiler(), "allreduce/wait", Category::Communication);
  launch_until(0);
  for (std::size_t i = 0; i < inflight_.size(); ++i) {
    inflight_[i]->wait();
    events_[i].finish();
  }
  inflight_.clear();
  exposed_s_ = since_begin() - backward_end_s_;
  cpu::scale_inplace(grads_, 1.0f / static_cast<float>(comm_.size()), n_);
  active_ = false;
}

}  // namespace th
