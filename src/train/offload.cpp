#include "th/train/offload.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <filesystem>
#include <functional>
#include <future>
#include <mutex>
#include <thread>

#include "th/kernels/host_loop.hpp"
#include "th/core/error.hpp"
#include "th/core/profiler.hpp"
#include "th/kernels/adamw_element.hpp"

namespace th {

void OffloadedAdamW::host_update(float* p, const float* g, float* m, float* v, std::int64_t n, double lr) const {
  const auto c = cpu::AdamWCoefficients<float>::make(lr, cfg_.beta1, cfg_.beta2, cfg_.eps, cfg_.weight_decay, t_);
  cpu::host_for("th::offload::adamw", n, [=](std::int64_t i) { c(p[i], g[i], m[i], v[i]); });
}

namespace {

// ---------------------------------------------------------------------------------------------
// 'cpu': the moments in host memory (on a GPU build: pinned host memory).

class HostAdamW final : public OffloadedAdamW {
 public:
  HostAdamW(std::int64_t n, const AdamWConfig& cfg)
      : OffloadedAdamW(n, cfg),
        m_(Tensor::zeros({std::max<std::int64_t>(n, 1)}, DType::F32, MemCategory::OptimizerState)),
        v_(Tensor::zeros({std::max<std::int64_t>(n, 1)}, DType::F32, MemCategory::OptimizerState)) {}

  void update(const std::vector<AdamSpan>& spans, double lr) override {
    ProfileScope scope(profiler(), "offload/adamw", Category::Offload);
    for (const AdamSpan& s : spans) {
      TH_CHECK(s.offset >= 0 && s.offset + s.n <= n_, "offloaded AdamW span outside the moments");
      host_update(s.param, s.grad, m_.data<float>() + s.offset, v_.data<float>() + s.offset, s.n, lr);
    }
  }
  float* host_exp_avg() override { return m_.data<float>(); }
  float* host_exp_avg_sq() override { return v_.data<float>(); }
  void read_moments(float* m, float* v) override {
    std::memcpy(m, m_.data<float>(), bytes());
    std::memcpy(v, v_.data<float>(), bytes());
  }
  void write_moments(const float* m, const float* v) override {
    std::memcpy(m_.data<float>(), m, bytes());
    std::memcpy(v_.data<float>(), v, bytes());
  }
  OffloadMemory memory() const override { return {static_cast<std::int64_t>(2 * bytes()), 0, 0}; }
  std::string where() const override { return "host"; }

 private:
  std::size_t bytes() const { return sizeof(float) * static_cast<std::size_t>(n_); }
  Tensor m_, v_;
};

// ---------------------------------------------------------------------------------------------
// 'nvme'

// One background thread running jobs in submission order; a job's exception reaches its future.
class IoQueue {
 public:
  IoQueue() : thread_([this] { run(); }) {}
  ~IoQueue() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_one();
    thread_.join();
  }
  std::future<void> submit(std::function<void()> f) {
    std::packaged_task<void()> task(std::move(f));
    std::future<void> fut = task.get_future();
    {
      std::lock_guard<std::mutex> lock(mu_);
      jobs_.push_back(std::move(task));
    }
    cv_.notify_one();
    return fut;
  }

