// The profiler on one process: the interval arithmetic behind the summary, the step window, the
// disabled path (nothing recorded, nothing allocated), steady-state recording without allocation,
// nesting and thread tracks, and the per-rank numbers. The trace file itself (JSON, every rank,
// nesting per thread, clock alignment) is tested in tests/mpi/test_profiler_trace.cpp.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include "th/core/profiler.hpp"

// Counting replacement of the global operator new, for this test executable only: the "no
// allocation" claims are checked by counting, not assumed.
namespace {
std::atomic<bool> g_counting{false};
std::atomic<long> g_allocations{0};

struct CountAllocations {
  CountAllocations() {
    g_allocations = 0;
    g_counting = true;
  }
  ~CountAllocations() { g_counting = false; }
  long count() const { return g_allocations.load(); }
};
}  // namespace

void* operator new(std::size_t n) {
  if (g_counting.load(std::memory_order_relaxed)) g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) { return operator new(n); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }

using namespace th;

namespace {
void spin_us(double us) {
  const double t0 = Profiler::now_us();
  while (Profiler::now_us() - t0 < us) {
  }
}
}  // namespace

TEST(ProfilerIntervals, UnionAndIntersection) {
  EXPECT_DOUBLE_EQ(union_length({}), 0.0);
  EXPECT_DOUBLE_EQ(union_length({{0, 10}, {2, 4}, {8, 12}, {20, 21}}), 13.0);  // nested and overlapping count once
  EXPECT_DOUBLE_EQ(union_length({{5, 6}, {0, 1}, {1, 2}}), 3.0);               // unsorted, touching
  EXPECT_DOUBLE_EQ(intersection_length({{0, 10}}, {{5, 15}}), 5.0);
  EXPECT_DOUBLE_EQ(intersection_length({{0, 10}, {20, 30}}, {{5, 25}}), 10.0);
  EXPECT_DOUBLE_EQ(intersection_length({{0, 1}}, {{1, 2}}), 0.0);
  EXPECT_DOUBLE_EQ(intersection_length({{0, 10}, {2, 3}}, {{0, 10}, {4, 6}}), 10.0);
}

TEST(ProfilerIntervals, HiddenFraction) {
  EXPECT_DOUBLE_EQ(hidden_fraction({{5, 15}}, {{0, 10}}), 0.5);              // the brief's case: 50 %
  EXPECT_DOUBLE_EQ(hidden_fraction({{2, 4}}, {{0, 10}}), 1.0);               // fully hidden
  EXPECT_DOUBLE_EQ(hidden_fraction({{10, 20}}, {{0, 10}}), 0.0);             // fully exposed
  EXPECT_DOUBLE_EQ(hidden_fraction({}, {{0, 10}}), 0.0);                     // no communication
  // Two buckets in flight together ([5,15] and [8,12]) are 10 units of communication, not 14;
  // nested compute scopes ([0,10] > [2,9]) count once: 5 of the 10 are hidden.
  EXPECT_DOUBLE_EQ(hidden_fraction({{5, 15}, {8, 12}}, {{0, 10}, {2, 9}}), 0.5);
  // Compute in two pieces with a gap: [0,4] and [6,10] hide 4 + 4 of comm [2,12] (10 long).
  EXPECT_DOUBLE_EQ(hidden_fraction({{2, 12}}, {{0, 4}, {6, 10}}), 0.6);
}

TEST(Profiler, DisabledRecordsAndAllocatesNothing) {
  Profiler p;
  p.configure(false, 0, 100);
  const std::string name = "forward/decoder/layer_3/self_attn";  // longer than the SSO buffer
  long allocations = 0;
  bool ever_active = false;
  {
    CountAllocations count;  // no gtest macro inside: only the profiler's calls are counted
    for (int step = 0; step < 100; ++step) {
      p.set_step(step);
      ProfileScope s(p, name, Category::Compute);
      ProfileScope t(p, "optimizer", Category::Optimizer);
      s.arg("bytes", 1024);
      p.record(name, Category::Communication, 0.0, 1.0, {{"bytes", 4}, {"bucket", 1}}, 0);
      ever_active = ever_active || p.active() || s.recording();
    }
    allocations = count.count();
  }
  EXPECT_EQ(allocations, 0);
  EXPECT_FALSE(ever_active);
  EXPECT_EQ(p.num_events(), 0u);
  EXPECT_FALSE(p.window_done());

  Profiler never_configured;  // the process-wide one before the trainer configures it
  {
    CountAllocations count;
    never_configured.set_step(3);
    ProfileScope s(never_configured, name, Category::Compute);
    allocations = count.count();
  }
  EXPECT_EQ(allocations, 0);
  EXPECT_EQ(never_configured.num_events(), 0u);
}

