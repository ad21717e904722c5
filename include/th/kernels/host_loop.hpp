#pragma once
// Named Kokkos host loops: every CPU kernel loop goes through these two, so a Kokkos profiling
// tool (or our profiler) sees each kernel by name, and an OpenMP/Threads Kokkos build runs them
// in parallel with no change here.
#include <Kokkos_Core.hpp>
#include <cstdint>

namespace th::cpu {

using HostPolicy = Kokkos::RangePolicy<Kokkos::DefaultHostExecutionSpace, Kokkos::IndexType<std::int64_t>>;

template <class F>
inline void host_for(const char* name, std::int64_t n, const F& f) {
  Kokkos::parallel_for(name, HostPolicy(0, n), f);
}

// Sum of f(i) over [0, n), accumulated in double.
template <class F>
inline double host_sum(const char* name, std::int64_t n, const F& f) {
  double total = 0.0;
  Kokkos::parallel_reduce(
      name, HostPolicy(0, n), [&](std::int64_t i, double& acc) { acc += f(i); }, total);
  return total;
}

}  // namespace th::cpu
