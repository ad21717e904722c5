// One run per folder: an exclusive flock on <folder>/torch-handle.lock held by rank 0 (see
// include/th/io/run_lock.hpp for the rules).
#include "th/io/run_lock.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <iostream>
#include <utility>

#include "th/config/config.hpp"
#include "th/core/error.hpp"
#include "th/parallel/comm.hpp"
#include "th/parallel/agree.hpp"

namespace th {

namespace {

// "host node12, pid 4242, Slurm job 1234, task train, since 2026-12-02T10:00:00Z"
std::string holder_line(const std::string& task) {
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0) std::strcpy(host, "?");
  const char* job = std::getenv("SLURM_JOB_ID");
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char when[32];
  std::strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return std::string("host ") + host + ", pid " + std::to_string(::getpid()) + ", " +
         (job && *job ? std::string("Slurm job ") + job : std::string("not a Slurm job")) + ", task " + task +
         ", since " + when;
}

std::string read_line(int fd) {
  std::string s(4096, '\0');
  const ssize_t n = ::pread(fd, s.data(), s.size(), 0);
  s.resize(n > 0 ? static_cast<std::size_t>(n) : 0);
  const std::size_t nl = s.find('\n');
  if (nl != std::string::npos) s.resize(nl);
  return s;
}

bool write_line(int fd, const std::string& line) {
  const std::string text = line + "\n";
  return ::ftruncate(fd, 0) == 0 && ::pwrite(fd, text.data(), text.size(), 0) == static_cast<ssize_t>(text.size()) &&
         ::fsync(fd) == 0;
}

// Rank 0: takes the lock. Returns the open descriptor (>= 0), or -1 and the problem in *problem.
int take(const std::string& dir, const std::string& what, const std::string& task, std::string* problem) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    *problem = what + ": cannot create the folder: " + ec.message();
    return -1;
  }
  const std::string path = dir + "/" + RunLock::kFileName;
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    *problem = what + ": cannot open the lock file " + path + ": " + std::strerror(errno);
    return -1;
  }
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    if (err == EWOULDBLOCK) {
      const std::string holder = read_line(fd);
      ::close(fd);
      *problem = what + " is in use by another run (" + (holder.empty() ? "its details are being written" : holder) +
                 "; lock file " + path + "): one run per folder. Wait for it to end or stop it, or use another folder";
      return -1;
    }
    // ENOLCK, EOPNOTSUPP, ENOSYS...: a file system without flock (Lustre without -o flock, some
    // NFS set-ups). Carry on unprotected rather than refuse to run there.
    std::cerr << "[run] warning: " << path << ": flock failed (" << std::strerror(err)
              << "): this file system does not lock files, so nothing stops a second run from using " << dir
              << " at the same time" << std::endl;
  } else {
    const std::string previous = read_line(fd);
    if (!previous.empty())
      std::cerr << "[run] warning: taking over " << path << " from a run that ended without releasing it ("
                << previous << ")" << std::endl;
  }
  if (!write_line(fd, holder_line(task))) {
    *problem = what + ": cannot write the lock file " + path + ": " + std::strerror(errno);
    ::close(fd);
    return -1;
  }
  return fd;
}

}  // namespace

std::vector<RunLock> lock_run_folders(Comm& comm, const Config& cfg) {
  std::vector<RunLock> locks;
  const std::string& task = cfg.run.task;
  if (task != "train" && task != "prepare" && task != "bench") return locks;
  namespace fs = std::filesystem;
  const std::string out = cfg.run.output_dir;
  locks.push_back(RunLock::acquire(comm, out, "run%output_dir = '" + out + "'", task));
  if (task == "train" && !cfg.checkpoint.dir.empty()) {
    // Inside the output folder (its default, <output_dir>/checkpoints, or any subfolder): covered.
    std::error_code ec;
    const std::string o = fs::weakly_canonical(fs::absolute(out, ec), ec).string() + "/";
    const std::string c = fs::weakly_canonical(fs::absolute(cfg.checkpoint.dir, ec), ec).string() + "/";
    if (c.compare(0, o.size(), o) != 0)
      locks.push_back(RunLock::acquire(comm, cfg.checkpoint.dir, "checkpoint%dir = '" + cfg.checkpoint.dir + "'", task));
  }
  return locks;
}

RunLock RunLock::acquire(Comm& comm, const std::string& dir, const std::string& what, const std::string& task) {
  RunLock lock;
  std::string problem;
  if (comm.rank() == 0) lock.fd_ = take(dir, what, task, &problem);
  agree_on_error(comm, problem, ErrorKind::Input);  // rank 0's verdict, on every rank
  return lock;
}

void RunLock::release() {
  if (fd_ < 0) return;
  if (::ftruncate(fd_, 0) == 0) ::fsync(fd_);  // empty: this run ended cleanly
  ::close(fd_);                                // releases the flock
  fd_ = -1;
}

RunLock::~RunLock() { release(); }

RunLock::RunLock(RunLock&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}

RunLock& RunLock::operator=(RunLock&& o) noexcept {
  if (this != &o) {
    release();
    fd_ = std::exchange(o.fd_, -1);
  }
  return *this;
}

}  // namespace th
