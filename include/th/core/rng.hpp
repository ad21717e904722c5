#pragma once
// Counter-based random numbers: a pure function of (seed, stream, index), so any element can be
// drawn independently, in any order, on any rank or backend, and drawn again identically
// (dropout recompute, weight init on every rank).
#include <cmath>
#include <cstdint>

#include "th/core/host_device.hpp"

namespace th {

// Host-device (th/core/host_device.hpp): the CUDA dropout kernel draws the same masks.
TH_HOST_DEVICE inline std::uint64_t mix64(std::uint64_t seed, std::uint64_t stream, std::uint64_t i) {
  std::uint64_t z = seed * 0x9E3779B97F4A7C15ULL + stream * 0xD1B54A32D192ED03ULL + i;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;  // SplitMix64 finaliser
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

// Uniform in [0, 1) with 53 random bits.
inline double uniform01(std::uint64_t seed, std::uint64_t stream, std::uint64_t i) {
  return static_cast<double>(mix64(seed, stream, i) >> 11) * (1.0 / 9007199254740992.0);
}

// Standard normal by Box-Muller over two counters.
inline double normal01(std::uint64_t seed, std::uint64_t stream, std::uint64_t i) {
  const double u1 = 1.0 - uniform01(seed, stream, 2 * i), u2 = uniform01(seed, stream, 2 * i + 1);
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
}

}  // namespace th
