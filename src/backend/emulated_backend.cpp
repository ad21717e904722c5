// The emulated device (th/backend/emulated.hpp): CPU kernels on a worker thread, device memory the
// host cannot touch, pinned memory protected while a copy is in flight.
#include "th/backend/emulated.hpp"

#include <sys/mman.h>

#include <algorithm>
#include <chrono>
#include <thread>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "device_backend.hpp"
#include "emulated_kernels.hpp"
#include "emulated_memory.hpp"
#include "emulated_stream.hpp"
#include "th/backend/staged_comm.hpp"
#include "th/core/error.hpp"

namespace th {

namespace {

// The launcher's rank (for the fault handler's message and TH_FAULT): the emulated backend sits
// below the MPI layer and must not call MPI from a signal handler.
int launcher_rank() {
  for (const char* v : {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "SLURM_PROCID"})
    if (const char* s = std::getenv(v)) return std::atoi(s);
  return 0;
}

std::size_t env_mb(const char* name, std::size_t fallback) {
  const char* s = std::getenv(name);
  if (!s || !*s) return fallback;
  char* end = nullptr;
  const long long v = std::strtoll(s, &end, 10);
  if (*end != '\0' || v <= 0) throw InputError(std::string(name) + " = '" + s + "': expected a positive number of MiB");
  return static_cast<std::size_t>(v);
}

class EmulatedBackend final : public DeviceBackend, private emulated::KernelQueue {
 public:
  EmulatedBackend();
  const char* name() const override { return "emulated"; }
  Kernels<float>& f32() override;
  Kernels<double>& f64() override;

  // ---- the streams: compute (kernels, fills, synchronous copies) and copy (offload traffic)
  void launch(std::function<void()> op, Stream s = Stream::Compute) {
    compute_.check();
    copy_.check();
    stream(s).push(std::move(op));
    ++stats_.operations;
  }
  void launch_and_wait(std::function<void()> op) {
    launch(std::move(op));
    compute_.wait_for(compute_.issued());
  }
  emulated::Stream& stream(Stream s) { return s == Stream::Copy ? copy_ : compute_; }
  // An event is (position in its stream, stream): the position times two, plus 1 on the copy stream.
  static Event event_of(std::uint64_t seq, Stream s) { return seq * 2 + (s == Stream::Copy ? 1 : 0); }
  static Stream stream_of(Event e) { return (e & 1) ? Stream::Copy : Stream::Compute; }
  static std::uint64_t seq_of(Event e) { return e / 2; }
  // The worker's address for a kernel argument: device memory only.
  template <typename P>
  P* dev(P* p, const char* what) const {
    return emulated::device_alias(device_, p, what);
  }
  // Where the worker writes or reads a host buffer: pinned memory through its alias (its host
  // pages may be protected while the copy is in flight), other host memory as it is.
  char* host_side(const void* p, const char* what) const {
    if (device_.contains(p)) throw Error(std::string(what) + ": a host argument is emulated device memory (" + hex(p) + ")");
    return pinned_.contains(p) ? pinned_.alias(p) : static_cast<char*>(const_cast<void*>(p));
  }
  static std::string hex(const void* p) {
    char b[32];
    std::snprintf(b, sizeof b, "%p", p);
    return b;
  }

  void round_to_bf16(float* x, std::int64_t n) override {
    float* d = dev(x, "round_to_bf16");
    launch([=] { cpu::round_to_bf16(d, n); });
  }
  void round_to_fp16(float* x, std::int64_t n) override {
    float* d = dev(x, "round_to_fp16");
    launch([=] { cpu::round_to_fp16(d, n); });
  }
  void fp32_to_bf16(std::uint16_t* y, const float* x, std::int64_t n) override {
    convert("fp32_to_bf16", y, x, n, cpu::fp32_to_bf16);
  }
  void bf16_to_fp32(float* y, const std::uint16_t* x, std::int64_t n) override {
    convert("bf16_to_fp32", y, x, n, cpu::bf16_to_fp32);
  }
  void fp32_to_fp16(std::uint16_t* y, const float* x, std::int64_t n) override {
    convert("fp32_to_fp16", y, x, n, cpu::fp32_to_fp16);
  }
  void fp16_to_fp32(float* y, const std::uint16_t* x, std::int64_t n) override {
    convert("fp16_to_fp32", y, x, n, cpu::fp16_to_fp32);
  }
  template <typename Y, typename X>
  void convert(const char* name, Y* y, const X* x, std::int64_t n, void (*f)(Y*, const X*, std::int64_t)) {
    Y* yd = dev(y, name);
    const X* xd = dev(x, name);
    launch([=] { f(yd, xd, n); });
  }

