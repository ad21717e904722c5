// The profiler's trace and summary at 1, 2 and 4 ranks: rank 0 writes one valid trace-event JSON
// (checked by a strict parser here, and by tools/trace_check.py when Python is present) with
// events and names from every rank, properly nested per (pid, tid) even where non-blocking
// collectives overlap on the comm track; clocks aligned to a common origin; the summary's numbers
// over ranks; a failed write stops every rank.
#include <gtest/gtest.h>
#include <mpi.h>

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "th/parallel/mpi_comm.hpp"
#include "th/core/error.hpp"
#include "th/core/memory.hpp"
#include "th/core/profiler.hpp"

using namespace th;

namespace {

MpiComm& world() {
  static MpiComm comm(MPI_COMM_WORLD);
  return comm;
}

// ---- A strict JSON reader (RFC 8259 grammar; numbers as double) -----------------------------
struct Json {
  enum Type { Null, Bool, Number, String, Array, Object } type = Null;
  bool b = false;
  double num = 0;
  std::string str;
  std::vector<Json> arr;
  std::vector<std::pair<std::string, Json>> obj;

  const Json* get(const std::string& key) const {
    for (const auto& kv : obj)
      if (kv.first == key) return &kv.second;
    return nullptr;
  }
};

class JsonReader {
 public:
  explicit JsonReader(const std::string& s) : s_(s) {}
  // Throws std::runtime_error with the offset on any deviation from the grammar.
  Json parse_document() {
    Json v = value();
    ws();
    if (i_ != s_.size()) fail("trailing characters");
    return v;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw std::runtime_error("JSON error at offset " + std::to_string(i_) + ": " + what);
  }
  void ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r')) ++i_;
  }
  char peek() const { return i_ < s_.size() ? s_[i_] : '\0'; }
  void expect(char c) {
    if (peek() != c) fail(std::string("expected '") + c + "'");
    ++i_;
  }
  void literal(const char* w) {
    for (const char* p = w; *p; ++p) expect(*p);
  }
  Json value() {
    ws();
    Json v;
    const char c = peek();
    if (c == '{') {
      v.type = Json::Object;
      ++i_;
      ws();
      if (peek() == '}') {
        ++i_;
        return v;
      }
      for (;;) {
        ws();
        std::string k = string();
        ws();
        expect(':');
        v.obj.emplace_back(std::move(k), value());
        ws();
        if (peek() == ',') {
          ++i_;
          continue;
        }
        expect('}');
        return v;
      }
    }
    if (c == '[') {
      v.type = Json::Array;
      ++i_;
      ws();
      if (peek() == ']') {
        ++i_;
        return v;
      }
      for (;;) {
        v.arr.push_back(value());
        ws();
        if (peek() == ',') {
          ++i_;
          continue;
        }
        expect(']');
        return v;
      }
    }
    if (c == '"') {
      v.type = Json::String;
      v.str = string();
      return v;
    }
    if (c == 't') {
      literal("true");
      v.type = Json::Bool;
      v.b = true;
      return v;
    }
    if (c == 'f') {
      literal("false");
      v.type = Json::Bool;
      return v;
    }
    if (c == 'n') {
      literal("null");
      return v;
    }
    v.type = Json::Number;
    v.num = number();
    return v;
  }
  std::string string() {
    expect('"');
    std::string out;
    for (;;) {
      if (i_ >= s_.size()) fail("unterminated string");
      const auto c = static_cast<unsigned char>(s_[i_++]);
      if (c == '"') return out;
      if (c < 0x20) fail("control character in string");
      if (c != '\\') {
        out += static_cast<char>(c);
        continue;
      }
      const char e = peek();
      ++i_;
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          if (i_ + 4 > s_.size()) fail("short \\u escape");
          unsigned cp = 0;
          for (int k = 0; k < 4; ++k) {
            const char h = s_[i_++];
            cp <<= 4;
            if (h >= '0' && h <= '9') cp |= static_cast<unsigned>(h - '0');
            else if (h >= 'a' && h <= 'f') cp |= static_cast<unsigned>(h - 'a' + 10);
            else if (h >= 'A' && h <= 'F') cp |= static_cast<unsigned>(h - 'A' + 10);
            else fail("bad hex digit");
          }
          if (cp < 0x80) out += static_cast<char>(cp);  // the profiler only escapes control characters
          else out += '?';
          break;
        }
        default: fail("bad escape");
      }
    }
  }
  double number() {
    const std::size_t start = i_;
    if (peek() == '-') ++i_;
    if (peek() == '0') ++i_;
    else if (peek() >= '1' && peek() <= '9') while (std::isdigit(static_cast<unsigned char>(peek()))) ++i_;
    else fail("bad value");
    if (peek() == '.') {
      ++i_;
      if (!std::isdigit(static_cast<unsigned char>(peek()))) fail("digit expected after '.'");
      while (std::isdigit(static_cast<unsigned char>(peek()))) ++i_;
    }
    if (peek() == 'e' || peek() == 'E') {
      ++i_;
      if (peek() == '+' || peek() == '-') ++i_;
      if (!std::isdigit(static_cast<unsigned char>(peek()))) fail("digit expected in exponent");
      while (std::isdigit(static_cast<unsigned char>(peek()))) ++i_;
    }
    return std::strtod(s_.substr(start, i_ - start).c_str(), nullptr);
  }
  const std::string& s_;
  std::size_t i_ = 0;
};

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// A scratch directory made by rank 0 and shared with every rank.
std::string shared_tmpdir() {
  std::string dir;
  if (world().rank() == 0) {
    char tmpl[] = "/tmp/th_profiler_XXXXXX";
    if (char* d = mkdtemp(tmpl)) dir = d;
  }
  world().broadcast_string(dir, 0);
  return dir;
}

