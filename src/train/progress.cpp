#include "th/train/progress.hpp"

#include <cstdio>
#include <string>

namespace th {

Progress::Progress(std::int64_t total_steps, bool enabled)
    : total_(total_steps), enabled_(enabled), start_(std::chrono::steady_clock::now()) {}

void Progress::report(std::int64_t step, std::int64_t epoch, double loss, double lr, double grad_norm,
                      double tokens_per_s, double step_s) {
  if (!enabled_) return;
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double eta = step > 0 ? elapsed / static_cast<double>(step) * static_cast<double>(total_ - step) : 0.0;
  const long e = static_cast<long>(eta + 0.5);
  std::printf("step %lld/%lld | epoch %lld | loss %.4f | lr %.3e | grad_norm %.3f | %.0f tok/s | %.3f s/step | "
              "ETA %ld:%02ld:%02ld\n",
              static_cast<long long>(step), static_cast<long long>(total_), static_cast<long long>(epoch), loss, lr,
              grad_norm, tokens_per_s, step_s, e / 3600, (e / 60) % 60, e % 60);
  std::fflush(stdout);
}

std::string format_bytes(double b) {
  char buf[32];
  if (b >= 1 << 30) std::snprintf(buf, sizeof buf, "%.2f GiB", b / (1 << 30));
  else if (b >= 1 << 20) std::snprintf(buf, sizeof buf, "%.2f MiB", b / (1 << 20));
  else std::snprintf(buf, sizeof buf, "%.1f KiB", b / 1024);
  return buf;
}

void print_memory_report(Backend& be) {
  print_memory_report(be.pool(MemorySpace::Device).stats(), be.device_is_host() ? "host" : "device");
}

void print_memory_report(const MemStats& s, const char* pool) {
  std::printf("memory (rank 0, %s pool): peak %s in total; per category peak:", pool, format_bytes(double(s.peak_total)).c_str());
  for (int c = 0; c < kNumMemCategories; ++c)
    std::printf(" %s %s%s", to_string(static_cast<MemCategory>(c)), format_bytes(double(s.peak[c])).c_str(),
                c + 1 < kNumMemCategories ? "," : "\n");
  std::fflush(stdout);
}

}  // namespace th
