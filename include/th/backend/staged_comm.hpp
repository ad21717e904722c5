#pragma once
// Collectives on a device backend's memory through pinned host buffers and a host communicator
// (MPI): the device data goes to a pinned buffer (an asynchronous copy the host waits for), the
// host collective runs on it, and the result goes back to the device, stream-ordered, when the
// request completes (test() true or wait()). MPI never sees device memory. It is what
// parallel%comm = 'mpi' uses on a device backend (a CUDA run without NCCL), and the emulated
// device's device communicator (Backend::make_device_comm: it stands in for NCCL there, so the
// code that drives NCCL on CUDA runs in the CPU test suite). Traffic is counted by the host
// communicator (its MPI calls), not here. In-place forms as Comm says: reduce-scatter leaves the
// rank's block at recv[0, count); all-gather may take send inside recv.
#include "th/backend/backend.hpp"
#include "th/parallel/comm.hpp"

namespace th {

class StagedComm final : public Comm {
 public:
  StagedComm(Backend& be, Comm& host) : be_(be), host_(host) {}
  int rank() const override { return host_.rank(); }
  int size() const override { return host_.size(); }
  int local_rank() const override { return host_.local_rank(); }
  int local_size() const override { return host_.local_size(); }
  int num_nodes() const override { return host_.num_nodes(); }
  void barrier() override { host_.barrier(); }
  void allreduce(float* data, std::size_t n, ReduceOp op) override;
  void allreduce(double* data, std::size_t n, ReduceOp op) override;
  void allreduce(std::int64_t* data, std::size_t n, ReduceOp op) override;
  void broadcast(void* data, std::size_t bytes, int root) override;
  void reduce_scatter(const float* send, float* recv, std::size_t count, ReduceOp op) override;
  void all_gather(const float* send, float* recv, std::size_t count) override;
  CommRequestPtr iallreduce(float* data, std::size_t n, ReduceOp op) override;
  CommRequestPtr ireduce_scatter(const float* send, float* recv, std::size_t count, ReduceOp op) override;
  CommRequestPtr iall_gather(const float* send, float* recv, std::size_t count) override;
  std::vector<std::string> gather_strings(const std::string& mine, int root) override {
    return host_.gather_strings(mine, root);  // host strings
  }
  CommRequestPtr iallreduce16(std::uint16_t* data, std::size_t n, DType type) override;
  CommRequestPtr ireduce_scatter16(const std::uint16_t* send, std::uint16_t* recv, std::size_t count,
                                   DType type) override;

 private:
  Tensor stage(const void* device, std::size_t bytes);  // device -> a new pinned buffer, waited for
  Backend& be_;
  Comm& host_;
};

}  // namespace th
