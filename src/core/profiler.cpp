#include "th/core/profiler.hpp"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>

#include "th/core/error.hpp"
#include "th/parallel/agree.hpp"
#include "th/parallel/comm.hpp"

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
// Trace output

namespace {

void append_json_string(std::string& out, std::string_view s) {
  out += '"';
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += ch;
    } else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += ch;  // UTF-8 passes through unchanged
    }
  }
  out += '"';
}

// Microseconds with exactly three decimals from integer nanoseconds: ts and ts+dur are printed
// from the same rounded integers, so a child that ends inside its parent still does in the file.
void append_us(std::string& out, std::int64_t ns) {
  char buf[32];
  const char* sign = ns < 0 ? "-" : "";
  const std::int64_t a = ns < 0 ? -ns : ns;
  std::snprintf(buf, sizeof buf, "%s%lld.%03lld", sign, static_cast<long long>(a / 1000), static_cast<long long>(a % 1000));
  out += buf;
}

void append_meta(std::string& out, const char* what, int pid, int tid, const char* key, const std::string& value,
                 bool numeric) {
  if (!out.empty()) out += ",\n";
  out += "{\"name\":\"";
  out += what;
  out += "\",\"ph\":\"M\",\"pid\":" + std::to_string(pid) + ",\"tid\":" + std::to_string(tid) + ",\"args\":{\"";
  out += key;
  out += "\":";
  if (numeric) out += value;
  else append_json_string(out, value);
  out += "}}";
}

}  // namespace

std::string Profiler::serialize(int rank, double origin_us) const {
  std::vector<ProfileEvent> ev;
  std::vector<std::string> tracks;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ev = events_;
    tracks = track_names_;
  }
  // Per track: begin ascending, longer first on ties, so a parent precedes its children.
  std::sort(ev.begin(), ev.end(), [](const ProfileEvent& a, const ProfileEvent& b) {
    if (a.track != b.track) return a.track < b.track;
    if (a.begin_us != b.begin_us) return a.begin_us < b.begin_us;
    return a.end_us > b.end_us;
  });
  // Trace viewers stack "X" events of one tid as a call tree, so events that partly overlap
  // (several all-reduces in flight on the "comm" track) would be drawn wrongly. Each track is
  // split into lanes, each properly nested: an event goes to the first lane where it either
  // follows the open events or fits inside the innermost one. Thread tracks built from scopes are
  // nested by construction and stay on one lane.
  const auto ns = [&](double t) { return std::llround((t - offset_us_ - origin_us) * 1000.0); };
  struct Lane {
    int track;
    int index;  // 0: the track itself; k: its (k+1)-th lane
    std::vector<std::int64_t> open;  // ends of the open events, innermost last
  };
  std::vector<Lane> lanes;
  std::vector<int> lane_of(ev.size());
  std::size_t first_lane_of_track = 0;
  for (std::size_t i = 0; i < ev.size(); ++i) {
    if (i == 0 || ev[i].track != ev[i - 1].track) first_lane_of_track = lanes.size();
    const std::int64_t b = ns(ev[i].begin_us), e = ns(ev[i].end_us);
    int chosen = -1;
    for (std::size_t l = first_lane_of_track; l < lanes.size() && chosen < 0; ++l) {
      auto& open = lanes[l].open;
      while (!open.empty() && open.back() <= b) open.pop_back();
      if (open.empty() || e <= open.back()) chosen = static_cast<int>(l);
    }
    if (chosen < 0) {
      lanes.push_back({ev[i].track, static_cast<int>(lanes.size() - first_lane_of_track), {}});
      chosen = static_cast<int>(lanes.size() - 1);
    }
    lanes[static_cast<std::size_t>(chosen)].open.push_back(e);
    lane_of[i] = chosen;
  }
  // tid of a lane: the track id for the first lane; extra lanes are numbered after every track.
  std::vector<int> lane_tid(lanes.size());
  int next_tid = static_cast<int>(tracks.size());
  for (std::size_t l = 0; l < lanes.size(); ++l) lane_tid[l] = lanes[l].index == 0 ? lanes[l].track : next_tid++;

  std::string out;
  out.reserve(256 + ev.size() * 160);
  append_meta(out, "process_name", rank, 0, "name", "rank " + std::to_string(rank), false);
  append_meta(out, "process_sort_index", rank, 0, "sort_index", std::to_string(rank), true);
  for (std::size_t t = 0; t < tracks.size(); ++t) {
    append_meta(out, "thread_name", rank, static_cast<int>(t), "name", tracks[t], false);
    append_meta(out, "thread_sort_index", rank, static_cast<int>(t), "sort_index", std::to_string(1000 * t), true);
  }
  for (std::size_t l = 0; l < lanes.size(); ++l) {
    if (lanes[l].index == 0) continue;
    const std::string nm = tracks[static_cast<std::size_t>(lanes[l].track)] + " (" + std::to_string(lanes[l].index + 1) + ")";
    append_meta(out, "thread_name", rank, lane_tid[l], "name", nm, false);
    // Sort the extra lanes right after their track.
    append_meta(out, "thread_sort_index", rank, lane_tid[l], "sort_index",
                std::to_string(1000 * lanes[l].track + lanes[l].index), true);
  }
  std::vector<std::string> names;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& n : names_) names.push_back(*n);
  }
  for (std::size_t i = 0; i < ev.size(); ++i) {
    const ProfileEvent& e = ev[i];
    const std::int64_t b = ns(e.begin_us), d = ns(e.end_us) - b;
    out += ",\n{\"name\":";
    append_json_string(out, e.name < names.size() ? names[e.name] : std::string("?"));
    out += ",\"cat\":\"";
    out += to_string(e.cat);
    out += "\",\"ph\":\"X\",\"ts\":";
    append_us(out, b);
    out += ",\"dur\":";
    append_us(out, d);
    out += ",\"pid\":" + std::to_string(rank) + ",\"tid\":" + std::to_string(lane_tid[static_cast<std::size_t>(lane_of[i])]);
    if (e.args.size() > 0) {
      out += ",\"args\":{";
      for (int a = 0; a < e.args.size(); ++a) {
        if (a) out += ',';
        append_json_string(out, e.args[a].key ? e.args[a].key : "arg");
        out += ':' + std::to_string(e.args[a].value);
      }
      out += '}';
    }
    out += '}';
  }
  return out;
}

