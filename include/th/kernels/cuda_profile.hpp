#pragma once
// The profiler on the CUDA backend (docs/profiling.md, "On a GPU"):
//  * NVTX ranges: every ProfileScope recorded in the window also opens an NVTX range in the
//    domain "torch-handle" (colour by category), so Nsight Systems shows our phase names above the
//    kernels they launched. install_nvtx_ranges() hooks them into the profiler.
//  * Device-timeline events: a DeviceTimeline records cudaEvent pairs around work enqueued on a
//    stream and, once both events completed, turns each pair into a complete event on a virtual
//    track (e.g. "device: nccl"), in the host clock's microseconds, so device work lines up with
//    the host events in trace.json. Device times map to the host clock through a reference event
//    synchronised when the window's first pair is recorded (error: the synchronisation latency,
//    a few microseconds).
// Outside the window begin() is a load and a branch and returns -1; end(-1) does nothing.
#include <cuda_runtime_api.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "th/core/profiler.hpp"

namespace th::cuda {

void install_nvtx_ranges(Profiler& p);

class DeviceTimeline {
 public:
  DeviceTimeline(Profiler& p, const std::string& track_name);
  ~DeviceTimeline();
  DeviceTimeline(const DeviceTimeline&) = delete;
  DeviceTimeline& operator=(const DeviceTimeline&) = delete;

  // Records the begin event on `s`; returns the pair's id, or -1 when the profiler is inactive.
  std::int64_t begin(cudaStream_t s, std::string_view name, Category cat, const ProfileArgs& args = {});
  void end(std::int64_t id, cudaStream_t s);  // records the end event on `s` (id -1: nothing)
  // Turns completed pairs into profiler events; wait = true synchronises every pending pair first.
  // Returns how many were recorded.
  int collect(bool wait);
  std::size_t pending() const { return pairs_.size(); }

 private:
  struct Pair {
    std::int64_t id = 0;
    cudaEvent_t begin = nullptr, end = nullptr;
    std::uint32_t name = 0;
    Category cat = Category::Other;
    ProfileArgs args;
    bool ended = false;
  };
  cudaEvent_t take_event();
  Profiler& p_;
  int track_ = 0;
  cudaEvent_t ref_ = nullptr;  // the reference event, completed at host time ref_us_
  double ref_us_ = 0;
  bool have_ref_ = false;
  std::int64_t next_id_ = 0;
  std::vector<Pair> pairs_;          // in recording order
  std::vector<cudaEvent_t> spare_;   // reused events
};

}  // namespace th::cuda
