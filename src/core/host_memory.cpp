#include "th/core/host_memory.hpp"

#include <sys/resource.h>

#include <fstream>
#include <sstream>

namespace th {

namespace {

// "MemAvailable:   21981945 kB" -> bytes; -1 when missing.
std::int64_t meminfo_kb(const std::string& key) {
  std::ifstream in("/proc/meminfo");
  std::string name, unit;
  long long kb = 0;
  while (in >> name >> kb) {
    std::getline(in, unit);
    if (name == key + ":") return static_cast<std::int64_t>(kb) * 1024;
  }
  return -1;
}

std::int64_t read_number(const std::string& path) {
  std::ifstream in(path);
  std::string s;
  if (!(in >> s) || s == "max") return -1;
  try {
    return static_cast<std::int64_t>(std::stoll(s));
  } catch (const std::exception&) {
    return -1;
  }
}

// The memory cgroup of this process: (limit, usage) in bytes, or -1 where there is no limit.
std::pair<std::int64_t, std::int64_t> cgroup_memory() {
  std::ifstream in("/proc/self/cgroup");
  std::string line;
  while (std::getline(in, line)) {
    // v2: "0::/path"; v1: "4:memory:/path"
    const std::size_t a = line.find(':'), b = line.find(':', a + 1);
    if (a == std::string::npos || b == std::string::npos) continue;
    const std::string controllers = line.substr(a + 1, b - a - 1), path = line.substr(b + 1);
    if (controllers.empty()) {
      const std::string dir = "/sys/fs/cgroup" + path;
      const std::int64_t limit = read_number(dir + "/memory.max");
      if (limit >= 0) return {limit, read_number(dir + "/memory.current")};
    } else if (controllers.find("memory") != std::string::npos) {
      for (const std::string& root : {"/sys/fs/cgroup/memory" + path, std::string("/sys/fs/cgroup/memory")}) {
        const std::int64_t limit = read_number(root + "/memory.limit_in_bytes");
        // v1 reports "no limit" as a huge number (PAGE_COUNTER_MAX pages).
        if (limit >= 0 && limit < (std::int64_t{1} << 60)) return {limit, read_number(root + "/memory.usage_in_bytes")};
      }
    }
  }
  return {-1, -1};
}

// Address space in use by this process (VmSize), bytes.
std::int64_t address_space_used() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.compare(0, 7, "VmSize:") == 0) {
      std::istringstream s(line.substr(7));
      long long kb = 0;
      s >> kb;
      return static_cast<std::int64_t>(kb) * 1024;
    }
  return 0;
}

}  // namespace

HostMemory available_host_memory(int ranks_on_node) {
  const std::int64_t n = ranks_on_node > 0 ? ranks_on_node : 1;
  const std::string share = n > 1 ? " / " + std::to_string(n) + " ranks on the node" : std::string();
  HostMemory best;
  const auto consider = [&best](std::int64_t bytes, const std::string& source) {
    if (bytes >= 0 && (best.bytes < 0 || bytes < best.bytes)) best = {bytes, source};
  };
  const std::int64_t avail = meminfo_kb("MemAvailable");
  if (avail >= 0) consider(avail / n, "MemAvailable in /proc/meminfo" + share);
  const auto [limit, usage] = cgroup_memory();
  if (limit >= 0) consider((limit - (usage > 0 ? usage : 0)) / n, "the memory cgroup's limit minus its usage" + share);
  struct rlimit rl {};
  if (getrlimit(RLIMIT_AS, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
    consider(static_cast<std::int64_t>(rl.rlim_cur) - address_space_used(), "RLIMIT_AS (ulimit -v) minus the address space in use");
  return best;
}

}  // namespace th
