#pragma once
// One run per folder. A run that writes into a folder (task train, prepare, bench: its checkpoints,
// metrics.h5, datasets, deck.resolved.nml) holds an exclusive flock(2) on <folder>/torch-handle.lock
// for its whole life, taken by rank 0 before anything is written there; a second job on the same
// folder stops at once with a message naming the holder. The file holds one line about the holder
// (host, pid, Slurm job, task, start time), emptied when the run ends normally: a line found in a
// lock that nobody holds is a run that crashed (the kernel releases a flock when its process dies,
// kill -9 and node failure included), and is taken over with a warning. Requeued Slurm jobs and
// reruns after a crash therefore never find a live lock. File systems without flock (e.g. Lustre
// mounted without -o flock): a warning, and no protection. docs/running.md, "One run per folder".
#include <string>
#include <vector>

namespace th {

class Comm;
struct Config;

class RunLock {
 public:
  RunLock() = default;
  // Collective. Rank 0 creates `dir` if needed and takes the lock; every rank gets the same
  // verdict: returns the held lock (on rank 0; an empty object elsewhere), or throws th::InputError
  // on every rank naming `what` (the deck key that chose the folder) and the holder.
  static RunLock acquire(Comm& comm, const std::string& dir, const std::string& what, const std::string& task);
  // Rank 0: empties the holder line (a clean end) and closes the file, which releases the lock.
  // Local, no collective call: safe on any exit path.
  ~RunLock();
  RunLock(RunLock&& o) noexcept;
  RunLock& operator=(RunLock&& o) noexcept;
  RunLock(const RunLock&) = delete;
  RunLock& operator=(const RunLock&) = delete;

  static constexpr const char* kFileName = "torch-handle.lock";

 private:
  void release();
  int fd_ = -1;
};

// The locks of a task (collective; every rank returns or throws the same InputError). Tasks that
// write into run%output_dir (train, prepare, bench) lock it; train also locks checkpoint%dir when
// that lies outside run%output_dir (two runs sharing one checkpoint folder would mix their
// files). evaluate and translate take none: they read committed checkpoints only and write
// files of their own names, so they may run in a training folder during or after the training.
std::vector<RunLock> lock_run_folders(Comm& comm, const Config& cfg);

}  // namespace th
