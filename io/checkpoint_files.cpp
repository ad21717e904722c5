// The checkpoint folder's files: names, the list of checkpoints, `latest`, and the durable commit
// of a verified file with the pruning of old ones (rank 0 only).
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <set>

#include "th/io/checkpoint.hpp"
#include "checkpoint_dir.hpp"

namespace th {

std::string checkpoint_file_name(std::int64_t step) {
  char b[64];
  std::snprintf(b, sizeof b, "ckpt_%08" PRId64 ".h5", step);
  return b;
}

}  // namespace th

namespace th::ckpt {

namespace fs = std::filesystem;

// ckpt_<8 or more digits>.h5 (tmp = false) or the same with .tmp (tmp = true).
bool parse_name(const std::string& name, std::int64_t* step, bool* tmp) {
  const std::string pre = "ckpt_";
  if (name.compare(0, pre.size(), pre) != 0) return false;
  std::size_t i = pre.size();
  while (i < name.size() && name[i] >= '0' && name[i] <= '9') ++i;
  const std::size_t digits = i - pre.size();
  if (digits < 8 || digits > 18) return false;
  const std::string rest = name.substr(i);
  if (rest != ".h5" && rest != ".h5.tmp") return false;
  if (step) *step = std::stoll(name.substr(pre.size(), digits));
  if (tmp) *tmp = rest != ".h5";
  return true;
}

// Checkpoint files (not .tmp) of dir, newest step first.
std::vector<std::pair<std::int64_t, std::string>> list_checkpoints(const std::string& dir) {
  std::vector<std::pair<std::int64_t, std::string>> out;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), e; !ec && it != e; it.increment(ec)) {
    std::int64_t step = 0;
    bool tmp = false;
    const std::string name = it->path().filename().string();
    if (parse_name(name, &step, &tmp) && !tmp) out.emplace_back(step, name);
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a > b; });
  return out;
}

// fsync a file or a directory (the rename of an entry is durable once its directory is synced).
std::string sync_path(const std::string& p, bool directory) {
  const int fd = ::open(p.c_str(), O_RDONLY | (directory ? O_DIRECTORY : 0));
  if (fd < 0) return p + ": cannot open to sync: " + std::strerror(errno);
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  // Some file systems cannot sync a directory (EINVAL): the rename is then as durable as they allow.
  if (rc != 0 && !(directory && err == EINVAL)) return p + ": fsync failed: " + std::strerror(err);
  return "";
}

std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char b[32];
  std::strftime(b, sizeof b, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return b;
}

void warn(const std::string& msg) { std::cerr << "[checkpoint] warning: " << msg << std::endl; }

std::string read_latest(const std::string& dir) {
  std::ifstream in(dir + "/latest");
  std::string name;
  if (in) std::getline(in, name);
  while (!name.empty() && (name.back() == '\r' || name.back() == ' ' || name.back() == '\t')) name.pop_back();
  return name;
}

// Rename, then point `latest` at it (temp + rename: a reader sees the old or the new name, never
// a partial one), then prune. Returns a problem or "".
std::string commit(const std::string& dir, const std::string& tmp, const std::string& name, int keep_last) {
  std::error_code ec;
  fs::rename(tmp, dir + "/" + name, ec);
  if (ec) return "cannot rename " + tmp + " to " + name + ": " + ec.message();
  std::string p = sync_path(dir, true);
  if (!p.empty()) return p;
  const std::string latest_tmp = dir + "/latest.tmp";
  {
    std::ofstream out(latest_tmp, std::ios::trunc);
    out << name << "\n";
    out.close();
    if (!out) return latest_tmp + ": cannot write";
  }
  if (!(p = sync_path(latest_tmp, false)).empty()) return p;
  fs::rename(latest_tmp, dir + "/latest", ec);
  if (ec) return "cannot rename " + latest_tmp + " to latest: " + ec.message();
  if (!(p = sync_path(dir, true)).empty()) return p;

  // Pruning: the checkpoint is committed, so a failure here is only a warning.
  std::set<std::string> keep = {name};
  const auto files = list_checkpoints(dir);
  if (keep_last > 0)
    for (std::size_t i = 0; i < files.size() && i < static_cast<std::size_t>(keep_last); ++i) keep.insert(files[i].second);
  else
    for (const auto& f : files) keep.insert(f.second);
  std::vector<std::string> doomed;
  for (const auto& f : files)
    if (!keep.count(f.second)) doomed.push_back(f.second);
  for (fs::directory_iterator it(dir, ec), e; !ec && it != e; it.increment(ec)) {
    bool is_tmp = false;
    const std::string n = it->path().filename().string();
    if (parse_name(n, nullptr, &is_tmp) && is_tmp) doomed.push_back(n);  // left by an interrupted save
  }
  for (const std::string& n : doomed) {
    std::error_code rm;
    fs::remove(dir + "/" + n, rm);
    if (rm) warn("cannot remove " + dir + "/" + n + ": " + rm.message());
  }
  return "";
}

}  // namespace th::ckpt