void spin_us(double us) {
  const double t0 = Profiler::now_us();
  while (Profiler::now_us() - t0 < us) {
  }
}

struct XEvent {
  std::string name, cat;
  double ts, dur;
  int pid, tid;
  std::map<std::string, double> args;
};

// Checks the document's shape; returns the complete events and fills the metadata names.
std::vector<XEvent> check_trace_shape(const Json& doc, std::map<int, std::string>& process_names,
                                      std::map<std::pair<int, int>, std::string>& thread_names) {
  std::vector<XEvent> out;
  EXPECT_EQ(doc.type, Json::Object);
  const Json* unit = doc.get("displayTimeUnit");
  EXPECT_TRUE(unit && unit->type == Json::String && unit->str == "ms");
  const Json* events = doc.get("traceEvents");
  if (!events || events->type != Json::Array) {
    ADD_FAILURE() << "no traceEvents array";
    return out;
  }
  for (const Json& e : events->arr) {
    EXPECT_EQ(e.type, Json::Object);
    const Json *ph = e.get("ph"), *name = e.get("name"), *pid = e.get("pid"), *tid = e.get("tid");
    if (!(ph && name && pid && tid && ph->type == Json::String && name->type == Json::String &&
          pid->type == Json::Number && tid->type == Json::Number)) {
      ADD_FAILURE() << "event without ph/name/pid/tid";
      continue;
    }
    const int p = static_cast<int>(pid->num), t = static_cast<int>(tid->num);
    if (ph->str == "M") {
      const Json* args = e.get("args");
      const Json* value = args ? args->get("name") : nullptr;
      if (name->str == "process_name" && value) process_names[p] = value->str;
      if (name->str == "thread_name" && value) thread_names[{p, t}] = value->str;
      continue;
    }
    EXPECT_EQ(ph->str, "X");
    const Json *ts = e.get("ts"), *dur = e.get("dur"), *cat = e.get("cat");
    if (!(ts && dur && cat && ts->type == Json::Number && dur->type == Json::Number && cat->type == Json::String)) {
      ADD_FAILURE() << "complete event without ts/dur/cat: " << name->str;
      continue;
    }
    XEvent x{name->str, cat->str, ts->num, dur->num, p, t, {}};
    if (const Json* args = e.get("args"))
      for (const auto& kv : args->obj) x.args[kv.first] = kv.second.num;
    EXPECT_GE(x.ts, 0.0);
    EXPECT_GE(x.dur, 0.0);
    out.push_back(std::move(x));
  }
  return out;
}

