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
