#include "th/train/grad_sync.hpp"

#include <algorithm>
#include <cstdint>
#include <vector>

#include "th/backend/staged_comm.hpp"
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
  stored16_ = nullptr;
  next_ = 0;
  if (active_) {
    TH_CHECK(inflight_.empty(), "a gradient all-reduce is still in flight from the previous step");
    t0_ = std::chrono::steady_clock::now();
    launch_s_.clear();
    done_.assign(buckets_.size(), 0);
  }
}

void GradientSync::begin_backward16(std::uint16_t* grads, bool communicate) {
  TH_CHECK(wire_ != DType::F32, "2-byte gradients need a 16-bit wire type (set_wire_type)");
  begin_backward(nullptr, communicate);
  stored16_ = grads;
}

void GradientSync::launch_until(std::int64_t watermark) {
  while (next_ < buckets_.size() && buckets_[next_].begin >= watermark) {
    events_[next_].start(profiler(), on_done_ ? "reduce_scatter/bucket" : "allreduce/bucket",
                         Category::Communication, comm_track_,
                         {{"bytes", static_cast<std::int64_t>(dtype_size(wire_)) * (buckets_[next_].end - buckets_[next_].begin)},
                          {"bucket", static_cast<std::int64_t>(next_)}});
    const Bucket& b = buckets_[next_++];
    launch_s_.push_back(since_begin());
    const auto len = static_cast<std::size_t>(b.end - b.begin);
    const std::size_t block = len / static_cast<std::size_t>(comm_.size());
    if (!be_.device_is_host()) {
      launch_device(next_ - 1, len, block);
      continue;
    }
    if (wire_ != DType::F32) {
      std::uint16_t* wire = stored16_ ? stored16_ + b.begin : nullptr;
      if (!wire) {
        narrow(b.begin, b.end - b.begin);
        wire = reinterpret_cast<std::uint16_t*>(grads_ + b.begin);
      }
      inflight_.push_back(on_done_ ? comm_.ireduce_scatter16(wire, wire, block, wire_)
                                   : comm_.iallreduce16(wire, len, wire_));
      continue;
    }
    inflight_.push_back(on_done_ ? comm_.ireduce_scatter(grads_ + b.begin, grads_ + b.begin, block, ReduceOp::Sum)
                                 : comm_.iallreduce(grads_ + b.begin, len, ReduceOp::Sum));
  }
}

void GradientSync::set_wire_type(DType type) {
  TH_CHECK(type == DType::F32 || type == DType::BF16 || type == DType::F16, "gradient wire type");
  wire_ = type;
}

// The communicator for device buffers: the backend's (NCCL on CUDA; the emulated device's stand-in)
// or, with parallel%comm = 'mpi', this sync's own staging through pinned memory to MPI.
Comm& GradientSync::device_comm() {
  if (Comm* dc = be_.device_comm()) return *dc;
  if (!staged_comm_) staged_comm_ = std::make_unique<StagedComm>(be_, comm_);
  return *staged_comm_;
}

// A device backend: the bucket in place, or (16-bit wire) narrowed on the device into a buffer of
// its own first; arrived() widens it back into the gradients.
void GradientSync::launch_device(std::size_t i, std::size_t len, std::size_t block) {
  const Bucket& b = buckets_[i];
  Comm& dc = device_comm();
  if (wire_ == DType::F32) {
    inflight_.push_back(on_done_ ? dc.ireduce_scatter(grads_ + b.begin, grads_ + b.begin, block, ReduceOp::Sum)
                                 : dc.iallreduce(grads_ + b.begin, len, ReduceOp::Sum));
    return;
  }
  if (stored16_) {
    std::uint16_t* g = stored16_ + b.begin;
    inflight_.push_back(on_done_ ? dc.ireduce_scatter16(g, g, block, wire_) : dc.iallreduce16(g, len, wire_));
    return;
  }
  if (narrow16_.size() != buckets_.size()) narrow16_.resize(buckets_.size());
  Tensor& t = narrow16_[i];
  if (!t.defined()) t = be_.empty({static_cast<std::int64_t>((len + 1) / 2)}, DType::F32, MemCategory::Workspace);
  auto* n16 = static_cast<std::uint16_t*>(t.raw());
  if (wire_ == DType::BF16) be_.fp32_to_bf16(n16, grads_ + b.begin, static_cast<std::int64_t>(len));
  else be_.fp32_to_fp16(n16, grads_ + b.begin, static_cast<std::int64_t>(len));
  inflight_.push_back(on_done_ ? dc.ireduce_scatter16(n16, n16, block, wire_) : dc.iallreduce16(n16, len, wire_));
}

