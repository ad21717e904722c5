#include "th/backend/staged_comm.hpp"

#include <memory>
#include <utility>

namespace th {

namespace {

Tensor pinned_bytes(Backend& be, std::size_t bytes) {
  return be.empty({static_cast<std::int64_t>((bytes + 3) / 4)}, DType::F32, MemCategory::Workspace, MemorySpace::Pinned);
}

// A host collective on pinned buffers; `bytes` of `result` go to `device` once it has completed.
// The pinned buffers return to the pool with the request, and only after the stream's copy out of
// them has finished: the destructor waits for it (a pinned block handed out again while a copy
// still reads it would be a race on a GPU; the emulated device faults on it).
class StagedRequest final : public CommRequest {
 public:
  StagedRequest(Backend& be, CommRequestPtr inner, Tensor send, Tensor result, void* device, std::size_t bytes)
      : be_(be), inner_(std::move(inner)), send_(std::move(send)), result_(std::move(result)), dst_(device),
        bytes_(bytes) {}
  ~StagedRequest() override {
    if (inner_) inner_->wait();  // the host collective must be done with the pinned buffers
    if (copied_) be_.wait(copied_);
  }
  bool test() override {
    if (done_) return true;
    if (!inner_->test()) return false;
    unstage();
    return true;
  }
  void wait() override {
    if (done_) return;
    inner_->wait();
    unstage();
  }

 private:
  void unstage() {
    be_.copy_to_device_async(dst_, result_.raw(), bytes_);
    copied_ = be_.record();
    inner_.reset();
    done_ = true;
  }
  Backend& be_;
  CommRequestPtr inner_;
  Tensor send_, result_;
  void* dst_;
  std::size_t bytes_;
  bool done_ = false;
  Backend::Event copied_ = 0;  // the copy back to the device (0: not issued)
};

template <typename T>
void staged_allreduce(Backend& be, Comm& host, Tensor pinned, T* data, std::size_t n, ReduceOp op) {
  host.allreduce(static_cast<T*>(pinned.raw()), n, op);
  be.copy_to_device_async(data, pinned.raw(), sizeof(T) * n);
  be.wait(be.record());  // before the pinned buffer goes back to the pool
}

}  // namespace

Tensor StagedComm::stage(const void* device, std::size_t bytes) {
  Tensor t = pinned_bytes(be_, bytes);
  be_.copy_to_host_async(t.raw(), device, bytes);
  be_.wait(be_.record());
  return t;
}

void StagedComm::allreduce(float* d, std::size_t n, ReduceOp op) { staged_allreduce(be_, host_, stage(d, 4 * n), d, n, op); }
void StagedComm::allreduce(double* d, std::size_t n, ReduceOp op) {
  staged_allreduce(be_, host_, stage(d, 8 * n), d, n, op);
}
void StagedComm::allreduce(std::int64_t* d, std::size_t n, ReduceOp op) {
  staged_allreduce(be_, host_, stage(d, 8 * n), d, n, op);
}

void StagedComm::broadcast(void* data, std::size_t bytes, int root) {
  Tensor pinned = rank() == root ? stage(data, bytes) : pinned_bytes(be_, bytes);
  host_.broadcast(pinned.raw(), bytes, root);
  if (rank() != root) {
    be_.copy_to_device_async(data, pinned.raw(), bytes);
    be_.wait(be_.record());  // before the pinned buffer goes back to the pool
  }
}

void StagedComm::reduce_scatter(const float* send, float* recv, std::size_t count, ReduceOp op) {
  ireduce_scatter(send, recv, count, op)->wait();
  be_.wait(be_.record());
}
void StagedComm::all_gather(const float* send, float* recv, std::size_t count) {
  iall_gather(send, recv, count)->wait();
  be_.wait(be_.record());
}

CommRequestPtr StagedComm::iallreduce(float* d, std::size_t n, ReduceOp op) {
  Tensor s = stage(d, 4 * n);
  CommRequestPtr inner = host_.iallreduce(s.data<float>(), n, op);
  return std::make_unique<StagedRequest>(be_, std::move(inner), s, s, d, 4 * n);
}

CommRequestPtr StagedComm::ireduce_scatter(const float* send, float* recv, std::size_t count, ReduceOp op) {
  Tensor s = stage(send, 4 * count * static_cast<std::size_t>(size()));
  CommRequestPtr inner = host_.ireduce_scatter(s.data<float>(), s.data<float>(), count, op);  // block at s[0, count)
  return std::make_unique<StagedRequest>(be_, std::move(inner), s, s, recv, 4 * count);
}

CommRequestPtr StagedComm::iall_gather(const float* send, float* recv, std::size_t count) {
  Tensor s = stage(send, 4 * count), r = pinned_bytes(be_, 4 * count * static_cast<std::size_t>(size()));
  CommRequestPtr inner = host_.iall_gather(s.data<float>(), r.data<float>(), count);
  return std::make_unique<StagedRequest>(be_, std::move(inner), s, r, recv, 4 * count * static_cast<std::size_t>(size()));
}

CommRequestPtr StagedComm::iallreduce16(std::uint16_t* d, std::size_t n, DType type) {
  Tensor s = stage(d, 2 * n);
  CommRequestPtr inner = host_.iallreduce16(static_cast<std::uint16_t*>(s.raw()), n, type);
  return std::make_unique<StagedRequest>(be_, std::move(inner), s, s, d, 2 * n);
}

CommRequestPtr StagedComm::ireduce_scatter16(const std::uint16_t* send, std::uint16_t* recv, std::size_t count,
                                             DType type) {
  Tensor s = stage(send, 2 * count * static_cast<std::size_t>(size()));
  auto* p = static_cast<std::uint16_t*>(s.raw());
  CommRequestPtr inner = host_.ireduce_scatter16(p, p, count, type);
  return std::make_unique<StagedRequest>(be_, std::move(inner), s, s, recv, 2 * count);
}

}  // namespace th
