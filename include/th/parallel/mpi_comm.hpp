#pragma once
// Comm over MPI (host buffers). The only place besides runtime.cpp that includes <mpi.h>.
#include <mpi.h>

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

#include "th/parallel/comm.hpp"

namespace th {

[[noreturn]] void mpi_fail(int err, const char* call, const char* file, int line);
#define TH_MPI_CHECK(call)                                          \
  do {                                                              \
    int th_mpi_err_ = (call);                                       \
    if (th_mpi_err_ != MPI_SUCCESS) ::th::mpi_fail(th_mpi_err_, #call, __FILE__, __LINE__); \
  } while (0)

// Non-blocking collectives run on a progress thread of the communicator (when MPI gives
// MPI_THREAD_MULTIPLE), as blocking collectives on a duplicate communicator, in the order they
// were issued. Open MPI's MPI_I* collectives advance only inside MPI calls, so on a CPU they would
// make progress only when polled; the thread makes the overlap with backward real.
// An MPI communicator with comm's ranks in comm's order, for HDF5's MPI-IO driver. Comm hides its
// MPI handle (the layers above do not call MPI), so it is rebuilt from the members' world ranks;
// collective over comm's members only. The caller frees it (MPI_Comm_free).
MPI_Comm mpi_comm_of(Comm& comm);

class MpiComm final : public Comm {
 public:
  explicit MpiComm(MPI_Comm comm);  // duplicates comm; frees its duplicates in the destructor
  ~MpiComm() override;
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  int local_rank() const override { return local_rank_; }
  int local_size() const override { return local_size_; }
  int num_nodes() const override { return num_nodes_; }
  void barrier() override;
  void allreduce(float* data, std::size_t n, ReduceOp op) override;
  void allreduce(double* data, std::size_t n, ReduceOp op) override;
  void allreduce(std::int64_t* data, std::size_t n, ReduceOp op) override;
  void broadcast(void* data, std::size_t bytes, int root) override;
  std::vector<std::string> gather_strings(const std::string& mine, int root) override;
  void reduce_scatter(const float* send, float* recv, std::size_t count, ReduceOp op) override;
  void all_gather(const float* send, float* recv, std::size_t count) override;
  CommRequestPtr iallreduce(float* data, std::size_t n, ReduceOp op) override;
  CommRequestPtr ireduce_scatter(const float* send, float* recv, std::size_t count, ReduceOp op) override;
  CommRequestPtr iall_gather(const float* send, float* recv, std::size_t count) override;
  CommRequestPtr iallreduce16(std::uint16_t* data, std::size_t n, DType type) override;
  CommRequestPtr ireduce_scatter16(const std::uint16_t* send, std::uint16_t* recv, std::size_t count,
                                   DType type) override;

 private:
  void allreduce_raw(void* data, std::size_t n, MPI_Datatype type, ReduceOp op);
  CommRequestPtr post(std::function<void(MPI_Comm)> work);  // run `work` on the progress thread
  void progress_loop();
  MPI_Comm comm_ = MPI_COMM_NULL;
  MPI_Comm async_comm_ = MPI_COMM_NULL;  // the progress thread's duplicate
  bool threaded_ = false;
  std::thread worker_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  bool stop_ = false;
  int rank_ = 0, size_ = 1, local_rank_ = 0, local_size_ = 1, num_nodes_ = 1;
};

}  // namespace th
