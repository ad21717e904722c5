#pragma once
// Data-parallel gradient averaging in buckets (DDP style). The flat gradient buffer is cut into
// buckets of parallel%bucket_mb from its END (the parameters whose gradients backward produces
// first). With overlap on, a bucket's non-blocking all-reduce starts as soon as the model reports
// that every gradient in it is final, and in-flight requests are polled at every report so MPI
// progresses them while backward computes; the optimizer then waits only for what is still in
// flight. With gradient accumulation, only the last micro-batch of a step communicates.
//
// ZeRO (th/train/zero.hpp) uses the same machinery in reduce-scatter mode: its buckets are the
// partition's segments, each reduce-scattered in place as soon as it is final, and a callback
// takes each arrived block (into the rank's partition) while backward goes on.
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "th/backend/backend.hpp"
#include "th/core/profiler.hpp"
#include "th/parallel/comm.hpp"

namespace th {

class GradientSync {
 public:
  struct Bucket {
    std::int64_t begin, end;  // element range of the flat buffer
  };
  // All-reduce mode: buckets of bucket_mb cut from the end of grads[0, n); finish() averages.
  // `backend`: the one whose device memory holds the gradients (its kernel averages them).
  GradientSync(Comm& comm, std::int64_t n, double bucket_mb, bool overlap, Backend& backend = cpu_backend());
  // Reduce-scatter mode: `buckets` (lengths multiples of the world size N, in descending order,
  // tiling [0, n)) are reduce-scattered in place: rank r's block of [b, e), summed over ranks, is
  // left at grads[b, b + (e - b) / N); on_done(i) runs once that of bucket i has arrived.
  // Without overlap each bucket is still reduced when it is final, backward waiting for it.
  GradientSync(Comm& comm, std::vector<Bucket> buckets, bool overlap, std::function<void(std::size_t)> on_done,
               Backend& backend = cpu_backend());
  ~GradientSync();

  // `communicate`: this backward's gradients are reduced (with accumulation in all-reduce mode,
  // only the last micro-batch's).
  void begin_backward(float* grads, bool communicate);
  // The same for gradients kept in 2 bytes of the wire type (th/train/zero.hpp, bf16 at stages
  // 0-1): the buckets go on the wire as they are (no narrowing, no widening) and finish() leaves
  // the sum over ranks (the optimizer divides, in fp32, as it widens them).
  void begin_backward16(std::uint16_t* grads, bool communicate);
  void grads_ready(std::int64_t watermark);  // the model's hook: grads[watermark, n) are final
  void finish();                             // after backward: launch the rest, wait (, average)

  // 16-bit runs (BF16 / F16): each bucket goes on the wire as 2-byte values (Comm::iallreduce16 /
  // ireduce_scatter16, sums rounded to the type after every combine): narrowed in place into the
  // first half of its own fp32 memory when it is launched and widened back in place when it
  // arrives, so no buffer is added. The gradients handed over are already 16-bit values (the
  // ZeRO engine rounds them), so the narrowing is exact. On a device backend the bucket is
  // narrowed on the device into a buffer of its own and handed to the device communicator (NCCL;
  // the emulated device's stand-in; with parallel%comm = 'mpi' a StagedComm through pinned memory).
  void set_wire_type(DType type);
  DType wire_type() const { return wire_; }

  const std::vector<Bucket>& buckets() const { return buckets_; }
  // Timings of the last communicating step, seconds from begin_backward():
  std::vector<double> launch_times() const { return launch_s_; }  // per bucket, in launch order
  double backward_end() const { return backward_end_s_; }        // when finish() was called
  double exposed_seconds() const { return exposed_s_; }          // time finish() waited
  std::int64_t bytes_per_step() const { return static_cast<std::int64_t>(dtype_size(wire_)) * n_; }  // payload reduced

 private:
  void launch_until(std::int64_t watermark);
  void poll();
  void arrived(std::size_t i);
  Comm& device_comm();  // device backends: the backend's device communicator, else staging to MPI
  void launch_device(std::size_t i, std::size_t len, std::size_t block);
  void widen_device(std::size_t i);
  void narrow(std::int64_t begin, std::int64_t n);  // fp32 -> 16-bit in place (wire_)
  void widen(std::int64_t begin, std::int64_t n);   // 16-bit -> fp32 in place
  double since_begin() const;
  Comm& comm_;
  Backend& be_;
  std::int64_t n_;
  bool overlap_;
  std::function<void(std::size_t)> on_done_;  // set: reduce-scatter mode
  std::vector<char> done_;
  std::vector<Bucket> buckets_;  // buckets_[0] ends at n (first to be ready)
  std::vector<CommRequestPtr> inflight_;
  // Device backends (Backend::device_is_host() false): per bucket, for a 16-bit wire, the device
  // buffer it is narrowed into and widened from; the staging communicator when the backend has
  // no device communicator attached (parallel%comm = 'mpi').
  std::vector<Tensor> narrow16_;
  std::unique_ptr<Comm> staged_comm_;
  std::vector<AsyncProfileEvent> events_;  // per bucket: launch to observed completion
  int comm_track_ = 0;
  std::size_t next_ = 0;         // next bucket to launch
  float* grads_ = nullptr;
  std::uint16_t* stored16_ = nullptr;  // begin_backward16: the 2-byte gradients
  DType wire_ = DType::F32;
  bool active_ = false;
  std::chrono::steady_clock::time_point t0_;
  std::vector<double> launch_s_;
  double backward_end_s_ = 0, exposed_s_ = 0;
};

}  // namespace th
