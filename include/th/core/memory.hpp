#pragma once
// A caching host allocator that counts bytes live and peak per category. Blocks are kept in a
// free list when released and handed out again for requests of similar size (best fit, at most
// 1.25x the request: a 2-byte tensor must not take the 4-byte block of its wide copy), so a
// training step with repeating shapes stops calling the system allocator after its first step. `system_allocations()` lets tests and benchmarks check that.
#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <unordered_map>

namespace th {

enum class MemCategory : int { Parameters, Gradients, OptimizerState, Activations, Workspace, Count };
constexpr int kNumMemCategories = static_cast<int>(MemCategory::Count);
const char* to_string(MemCategory c);

struct MemStats {
  std::array<std::int64_t, kNumMemCategories> live{};  // bytes in use now, per category
  std::array<std::int64_t, kNumMemCategories> peak{};  // highest `live`, per category
  std::int64_t live_total = 0, peak_total = 0;        // all categories together
  std::int64_t reserved = 0;                          // bytes held from the system (live + cached)
  std::int64_t system_allocations = 0;                // calls that reached the system allocator
};

// Where a pool's blocks come from when its cache has none: the system allocator by default, or an
// arena (the emulated device's memory, th/backend/emulated.hpp). acquire() returns nullptr when
// it has no room; blocks are multiples of granularity() bytes, aligned to it.
class BlockSource {
 public:
  virtual ~BlockSource() = default;
  virtual void* acquire(std::size_t bytes) = 0;
  virtual void give_back(void* p, std::size_t bytes) = 0;
  virtual std::size_t granularity() const = 0;
  virtual const char* name() const = 0;  // "host", "emulated device", ... (error messages)
};

class MemoryPool {
 public:
  explicit MemoryPool(BlockSource* source = nullptr) : source_(source) {}
  ~MemoryPool();
  MemoryPool(const MemoryPool&) = delete;
  MemoryPool& operator=(const MemoryPool&) = delete;

  void* allocate(std::size_t bytes, MemCategory cat);
  void release(void* p);
  // Returns every cached (free) block to the system.
  void trim();

  const MemStats& stats() const { return stats_; }
  std::int64_t peak(MemCategory c) const { return stats_.peak[static_cast<int>(c)]; }
  std::int64_t live(MemCategory c) const { return stats_.live[static_cast<int>(c)]; }
  void reset_peaks();  // peaks restart from the current live values
  // Memory held outside the pool but owned by this rank (ZeRO's reserved address ranges, whose
  // pages are committed and returned piece by piece): counted in live and peak like a block.
  void account(MemCategory cat, std::int64_t delta_bytes);

 private:
  struct Block {
    std::size_t size;
    MemCategory cat;
  };
  void* system_acquire(std::size_t bytes);
  void system_release(void* p, std::size_t bytes);
  BlockSource* source_ = nullptr;  // null: std::aligned_alloc / std::free
  std::multimap<std::size_t, void*> free_;      // size -> cached block
  std::unordered_map<void*, Block> in_use_;
  MemStats stats_;
};

// The process-wide host pool (one per rank), like a framework's caching allocator.
MemoryPool& host_pool();

}  // namespace th
