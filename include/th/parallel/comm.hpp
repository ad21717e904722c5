#pragma once
// The communication interface. The application never calls MPI (or NCCL) outside the classes that
// implement it. Buffers are host memory for the MPI implementation.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace th {

enum class ReduceOp { Sum, Max, Min };

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
  virtual void reduce_scatter(const float* send, float* recv, std::size_t count, ReduceOp op) = 0;
  virtual void all_gather(const float* send, float* recv, std::size_t count) = 0;
  // Non-blocking forms (the buffers must stay alive and untouched until the request completes).
  virtual CommRequestPtr iallreduce(float* data, std::size_t n, ReduceOp op) = 0;
  virtual CommRequestPtr ireduce_scatter(const float* send, float* recv, std::size_t count, ReduceOp op) = 0;
  virtual CommRequestPtr iall_gather(const float* send, float* recv, std::size_t count) = 0;
  // Gather a variable-length byte string from every rank to root (empty elsewhere).
  virtual std::vector<std::string> gather_strings(const std::string& mine, int root) = 0;

  // Collective agreements: every rank gets the same answer.
  bool all_true(bool mine);
  bool any_true(bool mine) { return !all_true(!mine); }
  double sum(double v);
  double max(double v);
  void broadcast_string(std::string& s, int root);
};

}  // namespace th
