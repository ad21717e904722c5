#pragma once
// Free space of the checkpoint folder (internal to io/checkpoint*.cpp; the public part,
// prepare_checkpoint_dir and checkpoint_bytes, is in include/th/io/checkpoint.hpp).
#include <cstdint>
#include <string>

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

}  // namespace th::ckpt
