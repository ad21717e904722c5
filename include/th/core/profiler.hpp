#pragma once
// The training-loop profiler: complete events (name, category, begin, duration, thread or track,
// a few integer args) recorded during a window of steps, written by rank 0 as one Chrome /
// Perfetto trace-event JSON for all ranks, and summarised (time per category, communication hidden
// behind compute, data wait, memory peaks).
//
// Cost model. Outside the window every entry point is one relaxed atomic load and a branch: no
// clock read, no lock, no allocation (tested by counting operator new). Inside the window a scope
// costs two clock reads, and two short critical sections (name lookup, append). Storage is reserved
// when the window opens, and names are interned once, so steady-state recording does not allocate.
//
// Threads. Any thread may record. Each thread gets a small integer track id on its first event
// (the thread that calls configure() is track 0, "main"); set_thread_name() names the caller's
// track. Events measured elsewhere (a non-blocking collective whose completion is observed later)
// go to a named virtual track: track("comm").
#include <array>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "th/core/memory.hpp"

namespace th {

class Comm;

enum class Category : int { Compute, Communication, Data, IO, Optimizer, Offload, Other, Count };
constexpr int kNumCategories = static_cast<int>(Category::Count);
const char* to_string(Category c);  // "compute", "communication", ... (the trace's "cat")

// One integer argument of an event. The key is kept as a pointer, so it must outlive the profiler:
// pass a string literal ("bytes", "bucket").
struct ProfileArg {
  const char* key;
  std::int64_t value;
};

// Up to kMax arguments stored inline (an event never allocates for its args); extra ones are
// dropped rather than grown, because growing would allocate in the hot path.
class ProfileArgs {
 public:
  static constexpr int kMax = 4;
  ProfileArgs() = default;
  ProfileArgs(std::initializer_list<ProfileArg> args) {
    for (const auto& a : args) add(a.key, a.value);
  }
  void add(const char* key, std::int64_t value) {
    if (n_ < kMax) a_[n_++] = {key, value};
  }
  int size() const { return n_; }
  const ProfileArg& operator[](int i) const { return a_[i]; }

 private:
  std::array<ProfileArg, kMax> a_{};
  int n_ = 0;
};

// A recorded complete event. Times are this process's steady clock in microseconds
// (Profiler::now_us()); write_trace() aligns ranks.
struct ProfileEvent {
  std::uint32_t name = 0;  // index into the profiler's name table (Profiler::name())
  Category cat = Category::Other;
  std::int32_t track = 0;  // thread or virtual track id
  double begin_us = 0, end_us = 0;
  ProfileArgs args;
};

// Interval arithmetic behind the summary (exposed so it can be tested on hand-made intervals).
struct Interval {
  double begin, end;
};
// Length of the union (nested or overlapping intervals count once).
double union_length(std::vector<Interval> v);
// Length of union(a) ∩ union(b).
double intersection_length(std::vector<Interval> a, std::vector<Interval> b);
// Fraction of union(comm) covered by union(compute); 0 when there is no communication.
double hidden_fraction(const std::vector<Interval>& comm, const std::vector<Interval>& compute);

// One rank's numbers for the traced window, in seconds.
struct RankProfile {
  std::array<double, kNumCategories> category_s{};  // union of that category's events, all tracks
  double comm_s = 0;       // = category_s[Communication]
  double hidden_s = 0;     // part of comm_s during which a Compute event was running
  double data_wait_s = 0;  // Data events on the main track (the step waited for its batch)
  double window_s = 0;     // first event begin to last event end
  std::int64_t events = 0;
  MemStats memory;  // host_pool().stats() when summarised (process peaks, not window peaks)
};

// All ranks' numbers (every rank gets the same Summary from summarize()).
struct ProfileSummary {
  int ranks = 0;
  std::int64_t steps = 0;                  // steps traced
  std::vector<RankProfile> per_rank;       // [rank]
  std::array<double, kNumCategories> mean_s{}, max_s{};
  std::array<int, kNumCategories> max_rank{};
  double comm_s_mean = 0, hidden_s_mean = 0;
  double hidden_pct = 0;                   // 100 * sum(hidden) / sum(comm) over ranks
  double hidden_pct_min = 0;               // the worst rank
  double data_wait_s_mean = 0, data_wait_s_max = 0;
  int data_wait_max_rank = 0;
  double window_s_max = 0;
};

class Profiler {
 public:
  Profiler();
  ~Profiler();
  Profiler(const Profiler&) = delete;
  Profiler& operator=(const Profiler&) = delete;

