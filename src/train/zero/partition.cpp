// The partition layout: which rank owns which elements of the flat buffers (th/train/zero.hpp).
#include <algorithm>

#include "th/core/error.hpp"
#include "th/train/zero.hpp"

namespace th {

ZeroPartition::ZeroPartition(const std::vector<ParamSegment>& segments, int rank, int world)
    : rank_(rank), world_(world) {
  for (const ParamSegment& s : segments) {
    TH_CHECK((s.end - s.begin) % world == 0, "a segment is not padded to a multiple of the world size");
    pieces_.push_back({s.begin, (s.end - s.begin) / world, shard_, s.unit});
    shard_ += pieces_.back().count;
  }
}

std::vector<ZeroPartition::ParamSlice> ZeroPartition::slices(const ParamInfo& p) const {
  std::vector<ParamSlice> out;
  for (const Piece& s : pieces_) {
    if (p.offset < s.begin || p.offset >= s.begin + world_ * s.count) continue;
    for (int r = 0; r < world_; ++r) {
      const std::int64_t a = s.begin + r * s.count, b = a + s.count;
      const std::int64_t lo = std::max(a, p.offset), hi = std::min(b, p.offset + p.numel);
      if (lo < hi) out.push_back({r, lo - p.offset, hi - p.offset, s.shard + (lo - a)});
    }
  }
  return out;
}

std::vector<CheckpointRange> ZeroPartition::owned_ranges() const {
  std::vector<CheckpointRange> out;
  for (const Piece& s : pieces_)
    if (s.count > 0) out.push_back({owned(s), owned(s) + s.count, s.shard});
  return out;
}

}  // namespace th
