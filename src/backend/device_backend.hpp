#pragma once
// What the backends with memory of their own (the emulated device, CUDA) share: a Device pool and
// a Pinned pool over their block sources (the per-category accounting of th/core/memory.hpp), the
// process host pool for Host, Device::Cuda as the tensors' device, and host staging buffers
// (pinned: host_view / host_target, and so the checkpoint files, evaluation and the offloaded
// optimizer's gradient copies, move through page-locked memory).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "th/backend/backend.hpp"

namespace th {

// A device backend's Reservation: which granules are backed, and releases that complete once the
// work issued before them has finished on both streams (events, polled without blocking). The
// backend maps and unmaps granules (cuMemCreate + cuMemMap on CUDA; page protection of the
// worker's alias on the emulated device, whose tests therefore check this bookkeeping).
class GranuleReservation : public Reservation {
 public:
  GranuleReservation(Backend& be, char* base, std::size_t bytes, std::size_t gran)
      : be_(be), base_(base), bytes_(bytes), gran_(gran), state_(bytes / gran, State::Free) {}
  char* data() const override { return base_; }
  std::size_t bytes() const override { return bytes_; }
  std::size_t granularity() const override { return gran_; }

  // Before backing new granules, every release but the latest completes (the host waits for its
  // work): the host runs at most one release ahead of the device, so released memory is given
  // back while the device still has queued work, and the backed total stays bounded by what is
  // in use (a GPU's queue would otherwise let every unit's granules pile up as pending).
  void commit(std::size_t off, std::size_t n, Backing) override {
    poll();
    if (!n) return;
    const std::size_t k1 = std::min((off + n + gran_ - 1) / gran_, state_.size());
    for (std::size_t k = off / gran_; k < k1; ++k) {
      if (state_[k] == State::Backed) continue;
      while (pending_.size() > 1) complete(0);
      if (state_[k] == State::Pending) finish(k);  // released, not yet given back: complete that first
      map(k);
      state_[k] = State::Backed;
    }
  }
  void release(std::size_t off, std::size_t n, bool zero) override {
    poll();
    const std::size_t end = std::min(off + n, bytes_);
    if (end <= off) return;
    const std::size_t lo = (off + gran_ - 1) / gran_ * gran_, hi = end / gran_ * gran_;
    if (zero) {  // the bytes on granules that stay backed
      if (hi > lo) {
        zero_backed(off, lo);
        zero_backed(hi, end);
      } else {
        zero_backed(off, end);
      }
    }
    Pending p;
    for (std::size_t k = lo / gran_; k < hi / gran_; ++k)
      if (state_[k] == State::Backed) {
        state_[k] = State::Pending;
        p.granules.push_back(k);
      }
    if (p.granules.empty()) return;
    p.compute = be_.record(Backend::Stream::Compute);
    p.copy = be_.record(Backend::Stream::Copy);
    pending_.push_back(std::move(p));
  }
  std::size_t committed() override {
    poll();
    return static_cast<std::size_t>(std::count_if(state_.begin(), state_.end(), [](State s) { return s != State::Free; })) *
           gran_;
  }

 protected:
  // Back granule k for work issued from now on, reading zero; give it back (no work touches it).
  virtual void map(std::size_t k) = 0;
  virtual void unmap(std::size_t k) = 0;
  // Derived destructors call this first: every release completes, every backed granule goes back.
  void give_back_all() {
    be_.sync();
    for (std::size_t k = 0; k < state_.size(); ++k)
      if (state_[k] != State::Free) {
        unmap(k);
        state_[k] = State::Free;
      }
    pending_.clear();
  }
  Backend& be_;

 private:
  enum class State : unsigned char { Free, Backed, Pending };
  struct Pending {
    std::vector<std::size_t> granules;
    Backend::Event compute = 0, copy = 0;
  };
  void zero_backed(std::size_t a, std::size_t b) {
    for (std::size_t k = a / gran_; a < b; ++k) {
      const std::size_t e = std::min(b, (k + 1) * gran_);
      if (state_[k] == State::Backed) be_.zero(base_ + a, e - a, MemorySpace::Device);
      a = e;
    }
  }
  // Gives back the granules of release p that are still pending (its work has finished).
  void give_back(const Pending& p) {
    for (std::size_t k : p.granules)
      if (state_[k] == State::Pending) {
        unmap(k);
        state_[k] = State::Free;
      }
  }
  // Gives back the granules of the releases whose work has finished.
  void poll() {
    auto it = std::remove_if(pending_.begin(), pending_.end(), [&](const Pending& p) {
      if (!be_.query(p.compute) || !be_.query(p.copy)) return false;
      give_back(p);
      return true;
    });
    pending_.erase(it, pending_.end());
  }
  // Release i: wait for its work, give its granules back.
  void complete(std::size_t i) {
    be_.wait(pending_[i].compute);
    be_.wait(pending_[i].copy);
    give_back(pending_[i]);
    pending_.erase(pending_.begin() + static_cast<std::ptrdiff_t>(i));
  }
  // Granule k, released but not yet given back: complete the releases that hold it.
  void finish(std::size_t k) {
    for (std::size_t i = pending_.size(); i-- > 0;)
      if (std::find(pending_[i].granules.begin(), pending_[i].granules.end(), k) != pending_[i].granules.end())
        complete(i);
  }

  char* base_;
  std::size_t bytes_, gran_;
  std::vector<State> state_;
  std::vector<Pending> pending_;
};

class DeviceBackend : public Backend {
 public:
  // The sources are members of the derived class: only their addresses are kept here.
  DeviceBackend(BlockSource& device, BlockSource& pinned) : device_pool_(&device), pinned_pool_(&pinned) {}
  MemoryPool& pool(MemorySpace space) override {
    switch (space) {
      case MemorySpace::Device: return device_pool_;
      case MemorySpace::Pinned: return pinned_pool_;
      case MemorySpace::Host: break;
    }
    return host_pool();
  }
  Device device_of(MemorySpace space) const override {
    return space == MemorySpace::Device ? Device::Cuda : Device::Host;
  }
  bool device_is_host() const override { return false; }

 protected:
  // A pinned host buffer of at least `bytes`, Workspace: where host_view copies to and
  // host_target lets the caller write.
  Tensor host_staging(std::size_t bytes) {
    return empty({static_cast<std::int64_t>((bytes + 3) / 4)}, DType::F32, MemCategory::Workspace, MemorySpace::Pinned);
  }

 private:
  MemoryPool device_pool_, pinned_pool_;
};

}  // namespace th
