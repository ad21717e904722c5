#include "th/parallel/mpi_comm.hpp"

#include <climits>
#include <mutex>

#include "th/core/error.hpp"
#include "th/core/half.hpp"
#include "th/core/profiler.hpp"

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
// Sums of bf16 / fp16 bit patterns (MPI has no such types): widen, add in fp32, round.
void sum_bf16(void* in, void* inout, int* len, MPI_Datatype*) {
  const auto* a = static_cast<const std::uint16_t*>(in);
  auto* b = static_cast<std::uint16_t*>(inout);
  for (int i = 0; i < *len; ++i) b[i] = half::to_bf16(half::from_bf16(a[i]) + half::from_bf16(b[i]));
}
void sum_fp16(void* in, void* inout, int* len, MPI_Datatype*) {
  const auto* a = static_cast<const std::uint16_t*>(in);
  auto* b = static_cast<std::uint16_t*>(inout);
  for (int i = 0; i < *len; ++i) b[i] = half::to_fp16(half::from_fp16(a[i]) + half::from_fp16(b[i]));
}
// The user-defined operation of a 16-bit type, created once (MPI_Op handles live until
// MPI_Finalize; freeing them is not required).
MPI_Op sum16_op(DType type) {
  static MPI_Op bf16 = MPI_OP_NULL, fp16 = MPI_OP_NULL;
  static std::once_flag once;
  std::call_once(once, [] {
    TH_MPI_CHECK(MPI_Op_create(&sum_bf16, /*commute=*/1, &bf16));
    TH_MPI_CHECK(MPI_Op_create(&sum_fp16, /*commute=*/1, &fp16));
  });
  if (type == DType::BF16) return bf16;
  if (type == DType::F16) return fp16;
  throw Error(std::string("a 16-bit collective of type ") + to_string(type));
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
  int level = MPI_THREAD_SINGLE;
  TH_MPI_CHECK(MPI_Query_thread(&level));
  threaded_ = level == MPI_THREAD_MULTIPLE;
  if (threaded_) TH_MPI_CHECK(MPI_Comm_dup(comm_, &async_comm_));
  int leader = local_rank_ == 0 ? 1 : 0;
  TH_MPI_CHECK(MPI_Allreduce(&leader, &num_nodes_, 1, MPI_INT, MPI_SUM, comm_));
  TH_MPI_CHECK(MPI_Comm_free(&node));
}

MpiComm::~MpiComm() {
  if (worker_.joinable()) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    worker_.join();
  }
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized && async_comm_ != MPI_COMM_NULL) MPI_Comm_free(&async_comm_);
  if (!finalized && comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
}

void MpiComm::progress_loop() {
  for (;;) {
    std::function<void()> work;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stop requested and nothing left
      work = std::move(queue_.front());
      queue_.pop_front();
    }
    work();
  }
}

void MpiComm::barrier() { TH_MPI_CHECK(MPI_Barrier(comm_)); }