void Profiler::measure_clock_offset(Comm& comm) {
  const bool measure = clock_sync_ == ClockSync::Measure || (clock_sync_ == ClockSync::Auto && comm.num_nodes() > 1);
  if (!measure) {
    offset_us_ = 0;
    return;
  }
  // Every rank leaves a barrier at about the same moment; the difference between its clock and
  // rank 0's there is the offset, up to the barrier's exit skew. The median of a few rounds drops
  // the rounds where a rank was descheduled.
  constexpr int kRounds = 7;
  std::vector<double> offsets;
  comm.barrier();
  for (int r = 0; r < kRounds; ++r) {
    comm.barrier();
    const double mine = now_us();
    double root = mine;
    comm.broadcast(&root, sizeof root, 0);
    offsets.push_back(mine - root);
  }
  std::nth_element(offsets.begin(), offsets.begin() + kRounds / 2, offsets.end());
  offset_us_ = comm.rank() == 0 ? 0.0 : offsets[kRounds / 2];
}

void Profiler::write_trace(Comm& comm, const std::string& path) {
  measure_clock_offset(comm);
  // Common origin: the earliest aligned event of any rank becomes t = 0.
  double first = std::numeric_limits<double>::infinity();
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& e : events_) first = std::min(first, e.begin_us - offset_us_);
  }
  comm.allreduce(&first, 1, ReduceOp::Min);
  const double origin = std::isfinite(first) ? first : 0.0;

  const std::vector<std::string> parts = comm.gather_strings(serialize(comm.rank(), origin), 0);
  // Every rank learns the outcome, so a failure stops all of them the same way.
  agree_root(comm, [&]() -> std::string {
    std::string error;
    // Written to a temporary name and renamed: a reader never sees half a trace.
    const std::string tmp = path + ".tmp";
    std::FILE* f = std::fopen(tmp.c_str(), "wb");
    if (!f) {
      error = "cannot open " + tmp + " for the trace: " + std::strerror(errno);
    } else {
      std::string head = "{\"otherData\":{\"ranks\":" + std::to_string(comm.size()) + ",\"clock_sync\":\"" +
                         (clock_sync_ == ClockSync::Measure || (clock_sync_ == ClockSync::Auto && comm.num_nodes() > 1)
                              ? "measured"
                              : "shared") +
                         "\"},\n\"traceEvents\":[\n";
      bool ok = std::fwrite(head.data(), 1, head.size(), f) == head.size();
      bool first_part = true;
      for (const std::string& p : parts) {
        if (p.empty()) continue;
        if (!first_part) ok = ok && std::fwrite(",\n", 1, 2, f) == 2;
        ok = ok && std::fwrite(p.data(), 1, p.size(), f) == p.size();
        first_part = false;
      }
      const std::string tail = "\n],\n\"displayTimeUnit\":\"ms\"}\n";
      ok = ok && std::fwrite(tail.data(), 1, tail.size(), f) == tail.size();
      ok = (std::fclose(f) == 0) && ok;
      if (!ok) error = "writing the trace " + tmp + " failed";
      else if (std::rename(tmp.c_str(), path.c_str()) != 0)
        error = "cannot rename " + tmp + " to " + path + ": " + std::strerror(errno);
    }
    return error;
  }, ErrorKind::Failure);
  written_ = true;
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

