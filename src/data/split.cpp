#include "th/data/split.hpp"

namespace th {

const char* split_name(Split s) {
  switch (s) {
    case Split::Train: return "train";
    case Split::Valid: return "valid";
    case Split::Test: return "test";
  }
  return "train";
}

std::uint64_t fnv1a64(const std::string& bytes) {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return h;
}

Split assign_split(const std::string& key, double valid_fraction, double test_fraction) {
  // FNV-1a's high bits mix poorly for short keys that differ in their last byte; a SplitMix64
  // finaliser spreads them before the top 53 bits become the uniform number.
  std::uint64_t z = fnv1a64(key);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  z ^= z >> 31;
  const double u = static_cast<double>(z >> 11) * (1.0 / 9007199254740992.0);
  if (u < valid_fraction) return Split::Valid;
  if (u < valid_fraction + test_fraction) return Split::Test;
  return Split::Train;
}

}  // namespace th
