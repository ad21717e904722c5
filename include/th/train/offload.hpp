#pragma once
// ZeRO-Offload and ZeRO-Infinity style placement of the rank's optimizer state (parallel%
// offload_optimizer = 'cpu' | 'nvme') for ZeroEngine (th/train/zero.hpp). The Adam moments of the
// rank's partition live on the host ('cpu') or in a file of parallel%nvme_path ('nvme'), and the
// AdamW step of the partition runs on the host with named Kokkos host loops
// ("th::offload::adamw"), with the per-element formula of th::cpu::adamw_update
// (th/kernels/adamw_element.hpp).
//
// The spans handed to update() are host memory: the optimizer step (src/train/zero/
// optimizer_step.cpp) copies the partition's gradients down (host_view, per span) and the updated
// parameters back up (host_target + copy_to_device) through the backend (th/backend/backend.hpp).
// On the CPU backend those calls alias (no copy); the path is still separate (own buffers, own
// loop, own accounting). AdamSpan is exactly the unit of those two copies, and nothing else of the
// offloaded optimizer touches device memory; its AdamW loop is a host loop by design.
//
// 'nvme': the moments live in <nvme_path>/th_optim_rank<r>.bin, created at start (all chunks
// written once, zero, generation 0) and removed when the engine goes. The moment space [0, n) is
// cut into chunks of parallel%nvme_chunk_mb MiB (m and v together). One I/O thread serves a FIFO
// queue; update() streams the chunks through two host slots: while chunk k is updated, chunk k+1
// is read and chunk k-1 written back (FIFO order makes the reuse of a slot safe). Host memory holds
// at most those two slots. Each chunk record carries a header (magic, chunk index, generation,
// element count, checksum of the data) that is verified on every read: a chunk that was never
// completely written, or belongs to another pass, is never used. Any I/O error (open, short
// read/write, ENOSPC, a failed verification) throws th::Error naming the file.
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "th/core/tensor.hpp"
#include "th/train/optimizer.hpp"

namespace th {

// Where a part of the rank's state lives (parallel%offload_optimizer / offload_param): with the
// parameters on the compute device, on the host, or in a file of parallel%nvme_path.
enum class OffloadTarget { None, Cpu, Nvme };
// "none" | "cpu" | "nvme"; anything else throws th::InputError naming `key`.
OffloadTarget parse_offload_target(const std::string& value, const std::string& key);
const char* to_string(OffloadTarget t);  // the deck's spelling

struct OffloadOptions {
  OffloadTarget optimizer = OffloadTarget::None;  // where the moments live
  OffloadTarget param = OffloadTarget::None;      // stage 3: where the parameter partition lives
  std::string nvme_path = "/tmp/torch-handle-nvme";
  double nvme_chunk_mb = 4;  // MiB per streamed chunk (moments: m and v together; parameters: values)
};

// A piece of the partition: parameters and gradients (param[0, n), grad[0, n)) whose moments are
// [offset, offset + n) of the rank's moment space. Spans are given in increasing offset.
struct AdamSpan {
  float* param = nullptr;
  const float* grad = nullptr;
  std::int64_t offset = 0, n = 0;
};

// Bytes of offloaded state of one rank.
struct OffloadMemory {
  std::int64_t host = 0;    // moments held on the host ('cpu'; 'nvme': the streaming window)
  std::int64_t nvme = 0;    // bytes of the rank's NVMe file
  std::int64_t window = 0;  // 'nvme': the host window (two chunk slots), included in `host`
};

// The verified-chunk file behind every NVMe placement (moments: th_optim_rank<r>.bin, 2 arrays
// m and v per record; stage-3 parameters: th_param_rank<r>.bin, 1 array). Elements [0, n) of
// `width` arrays are cut into chunks of chunk_mb MiB (all arrays together); each record is a
// 64-byte header (magic, chunk index, generation, element count, checksum) and the chunk's data,
// verified on every read. One I/O thread serves a FIFO queue; the host holds two chunk slots.
// Created full of zeros (generation 1), removed when the object goes. Every error is a th::Error
// naming the file; the caller agrees on it over ranks.
class ChunkFile {
 public:
  // f(a, b, c0, c1): the chunk holding elements [c0, c1) of array 0 (`a`) and array 1 (`b`,
  // nullptr with one array), both indexed from c0.
  using ChunkFn = std::function<void(float* a, float* b, std::int64_t c0, std::int64_t c1)>;
  // f(a, lo, hi): elements [lo, hi) of array 0, a[0] being element lo.
  using RangeFn = std::function<void(const float* a, std::int64_t lo, std::int64_t hi)>;