// The reduced 16-bit bucket (or this rank's block of it) widened into the gradients (device).
void GradientSync::widen_device(std::size_t i) {
  const Bucket& b = buckets_[i];
  const std::int64_t n = on_done_ ? (b.end - b.begin) / comm_.size() : b.end - b.begin;
  const auto* n16 = static_cast<const std::uint16_t*>(narrow16_[i].raw());
  if (wire_ == DType::BF16) be_.bf16_to_fp32(grads_ + b.begin, n16, n);
  else be_.fp16_to_fp32(grads_ + b.begin, n16, n);
}

namespace {
constexpr std::int64_t kFirst = 1024;  // the first chunk goes through a stack copy
}  // namespace

// In place, front to back: chunk [i0, 2 i0) of fp32 is read from bytes [4 i0, 8 i0) and written
// to bytes [2 i0, 4 i0), below anything not yet read; the first kFirst elements overlap
// themselves and go through a copy.
void GradientSync::narrow(std::int64_t begin, std::int64_t n) {
  float* x = grads_ + begin;
  auto* y = reinterpret_cast<std::uint16_t*>(x);
  const std::int64_t first = std::min(n, kFirst);
  float head[kFirst];
  std::copy(x, x + first, head);
  auto to16 = [&](std::uint16_t* dst, const float* src, std::int64_t m) {
    if (wire_ == DType::BF16) be_.fp32_to_bf16(dst, src, m);
    else be_.fp32_to_fp16(dst, src, m);
  };
  to16(y, head, first);
  for (std::int64_t i0 = first; i0 < n; i0 *= 2) to16(y + i0, x + i0, std::min(i0, n - i0));
}

// The inverse, back to front: chunk [i0, 2 i0) of 16-bit values at bytes [2 i0, 4 i0) widens to
// bytes [4 i0, 8 i0), above anything not yet read; the first kFirst elements through a copy.
void GradientSync::widen(std::int64_t begin, std::int64_t n) {
  float* y = grads_ + begin;
  const auto* x = reinterpret_cast<const std::uint16_t*>(y);
  auto to32 = [&](float* dst, const std::uint16_t* src, std::int64_t m) {
    if (wire_ == DType::BF16) be_.bf16_to_fp32(dst, src, m);
    else be_.fp16_to_fp32(dst, src, m);
  };
  std::vector<std::int64_t> starts;
  for (std::int64_t i0 = std::min(n, kFirst); i0 < n; i0 *= 2) starts.push_back(i0);
  for (std::size_t k = starts.size(); k-- > 0;) {
    const std::int64_t i0 = starts[k];
    to32(y + i0, x + i0, std::min(i0, n - i0));
  }
  const std::int64_t first = std::min(n, kFirst);
  std::uint16_t head[kFirst];
  std::copy(x, x + first, head);
  to32(y, head, first);
}

void GradientSync::arrived(std::size_t i) {
  events_[i].finish();
  if (stored16_) {
    if (!on_done_) done_[i] = 1;
  } else if (!be_.device_is_host() && !done_[i]) {
    if (wire_ != DType::F32) widen_device(i);
    if (!on_done_) done_[i] = 1;
  } else if (wire_ != DType::F32 && !done_[i]) {  // the bucket (all-reduce) or this rank's block (reduce-scatter)
    const Bucket& b = buckets_[i];
    widen(b.begin, on_done_ ? (b.end - b.begin) / comm_.size() : b.end - b.begin);
    if (!on_done_) done_[i] = 1;
  }
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
  if (!on_done_ && !stored16_) be_.f32().scale_inplace(grads_, 1.0f / static_cast<float>(comm_.size()), n_);
  active_ = false;
}

}  // namespace th