  // ---- memory
  void host_to_device(void* dst, const void* src, std::size_t bytes) override {
    if (!bytes) return;
    char* d = dev(static_cast<char*>(dst), "host_to_device");
    host_side(src, "host_to_device");
    // Like cudaMemcpy from pageable memory: the source is taken now, the host may reuse it.
    auto copy = std::make_shared<std::vector<char>>(static_cast<const char*>(src), static_cast<const char*>(src) + bytes);
    launch([=] { std::memcpy(d, copy->data(), bytes); });
  }
  void device_to_host(void* dst, const void* src, std::size_t bytes) override {
    if (!bytes) return;
    const char* s = dev(static_cast<const char*>(src), "device_to_host");
    char* d = host_side(dst, "device_to_host");
    launch_and_wait([=] { std::memcpy(d, s, bytes); });
  }
  void device_to_device(void* dst, const void* src, std::size_t bytes) override {
    if (!bytes) return;
    char* d = dev(static_cast<char*>(dst), "device_to_device");
    const char* s = dev(static_cast<const char*>(src), "device_to_device");
    launch([=] { std::memmove(d, s, bytes); });
  }
  void zero(void* dst, std::size_t bytes, MemorySpace space) override {
    if (!bytes) return;
    if (space == MemorySpace::Device) {
      char* d = dev(static_cast<char*>(dst), "zero");
      launch([=] { std::memset(d, 0, bytes); });
      return;
    }
    std::memset(dst, 0, bytes);  // host memory, by the host
  }
  const void* host_view(const void* src, std::size_t bytes, Tensor& staging) override {
    if (!device_.contains(src) || !bytes) return src;
    ++stats_.host_views;
    if (injected_fault(rank_, stats_.host_views) == "skip_copy") {
      fault_note("skip_copy", stats_.host_views);
      return src;  // the forgotten copy: the caller reads device memory
    }
    staging = host_staging(bytes);
    device_to_host(staging.raw(), src, bytes);
    return staging.raw();
  }
  void* host_target(void* dst, std::size_t bytes, Tensor& staging) override {
    if (!device_.contains(dst) || !bytes) return dst;
    staging = host_staging(bytes);
    return staging.raw();
  }
  void copy_to_host_async(void* pinned_dst, const void* device_src, std::size_t bytes,
                          Stream st = Stream::Compute) override {
    if (!bytes) return;
    TH_CHECK(pinned_.contains(pinned_dst), "copy_to_host_async: the destination is not pinned memory (" +
                                               hex(pinned_dst) + "); allocate it from pool(MemorySpace::Pinned)");
    const char* s = dev(static_cast<const char*>(device_src), "copy_to_host_async");
    char* d = pinned_.alias(pinned_dst);
    launch(copy_op(d, s, bytes, st), st);
    ++stats_.async_copies;
    hold(pinned_dst, bytes, false, st);
  }
  void copy_to_device_async(void* device_dst, const void* pinned_src, std::size_t bytes,
                            Stream st = Stream::Compute) override {
    if (!bytes) return;
    TH_CHECK(pinned_.contains(pinned_src), "copy_to_device_async: the source is not pinned memory (" +
                                               hex(pinned_src) + "); allocate it from pool(MemorySpace::Pinned)");
    char* d = dev(static_cast<char*>(device_dst), "copy_to_device_async");
    const char* s = pinned_.alias(pinned_src);
    launch(copy_op(d, s, bytes, st), st);
    ++stats_.async_copies;
    hold(pinned_src, bytes, true, st);
  }
  Event record(Stream s = Stream::Compute) override { return event_of(stream(s).issued(), s); }
  void wait(Event e) override {
    ++stats_.waits;
    if (injected_fault(rank_, stats_.waits) == "skip_wait") {
      fault_note("skip_wait", stats_.waits);
      return;  // the forgotten synchronisation: protections stay, the host's next read faults
    }
    stream(stream_of(e)).wait_for(seq_of(e));
    release(e);
  }
  bool query(Event e) override { return stream(stream_of(e)).reached(seq_of(e)); }
  void stream_wait(Stream s, Event e) override {
    if (stream_of(e) == s) return;  // one stream is in order already
    ++stats_.stream_waits;
    if (injected_fault(rank_, stats_.stream_waits) == "skip_stream_wait") {
      fault_note("skip_stream_wait", stats_.stream_waits);
      skip_stream_waits_ = true;
    }
    if (skip_stream_waits_) return;  // the forgotten ordering: the two streams race on device memory
    emulated::Stream* other = &stream(stream_of(e));
    const std::uint64_t seq = seq_of(e);
    launch([other, seq] { other->wait_for(seq); }, s);
  }
  void sync() override {
    const Event copies = record(Stream::Copy);
    wait(record(Stream::Compute));
    wait(copies);
  }
  // The emulated device's stand-in for NCCL: collectives on its device buffers, staged inside
  // the communicator (the code that drives NCCL on CUDA runs against it).
  std::unique_ptr<Comm> make_device_comm(Comm& bootstrap) override {
    return std::make_unique<StagedComm>(*this, bootstrap);
  }

