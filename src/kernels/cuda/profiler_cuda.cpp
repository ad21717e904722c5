#include "th/kernels/cuda_profile.hpp"

#include <nvtx3/nvToolsExt.h>

#include <mutex>

#include "th/kernels/cuda.hpp"

namespace th::cuda {

namespace {
// NVTX strings registered once per profiler name id (nvtxDomainRegisterStringA), so a range push
// passes a handle instead of hashing a string.
struct NvtxState {
  nvtxDomainHandle_t domain = nullptr;
  std::mutex mu;
  std::vector<nvtxStringHandle_t> names;  // by profiler name id; null until registered
};
NvtxState& nvtx() {
  static NvtxState s;
  return s;
}

std::uint32_t category_colour(Category c) {
  switch (c) {
    case Category::Compute: return 0xff4c72b0;
    case Category::Communication: return 0xffdd8452;
    case Category::Data: return 0xff55a868;
    case Category::IO: return 0xffc44e52;
    case Category::Optimizer: return 0xff8172b3;
    case Category::Offload: return 0xff937860;
    default: return 0xff8c8c8c;
  }
}

void nvtx_push(const Profiler& p, std::uint32_t name, Category cat) {
  NvtxState& s = nvtx();
  nvtxStringHandle_t handle = nullptr;
  {
    std::lock_guard<std::mutex> lock(s.mu);
    if (name >= s.names.size()) s.names.resize(name + 1, nullptr);
    if (!s.names[name]) s.names[name] = nvtxDomainRegisterStringA(s.domain, p.name(name).c_str());
    handle = s.names[name];
  }
  nvtxEventAttributes_t a{};
  a.version = NVTX_VERSION;
  a.size = NVTX_EVENT_ATTRIB_STRUCT_SIZE;
  a.colorType = NVTX_COLOR_ARGB;
  a.color = category_colour(cat);
  a.messageType = NVTX_MESSAGE_TYPE_REGISTERED;
  a.message.registered = handle;
  nvtxDomainRangePushEx(s.domain, &a);
}

void nvtx_pop() { nvtxDomainRangePop(nvtx().domain); }
}  // namespace

void install_nvtx_ranges(Profiler& p) {
  NvtxState& s = nvtx();
  if (!s.domain) s.domain = nvtxDomainCreateA("torch-handle");
  Profiler::RangeHooks hooks;
  hooks.push = nvtx_push;
  hooks.pop = nvtx_pop;
  p.set_range_hooks(hooks);
}

DeviceTimeline::DeviceTimeline(Profiler& p, const std::string& track_name) : p_(p), track_(p.track(track_name)) {}

DeviceTimeline::~DeviceTimeline() {
  // Pending pairs are dropped (their events may still be in flight: synchronise before destroying).
  for (Pair& q : pairs_) {
    if (q.begin) cudaEventSynchronize(q.begin);
    if (q.end) cudaEventSynchronize(q.end);
    if (q.begin) cudaEventDestroy(q.begin);
    if (q.end) cudaEventDestroy(q.end);
  }
  for (cudaEvent_t e : spare_) cudaEventDestroy(e);
  if (ref_) cudaEventDestroy(ref_);
}

cudaEvent_t DeviceTimeline::take_event() {
  if (!spare_.empty()) {
    cudaEvent_t e = spare_.back();
    spare_.pop_back();
    return e;
  }
  cudaEvent_t e = nullptr;
  TH_CUDA_CHECK(cudaEventCreate(&e));  // timing enabled
  return e;
}

std::int64_t DeviceTimeline::begin(cudaStream_t s, std::string_view name, Category cat, const ProfileArgs& args) {
  if (!p_.active()) return -1;
  if (!have_ref_) {
    // The reference: recorded and waited for now, its host time read right after.
    if (!ref_) TH_CUDA_CHECK(cudaEventCreate(&ref_));
    TH_CUDA_CHECK(cudaEventRecord(ref_, s));
    TH_CUDA_CHECK(cudaEventSynchronize(ref_));
    ref_us_ = Profiler::now_us();
    have_ref_ = true;
  }
  Pair q;
  q.id = next_id_++;
  q.begin = take_event();
  q.end = take_event();
  q.name = p_.intern(name);
  q.cat = cat;
  q.args = args;
  TH_CUDA_CHECK(cudaEventRecord(q.begin, s));
  pairs_.push_back(q);
  return q.id;
}

void DeviceTimeline::end(std::int64_t id, cudaStream_t s) {
  if (id < 0) return;
  for (auto it = pairs_.rbegin(); it != pairs_.rend(); ++it) {  // usually the last one
    if (it->id != id) continue;
    TH_CUDA_CHECK(cudaEventRecord(it->end, s));
    it->ended = true;
    return;
  }
}

int DeviceTimeline::collect(bool wait) {
  int done = 0;
  // Pairs complete in order on one stream; across streams a later pair may finish first, so each
  // is checked; the pairs still pending keep their order.
  std::vector<Pair> keep;
  for (Pair& q : pairs_) {
    bool complete = q.ended;
    if (complete && wait) TH_CUDA_CHECK(cudaEventSynchronize(q.end));
    if (complete && !wait) {
      const cudaError_t e = cudaEventQuery(q.end);
      if (e != cudaErrorNotReady) TH_CUDA_CHECK(e);
      complete = e == cudaSuccess;
    }
    if (!complete) {
      keep.push_back(q);
      continue;
    }
    float b_ms = 0, e_ms = 0;
    TH_CUDA_CHECK(cudaEventElapsedTime(&b_ms, ref_, q.begin));
    TH_CUDA_CHECK(cudaEventElapsedTime(&e_ms, ref_, q.end));
    p_.append(q.name, q.cat, ref_us_ + 1000.0 * b_ms, ref_us_ + 1000.0 * e_ms, q.args, track_);
    spare_.push_back(q.begin);
    spare_.push_back(q.end);
    ++done;
  }
  pairs_.swap(keep);
  if (pairs_.empty() && !p_.active()) have_ref_ = false;  // the next window takes a fresh reference
  return done;
}

}  // namespace th::cuda