void MpiComm::allreduce_raw(void* data, std::size_t n, MPI_Datatype type, ReduceOp op) {
  int elem = 0;
  TH_MPI_CHECK(MPI_Type_size(type, &elem));
  count_allreduce(static_cast<double>(n) * elem);
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
  count_broadcast(static_cast<double>(bytes), root == rank_);
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

namespace {
// A collective queued on the progress thread; done (or its error) is published under a mutex.
class ThreadRequest final : public CommRequest {
 public:
  struct State {
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
    std::string error;
  };
  explicit ThreadRequest(std::shared_ptr<State> s) : s_(std::move(s)) {}
  ~ThreadRequest() override {
    std::unique_lock<std::mutex> lock(s_->mu);
    s_->cv.wait(lock, [&] { return s_->done; });
  }
  bool test() override {
    std::lock_guard<std::mutex> lock(s_->mu);
    if (s_->done && !s_->error.empty()) throw Error(s_->error);
    return s_->done;
  }
  void wait() override {
    std::unique_lock<std::mutex> lock(s_->mu);
    s_->cv.wait(lock, [&] { return s_->done; });
    if (!s_->error.empty()) throw Error(s_->error);
  }

 private:
  std::shared_ptr<State> s_;
};

// Non-blocking MPI collectives take int counts: a buffer beyond INT_MAX elements becomes several
// requests, all owned by one handle.
class MpiRequest final : public CommRequest {
 public:
  std::vector<MPI_Request> reqs;
  bool test() override {
    int done = 0;
    TH_MPI_CHECK(MPI_Testall(static_cast<int>(reqs.size()), reqs.data(), &done, MPI_STATUSES_IGNORE));
    return done != 0;
  }
  void wait() override {
    TH_MPI_CHECK(MPI_Waitall(static_cast<int>(reqs.size()), reqs.data(), MPI_STATUSES_IGNORE));
  }
  ~MpiRequest() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Waitall(static_cast<int>(reqs.size()), reqs.data(), MPI_STATUSES_IGNORE);
  }
};

int checked_count(std::size_t n) {
  if (n > kMaxChunk) throw Error("a collective of " + std::to_string(n) + " elements per rank exceeds MPI's int count");
  return static_cast<int>(n);
}
// The in-place conventions of Comm (see comm.hpp) in MPI's terms.
const void* rs_send(const float* send, const float* recv) { return send == recv ? MPI_IN_PLACE : send; }
const void* ag_send(const float* send, const float* recv, int rank, std::size_t count) {
  return send == recv + static_cast<std::size_t>(rank) * count ? MPI_IN_PLACE : send;
}
}  // namespace

void MpiComm::reduce_scatter(const float* send, float* recv, std::size_t count, ReduceOp op) {
  count_reduce_scatter(4.0 * static_cast<double>(count));
  TH_MPI_CHECK(MPI_Reduce_scatter_block(rs_send(send, recv), recv, checked_count(count), MPI_FLOAT, to_mpi(op), comm_));
}

void MpiComm::all_gather(const float* send, float* recv, std::size_t count) {
  count_all_gather(4.0 * static_cast<double>(count));
  TH_MPI_CHECK(MPI_Allgather(ag_send(send, recv, rank_, count), checked_count(count), MPI_FLOAT, recv,
                             checked_count(count), MPI_FLOAT, comm_));
}

MPI_Comm mpi_comm_of(Comm& comm) {
  int world_rank = 0;
  TH_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &world_rank));
  std::vector<std::int64_t> ranks(static_cast<std::size_t>(comm.size()), 0);
  ranks[static_cast<std::size_t>(comm.rank())] = world_rank;
  comm.allreduce(ranks.data(), ranks.size(), ReduceOp::Sum);
  std::vector<int> members(ranks.begin(), ranks.end());
  MPI_Group world_group, group;
  TH_MPI_CHECK(MPI_Comm_group(MPI_COMM_WORLD, &world_group));
  TH_MPI_CHECK(MPI_Group_incl(world_group, comm.size(), members.data(), &group));
  MPI_Comm out = MPI_COMM_NULL;
  TH_MPI_CHECK(MPI_Comm_create_group(MPI_COMM_WORLD, group, /*tag=*/0x7448, &out));
  MPI_Group_free(&group);
  MPI_Group_free(&world_group);
  return out;
}

CommRequestPtr MpiComm::post(std::function<void(MPI_Comm)> work) {
  auto state = std::make_shared<ThreadRequest::State>();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!worker_.joinable()) worker_ = std::thread([this] {
      profiler().set_thread_name("comm");
      progress_loop();
    });
    queue_.push_back([state, work = std::move(work), c = async_comm_] {
      std::string error;
      try {
        ProfileScope scope(profiler(), "collective (progress thread)", Category::Communication);
        work(c);
      } catch (const std::exception& e) {
        error = e.what();
      }
      std::lock_guard<std::mutex> lock(state->mu);
      state->done = true;
      state->error = error;
      state->cv.notify_all();
    });
  }
  cv_.notify_one();
  return std::make_unique<ThreadRequest>(state);
}

