#pragma once
// How much memory this process may still use: the tightest of the node's MemAvailable
// (/proc/meminfo), the headroom of its memory cgroup (Slurm's cgroup limits; v2 memory.max minus
// memory.current, v1 memory.limit_in_bytes minus memory.usage_in_bytes) and the headroom under
// RLIMIT_AS (ulimit -v, minus the address space in use). Node-wide figures are shared by the
// node's ranks: `ranks_on_node` divides them.
#include <cstdint>
#include <string>

namespace th {

struct HostMemory {
  std::int64_t bytes = -1;  // -1: unknown (no limit found)
  std::string source;       // what limits it: "MemAvailable in /proc/meminfo / 2 ranks", ...
};

HostMemory available_host_memory(int ranks_on_node);

}  // namespace th
