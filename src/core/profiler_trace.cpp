// The trace of one rank in the Chrome/Perfetto JSON format (Profiler::serialize); the collective
// write_trace that merges every rank's is in src/parallel/profiler_collective.cpp.
#include "th/core/profiler.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>

namespace th {

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

}  // namespace th