// Every (pid, tid) holds a call tree: sorted by begin (longer first), each event either starts
// after the innermost open one ends or lies inside it.
void expect_nested_per_thread(std::vector<XEvent> ev) {
  constexpr double eps = 1e-6;  // µs; the file holds ns exactly, parsing adds float error
  std::sort(ev.begin(), ev.end(), [](const XEvent& a, const XEvent& b) {
    if (a.pid != b.pid) return a.pid < b.pid;
    if (a.tid != b.tid) return a.tid < b.tid;
    if (a.ts != b.ts) return a.ts < b.ts;
    return a.dur > b.dur;
  });
  std::vector<const XEvent*> open;
  for (std::size_t i = 0; i < ev.size(); ++i) {
    if (i == 0 || ev[i].pid != ev[i - 1].pid || ev[i].tid != ev[i - 1].tid) open.clear();
    const XEvent& e = ev[i];
    while (!open.empty() && open.back()->ts + open.back()->dur <= e.ts + eps) open.pop_back();
    if (!open.empty()) {
      const XEvent& parent = *open.back();
      EXPECT_LE(e.ts + e.dur, parent.ts + parent.dur + eps)
          << "pid " << e.pid << " tid " << e.tid << ": '" << e.name << "' [" << e.ts << ", " << e.ts + e.dur
          << "] overlaps '" << parent.name << "' [" << parent.ts << ", " << parent.ts + parent.dur << "]";
    }
    open.push_back(&e);
  }
}

bool have_python() { return std::system("/usr/bin/python3 -c 'import json' >/dev/null 2>&1") == 0; }

}  // namespace

