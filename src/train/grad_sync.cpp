#include "th/train/grad_sync.hpp"

#include <algorithm>

#include "th/core/error.hpp"

namespace th {

GradientSync::GradientSync(Comm& comm, std::int64_t n, double bucket_mb, bool overlap, Backend& backend)
    : comm_(comm), be_(backend), n_(n), overlap_(overlap) {
  const auto per_bucket = std::max<std::int64_t>(1, static_cast<std::int64_t>(bucket_mb * 1024 * 1024 / 4));
  for (std::int64_t end = n; end > 0; end -= per_bucket) buckets_.push_back({std::max<std::int64_t>(0, end - per_bucket), end});
  events_.resize(buckets_.size());
  comm_track_ = profiler().track("allreduce requests");
}

GradientSync::GradientSync(Comm& comm, std::vector<Bucket> buckets, bool overlap,
                           std::function<void(std::size_t)> on_done, Backend& backend)
    : comm_(comm), be_(backend), n_(buckets.empty() ? 0 : buckets.front().end), overlap_(overlap),
      on_done_(std::move(on_done)),
      buckets_(std::move(buckets)) {
  for (std::size_t i = 0; i < buckets_.size(); ++i) {
    const Bucket& b = buckets_[i];
    TH_CHECK((b.end - b.begin) % comm.size() == 0 && (i == 0 || b.end == buckets_[i - 1].begin) &&
                 (i + 1 < buckets_.size() || b.begin == 0),
             "reduce-scatter buckets must tile the buffer from its end, each a multiple of the world size");
  }
  events_.resize(buckets_.size());
  comm_track_ = profiler().track("reduce-scatter requests");
}

GradientSync::~GradientSync() = default;  // requests wait for themselves when destroyed

double GradientSync::since_begin() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
}

void GradientSync::begin_backward(float* grads, bool communicate) {
  active_ = communicate && (comm_.size() > 1 || on_done_);
  grads_ = grads;
  next_ = 0;
  if (active_) {
    TH_CHECK(inflight_.empty(), "a gradient all-reduce is still in flight from the previous step");
    t0_ = std::chrono::steady_clock::now();
    launch_s_.clear();
    done_.assign(buckets_.size(), 0);
  }
}

void GradientSync::launch_until(std::int64_t watermark) {
  while (next_ < buckets_.size() && buckets_[next_].begin >= watermark) {
    events_[next_].start(profiler(), on_done_ ? "reduce_scatter/bucket" : "allreduce/bucket",
                         Category::Communication, comm_track_,
                         {{"bytes", 4 * (buckets_[next_].end - buckets_[next_].begin)},
                          {"bucket", static_cast<std::int64_t>(next_)}});
    const Bucket& b = buckets_[next_++];
    launch_s_.push_back(since_begin());
    const auto len = static_cast<std::size_t>(b.end - b.begin);
    inflight_.push_back(on_done_ ? comm_.ireduce_scatter(grads_ + b.begin, grads_ + b.begin,
                                                          len / static_cast<std::size_t>(comm_.size()), ReduceOp::Sum)
                                 : comm_.iallreduce(grads_ + b.begin, len, ReduceOp::Sum));
  }
}

void GradientSync::arrived(std::size_t i) {
  events_[i].finish();
  if (on_done_ && !done_[i]) {
    done_[i] = 1;
    on_done_(i);
  }
}

void GradientSync::poll() {
  for (std::size_t i = 0; i < inflight_.size(); ++i)  // lets MPI move the messages along between layers
    if (inflight_[i]->test()) arrived(i);
}

void GradientSync::grads_ready(std::int64_t watermark) {
  if (!active_ || (!overlap_ && !on_done_)) return;
  launch_until(watermark);
  if (overlap_) {
    poll();
    return;
  }
  // Reduce-scatter mode without overlap: each bucket still goes as soon as it is final (ZeRO 2-3
  // never hold the whole gradient), but backward waits for it.
  for (std::size_t i = 0; i < inflight_.size(); ++i) {
    inflight_[i]->wait();
    arrived(i);
  }
}

void GradientSync::finish() {
  if (!active_) return;
  backward_end_s_ = since_begin();
  ProfileScope scope(profiler(), "allreduce/wait", Category::Communication);
  launch_until(0);
  for (std::size_t i = 0; i < inflight_.size(); ++i) {
    inflight_[i]->wait();
    arrived(i);
  }
  inflight_.clear();
  exposed_s_ = since_begin() - backward_end_s_;
  if (!on_done_) be_.f32().scale_inplace(grads_, 1.0f / static_cast<float>(comm_.size()), n_);
  active_ = false;
}

}  // namespace th
