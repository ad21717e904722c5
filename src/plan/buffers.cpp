// Transient communication buffers of ZeRO stages 2-3: gathered parameter units (stage 3) and
// gradient pages waiting for their reduce-scatter. Both live in page-committed reserved ranges
// (th/train/zero.hpp): a unit's pages are committed when written and given back when released,
// except pages it shares with a neighbour, which stay (and are counted between steps).
#include <algorithm>
#include <cmath>
#include <vector>

#include "th/model/transformer.hpp"
#include "th/plan/memory.hpp"

namespace th {

namespace {
using Kind = PlanModel::UnitKind;

// Pages wholly inside elements [b, e) of a page-aligned range: what a release gives back.
double interior_bytes(std::int64_t b, std::int64_t e, double elem_bytes, double page) {
  const double first = std::ceil(double(b) * elem_bytes / page), last = std::floor(double(e) * elem_bytes / page);
  return std::max(0.0, last - first) * page;
}

}  // namespace

double gathered_peak_bytes(const PlanModel& m, const FlatLayout& f, const Layout& l, const ZeroKnobs& z,
                           double elem_bytes, double page) {
  if (l.stage != 3) return 0;
  const std::vector<std::size_t> order = gather_order(m, f, z.persistence_threshold);
  double peak = 0;
  // Before a unit is released, it and the units gathered ahead at its acquire are resident.
  for (std::size_t k = 0; k < order.size(); ++k) {
    std::vector<std::size_t> resident;
    for (std::size_t j = k; j <= k + static_cast<std::size_t>(z.prefetch) && j < order.size(); ++j)
      if (std::find(resident.begin(), resident.end(), order[j]) == resident.end()) resident.push_back(order[j]);
    double bytes = 0;
    for (std::size_t u : resident) bytes += interior_bytes(f.units[u].begin, f.units[u].end, elem_bytes, page);
    peak = std::max(peak, bytes);
  }
  return peak;
}

namespace {
double window_peak_bytes(const PlanModel& m, const FlatLayout& f, double page) {
  constexpr double kFp32 = 4;
  // Each parameter's gradient is taken once its kernel has written it (attention's q, k and v
  // together); the [V, D] tables' in row blocks. A learned positional table is written by the
  // target lookup and again by the source lookup, and taken at the end: it stays meanwhile.
  const double block = std::min(double(m.vocab), double(grad_block_rows(m.d_model))) * m.d_model;
  double largest = block, held = 0;
  for (std::size_t u = 0; u < m.units.size(); ++u) {
    double unit = 0, tensor = 0;
    for (std::int64_t n : m.units[u]) {
      unit += double(n);
      tensor = std::max(tensor, double(n));
    }
    if (m.kinds[u] == Kind::Embedding) continue;  // its tables go by blocks
    largest = std::max(largest, std::min(unit, 3 * tensor));
  }
  if (m.learned_positions) held = double(m.max_len) * m.d_model;
  // Pages touched by a range: its whole pages plus a partial one at each end; the zeroed partial
  // pages taken ranges leave behind stay until the end of the step (at most two per unit).
  const double boundaries = 2 * page * double(f.units.size());
  return std::ceil(largest * kFp32 / page) * page + 2 * page + std::ceil(held * kFp32 / page) * page + 2 * page +
         boundaries;
}
}  // namespace

double grad_bucket_peak_bytes(const PlanModel& m, const FlatLayout& f, const Layout& l, const ZeroKnobs& z,
                              double elem_bytes, double page, bool async_progress, bool two_byte_window) {
  // 2-byte gradients: backward's fp32 window, plus at stages 2-3 the 2-byte range's pages
  // waiting for their reduce-scatter (as the fp32 working range's, at 2 bytes a value).
  if (two_byte_window)
    return window_peak_bytes(m, f, page) + grad_bucket_peak_bytes(m, f, l, z, 2, page, async_progress, false);
  if (l.stage < 2) return 0;
  // Without a progress engine (MPI on the CPU backend: a non-blocking collective moves only
  // inside test/wait calls) a bucket may still be in flight when backward ends: every page of
  // the working range can be committed at once.
  if (!async_progress) return std::ceil(double(f.padded) * elem_bytes / page) * page;
  // Backward writes a unit's gradients, then its segments are reduce-scattered and their pages
  // given back, except the pages a segment shares with its neighbours, which stay until the end
  // of backward. A tied embedding's gradient is written (dense) by the logits' backward first and
  // is final last. Peak: the embedding (tied), the unit just finished (and, with several ranks and
  // overlap, the one before, still in flight), and the boundary pages left behind so far.
  std::vector<std::size_t> order;  // units in backward order, blocks and norms
  for (auto k : {Kind::Output, Kind::DecoderNorm, Kind::DecoderBlock, Kind::EncoderNorm, Kind::EncoderBlock})
    for (std::size_t u = m.kinds.size(); u-- > 0;)
      if (m.kinds[u] == k) order.push_back(u);
  double embedding = 0;
  for (std::size_t u = 0; u < m.kinds.size(); ++u)
    if (m.kinds[u] == Kind::Embedding && m.tie_embeddings)
      embedding = interior_bytes(f.units[u].begin, f.units[u].end, elem_bytes, page);
  const bool in_flight = l.ranks() > 1 && z.overlap;
  double peak = 0, boundaries = 0, previous = 0;
  for (std::size_t u : order) {
    const double unit = interior_bytes(f.units[u].begin, f.units[u].end, elem_bytes, page);
    peak = std::max(peak, embedding + unit + (in_flight ? previous : 0) + boundaries);
    // Its segments leave their partial pages behind: one per segment end not on a page boundary.
    std::int64_t at = f.units[u].begin;
    for (std::int64_t seg : f.units[u].segments) {
      at += seg;
      if (std::fmod(double(at) * elem_bytes, page) != 0) boundaries += page;
    }
    previous = unit;
  }
  return peak;
}

}  // namespace th