  // Local, not collective. The window is steps [start_step, start_step + num_steps). The calling
  // thread becomes track 0, "main". reserve_events: storage reserved when the window opens.
  void configure(bool enabled, std::int64_t start_step, std::int64_t num_steps,
                 std::size_t reserve_events = 1 << 16);
  // Call with the number of the step about to run; opens/closes the window. configure() and
  // set_step() belong to the training loop's thread; recording may happen on any thread.
  void set_step(std::int64_t step);
  bool active() const { return active_.load(std::memory_order_relaxed); }
  bool enabled() const { return enabled_; }
  // The window's last step is behind us (set_step was called with a step past it).
  bool window_done() const { return enabled_ && step_ >= start_ + num_; }
  bool trace_written() const { return written_; }

  // Steady clock, microseconds (the clock every event uses).
  static double now_us();

  // Names the calling thread's track ("loader", "comm"). A setup call: it may allocate.
  void set_thread_name(const std::string& name);
  // Id of a named virtual track, created on first use (a setup call: keep the id).
  int track(const std::string& name);

  // An event measured elsewhere, on the calling thread's track (track < 0) or on `track`.
  // Recorded only while active().
  void record(std::string_view name, Category cat, double begin_us, double end_us,
              const ProfileArgs& args = {}, int track = -1);

  // Collective. Aligns clocks, gathers every rank's events to rank 0, which writes one trace-event
  // JSON at `path`. Throws th::Error on every rank if rank 0 cannot write it.
  void write_trace(Comm& comm, const std::string& path);
  // Collective. Every rank gets all ranks' numbers.
  ProfileSummary summarize(Comm& comm) const;
  // Collective convenience for the end of the window: write_trace, summarize, print on rank 0.
  ProfileSummary finish(Comm& comm, const std::string& path);

  // This rank's numbers (no communication).
  RankProfile local_profile() const;

  // Inspection (tests, tools).
  std::size_t num_events() const;
  std::vector<ProfileEvent> events() const;
  std::string name(std::uint32_t id) const;
  std::string track_name(int track) const;
  std::int64_t steps_traced() const { return steps_traced_; }
  // Times the event storage had to grow inside the window (0 when the reservation sufficed).
  std::int64_t storage_growths() const { return growths_; }
  // Drops the events (keeps names, tracks and configuration).
  void clear();

  // Clock alignment across ranks. Auto: offsets are zero on one node (CLOCK_MONOTONIC is shared
  // by the node's processes, so measuring would only add barrier noise), measured otherwise.
  enum class ClockSync { Auto, Measure, None };
  void set_clock_sync(ClockSync mode) { clock_sync_ = mode; }
  double clock_offset_us() const { return offset_us_; }  // this rank's clock minus rank 0's

  // Annotation ranges forwarded to an external tool: on CUDA builds the NVTX ranges that Nsight
  // Systems shows next to the CUDA API and kernels (src/kernels/cuda/profiler_cuda.cpp). Called
  // on the recording thread for every ProfileScope recorded inside the window (never outside it,
  // so the disabled cost is unchanged). Install once at start-up, before any recording.
  struct RangeHooks {
    void (*push)(const Profiler& p, std::uint32_t name, Category cat) = nullptr;
    void (*pop)() = nullptr;
  };
  void set_range_hooks(const RangeHooks& hooks) { hooks_ = hooks; }
  const RangeHooks& range_hooks() const { return hooks_; }

  // Internal, used by ProfileScope: interned name id (takes the lock; allocates on first use).
  std::uint32_t intern(std::string_view name);
  void append(std::uint32_t name, Category cat, double begin_us, double end_us, const ProfileArgs& args,
              int track);

 private:
  int current_track_locked();
  void measure_clock_offset(Comm& comm);
  std::string serialize(int rank, double origin_us) const;

