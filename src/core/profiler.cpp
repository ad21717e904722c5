// The profiler: categories, interval arithmetic, recording, and one rank's totals.
#include "th/core/profiler.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>

#include "th/core/error.hpp"

namespace th {

const char* to_string(Category c) {
  switch (c) {
    case Category::Compute: return "compute";
    case Category::Communication: return "communication";
    case Category::Data: return "data";
    case Category::IO: return "io";
    case Category::Optimizer: return "optimizer";
    case Category::Offload: return "offload";
    case Category::Other: return "other";
    case Category::Count: break;
  }
  return "unknown";
}

// ---------------------------------------------------------------------------------------------
// Interval arithmetic

namespace {
// Sorted, disjoint cover of v (merging touching intervals too).
std::vector<Interval> merged(std::vector<Interval> v) {
  v.erase(std::remove_if(v.begin(), v.end(), [](const Interval& i) { return !(i.end > i.begin); }), v.end());
  std::sort(v.begin(), v.end(), [](const Interval& a, const Interval& b) { return a.begin < b.begin; });
  std::vector<Interval> out;
  for (const Interval& i : v) {
    if (!out.empty() && i.begin <= out.back().end) out.back().end = std::max(out.back().end, i.end);
    else out.push_back(i);
  }
  return out;
}
}  // namespace

double union_length(std::vector<Interval> v) {
  double s = 0;
  for (const Interval& i : merged(std::move(v))) s += i.end - i.begin;
  return s;
}

double intersection_length(std::vector<Interval> a, std::vector<Interval> b) {
  // Both covers are sorted and disjoint: one merge-like sweep.
  const std::vector<Interval> x = merged(std::move(a)), y = merged(std::move(b));
  double s = 0;
  std::size_t i = 0, j = 0;
  while (i < x.size() && j < y.size()) {
    const double lo = std::max(x[i].begin, y[j].begin), hi = std::min(x[i].end, y[j].end);
    if (hi > lo) s += hi - lo;
    if (x[i].end < y[j].end) ++i;
    else ++j;
  }
  return s;
}

double hidden_fraction(const std::vector<Interval>& comm, const std::vector<Interval>& compute) {
  const double total = union_length(comm);
  return total > 0 ? intersection_length(comm, compute) / total : 0.0;
}

// ---------------------------------------------------------------------------------------------
// Recording

Profiler::Profiler() = default;  // allocates nothing: a disabled profiler costs no memory
Profiler::~Profiler() = default;

Profiler& profiler() {
  static Profiler p;
  return p;
}

double Profiler::now_us() {
  return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

void Profiler::configure(bool enabled, std::int64_t start_step, std::int64_t num_steps, std::size_t reserve_events) {
  std::lock_guard<std::mutex> lock(mu_);
  active_.store(false, std::memory_order_relaxed);
  enabled_ = enabled && num_steps > 0;
  start_ = start_step;
  num_ = num_steps;
  step_ = -1;
  steps_traced_ = growths_ = 0;
  written_ = false;
  reserve_ = reserve_events;
  events_.clear();
  // The configuring thread is the training loop: track 0, "main" (data wait is measured on it).
  main_thread_ = std::this_thread::get_id();
  if (track_names_.empty()) {
    track_names_.push_back("main");
    track_virtual_.push_back(false);
  }
  thread_tracks_[main_thread_] = 0;
}

void Profiler::set_step(std::int64_t step) {
  if (!enabled_) return;  // the disabled path: a branch
  step_ = step;
  const bool in = step >= start_ && step < start_ + num_;
  if (in) {
    ++steps_traced_;
    std::lock_guard<std::mutex> lock(mu_);
    // Reserve when the window opens (not at configure: a run that never reaches the window, or
    // a disabled profiler, holds no memory), so that appends in the window do not allocate.
    if (events_.capacity() < reserve_) events_.reserve(reserve_);
    if (name_ids_.bucket_count() < 256) name_ids_.reserve(256);
  }
  active_.store(in, std::memory_order_relaxed);
}

int Profiler::current_track_locked() {
  const auto id = std::this_thread::get_id();
  auto it = thread_tracks_.find(id);
  if (it != thread_tracks_.end()) return it->second;
  // First event of an unnamed thread: allocates once per thread.
  const int t = static_cast<int>(track_names_.size());
  track_names_.push_back("thread " + std::to_string(t));
  track_virtual_.push_back(false);
  thread_tracks_.emplace(id, t);
  return t;
}

void Profiler::set_thread_name(const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  track_names_[static_cast<std::size_t>(current_track_locked())] = name;
}

int Profiler::track(const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  for (std::size_t t = 0; t < track_names_.size(); ++t)
    if (track_virtual_[t] && track_names_[t] == name) return static_cast<int>(t);
  track_names_.push_back(name);
  track_virtual_.push_back(true);
  return static_cast<int>(track_names_.size() - 1);
}

std::uint32_t Profiler::intern(std::string_view name) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = name_ids_.find(name);
  if (it != name_ids_.end()) return it->second;
  // The key views the heap string owned by names_, which never moves.
  names_.push_back(std::make_unique<std::string>(name));
  const auto id = static_cast<std::uint32_t>(names_.size() - 1);
  name_ids_.emplace(std::string_view(*names_.back()), id);
  return id;
}

void Profiler::append(std::uint32_t name, Category cat, double begin_us, double end_us, const ProfileArgs& args,
                      int track) {
  std::lock_guard<std::mutex> lock(mu_);
  if (track < 0 || track >= static_cast<int>(track_names_.size())) track = current_track_locked();
  if (events_.size() == events_.capacity()) ++growths_;  // the reservation was too small
  ProfileEvent& e = events_.emplace_back();
  e.name = name;
  e.cat = cat;
  e.track = track;
  e.begin_us = begin_us;
  e.end_us = std::max(begin_us, end_us);
  e.args = args;
}

void Profiler::record(std::string_view name, Category cat, double begin_us, double end_us, const ProfileArgs& args,
                      int track) {
  if (!active()) return;
  append(intern(name), cat, begin_us, end_us, args, track);
}

std::size_t Profiler::num_events() const {
  std::lock_guard<std::mutex> lock(mu_);
  return events_.size();
}

std::vector<ProfileEvent> Profiler::events() const {
  std::lock_guard<std::mutex> lock(mu_);
  return events_;
}

std::string Profiler::name(std::uint32_t id) const {
  std::lock_guard<std::mutex> lock(mu_);
  return id < names_.size() ? *names_[id] : std::string();
}

std::string Profiler::track_name(int track) const {
  std::lock_guard<std::mutex> lock(mu_);
  return track >= 0 && track < static_cast<int>(track_names_.size()) ? track_names_[static_cast<std::size_t>(track)]
                                                                     : std::string();
}

void Profiler::clear() {
  std::lock_guard<std::mutex> lock(mu_);
  events_.clear();
}

// ---------------------------------------------------------------------------------------------
// Summary

RankProfile Profiler::local_profile() const {
  std::vector<ProfileEvent> ev;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ev = events_;
  }
  RankProfile r;
  std::array<std::vector<Interval>, kNumCategories> by_cat;
  std::vector<Interval> data_main;
  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
  for (const auto& e : ev) {
    const Interval i{e.begin_us * 1e-6, e.end_us * 1e-6};
    by_cat[static_cast<std::size_t>(e.cat)].push_back(i);
    if (e.cat == Category::Data && e.track == 0) data_main.push_back(i);
    lo = std::min(lo, i.begin);
    hi = std::max(hi, i.end);
  }
  // Unions, not sums: nested scopes of one category (forward > layer_3) count once, as do
  // several buckets in flight at the same time.
  for (int c = 0; c < kNumCategories; ++c) r.category_s[static_cast<std::size_t>(c)] = union_length(by_cat[static_cast<std::size_t>(c)]);
  const auto comm_i = static_cast<std::size_t>(Category::Communication), compute_i = static_cast<std::size_t>(Category::Compute);
  r.comm_s = r.category_s[comm_i];
  r.hidden_s = intersection_length(by_cat[comm_i], by_cat[compute_i]);
  r.data_wait_s = union_length(data_main);
  r.window_s = ev.empty() ? 0.0 : hi - lo;
  r.events = static_cast<std::int64_t>(ev.size());
  r.memory = host_pool().stats();
  return r;
}

}  // namespace th
