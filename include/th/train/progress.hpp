#pragma once
// The rank-0 progress line: one plain line per report (no carriage returns, so Slurm log files
// stay readable), with step/total, loss, throughput and ETA; and the end-of-run memory report.
#include <chrono>
#include <cstdint>

#include "th/backend/backend.hpp"
#include "th/core/memory.hpp"

namespace th {

class Progress {
 public:
  Progress(std::int64_t total_steps, bool enabled);
  void report(std::int64_t step, std::int64_t epoch, double loss, double lr, double grad_norm,
              double tokens_per_s, double step_s);

 private:
  std::int64_t total_;
  bool enabled_;
  std::chrono::steady_clock::time_point start_;
};

// `pool`: whose pool the stats are ("host"; "device" for a device backend's Device space).
void print_memory_report(const MemStats& stats, const char* pool = "host");
// The report of the pool that holds `be`'s Device space (the host pool on the CPU backend).
void print_memory_report(Backend& be);
std::string format_bytes(double bytes);

}  // namespace th