 private:
  void run() {
    profiler().set_thread_name("offload");
    for (;;) {
      std::packaged_task<void()> job;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [this] { return stop_ || !jobs_.empty(); });
        if (jobs_.empty()) return;  // stop_ and nothing left
        job = std::move(jobs_.front());
        jobs_.pop_front();
      }
      job();
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::packaged_task<void()>> jobs_;
  bool stop_ = false;
  std::thread thread_;  // last: started once the rest is constructed
};

// Chunk record: this header, then array 0 [count], array 1 [count], ... Records have a fixed
// stride in the file.
struct ChunkHeader {
  std::uint64_t magic, chunk, generation, count, checksum, reserved[3];
};
static_assert(sizeof(ChunkHeader) == 64, "chunk header layout");
constexpr std::uint64_t kMagic = 0x31766e4f4d485421ULL;  // "!THMOnv1"

// Fletcher-style sums over the 32-bit words of the data (order-sensitive, cheap).
std::uint64_t checksum(const float* data, std::int64_t words) {
  const auto* w = reinterpret_cast<const std::uint32_t*>(data);
  std::uint64_t a = 1, b = 0;
  for (std::int64_t i = 0; i < words; ++i) {
    a += w[i];
    b += a;
  }
  return (b << 32) ^ a ^ (b >> 32);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// ChunkFile: the verified-chunk store shared by NVMe moments and NVMe parameters.

struct ChunkFile::Io {
  IoQueue queue;
};

ChunkFile::ChunkFile(const std::string& dir, const std::string& name, std::int64_t n, int width, double chunk_mb,
                     MemCategory cat)
    : n_(n), width_(width) {
  TH_CHECK(width >= 1 && width <= 2, "ChunkFile: 1 or 2 arrays per record");
  chunk_ = std::max<std::int64_t>(1, static_cast<std::int64_t>(chunk_mb * 1024 * 1024 / (width * sizeof(float))));
  chunk_ = std::min(chunk_, std::max<std::int64_t>(n, 1));
  nchunks_ = n == 0 ? 0 : (n + chunk_ - 1) / chunk_;
  // A record is the header, then the arrays; records start at multiples of 64 bytes so that the
  // header of every slot (and every record in the file) is aligned for its 8-byte fields.
  const std::int64_t record = static_cast<std::int64_t>(sizeof(ChunkHeader)) +
                              width * chunk_ * static_cast<std::int64_t>(sizeof(float));
  constexpr std::int64_t kAlign = sizeof(ChunkHeader);
  stride_ = (record + kAlign - 1) / kAlign * kAlign;
  // Two slots, each one record.
  const std::int64_t slot_floats = stride_ / static_cast<std::int64_t>(sizeof(float));
  slots_ = Tensor::zeros({2 * slot_floats}, DType::F32, cat);
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw Error("NVMe offload: cannot create the folder " + dir + " (parallel%nvme_path): " + ec.message());
  path_ = (std::filesystem::path(dir) / name).string();
  fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd_ < 0) throw Error("NVMe offload: cannot create " + path_ + ": " + std::strerror(errno));
  const int rc = ::posix_fallocate(fd_, 0, file_bytes());
  if (rc != 0 && rc != EOPNOTSUPP && rc != EINVAL) {
    close_and_remove();
    throw Error("NVMe offload: cannot reserve " + std::to_string(file_bytes()) + " bytes for " + path_ + ": " +
                std::strerror(rc));
  }
  io_ = std::make_unique<Io>();
  try {
    fill([](float*, float*, std::int64_t, std::int64_t) {});  // zeros, generation 0 -> 1
  } catch (...) {
    io_.reset();
    close_and_remove();
    throw;
  }
}

ChunkFile::~ChunkFile() {
  io_.reset();  // finishes whatever is queued
  close_and_remove();
}

char* ChunkFile::slot(int s) const { return reinterpret_cast<char*>(slots_.data<float>()) + s * stride_; }
float* ChunkFile::slot_a(int s) const { return reinterpret_cast<float*>(slot(s) + sizeof(ChunkHeader)); }
float* ChunkFile::slot_b(int s) const { return width_ == 2 ? slot_a(s) + chunk_ : nullptr; }
std::int64_t ChunkFile::count(std::int64_t k) const { return std::min(chunk_, n_ - k * chunk_); }
std::int64_t ChunkFile::record_bytes(std::int64_t k) const {
  return static_cast<std::int64_t>(sizeof(ChunkHeader)) + width_ * count(k) * static_cast<std::int64_t>(sizeof(float));
}

void ChunkFile::close_and_remove() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  if (!path_.empty()) ::unlink(path_.c_str());
}

// Record layout in a slot is [header | a[chunk_] | b[chunk_]]; on disk only [header | a[count] |
// b[count]] is meaningful, so b is moved next to a for the write and back after the read.
void ChunkFile::write_chunk(int s, std::int64_t k, std::uint64_t generation) {
  ProfileScope scope(profiler(), "offload/nvme_write", Category::Offload);
  scope.arg("bytes", record_bytes(k));
  const std::int64_t c = count(k);
  if (width_ == 2 && c < chunk_) std::memmove(slot_a(s) + c, slot_b(s), sizeof(float) * static_cast<std::size_t>(c));
  auto* h = reinterpret_cast<ChunkHeader*>(slot(s));
  *h = ChunkHeader{kMagic, static_cast<std::uint64_t>(k), generation, static_cast<std::uint64_t>(c),
                   checksum(slot_a(s), width_ * c), {0, 0, 0}};
  transfer(true, s, k);
}