TEST(Profiler, WindowIsRespected) {
  Profiler p;
  p.configure(true, 5, 3);  // steps 5, 6, 7
  EXPECT_FALSE(p.active());
  for (int step = 0; step < 12; ++step) {
    p.set_step(step);
    EXPECT_EQ(p.active(), step >= 5 && step < 8) << "step " << step;
    EXPECT_EQ(p.window_done(), step >= 8) << "step " << step;
    ProfileScope s(p, "step", Category::Compute);
    s.arg("step", step);
  }
  const auto ev = p.events();
  ASSERT_EQ(ev.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(ev[static_cast<std::size_t>(i)].args.size(), 1);
    EXPECT_STREQ(ev[static_cast<std::size_t>(i)].args[0].key, "step");
    EXPECT_EQ(ev[static_cast<std::size_t>(i)].args[0].value, 5 + i);
    EXPECT_EQ(p.name(ev[static_cast<std::size_t>(i)].name), "step");
  }
  EXPECT_EQ(p.steps_traced(), 3);

  // A scope that opened in the window is recorded whole even though the window closes inside it.
  Profiler q;
  q.configure(true, 0, 1);
  q.set_step(0);
  {
    ProfileScope s(q, "spans the end", Category::Other);
    q.set_step(1);
    EXPECT_FALSE(q.active());
    q.record("after the window", Category::Other, 0, 1);  // dropped: the window is closed
  }
  ASSERT_EQ(q.num_events(), 1u);
  EXPECT_EQ(q.name(q.events()[0].name), "spans the end");

  // Reconfiguring drops the previous window's events.
  q.configure(true, 2, 1);
  EXPECT_EQ(q.num_events(), 0u);
  EXPECT_FALSE(q.window_done());
}

TEST(Profiler, SteadyStateRecordingDoesNotAllocate) {
  Profiler p;
  p.configure(true, 0, 10, 4096);
  const int comm = p.track("comm");
  std::vector<std::string> layer_names;
  for (int l = 0; l < 4; ++l) layer_names.push_back("forward/decoder/layer_" + std::to_string(l));
  auto one_step = [&](int step) {
    p.set_step(step);
    ProfileScope s(p, "step", Category::Compute);
    for (const auto& n : layer_names) ProfileScope l(p, n, Category::Compute);
    const double t0 = Profiler::now_us();
    p.record("allreduce/bucket", Category::Communication, t0, t0 + 5, {{"bytes", 1 << 20}, {"bucket", 0}}, comm);
  };
  long allocations = 0;
  {
    CountAllocations count;
    one_step(0);  // the first step reserves storage and interns the names
    allocations = count.count();
  }
  EXPECT_GT(allocations, 0);  // the counter sees the profiler's allocations (a positive control)
  {
    CountAllocations count;
    for (int step = 1; step < 10; ++step) one_step(step);
    allocations = count.count();
  }
  EXPECT_EQ(allocations, 0);
  EXPECT_EQ(p.num_events(), 10u * 6u);
  EXPECT_EQ(p.storage_growths(), 0);
}

TEST(Profiler, ScopesNestOnTheirThread) {
  Profiler p;
  p.configure(true, 0, 1);
  p.set_step(0);
  {
    ProfileScope outer(p, std::string("outer"), Category::Compute);  // temporary name: interned at once
    spin_us(20);
    {
      ProfileScope inner(p, "inner", Category::Compute);
      spin_us(20);
    }
    spin_us(20);
  }
  const auto ev = p.events();
  ASSERT_EQ(ev.size(), 2u);
  const ProfileEvent& inner = ev[0];  // recorded first: it closed first
  const ProfileEvent& outer = ev[1];
  EXPECT_EQ(p.name(inner.name), "inner");
  EXPECT_EQ(p.name(outer.name), "outer");
  EXPECT_EQ(inner.track, 0);
  EXPECT_EQ(outer.track, 0);
  EXPECT_EQ(p.track_name(0), "main");
  EXPECT_LT(outer.begin_us, inner.begin_us);
  EXPECT_LT(inner.end_us, outer.end_us);
  EXPECT_GE(inner.end_us - inner.begin_us, 20.0);
}