CommRequestPtr MpiComm::iallreduce(float* data, std::size_t n, ReduceOp op) {
  count_allreduce(4.0 * static_cast<double>(n));
  if (threaded_)
    return post([=](MPI_Comm c) {
      for (std::size_t off = 0; off < n; off += kMaxChunk)
        TH_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, data + off, static_cast<int>(std::min(kMaxChunk, n - off)), MPI_FLOAT,
                                   to_mpi(op), c));
    });
  auto r = std::make_unique<MpiRequest>();
  for (std::size_t off = 0; off < n; off += kMaxChunk) {
    r->reqs.emplace_back();
    TH_MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, data + off, static_cast<int>(std::min(kMaxChunk, n - off)), MPI_FLOAT,
                                to_mpi(op), comm_, &r->reqs.back()));
  }
  return r;
}

CommRequestPtr MpiComm::ireduce_scatter(const float* send, float* recv, std::size_t count, ReduceOp op) {
  count_reduce_scatter(4.0 * static_cast<double>(count));
  const void* in = rs_send(send, recv);
  if (threaded_)
    return post([=](MPI_Comm c) {
      TH_MPI_CHECK(MPI_Reduce_scatter_block(in, recv, checked_count(count), MPI_FLOAT, to_mpi(op), c));
    });
  auto r = std::make_unique<MpiRequest>();
  r->reqs.emplace_back();
  TH_MPI_CHECK(MPI_Ireduce_scatter_block(in, recv, checked_count(count), MPI_FLOAT, to_mpi(op), comm_,
                                         &r->reqs.back()));
  return r;
}

CommRequestPtr MpiComm::iall_gather(const float* send, float* recv, std::size_t count) {
  count_all_gather(4.0 * static_cast<double>(count));
  const void* in = ag_send(send, recv, rank_, count);
  if (threaded_)
    return post([=](MPI_Comm c) {
      TH_MPI_CHECK(MPI_Allgather(in, checked_count(count), MPI_FLOAT, recv, checked_count(count), MPI_FLOAT, c));
    });
  auto r = std::make_unique<MpiRequest>();
  r->reqs.emplace_back();
  TH_MPI_CHECK(MPI_Iallgather(in, checked_count(count), MPI_FLOAT, recv, checked_count(count), MPI_FLOAT, comm_,
                              &r->reqs.back()));
  return r;
}

}  // namespace th

namespace th {

CommRequestPtr MpiComm::iallreduce16(std::uint16_t* data, std::size_t n, DType type) {
  count_allreduce(2.0 * static_cast<double>(n));
  const MPI_Op op = sum16_op(type);
  if (threaded_)
    return post([=](MPI_Comm c) {
      for (std::size_t off = 0; off < n; off += kMaxChunk)
        TH_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, data + off, static_cast<int>(std::min(kMaxChunk, n - off)),
                                   MPI_UINT16_T, op, c));
    });
  auto r = std::make_unique<MpiRequest>();
  for (std::size_t off = 0; off < n; off += kMaxChunk) {
    r->reqs.emplace_back();
    TH_MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, data + off, static_cast<int>(std::min(kMaxChunk, n - off)),
                                MPI_UINT16_T, op, comm_, &r->reqs.back()));
  }
  return r;
}

CommRequestPtr MpiComm::ireduce_scatter16(const std::uint16_t* send, std::uint16_t* recv, std::size_t count,
                                          DType type) {
  count_reduce_scatter(2.0 * static_cast<double>(count));
  const MPI_Op op = sum16_op(type);
  const void* in = send == recv ? MPI_IN_PLACE : static_cast<const void*>(send);
  if (threaded_)
    return post([=](MPI_Comm c) {
      TH_MPI_CHECK(MPI_Reduce_scatter_block(in, recv, checked_count(count), MPI_UINT16_T, op, c));
    });
  auto r = std::make_unique<MpiRequest>();
  r->reqs.emplace_back();
  TH_MPI_CHECK(MPI_Ireduce_scatter_block(in, recv, checked_count(count), MPI_UINT16_T, op, comm_, &r->reqs.back()));
  return r;
}

}  // namespace th
