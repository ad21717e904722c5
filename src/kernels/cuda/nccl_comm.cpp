#include "th/kernels/nccl_comm.hpp"

#include <string>

#include "th/core/error.hpp"
#include "th/kernels/cuda.hpp"
#include "th/parallel/runtime.hpp"

namespace th {

namespace {
[[noreturn]] void nccl_fail(ncclResult_t r, const char* call, const char* file, int line) {
  throw_error(file, line, "NCCL error on rank " + std::to_string(world_rank()) + ": `" + call + "` returned " +
                              ncclGetErrorString(r));
}
#define TH_NCCL_CHECK(call)                                                   \
  do {                                                                        \
    ncclResult_t th_nccl_r_ = (call);                                         \
    if (th_nccl_r_ != ncclSuccess) nccl_fail(th_nccl_r_, #call, __FILE__, __LINE__); \
  } while (0)

ncclRedOp_t to_nccl(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum: return ncclSum;
    case ReduceOp::Max: return ncclMax;
    case ReduceOp::Min: return ncclMin;
  }
  return ncclSum;
}

// Completion of work queued on the comm stream, observed through an event.
class NcclRequest final : public CommRequest {
 public:
  explicit NcclRequest(cudaStream_t s) {
    TH_CUDA_CHECK(cudaEventCreateWithFlags(&done_, cudaEventDisableTiming));
    TH_CUDA_CHECK(cudaEventRecord(done_, s));
  }
  ~NcclRequest() override {
    cudaEventSynchronize(done_);
    cudaEventDestroy(done_);
  }
  bool test() override {
    const cudaError_t e = cudaEventQuery(done_);
    if (e == cudaErrorNotReady) return false;
    TH_CUDA_CHECK(e);
    return true;
  }
  void wait() override { TH_CUDA_CHECK(cudaEventSynchronize(done_)); }

