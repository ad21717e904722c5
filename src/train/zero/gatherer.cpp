#include "gatherer.hpp"

#include <algorithm>
#include <string>

#include "th/core/error.hpp"

namespace th::zero {

Gatherer::Gatherer(const ZeroPartition& part, ReservedRange& range, PieceSource& source, int prefetch,
                   std::int64_t persistence_threshold)
    : range_(range), source_(source), prefetch_(prefetch) {
  const auto& pieces = part.pieces();
  for (std::size_t k = 0; k < pieces.size(); ++k) {
    const int u = pieces[k].unit;
    if (static_cast<std::size_t>(u) >= units_.size()) units_.resize(static_cast<std::size_t>(u) + 1);
    Unit& unit = units_[static_cast<std::size_t>(u)];
    const std::int64_t end = pieces[k].begin + pieces[k].count * part.world();
    if (unit.pieces.empty()) unit.begin = pieces[k].begin;
    unit.end = end;
    unit.pieces.push_back(k);
  }
  for (Unit& u : units_) u.persistent = u.end - u.begin < persistence_threshold;
}

void Gatherer::acquire(int id) {
  Unit& u = units_[static_cast<std::size_t>(id)];
  TH_CHECK(!u.held, "unit " + std::to_string(id) + " acquired twice");
  u.held = true;
  if (u.persistent) return;
  std::size_t at = trace_.size();
  if (recording_) {
    trace_.push_back(id);
  } else if (pos_ < trace_.size() && trace_[pos_] == id) {
    at = pos_;
  } else {  // off the recorded order (an inference pass): forget what was gathered ahead
    drop();
    at = static_cast<std::size_t>(std::find(trace_.begin(), trace_.end(), id) - trace_.begin());
  }
  if (!u.resident && u.reqs.empty()) launch(u);
  wait(u);
  if (!recording_ && at < trace_.size()) {
    for (int j = 1; j <= prefetch_ && at + static_cast<std::size_t>(j) < trace_.size(); ++j) {
      Unit& w = units_[static_cast<std::size_t>(trace_[at + static_cast<std::size_t>(j)])];
      if (!w.persistent && !w.resident && w.reqs.empty()) launch(w);
    }
    pos_ = at + 1;
  }
}

void Gatherer::release(int id) {
  Unit& u = units_[static_cast<std::size_t>(id)];
  u.held = false;
  if (u.persistent) return;
  range_.account();  // before the release: the peak includes what was gathered ahead
  range_.release(u.begin, u.end, false);
  u.resident = false;
  range_.account();
}

void Gatherer::drop() {
  for (Unit& u : units_) {
    if (!u.reqs.empty()) wait(u);
    if (u.resident && !u.held && !u.persistent) {
      range_.release(u.begin, u.end, false);
      u.resident = false;
    }
  }
  range_.account();
  pos_ = 0;
}

void Gatherer::wait(Unit& u) {
  const bool fresh = !u.reqs.empty();
  for (auto& r : u.reqs) r->wait();
  u.reqs.clear();
  u.resident = true;
  range_.account();
  if (fresh) source_.arrived(u.begin, u.end);
}

}  // namespace th::zero
