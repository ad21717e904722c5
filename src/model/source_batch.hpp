#pragma once
// The encoder side of a batch for decoding: every source sentence + EOS, padded to the longest,
// each repeated `copies` times (one row per beam). Shapes: src [B*S] with B = sources * copies,
// src_len [B]; the target side is left empty (encode() reads the source side only).
#include <vector>

#include "th/model/transformer.hpp"

namespace th {

Batch source_batch(const std::vector<std::vector<int>>& sources, int copies);

}  // namespace th