 private:
  cudaEvent_t done_ = nullptr;
};
}  // namespace

NcclComm::NcclComm(Comm& bootstrap) : boot_(bootstrap), timeline_(profiler(), "device: nccl") {
  int devices = 0;
  TH_CUDA_CHECK(cudaGetDeviceCount(&devices));
  if (devices == 0) throw Error("NCCL communicator: no CUDA device visible");
  device_ = boot_.local_rank() % devices;
  TH_CUDA_CHECK(cudaSetDevice(device_));
  ncclUniqueId id;
  if (boot_.rank() == 0) TH_NCCL_CHECK(ncclGetUniqueId(&id));
  boot_.broadcast(&id, sizeof id, 0);
  TH_NCCL_CHECK(ncclCommInitRank(&comm_, boot_.size(), id, boot_.rank()));
  TH_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  TH_CUDA_CHECK(cudaEventCreateWithFlags(&ready_, cudaEventDisableTiming));
}

NcclComm::~NcclComm() {
  if (stream_) cudaStreamSynchronize(stream_);
  if (comm_) ncclCommDestroy(comm_);
  if (ready_) cudaEventDestroy(ready_);
  if (stream_) cudaStreamDestroy(stream_);
}

void NcclComm::order_after_compute() {
  timeline_.collect(false);
  TH_CUDA_CHECK(cudaEventRecord(ready_, compute_));
  TH_CUDA_CHECK(cudaStreamWaitEvent(stream_, ready_, 0));
}

CommRequestPtr NcclComm::request() { return std::make_unique<NcclRequest>(stream_); }
void NcclComm::sync() {
  TH_CUDA_CHECK(cudaStreamSynchronize(stream_));
  timeline_.collect(false);
}

void NcclComm::barrier() {
  boot_.barrier();
  sync();
}

void NcclComm::allreduce(float* d, std::size_t n, ReduceOp op) {
  iallreduce(d, n, op)->wait();
}
void NcclComm::allreduce(double* d, std::size_t n, ReduceOp op) {
  order_after_compute();
  TH_NCCL_CHECK(ncclAllReduce(d, d, n, ncclDouble, to_nccl(op), comm_, stream_));
  sync();
}
void NcclComm::allreduce(std::int64_t* d, std::size_t n, ReduceOp op) {
  order_after_compute();
  TH_NCCL_CHECK(ncclAllReduce(d, d, n, ncclInt64, to_nccl(op), comm_, stream_));
  sync();
}

void NcclComm::broadcast(void* data, std::size_t bytes, int root) {
  order_after_compute();
  count_broadcast(static_cast<double>(bytes), rank() == root);
  TH_NCCL_CHECK(ncclBroadcast(data, data, bytes, ncclChar, root, comm_, stream_));
  sync();
}

std::vector<std::string> NcclComm::gather_strings(const std::string& mine, int root) {
  return boot_.gather_strings(mine, root);
}

void NcclComm::reduce_scatter(const float* send, float* recv, std::size_t count, ReduceOp op) {
  ireduce_scatter(send, recv, count, op)->wait();
}
void NcclComm::all_gather(const float* send, float* recv, std::size_t count) {
  iall_gather(send, recv, count)->wait();
}

// The float collectives of the gradient path appear on the device timeline of the comm stream
// (track "device: nccl") while the profiler's window is open; completed ones are collected at the
// next launch and at every synchronisation.
CommRequestPtr NcclComm::iallreduce(float* d, std::size_t n, ReduceOp op) {
  order_after_compute();
  count_allreduce(4.0 * static_cast<double>(n));
  const auto ev = timeline_.begin(stream_, "nccl/allreduce", Category::Communication,
                                  {{"bytes", static_cast<std::int64_t>(4 * n)}});
  TH_NCCL_CHECK(ncclAllReduce(d, d, n, ncclFloat, to_nccl(op), comm_, stream_));
  timeline_.end(ev, stream_);
  return request();
}
CommRequestPtr NcclComm::ireduce_scatter(const float* send, float* recv, std::size_t count, ReduceOp op) {
  order_after_compute();
  count_reduce_scatter(4.0 * static_cast<double>(count));
  const auto ev = timeline_.begin(stream_, "nccl/reduce_scatter", Category::Communication,
                                  {{"bytes", static_cast<std::int64_t>(4 * count * static_cast<std::size_t>(size()))}});
  if (send == recv) {
    // Comm's in-place form leaves the block at recv[0, count); NCCL's in-place form leaves it at
    // send + rank * count: reduce there, then move it down on the same stream (no overlap for
    // rank >= 1; rank 0's block is already in place).
    float* mine = recv + static_cast<std::size_t>(rank()) * count;
    TH_NCCL_CHECK(ncclReduceScatter(send, mine, count, ncclFloat, to_nccl(op), comm_, stream_));
    if (mine != recv)
      TH_CUDA_CHECK(cudaMemcpyAsync(recv, mine, 4 * count, cudaMemcpyDeviceToDevice, stream_));
  } else {
    TH_NCCL_CHECK(ncclReduceScatter(send, recv, count, ncclFloat, to_nccl(op), comm_, stream_));
  }
  timeline_.end(ev, stream_);
  return request();
}
CommRequestPtr NcclComm::iall_gather(const float* send, float* recv, std::size_t count) {
  order_after_compute();
  count_all_gather(4.0 * static_cast<double>(count));
  const auto ev = timeline_.begin(stream_, "nccl/all_gather", Category::Communication,
                                  {{"bytes", static_cast<std::int64_t>(4 * count * static_cast<std::size_t>(size()))}});
  TH_NCCL_CHECK(ncclAllGather(send, recv, count, ncclFloat, comm_, stream_));
  timeline_.end(ev, stream_);
  return request();
}

namespace {
ncclDataType_t nccl_type16(DType type) {
  TH_CHECK(type == DType::BF16 || type == DType::F16, "16-bit collectives take BF16 or F16");
  return type == DType::BF16 ? ncclBfloat16 : ncclFloat16;
}
}  // namespace

CommRequestPtr NcclComm::iallreduce16(std::uint16_t* d, std::size_t n, DType type) {
  order_after_compute();
  count_allreduce(2.0 * static_cast<double>(n));
  TH_NCCL_CHECK(ncclAllReduce(d, d, n, nccl_type16(type), ncclSum, comm_, stream_));
  return request();
}

CommRequestPtr NcclComm::ireduce_scatter16(const std::uint16_t* send, std::uint16_t* recv, std::size_t count,
                                           DType type) {
  order_after_compute();
  count_reduce_scatter(2.0 * static_cast<double>(count));
  if (send == recv) {  // Comm's in-place form: the block at recv[0, count) (see ireduce_scatter)
    std::uint16_t* mine = recv + static_cast<std::size_t>(rank()) * count;
    TH_NCCL_CHECK(ncclReduceScatter(send, mine, count, nccl_type16(type), ncclSum, comm_, stream_));
    if (mine != recv) TH_CUDA_CHECK(cudaMemcpyAsync(recv, mine, 2 * count, cudaMemcpyDeviceToDevice, stream_));
  } else {
    TH_NCCL_CHECK(ncclReduceScatter(send, recv, count, nccl_type16(type), ncclSum, comm_, stream_));
  }
  return request();
}

}  // namespace th