ProfileSummary Profiler::summarize(Comm& comm) const {
  const RankProfile mine = local_profile();
  const int n = comm.size(), me = comm.rank();
  // One row per rank, filled by its owner and summed: every rank gets every row (the tables are
  // small, and an allreduce keeps the call collective on all ranks, unlike a gather).
  constexpr int kD = kNumCategories + 4;
  constexpr int kI = 2 * kNumMemCategories + 4 + 1;
  std::vector<double> d(static_cast<std::size_t>(n) * kD, 0.0);
  std::vector<std::int64_t> iv(static_cast<std::size_t>(n) * kI, 0);
  double* dr = d.data() + static_cast<std::size_t>(me) * kD;
  for (int c = 0; c < kNumCategories; ++c) dr[c] = mine.category_s[static_cast<std::size_t>(c)];
  dr[kNumCategories] = mine.hidden_s;
  dr[kNumCategories + 1] = mine.data_wait_s;
  dr[kNumCategories + 2] = mine.window_s;
  dr[kNumCategories + 3] = static_cast<double>(mine.events);
  std::int64_t* ir = iv.data() + static_cast<std::size_t>(me) * kI;
  for (int c = 0; c < kNumMemCategories; ++c) {
    ir[c] = mine.memory.live[static_cast<std::size_t>(c)];
    ir[kNumMemCategories + c] = mine.memory.peak[static_cast<std::size_t>(c)];
  }
  ir[2 * kNumMemCategories] = mine.memory.live_total;
  ir[2 * kNumMemCategories + 1] = mine.memory.peak_total;
  ir[2 * kNumMemCategories + 2] = mine.memory.reserved;
  ir[2 * kNumMemCategories + 3] = mine.memory.system_allocations;
  ir[2 * kNumMemCategories + 4] = steps_traced_;
  comm.allreduce(d.data(), d.size(), ReduceOp::Sum);
  comm.allreduce(iv.data(), iv.size(), ReduceOp::Sum);

  ProfileSummary s;
  s.ranks = n;
  s.per_rank.resize(static_cast<std::size_t>(n));
  double comm_sum = 0, hidden_sum = 0;
  s.hidden_pct_min = 100.0;
  for (int r = 0; r < n; ++r) {
    const double* row = d.data() + static_cast<std::size_t>(r) * kD;
    const std::int64_t* irow = iv.data() + static_cast<std::size_t>(r) * kI;
    RankProfile& p = s.per_rank[static_cast<std::size_t>(r)];
    for (int c = 0; c < kNumCategories; ++c) p.category_s[static_cast<std::size_t>(c)] = row[c];
    p.comm_s = p.category_s[static_cast<std::size_t>(Category::Communication)];
    p.hidden_s = row[kNumCategories];
    p.data_wait_s = row[kNumCategories + 1];
    p.window_s = row[kNumCategories + 2];
    p.events = static_cast<std::int64_t>(row[kNumCategories + 3]);
    for (int c = 0; c < kNumMemCategories; ++c) {
      p.memory.live[static_cast<std::size_t>(c)] = irow[c];
      p.memory.peak[static_cast<std::size_t>(c)] = irow[kNumMemCategories + c];
    }
    p.memory.live_total = irow[2 * kNumMemCategories];
    p.memory.peak_total = irow[2 * kNumMemCategories + 1];
    p.memory.reserved = irow[2 * kNumMemCategories + 2];
    p.memory.system_allocations = irow[2 * kNumMemCategories + 3];
    s.steps = std::max(s.steps, irow[2 * kNumMemCategories + 4]);

    for (int c = 0; c < kNumCategories; ++c) {
      const auto ci = static_cast<std::size_t>(c);
      s.mean_s[ci] += p.category_s[ci] / n;
      if (r == 0 || p.category_s[ci] > s.max_s[ci]) {
        s.max_s[ci] = p.category_s[ci];
        s.max_rank[ci] = r;
      }
    }
    comm_sum += p.comm_s;
    hidden_sum += p.hidden_s;
    if (p.comm_s > 0) s.hidden_pct_min = std::min(s.hidden_pct_min, 100.0 * p.hidden_s / p.comm_s);
    s.data_wait_s_mean += p.data_wait_s / n;
    if (r == 0 || p.data_wait_s > s.data_wait_s_max) {
      s.data_wait_s_max = p.data_wait_s;
      s.data_wait_max_rank = r;
    }
    s.window_s_max = std::max(s.window_s_max, p.window_s);
  }
  s.comm_s_mean = comm_sum / n;
  s.hidden_s_mean = hidden_sum / n;
  s.hidden_pct = comm_sum > 0 ? 100.0 * hidden_sum / comm_sum : 0.0;
  if (comm_sum <= 0) s.hidden_pct_min = 0;
  return s;
}