TEST(Profiler, ThreadsGetTheirOwnTracks) {
  Profiler p;
  p.configure(true, 0, 1, 16);  // a small reservation: growing must stay correct
  p.set_step(0);
  constexpr int kThreads = 4, kEvents = 500;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&p, t] {
      p.set_thread_name("worker " + std::to_string(t));
      for (int i = 0; i < kEvents; ++i) {
        ProfileScope outer(p, "outer", Category::Data);
        ProfileScope inner(p, "inner", Category::Data);
        inner.arg("i", i);
      }
    });
  }
  for (int i = 0; i < kEvents; ++i) ProfileScope s(p, "main work", Category::Compute);
  for (auto& th : threads) th.join();

  const auto ev = p.events();
  ASSERT_EQ(ev.size(), static_cast<std::size_t>(kThreads * 2 * kEvents + kEvents));
  EXPECT_GT(p.storage_growths(), 0);
  std::vector<int> per_track(kThreads + 1, 0);
  std::vector<std::string> seen_names;
  for (const auto& e : ev) {
    ASSERT_GE(e.track, 0);
    ASSERT_LE(e.track, kThreads);
    ++per_track[static_cast<std::size_t>(e.track)];
  }
  EXPECT_EQ(per_track[0], kEvents);  // the configuring thread is track 0
  for (int t = 1; t <= kThreads; ++t) {
    EXPECT_EQ(per_track[static_cast<std::size_t>(t)], 2 * kEvents);
    seen_names.push_back(p.track_name(t));
  }
  std::sort(seen_names.begin(), seen_names.end());
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(seen_names[static_cast<std::size_t>(t)], "worker " + std::to_string(t));
}

TEST(Profiler, VirtualTracksAndArgs) {
  Profiler p;
  p.configure(true, 0, 1);
  const int comm = p.track("comm");
  EXPECT_EQ(p.track("comm"), comm);  // same name, same track
  EXPECT_NE(p.track("h2d"), comm);
  EXPECT_EQ(p.track_name(comm), "comm");
  p.set_step(0);
  p.record("allreduce/bucket", Category::Communication, 100, 200, {{"bytes", 4096}, {"bucket", 3}}, comm);
  ProfileArgs many;
  for (int i = 0; i < ProfileArgs::kMax + 3; ++i) many.add("k", i);  // extra args dropped, not grown
  EXPECT_EQ(many.size(), ProfileArgs::kMax);
  p.record("x", Category::Other, 300, 250, many);  // end before begin: clamped to zero length
  const auto ev = p.events();
  ASSERT_EQ(ev.size(), 2u);
  EXPECT_EQ(ev[0].track, comm);
  EXPECT_EQ(ev[0].cat, Category::Communication);
  ASSERT_EQ(ev[0].args.size(), 2);
  EXPECT_STREQ(ev[0].args[0].key, "bytes");
  EXPECT_EQ(ev[0].args[0].value, 4096);
  EXPECT_EQ(ev[0].args[1].value, 3);
  EXPECT_EQ(ev[1].track, 0);
  EXPECT_DOUBLE_EQ(ev[1].end_us, ev[1].begin_us);
}

TEST(Profiler, LocalProfileOnHandMadeEvents) {
  Profiler p;
  p.configure(true, 0, 1);
  const int loader = p.track("loader");
  p.set_step(0);
  const double ms = 1000.0;  // events are in microseconds
  p.record("forward", Category::Compute, 0, 10 * ms);
  p.record("forward/layer_0", Category::Compute, 2 * ms, 4 * ms);      // nested: counts once
  p.record("allreduce/bucket", Category::Communication, 5 * ms, 15 * ms, {}, p.track("comm"));
  p.record("optimizer", Category::Optimizer, 15 * ms, 16 * ms);
  p.record("data wait", Category::Data, 16 * ms, 18 * ms);              // main track: waiting
  p.record("prefetch", Category::Data, 10 * ms, 20 * ms, {}, loader);   // elsewhere: not a wait
  const RankProfile r = p.local_profile();
  const auto at = [&](Category c) { return r.category_s[static_cast<std::size_t>(c)]; };
  EXPECT_NEAR(at(Category::Compute), 0.010, 1e-12);
  EXPECT_NEAR(at(Category::Communication), 0.010, 1e-12);
  EXPECT_NEAR(at(Category::Optimizer), 0.001, 1e-12);
  EXPECT_NEAR(at(Category::Data), 0.010, 1e-12);  // union of [16,18] and [10,20]
  EXPECT_NEAR(r.comm_s, 0.010, 1e-12);
  EXPECT_NEAR(r.hidden_s, 0.005, 1e-12);  // compute [0,10] over comm [5,15]: 50 %
  EXPECT_NEAR(r.data_wait_s, 0.002, 1e-12);
  EXPECT_NEAR(r.window_s, 0.020, 1e-12);
  EXPECT_EQ(r.events, 6);
}