  std::unique_ptr<Reservation> reserve(std::size_t bytes) override;

  bool is_device(const void* p) const { return device_.contains(p); }
  bool is_pinned(const void* p) const { return pinned_.contains(p); }
  EmulatedStats stats() const { return stats_; }

 private:
  struct Hold {
    std::size_t lo, hi;  // page-aligned byte range of the pinned arena
    bool readable;       // a copy out of it (the host may read, not write)
    Event event;         // the copy's position in its stream
  };
  void fault_note(const char* kind, std::int64_t n) const {
    std::fprintf(stderr, "[rank %d] TH_FAULT: %s %lld injected (emulated device)\n", rank_, kind, static_cast<long long>(n));
    std::fflush(stderr);
  }
  // A copy on the copy stream. With TH_FAULT 'skip_stream_wait' for this rank each one starts
  // late, so that a missing stream_wait lets the compute stream run ahead of it every time (the
  // race is then visible in the results, not left to the worker threads' timing).
  std::function<void()> copy_op(char* d, const char* s, std::size_t bytes, Stream st) const {
    if (st == Stream::Copy && delay_copies_)
      return [=] {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        std::memcpy(d, s, bytes);
      };
    return [=] { std::memcpy(d, s, bytes); };
  }
  void hold(const void* p, std::size_t bytes, bool readable, Stream s) {
    const std::size_t off = pinned_.offset(p);
    Hold h{off / emulated::page_size() * emulated::page_size(), (off + bytes + emulated::page_size() - 1) / emulated::page_size() * emulated::page_size(), readable, record(s)};
    holds_.push_back(h);
    protect(h.lo, h.hi);
  }
  // Lifts the holds of the copies that e covers (those of its stream issued up to it).
  void release(Event e) {
    std::vector<Hold> done;
    auto keep = std::partition(holds_.begin(), holds_.end(), [&](const Hold& h) {
      return stream_of(h.event) != stream_of(e) || seq_of(h.event) > seq_of(e);
    });
    done.assign(keep, holds_.end());
    holds_.erase(keep, holds_.end());
    for (const Hold& h : done) protect(h.lo, h.hi);
  }
  // Sets the host protection of pinned pages [lo, hi) from the holds that cover them.
  void protect(std::size_t lo, std::size_t hi) {
    std::vector<std::size_t> cuts{lo, hi};
    for (const Hold& h : holds_) {
      if (h.lo > lo && h.lo < hi) cuts.push_back(h.lo);
      if (h.hi > lo && h.hi < hi) cuts.push_back(h.hi);
    }
    std::sort(cuts.begin(), cuts.end());
    cuts.erase(std::unique(cuts.begin(), cuts.end()), cuts.end());
    for (std::size_t i = 0; i + 1 < cuts.size(); ++i) {
      int prot = PROT_READ | PROT_WRITE;
      for (const Hold& h : holds_)
        if (h.lo <= cuts[i] && h.hi >= cuts[i + 1]) prot &= h.readable ? PROT_READ : PROT_NONE;
      char* base = pinned_.base() + cuts[i];
      TH_CHECK(mprotect(base, cuts[i + 1] - cuts[i], prot) == 0, "mprotect of pinned memory failed");
    }
  }

  // emulated::KernelQueue: what the kernels (emulated_kernels.cpp) need of the device.
  void queue(std::function<void()> op) override { launch(std::move(op)); }
  void queue_and_wait(std::function<void()> op) override { launch_and_wait(std::move(op)); }
  const emulated::Arena& device() const override { return device_; }

