#pragma once
// "Did you mean ...?" for misspelt group, key and choice names.
#include <string>
#include <vector>

namespace th {

// Edit distance counting an adjacent swap as one edit ("d_modle" is one edit from "d_model").
std::size_t edit_distance(const std::string& a, const std::string& b);

// The candidate `word` most likely misspells (the first of the nearest), or "" when none is near
// enough to be a plausible typo.
std::string closest_name(const std::string& word, const std::vector<std::string>& candidates);

}  // namespace th
