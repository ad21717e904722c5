#pragma once
// Batches of random token rows for the model tests (unit/test_model, test_backend,
// test_activation_storage): `rows` rows, row i of length first - shrink * i (rows of different
// lengths: padding in the batch), ids 4 .. 4 + span - 1 from the counter RNG (source stream
// seed, target stream seed + 1).
#include <cstdint>
#include <vector>

#include "th/core/rng.hpp"
#include "th/data/batching.hpp"

namespace th::testing_support {

inline Batch random_rows_batch(int rows, int first, int shrink, int span, std::uint64_t seed, bool decoder_only) {
  std::vector<Example> data(rows);
  std::vector<std::int64_t> order;
  for (int i = 0; i < rows; ++i) {
    order.push_back(i);
    for (int t = 0; t < first - shrink * i; ++t) {
      data[i].src.push_back(4 + static_cast<int>(uniform01(seed, i, t) * span));
      data[i].tgt.push_back(4 + static_cast<int>(uniform01(seed + 1, i, t) * span));
    }
  }
  return collate(data, order, decoder_only);
}

}  // namespace th::testing_support
