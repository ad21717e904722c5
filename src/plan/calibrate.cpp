// plan%calibrate: this machine's figures, measured in a few seconds with every rank running at
// once (so shared cores, caches and memory bandwidth are measured as a run sees them).
// Each figure is the median of several timings (on a shared machine, the typical moment).
//   GEMM        fp32 C = A B at 1024^3 (the rate task = 'bench' divides by for MFU) and at 64^3,
//               whose excess over the large rate is the fixed cost of a call. The CPU backend
//               computes bf16 / fp16 in fp32 (16-bit values in fp32 storage): same rates.
//   memory      the kernels' own element-wise add over 3 x 32 MiB, counted 3 x 4 bytes per element
//   exp passes  the kernels' cross-entropy forward over 256 x 8192 logits (elements per second)
//   collectives with several ranks: all-reduce of 8 bytes (latency) and of 8 MiB (bandwidth),
//               fitted to the ring model 2(N-1) a + 2 (N-1)/N B / b
//   NVMe        64 MiB written and read back in 4 MiB records under parallel%nvme_path (rank 0;
//               through the page cache, as the offload files are)
//   host        physical memory; cores per node; page size; free space under nvme_path
//   overlap     0 unless the base file says otherwise (MPI progresses only inside test / wait)
#include <fcntl.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <thread>
#include <vector>

#include "th/core/error.hpp"
#include "th/core/rng.hpp"
#include "th/kernels/cpu.hpp"
#include "th/parallel/comm.hpp"
#include "th/plan/machine.hpp"

namespace th {

namespace {
using Clock = std::chrono::steady_clock;
double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }
constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

// The median of `reps` timings: on a shared machine a run sees the typical moment, not the best.
double median(std::vector<double> t) {
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

// Seconds per call of an fp32 GEMM C[m, n] = A[m, k] B[k, n] (median of `reps` after one untimed call).
double gemm_seconds(int m, int n, int k, int reps) {
  std::vector<float> a(std::size_t(m) * k), b(std::size_t(k) * n), c(std::size_t(m) * n);
  for (std::size_t i = 0; i < a.size(); ++i) a[i] = static_cast<float>(uniform01(7, 1, i) - 0.5);
  for (std::size_t i = 0; i < b.size(); ++i) b[i] = static_cast<float>(uniform01(7, 2, i) - 0.5);
  cpu::gemm<float>(false, false, m, n, k, 1.f, a.data(), k, b.data(), n, 0.f, c.data(), n);
  std::vector<double> t;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = Clock::now();
    cpu::gemm<float>(false, false, m, n, k, 1.f, a.data(), k, b.data(), n, 0.f, c.data(), n);
    t.push_back(since(t0));
  }
  return median(t);
}

// Bytes per second of the element-wise add y += x (read 2, write 1) over arrays far beyond cache.
double memory_bandwidth() {
  const std::size_t n = 8u << 20;  // 32 MiB per array
  std::vector<float> x(n, 1.0f), y(n, 2.0f);
  cpu::add_inplace(y.data(), x.data(), static_cast<std::int64_t>(n));
  std::vector<double> t;
  for (int r = 0; r < 9; ++r) {
    const auto t0 = Clock::now();
    cpu::add_inplace(y.data(), x.data(), static_cast<std::int64_t>(n));
    t.push_back(since(t0));
  }
  return 3.0 * 4.0 * double(n) / median(t);
}

// Elements per second of the cross-entropy forward (max, then exp and sum per element) over
// 256 rows of 8192 logits: the rate of the element-wise passes that evaluate exp / erf.
double exp_rate() {
  const int rows = 256, V = 8192;
  std::vector<float> z(std::size_t(rows) * V), loss(rows), lse(rows);
  for (std::size_t i = 0; i < z.size(); ++i) z[i] = static_cast<float>(4 * uniform01(7, 3, i) - 2);
  std::vector<int> target(rows, 5);
  std::int64_t count = 0;
  cpu::cross_entropy_forward(loss.data(), lse.data(), z.data(), target.data(), rows, V, 0.0f, -1, &count);
  std::vector<double> t;
  for (int r = 0; r < 9; ++r) {
    const auto t0 = Clock::now();
    cpu::cross_entropy_forward(loss.data(), lse.data(), z.data(), target.data(), rows, V, 0.0f, -1, &count);
    t.push_back(since(t0));
  }
  return double(rows) * V / median(t);
}

// Seconds per all-reduce of n floats on every rank (median of reps).
double allreduce_seconds(Comm& comm, std::size_t n, int reps) {
  std::vector<float> v(std::max<std::size_t>(n, 1), 1.0f);
  comm.allreduce(v.data(), n, ReduceOp::Sum);
  std::vector<double> t;
  for (int r = 0; r < reps; ++r) {
    comm.barrier();
    const auto t0 = Clock::now();
    comm.allreduce(v.data(), n, ReduceOp::Sum);
    t.push_back(since(t0));
  }
  return comm.max(median(t));  // the slowest rank's view: a collective ends when its last rank does
}

// NVMe write and read rates (bytes/s) of 64 MiB in 4 MiB records; {0, 0} if the folder is unusable.
std::pair<double, double> nvme_rates(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  const std::string path = dir + "/th_plan_calibrate_" + std::to_string(::getpid()) + ".bin";
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return {0, 0};
  const std::size_t record = 4u << 20, records = 16;
  std::vector<char> buf(record, 'x');
  bool ok = true;
  auto t0 = Clock::now();
  for (std::size_t k = 0; k < records && ok; ++k)
    ok = ::pwrite(fd, buf.data(), record, static_cast<off_t>(k * record)) == static_cast<ssize_t>(record);
  const double write_s = since(t0);
  t0 = Clock::now();
  for (std::size_t k = 0; k < records && ok; ++k)
    ok = ::pread(fd, buf.data(), record, static_cast<off_t>(k * record)) == static_cast<ssize_t>(record);
  const double read_s = since(t0);
  ::close(fd);
  ::unlink(path.c_str());
  if (!ok) return {0, 0};
  const double bytes = double(record * records);
  return {bytes / write_s, bytes / read_s};
}

char* fmt(char* buf, std::size_t n, const char* f, double a, double b = 0) {
  std::snprintf(buf, n, f, a, b);
  return buf;
}
}  // namespace