ProfileSummary Profiler::finish(Comm& comm, const std::string& path) {
  active_.store(false, std::memory_order_relaxed);
  write_trace(comm, path);
  ProfileSummary s = summarize(comm);
  print_summary(comm, s);
  return s;
}

namespace {
std::string mib(std::int64_t b) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", static_cast<double>(b) / (1 << 20));
  return buf;
}
}  // namespace

std::string format_summary(const ProfileSummary& s) {
  std::string out;
  char line[256];
  std::snprintf(line, sizeof line, "profile: %lld step%s traced on %d rank%s, window %.3f s (slowest rank)\n",
                static_cast<long long>(s.steps), s.steps == 1 ? "" : "s", s.ranks, s.ranks == 1 ? "" : "s",
                s.window_s_max);
  out += line;
  out += "  time per category (union of its events; s):   mean over ranks      max  (rank)\n";
  for (int c = 0; c < kNumCategories; ++c) {
    const auto ci = static_cast<std::size_t>(c);
    if (s.max_s[ci] <= 0) continue;
    std::snprintf(line, sizeof line, "    %-44s %12.4f %9.4f  (%d)\n", to_string(static_cast<Category>(c)), s.mean_s[ci],
                  s.max_s[ci], s.max_rank[ci]);
    out += line;
  }
  if (s.comm_s_mean > 0) {
    std::snprintf(line, sizeof line,
                  "  communication hidden behind compute: %.1f%% (worst rank %.1f%%); exposed %.4f s per rank\n",
                  s.hidden_pct, s.hidden_pct_min, s.comm_s_mean - s.hidden_s_mean);
  } else {
    std::snprintf(line, sizeof line, "  communication hidden behind compute: no communication recorded\n");
  }
  out += line;
  std::snprintf(line, sizeof line, "  data wait (main thread): mean %.4f s, max %.4f s (rank %d)\n", s.data_wait_s_mean,
                s.data_wait_s_max, s.data_wait_max_rank);
  out += line;
  // Memory: every rank up to 16, beyond that the rank with the highest total peak.
  out += "  peak host memory (MiB):   rank";
  for (int c = 0; c < kNumMemCategories; ++c) {
    std::snprintf(line, sizeof line, " %15s", to_string(static_cast<MemCategory>(c)));
    out += line;
  }
  out += "           total\n";
  std::vector<int> rows;
  if (s.ranks <= 16) {
    for (int r = 0; r < s.ranks; ++r) rows.push_back(r);
  } else if (!s.per_rank.empty()) {
    int worst = 0;
    for (int r = 1; r < s.ranks; ++r)
      if (s.per_rank[static_cast<std::size_t>(r)].memory.peak_total > s.per_rank[static_cast<std::size_t>(worst)].memory.peak_total) worst = r;
    rows = {0, worst};
  }
  for (int r : rows) {
    const MemStats& m = s.per_rank[static_cast<std::size_t>(r)].memory;
    std::snprintf(line, sizeof line, "  %30d", r);
    out += line;
    for (int c = 0; c < kNumMemCategories; ++c) {
      std::snprintf(line, sizeof line, " %15s", mib(m.peak[static_cast<std::size_t>(c)]).c_str());
      out += line;
    }
    std::snprintf(line, sizeof line, " %15s\n", mib(m.peak_total).c_str());
    out += line;
  }
  return out;
}

void print_summary(Comm& comm, const ProfileSummary& s, std::FILE* out) {
  if (comm.rank() != 0) return;
  const std::string text = format_summary(s);
  std::fputs(text.c_str(), out);
  std::fflush(out);
}

}  // namespace th
