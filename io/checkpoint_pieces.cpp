// The ranks' pieces of the checkpoint tensors (io/checkpoint_pieces.hpp). Agreement between
// ranks: th/parallel/agree.hpp; a problem found here is agreed before the next collective call.
#include "checkpoint_pieces.hpp"

#include <algorithm>

#include "checkpoint_internal.hpp"
#include "th/parallel/comm.hpp"

namespace th::ckpt {

// Ranks that disagree on the tensor list would make different collective HDF5 calls and hang.
std::string same_tensors_everywhere(Comm& comm, const std::vector<CheckpointTensor>& tensors) {
  std::uint64_t h = 1469598103934665603ull;  // FNV-1a 64 of the list
  const auto mix = [&h](const void* p, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) h = (h ^ static_cast<const unsigned char*>(p)[i]) * 1099511628211ull;
  };
  for (const CheckpointTensor& t : tensors) {
    mix(t.name.data(), t.name.size() + 1);
    for (const std::int64_t d : t.shape) mix(&d, sizeof d);
    mix(&t.offset, sizeof t.offset);
    mix(&t.numel, sizeof t.numel);
  }
  std::int64_t v[2] = {static_cast<std::int64_t>(h >> 1), -static_cast<std::int64_t>(h >> 1)};
  comm.allreduce(v, 2, ReduceOp::Max);  // max and -min: equal iff every rank has the same hash
  return v[0] == -v[1] ? "" : "the ranks were given different tensor lists";
}

Ranges all_ranges(Comm& comm, const std::vector<CheckpointRange>& mine) {
  const auto n = static_cast<std::size_t>(comm.size()), me = static_cast<std::size_t>(comm.rank());
  std::int64_t most = static_cast<std::int64_t>(mine.size());
  comm.allreduce(&most, 1, ReduceOp::Max);
  const auto m = static_cast<std::size_t>(most);
  std::vector<std::int64_t> v(2 * n * m, -1);
  for (std::size_t i = 0; i < mine.size(); ++i) {
    v[2 * (me * m + i)] = mine[i].begin;
    v[2 * (me * m + i) + 1] = mine[i].end;
  }
  comm.allreduce(v.data(), v.size(), ReduceOp::Max);  // -1 marks "no range" (bounds are >= 0)
  Ranges r;
  r.of.resize(n);
  for (std::size_t k = 0; k < n; ++k)
    for (std::size_t i = 0; i < m; ++i)
      if (v[2 * (k * m + i)] >= 0) r.of[k].push_back({v[2 * (k * m + i)], v[2 * (k * m + i) + 1], 0});
  r.of[me] = mine;
  return r;
}

Piece piece(const Ranges& r, std::size_t rank, const CheckpointTensor& t) {
  for (const CheckpointRange& g : r.of[rank]) {
    const std::int64_t lo = std::max(g.begin, t.offset), hi = std::min(g.end, t.offset + t.numel);
    if (lo < hi) return {lo - t.offset, hi - t.offset, g.local + (lo - g.begin)};
  }
  return {};
}

// Problems with one rank's own list: bounds, and a tensor cut between two of its ranges.
std::string check_own_ranges(const std::vector<CheckpointRange>& mine, const std::vector<CheckpointTensor>& tensors) {
  for (const CheckpointRange& g : mine)
    if (g.begin < 0 || g.end < g.begin || g.local < 0)
      return "bad owned range [" + std::to_string(g.begin) + ", " + std::to_string(g.end) + ")";
  for (const CheckpointTensor& t : tensors) {
    int hits = 0;
    for (const CheckpointRange& g : mine) hits += std::max(g.begin, t.offset) < std::min(g.end, t.offset + t.numel);
    if (hits > 1) return "tensor " + t.name + " is cut between two owned ranges of one rank";
  }
  return "";
}

// A save writes every element exactly once: the ranges must be disjoint and cover every tensor.
std::string check_write_ranges(const Ranges& r, const std::vector<CheckpointTensor>& tensors) {
  struct Owned {
    std::int64_t begin, end;
    std::size_t rank;
  };
  std::vector<Owned> all;
  for (std::size_t i = 0; i < r.of.size(); ++i)
    for (const CheckpointRange& g : r.of[i])
      if (g.begin < g.end) all.push_back({g.begin, g.end, i});
  std::sort(all.begin(), all.end(), [](const Owned& a, const Owned& b) { return a.begin < b.begin; });
  const auto range = [](const Owned& o) {
    return "[" + std::to_string(o.begin) + ", " + std::to_string(o.end) + ") of rank " + std::to_string(o.rank);
  };
  for (std::size_t k = 1; k < all.size(); ++k)
    if (all[k].begin < all[k - 1].end)
      return "the owned ranges " + range(all[k - 1]) + " and " + range(all[k]) + " overlap";
  for (const CheckpointTensor& t : tensors) {
    std::int64_t covered = t.offset;  // the sorted disjoint ranges must tile [offset, offset + numel)
    for (const Owned& o : all)
      if (o.begin <= covered && o.end > covered) covered = o.end;
    if (covered < t.offset + t.numel)
      return "elements [" + std::to_string(covered) + ", " + std::to_string(t.offset + t.numel) + ") of tensor " +
             t.name + " are owned by no rank";
  }
  return "";
}

// CRC-32 of each piece, exchanged: crcs[(i * P) + r] = CRC of rank r's piece of dataset i.
std::vector<std::int64_t> exchange_crcs(Comm& comm, const std::vector<std::uint32_t>& mine) {
  const auto P = static_cast<std::size_t>(comm.size()), me = static_cast<std::size_t>(comm.rank());
  std::vector<std::int64_t> all(mine.size() * P, 0);
  for (std::size_t i = 0; i < mine.size(); ++i) all[i * P + me] = mine[i];
  comm.allreduce(all.data(), all.size(), ReduceOp::Sum);
  return all;
}

// The CRC of a whole tensor from the pieces of the ranks, chained from its first element (the
// longest piece starting where the chain stands, each time); -1 if they do not tile it (a load
// where no rank or set of ranks read all of it).
std::int64_t chain_crc(const std::vector<std::int64_t>& crcs, std::size_t i, const Ranges& r, const CheckpointTensor& t) {
  const std::size_t P = r.of.size();
  std::uint32_t crc = 0;
  std::int64_t pos = 0;
  while (pos < t.numel) {
    std::size_t best = P;
    std::int64_t best_len = 0;
    for (std::size_t k = 0; k < P; ++k) {
      const Piece pc = piece(r, k, t);
      if (pc.lo == pos && pc.hi - pc.lo > best_len) best = k, best_len = pc.hi - pc.lo;
    }
    if (best == P) return -1;
    crc = crc_join(crc, static_cast<std::uint32_t>(crcs[i * P + best]), best_len);
    pos += best_len;
  }
  return crc;
}

std::vector<CheckpointRange> one_range(std::int64_t begin, std::int64_t end) {
  if (begin == end && begin >= 0) return {};
  return {{begin, end, 0}};
}
bool owns_any(const std::vector<CheckpointRange>& owned) {
  for (const CheckpointRange& g : owned)
    if (g.begin < g.end) return true;
  return false;
}

}  // namespace th::ckpt
