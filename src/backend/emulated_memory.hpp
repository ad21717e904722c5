#pragma once
// The emulated device's memory (th/backend/emulated.hpp): arenas of address space mapped twice
// (what callers get, and a writable alias for the stream's worker), and the SIGSEGV handler that
// turns a host access to device memory, or to pinned memory with a copy in flight, into the job's
// error message. Private to src/backend.
#include <cstddef>
#include <map>
#include <mutex>

#include "th/core/memory.hpp"

namespace th::emulated {

std::size_t page_size();

// Address space backed by one memfd, mapped twice: `host` (what callers get, with host_prot) and
// `alias` (always writable: what the stream's worker uses). First-fit blocks with coalescing.
class Arena final : public BlockSource {
 public:
  Arena(const char* name, std::size_t bytes, int host_prot, std::size_t gran);
  void* acquire(std::size_t bytes) override {
    std::lock_guard<std::mutex> lock(m_);
    for (auto it = free_.begin(); it != free_.end(); ++it) {
      if (it->second < bytes) continue;
      const std::size_t off = it->first, len = it->second;
      free_.erase(it);
      if (len > bytes) free_.emplace(off + bytes, len - bytes);
      return host_ + off;
    }
    return nullptr;
  }
  void give_back(void* p, std::size_t bytes) override {
    std::lock_guard<std::mutex> lock(m_);
    std::size_t off = static_cast<std::size_t>(static_cast<char*>(p) - host_), len = bytes;
    auto next = free_.lower_bound(off);
    if (next != free_.end() && off + len == next->first) {
      len += next->second;
      next = free_.erase(next);
    }
    if (next != free_.begin()) {
      auto prev = std::prev(next);
      if (prev->first + prev->second == off) {
        prev->second += len;
        return;
      }
    }
    free_.emplace(off, len);
  }
  // `bytes` at an offset that is a multiple of `align` (a power of two), outside the pools.
  void* acquire_aligned(std::size_t bytes, std::size_t align) {
    std::lock_guard<std::mutex> lock(m_);
    for (auto it = free_.begin(); it != free_.end(); ++it) {
      const std::size_t off = it->first, len = it->second, start = (off + align - 1) / align * align;
      if (start + bytes > off + len) continue;
      free_.erase(it);
      if (start > off) free_.emplace(off, start - off);
      if (off + len > start + bytes) free_.emplace(start + bytes, off + len - start - bytes);
      return host_ + start;
    }
    return nullptr;
  }
  std::size_t granularity() const override { return gran_; }
  const char* name() const override { return name_; }
  bool contains(const void* p) const {
    const char* c = static_cast<const char*>(p);
    return c >= host_ && c < host_ + size_;
  }
  std::size_t offset(const void* p) const { return static_cast<std::size_t>(static_cast<const char*>(p) - host_); }
  char* alias(const void* p) const { return alias_ + offset(p); }
  bool alias_contains(const void* p) const {
    const char* c = static_cast<const char*>(p);
    return c >= alias_ && c < alias_ + size_;
  }
  std::size_t alias_offset(const void* p) const { return static_cast<std::size_t>(static_cast<const char*>(p) - alias_); }
  char* base() const { return host_; }

 private:
  const char* name_;
  std::size_t size_, gran_;
  char* host_ = nullptr;
  char* alias_ = nullptr;
  std::mutex m_;
  std::map<std::size_t, std::size_t> free_;  // offset -> length
};

// Installs the handler (once per process): a fault inside `device` or `pinned` prints
// "[rank r] torch-handle: error: ..." and ends the process with the signal; others go to the
// handler that was there before (a sanitizer's) or the default.
void install_fault_handler(const Arena& device, const Arena& pinned, int rank);

}  // namespace th::emulated
