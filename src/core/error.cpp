#include "th/core/error.hpp"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace th {

void throw_error(const char* file, int line, const std::string& what) {
  const char* base = std::strrchr(file, '/');
  throw Error(std::string(base ? base + 1 : file) + ":" + std::to_string(line) + ": " + what);
}

std::string injected_fault(int rank, std::int64_t step) {
  const char* spec = std::getenv("TH_FAULT");
  if (!spec) return {};
  int r = -1;
  long long s = -1;
  char kind[32] = {};
  if (std::sscanf(spec, "%d:%lld:%31s", &r, &s, kind) != 3 || r != rank) return {};
  if (s != step && !(s == 0 && std::string(kind) == "overflow")) return {};
  return kind;
}

void inject_fault(const char* kind, int rank, std::int64_t n, const std::string& what) {
  if (injected_fault(rank, n) != kind) return;
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::system_clock::now().time_since_epoch()).count();
  std::fprintf(stderr, "[rank %d] TH_FAULT: %s %lld injected at %lld\n", rank, kind, static_cast<long long>(n),
               static_cast<long long>(ms));
  std::fflush(stderr);
  const std::string msg = "fault injected by TH_FAULT (" + std::string(kind) + " " + std::to_string(n) + "): " + what;
  if (std::string(kind) == "input") throw InputError(msg);
  throw Error(msg);
}

}  // namespace th
