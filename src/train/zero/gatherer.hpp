#pragma once
// Stage 3: the model's ParamAccess. A unit's pieces are all-gathered from the partitions into
// the reserved parameter range before use and released after; units below the persistence
// threshold stay gathered. The order of acquires is recorded in the first step; afterwards each
// acquire starts the non-blocking gathers of the next `prefetch` units of that trace. Every
// rank makes the same calls in the same order, so the collectives match without agreement.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "reserved_range.hpp"
#include "th/model/transformer.hpp"
#include "th/parallel/comm.hpp"
#include "th/train/zero.hpp"

namespace th::zero {

// What starts the gathers of a unit's pieces (indexes into ZeroPartition::pieces()).
class PieceSource {
 public:
  virtual ~PieceSource() = default;
  virtual void launch(const std::vector<std::size_t>& pieces, std::vector<CommRequestPtr>& reqs) = 0;
  // Elements [begin, end) of the range have just been gathered (their gathers completed).
  virtual void arrived(std::int64_t /*begin*/, std::int64_t /*end*/) {}
};

class Gatherer final : public ParamAccess {
 public:
  Gatherer(const ZeroPartition& part, ReservedRange& range, PieceSource& source, int prefetch,
           std::int64_t persistence_threshold);

  bool persistent(int u) const { return units_[static_cast<std::size_t>(u)].persistent; }
  std::int64_t begin(int u) const { return units_[static_cast<std::size_t>(u)].begin; }
  std::int64_t end(int u) const { return units_[static_cast<std::size_t>(u)].end; }
  int count() const { return static_cast<int>(units_.size()); }
  void stop_recording() { recording_ = false; }
  void mark_resident(int id) { units_[static_cast<std::size_t>(id)].resident = true; }

  void acquire(int id) override;
  void release(int id) override;
  // Waits for gathers in flight and releases every unit gathered ahead but not in use.
  void drop();

 private:
  struct Unit {
    std::int64_t begin = 0, end = 0;
    std::vector<std::size_t> pieces;
    bool persistent = false, resident = false, held = false;
    std::vector<CommRequestPtr> reqs;
  };
  void launch(Unit& u) { source_.launch(u.pieces, u.reqs); }
  void wait(Unit& u);

  ReservedRange& range_;
  PieceSource& source_;
  int prefetch_;
  std::vector<Unit> units_;
  std::vector<int> trace_;
  bool recording_ = true;
  std::size_t pos_ = 0;
};

}  // namespace th::zero
