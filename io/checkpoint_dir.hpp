#pragma once
// The checkpoint folder (internal to io/checkpoint*.cpp; the public part, prepare_checkpoint_dir
// and checkpoint_bytes, is in io/checkpoint.hpp): its files (checkpoint_files.cpp) and its free
// space (checkpoint_dir.cpp).
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace th::ckpt {

// Bytes an unprivileged writer may still write on the file system holding path (statvfs
// f_bavail; the nearest existing parent when path does not exist yet); -1 if unknown. Quotas are
// not seen: a write can still fail with EDQUOT.
std::int64_t free_bytes(const std::string& path);

// "123456 bytes (0.1 MB)".
std::string bytes_text(std::int64_t bytes);

// The message of a save that lacks room: "no space left on device: checkpoint FILE needs about
// N bytes, the file system has F bytes free; ..." (free < 0: unknown).
std::string no_space_message(const std::string& file, std::int64_t needed, std::int64_t free);

// The message of a failed write of the checkpoint file tmp (into dir), after removing tmp (any rank
// may: a .tmp is never read). A file system out of space (under 1 MiB free now, or ENOSPC/EDQUOT
// in err or in the message: HDF5 does not pass errno on reliably) is named with
// no_space_message; anything else as it is.
std::string write_failure(const std::string& what, int err, const std::string& dir, const std::string& tmp,
                          std::int64_t needed);

// ckpt_<8 or more digits>.h5 (tmp = false) or the same with .tmp (tmp = true); step and tmp may be null.
bool parse_name(const std::string& name, std::int64_t* step, bool* tmp);

// Checkpoint files (not .tmp) of dir, newest step first: {step, file name}.
std::vector<std::pair<std::int64_t, std::string>> list_checkpoints(const std::string& dir);

// fsync a file or a directory; "" or the problem.
std::string sync_path(const std::string& p, bool directory);

std::string utc_now();                 // "2026-01-31T12:00:00Z"
void warn(const std::string& msg);     // "[checkpoint] warning: msg" on stderr
std::string read_latest(const std::string& dir);  // the name in dir/latest ("" if none)

// Renames tmp to dir/name, points `latest` at it, prunes to keep_last files (0: keep all) and
// removes leftover .tmp files; every step durable before the next. Returns a problem or "".
std::string commit(const std::string& dir, const std::string& tmp, const std::string& name, int keep_last);

}  // namespace th::ckpt
