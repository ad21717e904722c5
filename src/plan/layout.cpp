// Flat layout of the parameters per stage and world size; the placement names.
#include "th/plan/layout.hpp"

#include <algorithm>

#include "th/core/error.hpp"

namespace th {

Placement parse_placement(const std::string& s) {
  if (s == "none") return Placement::None;
  if (s == "cpu") return Placement::Cpu;
  if (s == "nvme") return Placement::Nvme;
  throw Error("unknown offload placement '" + s + "'");
}

const char* to_string(Placement p) {
  switch (p) {
    case Placement::None: return "none";
    case Placement::Cpu: return "cpu";
    case Placement::Nvme: return "nvme";
  }
  return "?";
}

FlatLayout flat_layout(const PlanModel& m, int stage, int ranks, double bucket_mb) {
  // Stage 0 is plain data parallelism: no padding, no segments (one bucket list of its own). bf16/fp16
  // pads to 2N (src/train/zero/stage_policy.hpp: the 2-byte compute copy travels in pairs).
  const std::int64_t align = stage == 0 ? 1 : m.dtype != DType::F32 ? 2 * ranks : ranks;
  const auto bucket = static_cast<std::int64_t>(bucket_mb * 1024 * 1024 / 4);
  const std::int64_t max_seg = stage == 0 ? 0 : std::max<std::int64_t>(ranks, bucket / ranks * ranks);
  FlatLayout f;
  std::int64_t total = 0;
  for (const auto& tensors : m.units) {
    FlatLayout::Unit u;
    u.begin = total;
    std::int64_t seg_begin = total;
    auto close = [&] {
      if (total == seg_begin) return;
      total = (total + align - 1) / align * align;
      u.segments.push_back(total - seg_begin);
      seg_begin = total;
    };
    for (std::int64_t n : tensors) {
      if (max_seg > 0 && total > seg_begin && total - seg_begin + n > max_seg) close();
      total += n;
    }
    close();
    u.end = total;
    f.units.push_back(std::move(u));
  }
  f.padded = total;
  f.shard = stage == 0 ? total : total / ranks;
  return f;
}

std::vector<std::size_t> gather_order(const PlanModel& m, const FlatLayout& f, std::int64_t persistence_threshold) {
  using Kind = PlanModel::UnitKind;
  std::vector<std::size_t> fwd, bwd;
  std::size_t embedding = 0, output = 0;
  for (std::size_t u = 0; u < m.kinds.size(); ++u) {
    if (m.kinds[u] == Kind::Output) {
      output = u;
      continue;
    }
    if (m.kinds[u] == Kind::Embedding) embedding = u;
    fwd.push_back(u);
  }
  fwd.push_back(m.tie_embeddings ? embedding : output);
  for (auto k : {Kind::DecoderNorm, Kind::DecoderBlock, Kind::EncoderNorm, Kind::EncoderBlock})
    for (std::size_t u = m.kinds.size(); u-- > 0;)
      if (m.kinds[u] == k) bwd.push_back(u);
  std::vector<std::size_t> order;
  for (const auto* part : {&fwd, &bwd})
    for (std::size_t u : *part)
      if (f.units[u].end - f.units[u].begin >= persistence_threshold) order.push_back(u);
  return order;
}

}  // namespace th