Machine calibrate_machine(Comm& comm, const Machine& base, const std::string& nvme_path, std::string* report) {
  Machine m = base;
  const int N = comm.size();
  char line[256];
  std::string text;
  if (m.name.empty()) m.name = "this machine (calibrated)";
  m.device = DeviceKind::Cpu;
  m.devices_per_node = std::max(1u, std::thread::hardware_concurrency());
  m.device_memory_gib = 0;
  m.bytes_16bit = 4;
  m.page_bytes = ::sysconf(_SC_PAGESIZE);
  m.alloc_align_bytes = 64;
  m.host_memory_gib = double(::sysconf(_SC_PHYS_PAGES)) * double(m.page_bytes) / kGiB;
  if (m.gemm_efficiency <= 0) m.gemm_efficiency = 1;
  // MPI moves a non-blocking collective only inside test / wait, on the cores that compute: no
  // communication runs under compute (docs/benchmarks.md). A file may say otherwise.
  if (base.name.empty()) m.overlap = 0;

  comm.barrier();
  const double big = comm.sum(gemm_seconds(1024, 1024, 1024, 9)) / N;
  comm.barrier();
  const double thin = comm.sum(gemm_seconds(1024, 1024, 64, 25)) / N;
  comm.barrier();
  const double small = comm.sum(gemm_seconds(16, 16, 16, 2001)) / N;
  const double rate = 2.0 * 1024 * 1024 * 1024 / big, thin_rate = 2.0 * 1024 * 1024 * 64 / thin;
  m.peak_tflops_fp32 = m.peak_tflops_bf16 = m.peak_tflops_fp16 = rate / 1e12;
  m.gemm_efficiency = 1;
  // rate(d) proportional to d / (d + h) through the 1024^3 and the k = 64 products (d = 1024, 64):
  // q = rate / thin_rate = 1024 (64 + h) / (64 (1024 + h)).
  const double q = rate / thin_rate;
  m.gemm_half_dim = q > 1 && q < 16 ? 65536.0 * (q - 1) / (1024.0 - 64.0 * q) : 0.0;
  m.gemm_call_us = std::max(0.0, small * 1e6);
  text += fmt(line, sizeof line, "GEMM fp32 1024^3: %.1f GFLOP/s per rank; ", rate / 1e9);
  text += fmt(line, sizeof line, "1024 x 1024 x 64: %.1f GFLOP/s (half rate at dimension %.0f); ", thin_rate / 1e9,
              m.gemm_half_dim);
  text += fmt(line, sizeof line, "16^3 call %.2f us\n", m.gemm_call_us);

  comm.barrier();
  const double bw = comm.sum(memory_bandwidth()) / N;
  m.memory_bandwidth_gbs = bw / 1e9;
  m.host_bandwidth_gbs = bw * std::min(N, m.devices_per_node) / 1e9;
  m.pcie_bandwidth_gbs = m.memory_bandwidth_gbs;  // the device is the host: a copy is a memcpy
  text += fmt(line, sizeof line, "memory (element-wise add): %.2f GB/s per rank\n", bw / 1e9);
  comm.barrier();
  m.exp_gelems = comm.sum(exp_rate()) / N / 1e9;
  text += fmt(line, sizeof line, "exp passes (cross-entropy forward): %.3f G elements/s per rank\n", m.exp_gelems);

  if (N > 1) {
    const double t_small = allreduce_seconds(comm, 2, 200);
    const std::size_t n_big = 2u << 20;  // 8 MiB of floats
    const double t_big = allreduce_seconds(comm, n_big, 9);
    const double steps = 2.0 * (N - 1);
    const double alpha = t_small / steps;
    const double beta = steps / N * 4.0 * double(n_big) / std::max(1e-9, t_big - steps * alpha);
    m.intra_latency_us = alpha * 1e6;
    m.intra_bandwidth_gbs = beta / 1e9;
    text += fmt(line, sizeof line, "all-reduce on %.0f ranks: latency %.2f us per step, ", N, m.intra_latency_us);
    text += fmt(line, sizeof line, "bandwidth %.2f GB/s per rank (ring fit)\n", m.intra_bandwidth_gbs);
  } else if (m.intra_bandwidth_gbs <= 0) {
    // One rank: nothing to measure. A shared-memory copy moves each byte twice through memory.
    m.intra_latency_us = 2;
    m.intra_bandwidth_gbs = m.memory_bandwidth_gbs / 2;
    text += "one rank: collective latency 2 us and bandwidth half the memory rate assumed (docs/planning.md)\n";
  }
  if (m.inter_bandwidth_gbs <= 0) {  // one node: the network is not used; keep the figures defined
    m.inter_latency_us = m.intra_latency_us;
    m.inter_bandwidth_gbs = m.intra_bandwidth_gbs;
  }

  std::pair<double, double> io{0, 0};
  double free_gib = 0;
  if (comm.rank() == 0) {
    io = nvme_rates(nvme_path);
    struct statvfs st {};
    if (::statvfs(nvme_path.c_str(), &st) == 0) free_gib = double(st.f_bavail) * double(st.f_frsize) / kGiB;
  }
  comm.broadcast(&io, sizeof io, 0);
  comm.broadcast(&free_gib, sizeof free_gib, 0);
  if (io.first > 0) {
    m.nvme_write_gbs = io.first / 1e9;
    m.nvme_read_gbs = io.second / 1e9;
    text += "NVMe path " + nvme_path + ": ";
    text += fmt(line, sizeof line, "write %.2f GB/s, read %.2f GB/s (page cache)\n", m.nvme_write_gbs, m.nvme_read_gbs);
  } else if (m.nvme_read_gbs <= 0) {
    m.nvme_read_gbs = m.nvme_write_gbs = 1;
    text += "NVMe path " + nvme_path + " not writable: 1 GB/s assumed\n";
  }
  if (free_gib > 0) m.nvme_capacity_gib = free_gib;
  if (m.nvme_capacity_gib <= 0) m.nvme_capacity_gib = 1;
  m.source = "measured by task = 'plan' with plan%calibrate on " + std::to_string(N) + " rank(s)";
  text += fmt(line, sizeof line, "host: %.1f GiB, %.0f cores\n", m.host_memory_gib, m.devices_per_node);
  if (report) *report = text;
  return m;
}

}  // namespace th
