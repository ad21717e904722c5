#include "parallel/mpi_comm.hpp"

#include <climits>

#include "th/core/error.hpp"

namespace th {

void mpi_fail(int err, const char* call, const char* file, int line) {
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(err, text, &len);
  throw_error(file, line, std::string(call) + " failed: " + std::string(text, len));
}

namespace {
MPI_Op to_mpi(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum: return MPI_SUM;
    case ReduceOp::Max: return MPI_MAX;
    case ReduceOp::Min: return MPI_MIN;
  }
  return MPI_SUM;
}
// MPI counts are int: large buffers go in chunks.
constexpr std::size_t kMaxChunk = static_cast<std::size_t>(INT_MAX) / 2;
}  // namespace

MpiComm::MpiComm(MPI_Comm comm) {
  TH_MPI_CHECK(MPI_Comm_dup(comm, &comm_));
  TH_MPI_CHECK(MPI_Comm_rank(comm_, &rank_));
  TH_MPI_CHECK(MPI_Comm_size(comm_, &size_));
  // Node discovery: ranks sharing memory form a node; node leaders count the nodes.
  MPI_Comm node;
  TH_MPI_CHECK(MPI_Comm_split_type(comm_, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &node));
  TH_MPI_CHECK(MPI_Comm_rank(node, &local_rank_));
  TH_MPI_CHECK(MPI_Comm_size(node, &local_size_));
  int leader = local_rank_ == 0 ? 1 : 0;
  TH_MPI_CHECK(MPI_Allreduce(&leader, &num_nodes_, 1, MPI_INT, MPI_SUM, comm_));
  TH_MPI_CHECK(MPI_Comm_free(&node));
}

MpiComm::~MpiComm() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized && comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
}

void MpiComm::barrier() { TH_MPI_CHECK(MPI_Barrier(comm_)); }

void MpiComm::allreduce_raw(void* data, std::size_t n, MPI_Datatype type, ReduceOp op) {
  int elem = 0;
  TH_MPI_CHECK(MPI_Type_size(type, &elem));
  auto* p = static_cast<char*>(data);
  for (std::size_t off = 0; off < n; off += kMaxChunk) {
    const int cnt = static_cast<int>(std::min(kMaxChunk, n - off));
    TH_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, p + off * elem, cnt, type, to_mpi(op), comm_));
  }
}

void MpiComm::allreduce(float* d, std::size_t n, ReduceOp op) { allreduce_raw(d, n, MPI_FLOAT, op); }
void MpiComm::allreduce(double* d, std::size_t n, ReduceOp op) { allreduce_raw(d, n, MPI_DOUBLE, op); }
void MpiComm::allreduce(std::int64_t* d, std::size_t n, ReduceOp op) {
  allreduce_raw(d, n, MPI_INT64_T, op);
}

void MpiComm::broadcast(void* data, std::size_t bytes, int root) {
  auto* p = static_cast<char*>(data);
  for (std::size_t off = 0; off < bytes; off += kMaxChunk) {
    const int cnt = static_cast<int>(std::min(kMaxChunk, bytes - off));
    TH_MPI_CHECK(MPI_Bcast(p + off, cnt, MPI_BYTE, root, comm_));
  }
}

std::vector<std::string> MpiComm::gather_strings(const std::string& mine, int root) {
  int len = static_cast<int>(mine.size());
  std::vector<int> lens(rank_ == root ? size_ : 0), displs(lens.size());
  TH_MPI_CHECK(MPI_Gather(&len, 1, MPI_INT, lens.data(), 1, MPI_INT, root, comm_));
  std::string all;
  if (rank_ == root) {
    int total = 0;
    for (int r = 0; r < size_; ++r) { displs[r] = total; total += lens[r]; }
    all.resize(total);
  }
  TH_MPI_CHECK(MPI_Gatherv(mine.data(), len, MPI_CHAR, all.data(), lens.data(), displs.data(),
                           MPI_CHAR, root, comm_));
  std::vector<std::string> out;
  for (int r = 0; r < static_cast<int>(lens.size()); ++r) out.push_back(all.substr(displs[r], lens[r]));
  return out;
}

}  // namespace th
