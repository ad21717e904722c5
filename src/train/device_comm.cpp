#include "th/train/device_comm.hpp"

#include "th/core/error.hpp"

#include <memory>
#include <string>
#include <utility>

namespace th {

namespace {

Tensor pinned_bytes(Backend& be, std::size_t bytes) {
  return be.empty({static_cast<std::int64_t>((bytes + 3) / 4)}, DType::F32, MemCategory::Workspace, MemorySpace::Pinned);
}

// An all-gather into pinned memory; its result goes to the device once MPI has delivered it.
class StagedGather final : public CommRequest {
 public:
  StagedGather(Backend& be, CommRequestPtr inner, Tensor send, Tensor recv, float* device_recv, std::size_t bytes)
      : be_(be), inner_(std::move(inner)), send_(std::move(send)), recv_(std::move(recv)), dst_(device_recv),
        bytes_(bytes) {}
  ~StagedGather() override {
    if (inner_) inner_->wait();  // MPI must be done with the pinned buffers before they go back
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
    be_.copy_to_device_async(dst_, recv_.raw(), bytes_);
    inner_.reset();
    done_ = true;
    // recv_ goes back to the pool with this request; the stream's copy reads it first, and the
    // pool hands it out again only to work issued later on the same stream.
  }
  Backend& be_;
  CommRequestPtr inner_;
  Tensor send_, recv_;
  float* dst_;
  std::size_t bytes_;
  bool done_ = false;
};

}  // namespace

DeviceCommAttachment::DeviceCommAttachment(Backend& be, Comm& host, const std::string& request) : be_(be) {
  if (request == "mpi" || (be.device_is_host() && request == "auto")) return;
  if (!be.device_is_host()) comm_ = be.make_device_comm(host);
  if (!comm_ && request == "nccl")
    throw InputError(std::string("parallel%comm = 'nccl': the ") + be.name() +
                     " backend has no NCCL communicator (NCCL needs run%backend = 'cuda' in a build with NCCL); "
                     "use 'auto' or 'mpi'");
  be_.set_device_comm(comm_.get());
}

DeviceCommAttachment::~DeviceCommAttachment() {
  if (comm_) be_.set_device_comm(nullptr);
}

const char* DeviceCommAttachment::describe() const {
  if (be_.device_is_host()) return "MPI on host buffers";
  return comm_ ? "NCCL on device buffers" : "MPI through pinned staging buffers";
}

void broadcast_device(Backend& be, Comm& comm, void* data, std::size_t bytes, int root) {
  if (be.device_is_host()) return comm.broadcast(data, bytes, root);
  if (Comm* dc = be.device_comm()) return dc->broadcast(data, bytes, root);
  Tensor pinned = pinned_bytes(be, bytes);
  if (comm.rank() == root) {
    be.copy_to_host_async(pinned.raw(), data, bytes);
    be.wait(be.record());
  }
  comm.broadcast(pinned.raw(), bytes, root);
  if (comm.rank() != root) {
    be.copy_to_device_async(data, pinned.raw(), bytes);
    be.wait(be.record());  // before the pinned buffer returns to the pool
  }
}

CommRequestPtr iall_gather_device(Backend& be, Comm& comm, const float* send, float* recv, std::size_t count) {
  if (be.device_is_host()) return comm.iall_gather(send, recv, count);
  if (Comm* dc = be.device_comm()) return dc->iall_gather(send, recv, count);
  const std::size_t bytes = sizeof(float) * count;
  Tensor s = pinned_bytes(be, bytes), r = pinned_bytes(be, bytes * static_cast<std::size_t>(comm.size()));
  be.copy_to_host_async(s.raw(), send, bytes);
  be.wait(be.record());
  CommRequestPtr inner = comm.iall_gather(s.data<float>(), r.data<float>(), count);
  return std::make_unique<StagedGather>(be, std::move(inner), std::move(s), std::move(r), recv,
                                        bytes * static_cast<std::size_t>(comm.size()));
}

}  // namespace th
