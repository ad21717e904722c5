#pragma once
// Which rank holds which piece of each tensor (internal to io/checkpoint*.cpp): the ranks' owned
// element ranges exchanged, checked (a save writes every element exactly once), and the CRC-32 of
// a tensor chained from its pieces on several ranks.
#include <cstdint>
#include <string>
#include <vector>

#include "th/io/checkpoint.hpp"

namespace th {
class Comm;
}

namespace th::ckpt {

// "" when every rank was given the same tensor list (ranks that disagree would make different
// collective HDF5 calls and hang), else the problem. Collective.
std::string same_tensors_everywhere(Comm& comm, const std::vector<CheckpointTensor>& tensors);

// Every rank's owned ranges, on every rank (of[r]: rank r's, flat bounds; `local` only for me).
struct Ranges {
  std::vector<std::vector<CheckpointRange>> of;
};
Ranges all_ranges(Comm& comm, const std::vector<CheckpointRange>& mine);  // collective

// The part of tensor t that rank r holds, relative to the tensor: [lo, hi) (lo == hi: nothing),
// and (for this rank's own ranges) the buffer index of element lo.
struct Piece {
  std::int64_t lo = 0, hi = 0, local = 0;
};
Piece piece(const Ranges& r, std::size_t rank, const CheckpointTensor& t);

// Problems with one rank's own list: bounds, and a tensor cut between two of its ranges.
std::string check_own_ranges(const std::vector<CheckpointRange>& mine, const std::vector<CheckpointTensor>& tensors);

// A save writes every element exactly once: the ranges must be disjoint and cover every tensor.
std::string check_write_ranges(const Ranges& r, const std::vector<CheckpointTensor>& tensors);

// CRC-32 of each piece, exchanged: crcs[(i * P) + r] = CRC of rank r's piece of dataset i. Collective.
std::vector<std::int64_t> exchange_crcs(Comm& comm, const std::vector<std::uint32_t>& mine);

// The CRC of a whole tensor from the pieces of the ranks, chained from its first element (the
// longest piece starting where the chain stands, each time); -1 if they do not tile it (a load
// where no rank or set of ranks read all of it).
std::int64_t chain_crc(const std::vector<std::int64_t>& crcs, std::size_t i, const Ranges& r, const CheckpointTensor& t);

// The one range [begin, end) of the single-range API ({} for an empty one), and whether a list
// holds any element.
std::vector<CheckpointRange> one_range(std::int64_t begin, std::int64_t end);
bool owns_any(const std::vector<CheckpointRange>& owned);

}  // namespace th::ckpt
