// The profiler's collective parts: clock alignment, the merged trace file of all ranks, the
// summary over ranks and its report. They live in the parallel layer because they talk over a Comm;
// recording and serialisation (no communication) are in src/core/profiler*.cpp.
#include "th/core/profiler.hpp"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <limits>

#include "th/core/error.hpp"
#include "th/parallel/agree.hpp"
#include "th/parallel/comm.hpp"

namespace th {

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