void ChunkFile::read_chunk(int s, std::int64_t k, std::uint64_t generation) {
  ProfileScope scope(profiler(), "offload/nvme_read", Category::Offload);
  scope.arg("bytes", record_bytes(k));
  transfer(false, s, k);
  const std::int64_t c = count(k);
  const auto* h = reinterpret_cast<const ChunkHeader*>(slot(s));
  const std::string at = path_ + ", chunk " + std::to_string(k) + " at byte " + std::to_string(k * stride_);
  if (h->magic != kMagic || h->chunk != static_cast<std::uint64_t>(k) || h->count != static_cast<std::uint64_t>(c))
    throw Error("NVMe offload: " + at + " is not a complete chunk record of this run (damaged or overwritten)");
  if (h->generation != generation)
    throw Error("NVMe offload: " + at + " has generation " + std::to_string(h->generation) + ", expected " +
                std::to_string(generation) + ": a write of it did not complete");
  if (h->checksum != checksum(slot_a(s), width_ * c))
    throw Error("NVMe offload: " + at + " fails its checksum: the data read back is corrupt");
  if (width_ == 2 && c < chunk_) std::memmove(slot_b(s), slot_a(s) + c, sizeof(float) * static_cast<std::size_t>(c));
}

void ChunkFile::transfer(bool write, int s, std::int64_t k) {
  const std::int64_t bytes = record_bytes(k);
  std::int64_t done = 0;
  while (done < bytes) {
    const auto len = static_cast<std::size_t>(bytes - done);
    const off_t off = static_cast<off_t>(k * stride_ + done);
    const ssize_t r = write ? ::pwrite(fd_, slot(s) + done, len, off) : ::pread(fd_, slot(s) + done, len, off);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0)
      throw Error(std::string("NVMe offload: ") + (write ? "write" : "read") + " of " + path_ + " failed (chunk " +
                  std::to_string(k) + "): " + std::strerror(errno));
    if (r == 0)
      throw Error("NVMe offload: short " + std::string(write ? "write" : "read") + " of " + path_ + " (chunk " +
                  std::to_string(k) + ": " + std::to_string(done) + " of " + std::to_string(bytes) + " bytes at byte " +
                  std::to_string(k * stride_) + "); was the file truncated or the disk full?");
    done += r;
  }
}

namespace {
// The futures of the jobs in flight per slot.
struct Pending {
  std::future<void> read[2], write[2];
  void finish(int s) {
    if (write[s].valid()) write[s].get();
  }
  void finish_all() {
    for (int s = 0; s < 2; ++s) finish(s);
  }
  void abandon() {  // after an error: let the queued jobs end, dropping their errors
    for (int s = 0; s < 2; ++s) {
      if (read[s].valid()) read[s].wait();
      if (write[s].valid()) write[s].wait();
    }
  }
};
}  // namespace

// Writes every chunk (slot contents from `f`) with the next generation; the I/O thread writes
// chunk k while `f` fills chunk k+1.
void ChunkFile::fill(const ChunkFn& f) {
  const std::uint64_t next = generation_ + 1;
  Pending pending;
  try {
    for (std::int64_t k = 0; k < nchunks_; ++k) {
      const int s = static_cast<int>(k % 2);
      pending.finish(s);  // the slot's previous write
      const std::int64_t c0 = k * chunk_, c = count(k);
      std::memset(slot_a(s), 0, sizeof(float) * static_cast<std::size_t>(width_ * chunk_));
      f(slot_a(s), slot_b(s), c0, c0 + c);
      pending.write[s] = io_->queue.submit([this, s, k, next] { write_chunk(s, k, next); });
    }
    pending.finish_all();
  } catch (...) {
    pending.abandon();
    throw;
  }
  generation_ = next;
}

// Reads every chunk and runs `f` on it; with `write_back` writes it back as the next generation.
// Read k+1 and write k-1 run on the I/O thread while `f` works on chunk k: the queue is FIFO, so
// read k+1 into the slot of chunk k-1 starts only after that slot was written.
void ChunkFile::stream(const ChunkFn& f, bool write_back) {
  const std::uint64_t cur = generation_, next = generation_ + 1;
  Pending pending;
  try {
    if (nchunks_ > 0) pending.read[0] = io_->queue.submit([this, cur] { read_chunk(0, 0, cur); });
    for (std::int64_t k = 0; k < nchunks_; ++k) {
      const int s = static_cast<int>(k % 2), t = 1 - s;
      {
        ProfileScope scope(profiler(), "offload/nvme_wait", Category::Offload);
        pending.read[s].get();
      }
      if (k + 1 < nchunks_) pending.read[t] = io_->queue.submit([this, t, k, cur] { read_chunk(t, k + 1, cur); });
      f(slot_a(s), slot_b(s), k * chunk_, k * chunk_ + count(k));
      if (write_back) {
        pending.finish(s);  // write k-2: done, it went before read k in the queue
        pending.write[s] = io_->queue.submit([this, s, k, next] { write_chunk(s, k, next); });
      }
    }
    ProfileScope scope(profiler(), "offload/nvme_wait", Category::Offload);
    pending.finish_all();
  } catch (...) {
    pending.abandon();
    throw;
  }
  if (write_back) generation_ = next;
}