  std::atomic<bool> active_{false};
  bool enabled_ = false, written_ = false;
  std::int64_t start_ = 0, num_ = 0, step_ = -1, steps_traced_ = 0, growths_ = 0;
  std::size_t reserve_ = 0;
  ClockSync clock_sync_ = ClockSync::Auto;
  double offset_us_ = 0;
  RangeHooks hooks_;

  mutable std::mutex mu_;
  std::vector<ProfileEvent> events_;
  // Interned names: owned by stable heap strings, looked up by view (no allocation on a hit).
  std::vector<std::unique_ptr<std::string>> names_;
  std::unordered_map<std::string_view, std::uint32_t> name_ids_;
  // Tracks: real threads by id, virtual tracks by name; names indexed by track id.
  std::unordered_map<std::thread::id, int> thread_tracks_;
  std::vector<std::string> track_names_;
  std::vector<bool> track_virtual_;
  std::thread::id main_thread_;
};

// The process-wide profiler (one per rank), configured by the trainer from the &profile group.
Profiler& profiler();

// Times a block as a complete event on the calling thread. When the profiler is inactive the
// constructor is a load and a branch, and the destructor a branch.
class ProfileScope {
 public:
  ProfileScope(Profiler& p, std::string_view name, Category cat) {
    if (p.active()) start(p, name, cat);
  }
  ProfileScope(Profiler& p, const char* name, Category cat) {
    if (p.active()) start(p, name, cat);
  }
  ProfileScope(Profiler& p, const std::string& name, Category cat) {
    if (p.active()) start(p, name, cat);
  }
  ~ProfileScope() {
    // Recorded even if the window closed meanwhile: an event started in the window is complete.
    if (!p_) return;
    p_->append(name_, cat_, begin_us_, Profiler::now_us(), args_, -1);
    if (p_->range_hooks().pop) p_->range_hooks().pop();
  }
  ProfileScope(const ProfileScope&) = delete;
  ProfileScope& operator=(const ProfileScope&) = delete;
  // Adds an argument (key: a string literal).
  void arg(const char* key, std::int64_t value) {
    if (p_) args_.add(key, value);
  }
  bool recording() const { return p_ != nullptr; }

 private:
  void start(Profiler& p, std::string_view name, Category cat) {
    p_ = &p;
    name_ = p.intern(name);  // interned now, so a temporary name may die before the scope ends
    cat_ = cat;
    if (p.range_hooks().push) p.range_hooks().push(p, name_, cat);
    begin_us_ = Profiler::now_us();
  }
  Profiler* p_ = nullptr;
  std::uint32_t name_ = 0;
  Category cat_ = Category::Other;
  double begin_us_ = 0;
  ProfileArgs args_;
};

// An event whose end is observed later than, and elsewhere from, its start: a non-blocking
// collective launched now and seen complete by a later test() or wait(). start() at launch,
// finish() when completion is first observed (the recorded end is therefore an upper bound of the
// true completion, as tight as the polling). It goes to a virtual track, so several in flight at
// once are drawn side by side (the writer spreads partial overlaps over lanes "comm", "comm (2)").
// Inactive profiler: start() is a branch and finish() does nothing. Not thread-safe by itself:
// one owner starts and finishes it.
class AsyncProfileEvent {
 public:
  void start(Profiler& p, std::string_view name, Category cat, int track, const ProfileArgs& args = {}) {
    p_ = nullptr;
    if (!p.active()) return;
    p_ = &p;
    name_ = p.intern(name);
    cat_ = cat;
    track_ = track;
    args_ = args;
    begin_us_ = Profiler::now_us();
  }
  void finish() {
    if (!p_) return;
    p_->append(name_, cat_, begin_us_, Profiler::now_us(), args_, track_);
    p_ = nullptr;  // recorded once, however often completion is observed
  }
  bool pending() const { return p_ != nullptr; }

 private:
  Profiler* p_ = nullptr;
  std::uint32_t name_ = 0;
  Category cat_ = Category::Other;
  int track_ = -1;
  double begin_us_ = 0;
  ProfileArgs args_;
};

// Human-readable summary (several lines).
std::string format_summary(const ProfileSummary& s);
// Prints format_summary on rank 0 only (not collective).
void print_summary(Comm& comm, const ProfileSummary& s, std::FILE* out = stdout);

}  // namespace th