  friend class EmulatedReservation;
  int rank_ = launcher_rank();
  emulated::Arena device_, pinned_;
  emulated::Stream compute_, copy_;
  bool delay_copies_ = std::getenv("TH_FAULT") && std::string(std::getenv("TH_FAULT")).find("skip_stream_wait") !=
                                                     std::string::npos;
  bool skip_stream_waits_ = false;  // TH_FAULT 'skip_stream_wait' was injected
  std::vector<Hold> holds_;
  EmulatedStats stats_;
  std::unique_ptr<Kernels<float>> f32_;
  std::unique_ptr<Kernels<double>> f64_;
};

EmulatedBackend::EmulatedBackend()
    : DeviceBackend(device_, pinned_),
      device_("emulated device", env_mb("TH_EMULATED_DEVICE_MB", 8192) << 20, PROT_NONE, 256),
      pinned_("emulated pinned memory", env_mb("TH_EMULATED_PINNED_MB", 8192) << 20, PROT_READ | PROT_WRITE, emulated::page_size()),
      f32_(emulated::make_kernels<float>(*this)),
      f64_(emulated::make_kernels<double>(*this)) {
  emulated::install_fault_handler(device_, pinned_, rank_);
}

// A reserved range inside the device arena: granules of 64 KiB whose pages the worker's alias maps
// writable only while committed, so a kernel or copy that touches a granule outside commit faults
// ("... not committed ..."). Giving a granule back drops its pages (MADV_REMOVE: it reads zero
// when backed again) and closes the alias. The host's mapping stays inaccessible, as for all
// device memory.
class EmulatedReservation final : public GranuleReservation {
 public:
  static constexpr std::size_t kGranule = 64u << 10;
  EmulatedReservation(EmulatedBackend& be, std::size_t bytes)
      : GranuleReservation(be, acquire(be, bytes), round(bytes), kGranule), arena_(be.device_) {
    close(0, this->bytes());
  }
  ~EmulatedReservation() override {
    give_back_all();
    char* a = arena_.alias(data());
    TH_CHECK(mprotect(a, bytes(), PROT_READ | PROT_WRITE) == 0, "mprotect of the emulated device failed");
    arena_.give_back(data(), bytes());
  }

 private:
  static std::size_t round(std::size_t bytes) { return (std::max<std::size_t>(bytes, 1) + kGranule - 1) / kGranule * kGranule; }
  static char* acquire(EmulatedBackend& be, std::size_t bytes) {
    void* p = be.device_.acquire_aligned(round(bytes), kGranule);
    if (!p)
      throw Error("the emulated device cannot reserve " + std::to_string(round(bytes)) +
                  " bytes (TH_EMULATED_DEVICE_MB sets its size)");
    return static_cast<char*>(p);
  }
  void close(std::size_t off, std::size_t n) {
    char* a = arena_.alias(data() + off);
    TH_CHECK(madvise(a, n, MADV_REMOVE) == 0, "madvise(MADV_REMOVE) of the emulated device failed");
    TH_CHECK(mprotect(a, n, PROT_NONE) == 0, "mprotect of the emulated device failed");
  }
  void map(std::size_t k) override {
    TH_CHECK(mprotect(arena_.alias(data() + k * kGranule), kGranule, PROT_READ | PROT_WRITE) == 0,
             "mprotect of the emulated device failed");
  }
  void unmap(std::size_t k) override { close(k * kGranule, kGranule); }
  emulated::Arena& arena_;
};

std::unique_ptr<Reservation> EmulatedBackend::reserve(std::size_t bytes) {
  return std::make_unique<EmulatedReservation>(*this, bytes);
}

Kernels<float>& EmulatedBackend::f32() { return *f32_; }
Kernels<double>& EmulatedBackend::f64() { return *f64_; }

EmulatedBackend& the_emulated() {
  static EmulatedBackend* be = new EmulatedBackend;  // never destroyed: tensors may outlive statics
  return *be;
}

}  // namespace

Backend& emulated_backend() { return the_emulated(); }
EmulatedStats emulated_stats() { return the_emulated().stats(); }
bool is_emulated_device_address(const void* p) { return the_emulated().is_device(p); }
bool is_emulated_pinned_address(const void* p) { return the_emulated().is_pinned(p); }

}  // namespace th