// Reads the chunks covering [begin, end), verified, and hands `f` their overlap with it.
void ChunkFile::read_range(std::int64_t begin, std::int64_t end, const RangeFn& f) {
  TH_CHECK(begin >= 0 && end <= n_ && begin <= end, "ChunkFile::read_range outside the file");
  const std::uint64_t cur = generation_;
  for (std::int64_t k = begin / chunk_; k * chunk_ < end; ++k) {
    std::future<void> r = io_->queue.submit([this, k, cur] { read_chunk(0, k, cur); });
    {
      ProfileScope scope(profiler(), "offload/nvme_wait", Category::Offload);
      r.get();
    }
    const std::int64_t c0 = k * chunk_, lo = std::max(begin, c0), hi = std::min(end, c0 + count(k));
    f(slot_a(0) + (lo - c0), lo, hi);
  }
}

OffloadTarget parse_offload_target(const std::string& value, const std::string& key) {
  if (value == "none") return OffloadTarget::None;
  if (value == "cpu") return OffloadTarget::Cpu;
  if (value == "nvme") return OffloadTarget::Nvme;
  throw InputError(key + " = '" + value + "': expected 'none', 'cpu' or 'nvme'");
}

const char* to_string(OffloadTarget t) {
  switch (t) {
    case OffloadTarget::Cpu: return "cpu";
    case OffloadTarget::Nvme: return "nvme";
    case OffloadTarget::None: break;
  }
  return "none";
}

namespace {

class NvmeAdamW final : public OffloadedAdamW {
 public:
  NvmeAdamW(std::int64_t n, const AdamWConfig& cfg, const OffloadOptions& opt, int rank)
      : OffloadedAdamW(n, cfg),
        file_(opt.nvme_path, "th_optim_rank" + std::to_string(rank) + ".bin", n, 2, opt.nvme_chunk_mb,
              MemCategory::OptimizerState) {}

  void update(const std::vector<AdamSpan>& spans, double lr) override {
    file_.stream([&](float* m, float* v, std::int64_t c0, std::int64_t c1) {
      ProfileScope scope(profiler(), "offload/adamw", Category::Offload);
      auto s = std::lower_bound(spans.begin(), spans.end(), c0,
                                [](const AdamSpan& a, std::int64_t x) { return a.offset + a.n <= x; });
      for (; s != spans.end() && s->offset < c1; ++s) {
        const std::int64_t lo = std::max(c0, s->offset), hi = std::min(c1, s->offset + s->n);
        if (lo < hi)
          host_update(s->param + (lo - s->offset), s->grad + (lo - s->offset), m + (lo - c0), v + (lo - c0), hi - lo, lr);
      }
    }, true);
  }
  void read_moments(float* m_out, float* v_out) override {
    file_.stream([&](float* m, float* v, std::int64_t c0, std::int64_t c1) {
      std::memcpy(m_out + c0, m, sizeof(float) * static_cast<std::size_t>(c1 - c0));
      std::memcpy(v_out + c0, v, sizeof(float) * static_cast<std::size_t>(c1 - c0));
    }, false);
  }
  void write_moments(const float* m_in, const float* v_in) override {
    file_.fill([&](float* m, float* v, std::int64_t c0, std::int64_t c1) {
      std::memcpy(m, m_in + c0, sizeof(float) * static_cast<std::size_t>(c1 - c0));
      std::memcpy(v, v_in + c0, sizeof(float) * static_cast<std::size_t>(c1 - c0));
    });
  }
  OffloadMemory memory() const override { return {file_.window_bytes(), file_.file_bytes(), file_.window_bytes()}; }
  std::string where() const override { return file_.path(); }

 private:
  ChunkFile file_;
};


}  // namespace

std::unique_ptr<OffloadedAdamW> OffloadedAdamW::make(const OffloadOptions& opt, std::int64_t n, const AdamWConfig& cfg,
                                                     int rank) {
  switch (opt.optimizer) {
    case OffloadTarget::Cpu: return std::make_unique<HostAdamW>(n, cfg);
    case OffloadTarget::Nvme: return std::make_unique<NvmeAdamW>(n, cfg, opt, rank);
    case OffloadTarget::None: break;
  }
  throw Error("offloaded AdamW: the moments are not offloaded (parallel%offload_optimizer = 'none')");
}

}  // namespace th