TEST(ProfilerTrace, OneValidTraceWithEveryRankNestedPerThread) {
  Comm& c = world();
  const int rank = c.rank(), n = c.size();
  const std::string dir = shared_tmpdir();
  ASSERT_FALSE(dir.empty());
  const std::string path = dir + "/trace.json";

  Profiler p;
  p.configure(true, 2, 2);  // steps 2 and 3 of 0..5
  const int comm_track = p.track("comm");
  const std::string odd = "odd \"name\" \\ with\ttab";  // must come out escaped
  std::vector<std::string> layers;
  for (int l = 0; l < 3; ++l) layers.push_back("forward/decoder/layer_" + std::to_string(l));

  for (int step = 0; step < 6; ++step) {
    p.set_step(step);
    // A background loader thread records Data events while the main thread computes.
    std::thread loader([&p] {
      p.set_thread_name("loader");
      ProfileScope s(p, "collate", Category::Data);
      spin_us(150);
    });
    {
      ProfileScope s(p, "step", Category::Compute);
      s.arg("step", step);
      {
        ProfileScope w(p, "data wait", Category::Data);
        spin_us(50);
      }
      {
        ProfileScope f(p, "forward", Category::Compute);
        for (const auto& name : layers) {
          ProfileScope l(p, name, Category::Compute);
          spin_us(100);
        }
      }
      // Three buckets in flight at once, as with overlapped gradient all-reduce: their intervals
      // overlap partially, so the writer must spread them over lanes of the comm track.
      const double t0 = Profiler::now_us();
      {
        ProfileScope b(p, "backward", Category::Compute);
        spin_us(300);
      }
      const double t1 = Profiler::now_us();
      p.record("allreduce/bucket", Category::Communication, t0, t0 + 200, {{"bytes", 4096}, {"bucket", 0}}, comm_track);
      p.record("allreduce/bucket", Category::Communication, t0 + 100, t1 + 50, {{"bytes", 4096}, {"bucket", 1}}, comm_track);
      p.record("allreduce/bucket", Category::Communication, t0 + 150, t0 + 250, {{"bytes", 2048}, {"bucket", 2}}, comm_track);
      ProfileScope o(p, odd, Category::Optimizer);
      spin_us(20);
    }
    loader.join();
  }
  EXPECT_TRUE(p.window_done());
  const std::int64_t mine = static_cast<std::int64_t>(p.num_events());
  EXPECT_EQ(mine, 2 * (1 + 1 + 1 + 1 + 3 + 1 + 3 + 1));  // per step: loader, step, wait, fwd, layers, bwd, comm, opt
  std::vector<std::int64_t> counts(static_cast<std::size_t>(n), 0);
  counts[static_cast<std::size_t>(rank)] = mine;
  c.allreduce(counts.data(), counts.size(), ReduceOp::Sum);

  p.write_trace(c, path);
  EXPECT_TRUE(p.trace_written());

  if (rank == 0) {
    const std::string text = read_file(path);
    ASSERT_FALSE(text.empty());
    Json doc;
    ASSERT_NO_THROW(doc = JsonReader(text).parse_document());
    std::map<int, std::string> procs;
    std::map<std::pair<int, int>, std::string> threads;
    const std::vector<XEvent> ev = check_trace_shape(doc, procs, threads);

    std::vector<std::int64_t> seen(static_cast<std::size_t>(n), 0);
    double min_ts = 1e300;
    std::set<double> steps_seen;
    int buckets = 0;
    for (const XEvent& e : ev) {
      ASSERT_GE(e.pid, 0);
      ASSERT_LT(e.pid, n);
      ++seen[static_cast<std::size_t>(e.pid)];
      min_ts = std::min(min_ts, e.ts);
      EXPECT_TRUE(threads.count({e.pid, e.tid})) << "unnamed track " << e.tid << " of rank " << e.pid;
      if (e.name == "step") steps_seen.insert(e.args.at("step"));
      if (e.name == "allreduce/bucket") {
        ++buckets;
        EXPECT_EQ(e.cat, "communication");
        EXPECT_TRUE(e.args.count("bytes") && e.args.count("bucket"));
        EXPECT_NE(threads[std::make_pair(e.pid, e.tid)].find("comm"), std::string::npos);
      }
      if (e.cat == "optimizer") {
        EXPECT_EQ(e.name, odd);
      }
    }
    for (int r = 0; r < n; ++r) {
      EXPECT_EQ(seen[static_cast<std::size_t>(r)], counts[static_cast<std::size_t>(r)]) << "rank " << r;
      EXPECT_EQ(procs[r], "rank " + std::to_string(r));
      EXPECT_EQ(threads[std::make_pair(r, 0)], "main");
      bool loader = false;
      for (const auto& kv : threads) loader = loader || (kv.first.first == r && kv.second == "loader");
      EXPECT_TRUE(loader) << "rank " << r;
    }
    EXPECT_EQ(steps_seen, (std::set<double>{2, 3}));  // the window, nothing else
    EXPECT_EQ(buckets, 3 * 2 * n);
    EXPECT_NEAR(min_ts, 0.0, 1e-9);  // the common origin is the first event of any rank
    expect_nested_per_thread(ev);

    if (have_python()) {
      const std::string cmd = "/usr/bin/python3 " TH_TEST_DIR "/../tools/trace_check.py --quiet --ranks " +
                              std::to_string(n) + " " + path;
      EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
    }
    if (std::getenv("TH_KEEP_TRACE")) {  // for a look in Perfetto
      std::printf("trace kept: %s\n", path.c_str());
    } else {
      std::remove(path.c_str());
      rmdir(dir.c_str());
    }
  }
}

