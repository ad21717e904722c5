#include "th/core/error.hpp"

#include <cstring>

namespace th {

void throw_error(const char* file, int line, const std::string& what) {
  const char* base = std::strrchr(file, '/');
  throw Error(std::string(base ? base + 1 : file) + ":" + std::to_string(line) + ": " + what);
}

}  // namespace th
