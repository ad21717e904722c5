#pragma once
// <output_dir>/metrics.h5: one extendable 1-D dataset per field under /train/ and /valid/
// (h5py.File(p)['train/loss'][:] is the loss curve), the resolved deck in /deck. Written by rank 0
// only; flushed after every append so a reader sees complete records while the run goes on, and a
// crash loses at most the record being written.
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace th {

class H5File;

class MetricsFile {
 public:
  // continue_after < 0: a new file (an old one is replaced). continue_after >= 0 (a run resumed
  // from the checkpoint of that step): the existing file is kept and every group is cut back to
  // its records with step <= continue_after (the steps the resumed run will redo), so the curves
  // of a run stopped and resumed several times stay in one file. An unreadable old file is kept
  // aside as <path>.unreadable and a new one started; `note` receives what was done.
  MetricsFile(const std::string& path, const std::string& resolved_deck, std::int64_t continue_after = -1,
              std::string* note = nullptr);
  ~MetricsFile();
  // Appends one record: every field of a group must be given at every append (fixed schema per
  // group, set by the first append). "step" and "epoch" are stored as int64, the rest float64.
  void append(const std::string& group, const std::vector<std::pair<std::string, double>>& fields);

 private:
  std::unique_ptr<H5File> file_;
  std::vector<std::pair<std::string, std::vector<std::string>>> schema_;  // group -> field names
};

}  // namespace th
