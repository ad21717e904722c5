#include "th/core/error.hpp"

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
  char kind[16] = {};
  if (std::sscanf(spec, "%d:%lld:%15s", &r, &s, kind) != 3 || r != rank) return {};
  if (s != step && !(s == 0 && std::string(kind) == "overflow")) return {};
  return kind;
}

}  // namespace th
