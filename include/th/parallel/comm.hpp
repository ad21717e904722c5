#pragma once
// The communication interface. The application never calls MPI (or NCCL) outside the classes that
// implement it. Buffers are host memory for the MPI implementation.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "th/core/tensor.hpp"

namespace th {

enum class ReduceOp { Sum, Max, Min };

// Bytes this rank sent through the collectives, under the bandwidth-optimal (ring) algorithms'
// cost: all-reduce of B bytes 2B(N-1)/N, reduce-scatter / all-gather of B bytes per rank B(N-1),
// broadcast B (root) . Counted by the implementation for every call, blocking or not.
struct CommTraffic {
  double allreduce_bytes = 0, reduce_scatter_bytes = 0, all_gather_bytes = 0, broadcast_bytes = 0;
  std::int64_t calls = 0;
  double total() const { return allreduce_bytes + reduce_scatter_bytes + all_gather_bytes + broadcast_bytes; }
};

// A non-blocking operation in flight. test() polls (and lets the library progress it); wait()
// blocks until done. Destroying an unfinished request waits for it: buffers are never left in use.
class CommRequest {
 public:
  virtual ~CommRequest() = default;
  virtual bool test() = 0;
  virtual void wait() = 0;
};
using CommRequestPtr = std::unique_ptr<CommRequest>;

class Comm {
 public:
  virtual ~Comm() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // Ranks that share a node (shared-memory split) and the number of nodes.
  virtual int local_rank() const = 0;
  virtual int local_size() const = 0;
  virtual int num_nodes() const = 0;

  virtual void barrier() = 0;
  virtual void allreduce(float* data, std::size_t n, ReduceOp op) = 0;
  virtual void allreduce(double* data, std::size_t n, ReduceOp op) = 0;
  virtual void allreduce(std::int64_t* data, std::size_t n, ReduceOp op) = 0;
  virtual void broadcast(void* data, std::size_t bytes, int root) = 0;
  // Rank r receives block r (count elements) of the element-wise reduction of every rank's
  // send[size * count]; and the inverse, every rank's block gathered in rank order.
  // In place: reduce_scatter with send == recv takes its input from recv[0, size * count) and
  // leaves this rank's block at recv[0, count); all_gather with send == recv + rank * count takes
  // this rank's block from where it belongs in recv.
  virtual void reduce_scatter(const float* send, float* recv, std::size_t count, ReduceOp op) = 0;
  virtual void all_gather(const float* send, float* recv, std::size_t count) = 0;
  // Non-blocking forms (the buffers must stay alive and untouched until the request completes).
  virtual CommRequestPtr iallreduce(float* data, std::size_t n, ReduceOp op) = 0;
  virtual CommRequestPtr ireduce_scatter(const float* send, float* recv, std::size_t count, ReduceOp op) = 0;
  virtual CommRequestPtr iall_gather(const float* send, float* recv, std::size_t count) = 0;
  // Gather a variable-length byte string from every rank to root (empty elsewhere).
  virtual std::vector<std::string> gather_strings(const std::string& mine, int root) = 0;
  // Sums of 16-bit payloads (bf16 or fp16 bit patterns, `type` BF16 / F16), non-blocking, with
  // the in-place rules above: every combine of two partial sums widens both to fp32, adds and
  // rounds to the type (round-to-nearest-even, th/core/half.hpp), as a 16-bit NCCL sum does.
  // Half the bytes of the fp32 forms on the wire. A communicator without them throws th::Error.
  virtual CommRequestPtr iallreduce16(std::uint16_t* data, std::size_t n, DType type);
  virtual CommRequestPtr ireduce_scatter16(const std::uint16_t* send, std::uint16_t* recv, std::size_t count,
                                           DType type);

  // Collective agreements: every rank gets the same answer.
  bool all_true(bool mine);
  bool any_true(bool mine) { return !all_true(!mine); }
  double sum(double v);
  double max(double v);
  void broadcast_string(std::string& s, int root);

  const CommTraffic& traffic() const { return traffic_; }
  void reset_traffic() { traffic_ = CommTraffic{}; }

 protected:
  // For the implementations: count one call (elem_bytes x n elements of payload per rank).
  void count_allreduce(double bytes) { traffic_.allreduce_bytes += 2 * bytes * (size() - 1) / size(); ++traffic_.calls; }
  void count_reduce_scatter(double block_bytes) { traffic_.reduce_scatter_bytes += block_bytes * (size() - 1); ++traffic_.calls; }
  void count_all_gather(double block_bytes) { traffic_.all_gather_bytes += block_bytes * (size() - 1); ++traffic_.calls; }
  void count_broadcast(double bytes, bool root) { traffic_.broadcast_bytes += root ? bytes : 0; ++traffic_.calls; }

 private:
  CommTraffic traffic_;
};

}  // namespace th
