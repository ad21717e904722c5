#pragma once
// Free space of the checkpoint folder (internal to io/checkpoint*.cpp; the public part,
// prepare_checkpoint_dir and checkpoint_bytes, is in io/checkpoint.hpp).
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

}  // namespace th::ckpt