TEST(Profiler, FormatSummary) {
  ProfileSummary s;
  s.ranks = 2;
  s.steps = 5;
  s.per_rank.resize(2);
  s.per_rank[1].memory.peak[static_cast<std::size_t>(MemCategory::Activations)] = 3 << 20;
  s.per_rank[1].memory.peak_total = 3 << 20;
  s.mean_s[static_cast<std::size_t>(Category::Compute)] = 1.5;
  s.max_s[static_cast<std::size_t>(Category::Compute)] = 2.0;
  s.max_rank[static_cast<std::size_t>(Category::Compute)] = 1;
  s.comm_s_mean = 1.0;
  s.hidden_s_mean = 0.5;
  s.hidden_pct = 50.0;
  s.hidden_pct_min = 40.0;
  const std::string text = format_summary(s);
  EXPECT_NE(text.find("5 steps traced on 2 ranks,"), std::string::npos) << text;
  EXPECT_NE(text.find("compute"), std::string::npos) << text;
  EXPECT_NE(text.find("50.0%"), std::string::npos) << text;
  EXPECT_NE(text.find("activations"), std::string::npos) << text;
  EXPECT_NE(text.find("3.0"), std::string::npos) << text;  // 3 MiB on rank 1
}

TEST(Profiler, ProcessWideInstance) {
  EXPECT_EQ(&profiler(), &profiler());
  EXPECT_FALSE(profiler().active());  // off until the trainer configures it
}

TEST(Profiler, AsyncEventsRecordOnceWhenCompletionIsObserved) {
  Profiler p;
  p.configure(true, 1, 1);
  const int comm = p.track("comm");
  AsyncProfileEvent before;
  p.set_step(0);  // outside the window: nothing starts
  before.start(p, "allreduce/bucket", Category::Communication, comm, {{"bucket", 9}});
  EXPECT_FALSE(before.pending());
  before.finish();

  p.set_step(1);
  std::vector<AsyncProfileEvent> inflight(3);  // one per bucket, sized before the step
  for (int b = 0; b < 3; ++b)
    inflight[static_cast<std::size_t>(b)].start(p, "allreduce/bucket", Category::Communication, comm,
                                                {{"bytes", 4 << 20}, {"bucket", b}});
  spin_us(10);
  inflight[1].finish();  // test() saw bucket 1 complete first
  spin_us(10);
  for (auto& e : inflight) e.finish();  // wait() on all: bucket 1 is not recorded twice
  for (auto& e : inflight) EXPECT_FALSE(e.pending());
  const auto ev = p.events();
  ASSERT_EQ(ev.size(), 3u);
  EXPECT_EQ(ev[0].args[1].value, 1);
  EXPECT_EQ(ev[1].args[1].value, 0);
  EXPECT_EQ(ev[2].args[1].value, 2);
  for (const auto& e : ev) {
    EXPECT_EQ(e.track, comm);
    EXPECT_EQ(p.name(e.name), "allreduce/bucket");
  }
  EXPECT_LT(ev[0].end_us, ev[1].end_us);
}

// Not a pass/fail benchmark (the machine is shared): prints the cost per scope, off and on, for
// docs/profiling.md, and only fails on a gross regression of the disabled path.
TEST(Profiler, CostPerScope) {
  const std::string name = "forward/decoder/layer_3/self_attn";
  auto per_scope_ns = [&](Profiler& p, int n) {
    const double t0 = Profiler::now_us();
    for (int i = 0; i < n; ++i) {
      ProfileScope s(p, name, Category::Compute);
      s.arg("i", i);
    }
    return (Profiler::now_us() - t0) * 1000.0 / n;
  };
  Profiler off;
  off.configure(false, 0, 1);
  off.set_step(0);
  Profiler on;
  on.configure(true, 0, 1, 200000);
  on.set_step(0);
  const double off_ns = per_scope_ns(off, 10000000);
  const double on_ns = per_scope_ns(on, 100000);
  std::printf("profiler cost per scope: %.2f ns disabled, %.1f ns recording\n", off_ns, on_ns);
  EXPECT_EQ(off.num_events(), 0u);
  EXPECT_EQ(on.num_events(), 100000u);
  EXPECT_LT(off_ns, 100.0);
}