TEST(ProfilerTrace, ClocksAreAlignedToRankZero) {
  Comm& c = world();
  const std::string dir = shared_tmpdir();
  ASSERT_FALSE(dir.empty());
  for (const auto mode : {Profiler::ClockSync::Auto, Profiler::ClockSync::Measure}) {
    Profiler p;
    p.configure(true, 0, 1);
    p.set_clock_sync(mode);
    p.set_step(0);
    // Every rank marks the moment it leaves the same barrier; the rank-specific delay before it
    // makes the ranks' first events differ, so the origin really is the earliest of all ranks.
    spin_us(200.0 * c.rank());
    p.record("before", Category::Other, Profiler::now_us() - 10, Profiler::now_us());
    c.barrier();
    const double t = Profiler::now_us();
    p.record("sync", Category::Other, t, t + 1);
    const std::string path = dir + "/clock.json";
    p.write_trace(c, path);
    // One node: Auto uses the shared monotonic clock (offset exactly 0); Measure must find ~0.
    if (mode == Profiler::ClockSync::Auto && c.num_nodes() == 1) {
      EXPECT_EQ(p.clock_offset_us(), 0.0);
    }
    EXPECT_LT(std::fabs(p.clock_offset_us()), 100000.0) << "offset of rank " << c.rank();
    if (c.rank() == 0) {
      Json doc;
      ASSERT_NO_THROW(doc = JsonReader(read_file(path)).parse_document());
      std::map<int, std::string> procs;
      std::map<std::pair<int, int>, std::string> threads;
      double lo = 1e300, hi = -1e300, first = 1e300;
      int syncs = 0;
      for (const XEvent& e : check_trace_shape(doc, procs, threads)) {
        first = std::min(first, e.ts);
        if (e.name != "sync") continue;
        ++syncs;
        lo = std::min(lo, e.ts);
        hi = std::max(hi, e.ts);
      }
      EXPECT_EQ(syncs, c.size());
      EXPECT_NEAR(first, 0.0, 1e-9);
      // Barrier exit skew on an oversubscribed node can reach milliseconds; misaligned clocks
      // (or per-rank origins) would be off by the spin delays or far more.
      EXPECT_LT(hi - lo, 50000.0) << "sync events spread over " << hi - lo << " us";
      std::remove(path.c_str());
    }
  }
  if (c.rank() == 0) rmdir(dir.c_str());
}

TEST(ProfilerTrace, SummaryOverRanks) {
  Comm& c = world();
  const int rank = c.rank(), n = c.size();
  // Memory: rank r holds (r+1) MiB of workspace at some point, so its peak is at least that.
  void* block = host_pool().allocate(static_cast<std::size_t>(rank + 1) << 20, MemCategory::Workspace);
  host_pool().release(block);

  Profiler p;
  p.configure(true, 0, 1);
  const int comm_track = p.track("comm"), loader = p.track("loader");
  p.set_step(0);
  const double ms = 1000.0, base = Profiler::now_us();
  p.record("forward", Category::Compute, base, base + 10 * ms);
  p.record("forward/layer_0", Category::Compute, base + 1 * ms, base + 2 * ms);
  p.record("allreduce/bucket", Category::Communication, base + 5 * ms, base + 15 * ms, {}, comm_track);
  p.record("optimizer", Category::Optimizer, base + 15 * ms, base + (16 + rank) * ms);
  p.record("data wait", Category::Data, base + 20 * ms, base + 22 * ms);
  p.record("prefetch", Category::Data, base + 20 * ms, base + 25 * ms, {}, loader);

  const ProfileSummary s = p.summarize(c);
  ASSERT_EQ(s.ranks, n);
  ASSERT_EQ(static_cast<int>(s.per_rank.size()), n);
  EXPECT_EQ(s.steps, 1);
  const auto at = [](const std::array<double, kNumCategories>& a, Category cat) {
    return a[static_cast<std::size_t>(cat)];
  };
  EXPECT_NEAR(at(s.mean_s, Category::Compute), 0.010, 1e-9);
  EXPECT_NEAR(at(s.mean_s, Category::Optimizer), 0.001 * (n + 1) / 2.0, 1e-9);  // (1 + ... + n) ms / n
  EXPECT_NEAR(at(s.max_s, Category::Optimizer), 0.001 * n, 1e-9);
  EXPECT_EQ(s.max_rank[static_cast<std::size_t>(Category::Optimizer)], n - 1);
  EXPECT_NEAR(s.hidden_pct, 50.0, 1e-6);  // compute [0,10] over comm [5,15] on every rank
  EXPECT_NEAR(s.hidden_pct_min, 50.0, 1e-6);
  EXPECT_NEAR(s.comm_s_mean, 0.010, 1e-9);
  EXPECT_NEAR(s.data_wait_s_mean, 0.002, 1e-9);  // only the main track's Data events are waits
  EXPECT_NEAR(s.data_wait_s_max, 0.002, 1e-9);
  for (int r = 0; r < n; ++r) {
    const RankProfile& rp = s.per_rank[static_cast<std::size_t>(r)];
    EXPECT_EQ(rp.events, 6);
    EXPECT_GE(rp.memory.peak[static_cast<std::size_t>(MemCategory::Workspace)], static_cast<std::int64_t>(r + 1) << 20);
  }
  // This rank's row is exactly what its own pool reports.
  EXPECT_EQ(s.per_rank[static_cast<std::size_t>(rank)].memory.peak, host_pool().stats().peak);
  EXPECT_EQ(s.per_rank[static_cast<std::size_t>(rank)].memory.peak_total, host_pool().stats().peak_total);

  const std::string text = format_summary(s);
  EXPECT_NE(text.find("50.0%"), std::string::npos) << text;
  print_summary(c, s);  // rank 0 prints, the others do nothing (not collective)
}

