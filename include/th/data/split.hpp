#pragma once
// The train/valid/test split rule: a pair goes to a split by a hash of its stable key (the verse
// reference for the Bible, the text of the pair for a TSV), never by its position, so adding or
// removing other pairs never moves a pair from one split to another, and duplicate pairs of a
// TSV always share a split (no test sentence leaks into training as its own copy).
#include <cstdint>
#include <string>

namespace th {

enum class Split { Train = 0, Valid = 1, Test = 2 };

const char* split_name(Split s);  // "train", "valid", "test"

// 64-bit FNV-1a (stable across platforms and releases, unlike std::hash).
std::uint64_t fnv1a64(const std::string& bytes);

// u = top 53 bits of SplitMix64-finalise(fnv1a64(key)) / 2^53, in [0, 1): valid if
// u < valid_fraction, test if u < valid_fraction + test_fraction, train otherwise.
Split assign_split(const std::string& key, double valid_fraction, double test_fraction);

}  // namespace th
