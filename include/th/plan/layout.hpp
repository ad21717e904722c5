#pragma once
// A layout the plan considers (nodes x ranks per node, ZeRO stage, offload), the &parallel knobs
// that shape memory and overlap, and the flat parameter layout ZeRO gives a stage on N ranks.
#include <cstdint>
#include <string>
#include <vector>

#include "th/plan/model.hpp"

namespace th {

enum class Placement { None, Cpu, Nvme };
Placement parse_placement(const std::string& s);  // "none" | "cpu" | "nvme"
const char* to_string(Placement p);

struct Layout {
  int nodes = 1, ranks_per_node = 1, stage = 0;
  Placement optimizer = Placement::None;  // where the Adam moments (and a mixed run's master) live
  Placement param = Placement::None;      // stage 3: where the parameter partition lives
  int ranks() const { return nodes * ranks_per_node; }
};

// &parallel keys the planner needs (same meanings and defaults as the deck's).
struct ZeroKnobs {
  double bucket_mb = 25;
  bool overlap = true;
  int prefetch = 1;                          // stage 3: units gathered ahead
  std::int64_t persistence_threshold = 4096; // stage 3: smaller units stay whole (elements)
  double nvme_chunk_mb = 4;
};

// The flat buffers as ZeRO lays them out for a stage on N ranks (the rule of th/model/params.hpp,
// restated): stage 0 packs the tensors; stages 1-3 cut every unit into segments of whole tensors
// of at most max(N, bucket elements rounded down to a multiple of N), each padded to a multiple
// of N. Rank r owns the r-th N-th of every segment.
struct FlatLayout {
  struct Unit {
    std::int64_t begin = 0, end = 0;  // element range of the unit (padded)
    std::vector<std::int64_t> segments;  // padded segment lengths (the communication buckets)
  };
  std::int64_t padded = 0;  // elements of the flat buffers
  std::int64_t shard = 0;   // elements each rank owns (= padded / N; stage 0: padded)
  std::vector<Unit> units;
};
FlatLayout flat_layout(const PlanModel& m, int stage, int ranks, double bucket_mb);

// Stage 3: the units a training micro-batch gathers, in order (persistent units left out, they
// are never gathered): forward (embeddings, encoder blocks and norm, decoder blocks and norm, the
// output projection, held into backward; tied, that is the embedding unit again), then backward
// (decoder norm and blocks, encoder norm and blocks, last to first; the embeddings' backward
// needs no values).
std::vector<std::size_t> gather_order(const PlanModel& m, const FlatLayout& f, std::int64_t persistence_threshold);

}  // namespace th