TEST(ProfilerTrace, DisabledWritesAnEmptyValidTrace) {
  Comm& c = world();
  const std::string dir = shared_tmpdir();
  ASSERT_FALSE(dir.empty());
  Profiler p;
  p.configure(false, 0, 5);
  for (int step = 0; step < 5; ++step) {
    p.set_step(step);
    ProfileScope s(p, "step", Category::Compute);
  }
  EXPECT_EQ(p.num_events(), 0u);
  const std::string path = dir + "/empty.json";
  p.write_trace(c, path);
  if (c.rank() == 0) {
    Json doc;
    ASSERT_NO_THROW(doc = JsonReader(read_file(path)).parse_document());
    std::map<int, std::string> procs;
    std::map<std::pair<int, int>, std::string> threads;
    EXPECT_TRUE(check_trace_shape(doc, procs, threads).empty());
    EXPECT_EQ(static_cast<int>(procs.size()), c.size());
    std::remove(path.c_str());
    rmdir(dir.c_str());
  }
}

TEST(ProfilerTrace, UnwritablePathStopsEveryRank) {
  Comm& c = world();
  Profiler p;
  p.configure(true, 0, 1);
  p.set_step(0);
  p.record("x", Category::Other, 0, 1);
  // Every rank throws (rank 0 found the problem, the others learn it): no rank is left waiting.
  EXPECT_THROW(p.write_trace(c, "/nonexistent-dir/for/sure/trace.json"), Error);
  EXPECT_FALSE(p.trace_written());
  EXPECT_TRUE(c.all_true(true));  // still in step: the next collective matches on every rank
}

TEST(ProfilerTrace, FinishWritesAndSummarises) {
  Comm& c = world();
  const std::string dir = shared_tmpdir();
  ASSERT_FALSE(dir.empty());
  Profiler p;
  p.configure(true, 1, 1);
  for (int step = 0; step < 3; ++step) {
    p.set_step(step);
    ProfileScope s(p, "step", Category::Compute);
    spin_us(50);
    if (p.window_done() && !p.trace_written()) {
      const ProfileSummary sum = p.finish(c, dir + "/trace.json");
      EXPECT_EQ(sum.steps, 1);
      EXPECT_EQ(sum.ranks, c.size());
    }
  }
  EXPECT_TRUE(p.trace_written());
  if (c.rank() == 0) {
    EXPECT_NO_THROW(JsonReader(read_file(dir + "/trace.json")).parse_document());
    std::remove((dir + "/trace.json").c_str());
    rmdir(dir.c_str());
  }
}
