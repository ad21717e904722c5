#pragma once
// Comm over NCCL: device buffers, collectives on the communicator's own CUDA stream, ordered
// after the compute stream with an event, so communication overlaps the compute that follows.
// Bootstrap over MPI: rank 0 creates the ncclUniqueId and broadcasts it; each rank drives GPU
// (local rank mod visible devices), from the shared-memory node split.
#include <cuda_runtime_api.h>
#include <nccl.h>

#include "th/kernels/cuda_profile.hpp"
#include "th/parallel/comm.hpp"

namespace th {

class NcclComm final : public Comm {
 public:
  explicit NcclComm(Comm& bootstrap);  // collective over bootstrap's ranks
  ~NcclComm() override;
  int rank() const override { return boot_.rank(); }
  int size() const override { return boot_.size(); }
  int local_rank() const override { return boot_.local_rank(); }
  int local_size() const override { return boot_.local_size(); }
  int num_nodes() const override { return boot_.num_nodes(); }
  int device() const { return device_; }
  cudaStream_t stream() const { return stream_; }
  // Collectives start only after the work queued so far on `s` (the model's stream).
  void set_compute_stream(cudaStream_t s) { compute_ = s; }

  void barrier() override;
  void allreduce(float* data, std::size_t n, ReduceOp op) override;
  void allreduce(double* data, std::size_t n, ReduceOp op) override;
  void allreduce(std::int64_t* data, std::size_t n, ReduceOp op) override;
  void broadcast(void* data, std::size_t bytes, int root) override;
  std::vector<std::string> gather_strings(const std::string& mine, int root) override;  // host, via MPI
  void reduce_scatter(const float* send, float* recv, std::size_t count, ReduceOp op) override;
  void all_gather(const float* send, float* recv, std::size_t count) override;
  CommRequestPtr iallreduce(float* data, std::size_t n, ReduceOp op) override;
  CommRequestPtr ireduce_scatter(const float* send, float* recv, std::size_t count, ReduceOp op) override;
  CommRequestPtr iall_gather(const float* send, float* recv, std::size_t count) override;
  // 16-bit sums (ncclBfloat16 / ncclFloat16 on device buffers of raw bits).
  CommRequestPtr iallreduce16(std::uint16_t* data, std::size_t n, DType type) override;
  CommRequestPtr ireduce_scatter16(const std::uint16_t* send, std::uint16_t* recv, std::size_t count,
                                   DType type) override;

 private:
  void order_after_compute();
  CommRequestPtr request();  // an event recorded on the comm stream now
  void sync();
  Comm& boot_;
  int device_ = 0;
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr, compute_ = nullptr;
  cudaEvent_t ready_ = nullptr;
  cuda::DeviceTimeline timeline_;  // collectives on the device timeline while profiling
};

}  // namespace th
