// The checkpoint folder as a place to write: made and tested at start-up, and the room a
// checkpoint needs (checked by save_checkpoint before it starts a file).
#include <fcntl.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>

#include "th/io/checkpoint.hpp"
#include "checkpoint_dir.hpp"
#include "th/core/error.hpp"
#include "th/parallel/comm.hpp"
#include "th/parallel/agree.hpp"

namespace th {

namespace fs = std::filesystem;

namespace ckpt {

std::int64_t free_bytes(const std::string& path) {
  // The folder may not exist yet: ask the nearest existing parent (the same file system, or the
  // one the folder will be made on).
  fs::path p = path.empty() ? fs::path(".") : fs::path(path);
  std::error_code ec;
  while (!p.empty() && !fs::exists(p, ec)) p = p.parent_path();
  if (p.empty()) p = ".";
  struct statvfs st {};
  if (::statvfs(p.c_str(), &st) != 0) return -1;
  return static_cast<std::int64_t>(st.f_bavail) * static_cast<std::int64_t>(st.f_frsize);
}

std::string bytes_text(std::int64_t bytes) {
  char b[64];
  const double v = static_cast<double>(bytes);
  if (v >= 1e9)
    std::snprintf(b, sizeof b, "%lld bytes (%.2f GB)", static_cast<long long>(bytes), v / 1e9);
  else
    std::snprintf(b, sizeof b, "%lld bytes (%.1f MB)", static_cast<long long>(bytes), v / 1e6);
  return b;
}

std::string no_space_message(const std::string& file, std::int64_t needed, std::int64_t free) {
  return "no space left on device: checkpoint " + file + " needs about " + bytes_text(needed) + ", " +
         (free >= 0 ? "the file system has " + bytes_text(free) + " free" : std::string("free space unknown")) +
         "; free some space (checkpoint%keep_last keeps fewer files) or set checkpoint%dir to another file system";
}

std::string write_failure(const std::string& what, int err, const std::string& dir, const std::string& tmp,
                          std::int64_t needed) {
  const std::int64_t free = free_bytes(dir);
  const bool full = err == ENOSPC || err == EDQUOT || what.find("No space left") != std::string::npos ||
                    what.find("MPI_ERR_NO_SPACE") != std::string::npos ||
                    what.find("MPI_ERR_QUOTA") != std::string::npos || (free >= 0 && free < (1 << 20));
  std::error_code ec;
  const bool removed = fs::remove(tmp, ec);
  const std::string cleanup = removed ? "; the partial " + tmp + " was removed" : "";
  if (full) return no_space_message(tmp, needed, free) + " (" + what + ")" + cleanup;
  return "writing checkpoint " + tmp + " failed: " + what + cleanup;
}

}  // namespace ckpt

std::int64_t checkpoint_bytes(const std::vector<CheckpointTensor>& tensors, std::size_t deck_bytes) {
  // Measured with HDF5 1.10 (contiguous datasets with two attributes each, a group per path
  // component): 1.0 to 1.1 KiB of metadata per dataset, groups included (models of 129 to 759
  // datasets). 2 KiB per dataset, 64 KiB for the superblock and the root attributes, and the deck
  // twice (the global heap keeps free space) keep this an upper estimate.
  std::int64_t floats = 0;
  for (const CheckpointTensor& t : tensors) floats += t.numel;
  const auto datasets = static_cast<std::int64_t>(3 * tensors.size());
  return 3 * floats * static_cast<std::int64_t>(sizeof(float)) + datasets * 2048 + 65536 +
         2 * static_cast<std::int64_t>(deck_bytes);
}

void prepare_checkpoint_dir(Comm& comm, const std::string& dir, const std::string& what, std::int64_t bytes_needed) {
  std::string problem;
  if (comm.rank() == 0) {
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) {
      problem = what + ": cannot create the folder: " + ec.message();
    } else if (!fs::is_directory(dir, ec)) {
      problem = what + ": not a folder";
    } else {
      // A real write, synced: a read-only mount, a full disk or a quota shows here, not at the
      // first save.
      const std::string probe = dir + "/.write_probe." + std::to_string(::getpid());
      const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (fd < 0) {
        problem = what + ": cannot write in it: " + std::strerror(errno);
      } else {
        const char byte = 0;
        const bool ok = ::write(fd, &byte, 1) == 1 && ::fsync(fd) == 0;
        const int err = errno;
        ::close(fd);
        ::unlink(probe.c_str());
        if (!ok) problem = what + ": cannot write in it: " + std::strerror(err);
      }
    }
    if (problem.empty() && bytes_needed > 0) {
      const std::int64_t free = ckpt::free_bytes(dir);
      if (free >= 0 && free < bytes_needed)
        std::cerr << "[checkpoint] warning: " << dir << " has " << ckpt::bytes_text(free)
                  << " free, less than one checkpoint (about " << ckpt::bytes_text(bytes_needed)
                  << "): the first save will fail unless space is freed" << std::endl;
    }
  }
  agree_on_error(comm, problem, ErrorKind::Input);  // rank 0's verdict, on every rank
}

}  // namespace th