  ChunkFile(const std::string& dir, const std::string& name, std::int64_t n, int width, double chunk_mb,
            MemCategory slots_category);
  ~ChunkFile();
  ChunkFile(const ChunkFile&) = delete;
  ChunkFile& operator=(const ChunkFile&) = delete;

  // Writes every chunk, filled by `f` (slots start zeroed), as the next generation.
  void fill(const ChunkFn& f);
  // Reads every chunk (verified) into `f`; with write_back, writes it back as the next generation.
  void stream(const ChunkFn& f, bool write_back);
  // Reads the chunks covering [begin, end) of array 0 (verified), one at a time.
  void read_range(std::int64_t begin, std::int64_t end, const RangeFn& f);

  const std::string& path() const { return path_; }
  std::int64_t chunk() const { return chunk_; }
  std::int64_t file_bytes() const { return nchunks_ * stride_; }
  std::int64_t window_bytes() const { return 2 * stride_; }

 private:
  struct Io;
  char* slot(int s) const;
  float* slot_a(int s) const;
  float* slot_b(int s) const;
  std::int64_t count(std::int64_t k) const;
  std::int64_t record_bytes(std::int64_t k) const;
  void close_and_remove();
  void write_chunk(int s, std::int64_t k, std::uint64_t generation);
  void read_chunk(int s, std::int64_t k, std::uint64_t generation);
  void transfer(bool write, int s, std::int64_t k);

  std::int64_t n_;
  int width_;
  std::string path_;
  int fd_ = -1;
  std::int64_t chunk_ = 1, nchunks_ = 0, stride_ = 0;
  std::uint64_t generation_ = 0;
  Tensor slots_;
  std::unique_ptr<Io> io_;
};

class OffloadedAdamW {
 public:
  // n: elements of the rank's partition. Throws th::Error (naming the file) when 'nvme' cannot
  // create or fill its file.
  static std::unique_ptr<OffloadedAdamW> make(const OffloadOptions& opt, std::int64_t n, const AdamWConfig& cfg,
                                              int rank);
  virtual ~OffloadedAdamW() = default;

  std::int64_t size() const { return n_; }
  void next_step() { ++t_; }
  std::int64_t steps() const { return t_; }
  void set_steps(std::int64_t t) { t_ = t; }
  // The AdamW step t (after next_step()) of every span.
  virtual void update(const std::vector<AdamSpan>& spans, double lr) = 0;
  // The moments as host arrays when they are resident there ('cpu'), else nullptr.
  virtual float* host_exp_avg() { return nullptr; }
  virtual float* host_exp_avg_sq() { return nullptr; }
  // Checkpoints: every moment copied out of / into the store, through the same path as update().
  virtual void read_moments(float* m, float* v) = 0;
  virtual void write_moments(const float* m, const float* v) = 0;
  virtual OffloadMemory memory() const = 0;
  virtual std::string where() const = 0;  // "host", or the NVMe file

 protected:
  OffloadedAdamW(std::int64_t n, const AdamWConfig& cfg) : n_(n), cfg_(cfg) {}
  // The shared host loop: AdamW step t_ of params/grads [0, n) with moments m/v [0, n).
  void host_update(float* p, const float* g, float* m, float* v, std::int64_t n, double lr) const;

  std::int64_t n_, t_ = 0;
  AdamWConfig cfg_;
};

}  // namespace th
