#include "th/core/memory.hpp"

#include <algorithm>
#include <cstdlib>
#include <new>

#include "th/core/error.hpp"

namespace th {

const char* to_string(MemCategory c) {
  switch (c) {
    case MemCategory::Parameters: return "parameters";
    case MemCategory::Gradients: return "gradients";
    case MemCategory::OptimizerState: return "optimizer_state";
    case MemCategory::Activations: return "activations";
    case MemCategory::Workspace: return "workspace";
    case MemCategory::Count: break;
  }
  return "unknown";
}

namespace {
constexpr std::size_t kAlign = 64;  // cache line; also what AVX-512 loads like
std::size_t round_up(std::size_t n, std::size_t align) { return (std::max<std::size_t>(n, 1) + align - 1) / align * align; }
}  // namespace

MemoryPool::~MemoryPool() {
  trim();
  for (auto& kv : in_use_) system_release(kv.first, kv.second.size);  // leaked tensors at exit
}

void* MemoryPool::system_acquire(std::size_t bytes) {
  return source_ ? source_->acquire(bytes) : std::aligned_alloc(kAlign, bytes);
}

void MemoryPool::system_release(void* p, std::size_t bytes) {
  if (source_) source_->give_back(p, bytes);
  else std::free(p);
}

void* MemoryPool::allocate(std::size_t bytes, MemCategory cat) {
  const std::size_t want = round_up(bytes, source_ ? std::max(kAlign, source_->granularity()) : kAlign);
  void* p = nullptr;
  std::size_t size = want;
  auto it = free_.lower_bound(want);
  if (it != free_.end() && it->first <= want + want / 4) {
    size = it->first;
    p = it->second;
    free_.erase(it);
  } else {
    p = system_acquire(want);
    if (!p) {
      trim();
      p = system_acquire(want);
    }
    if (!p) throw Error(std::string(source_ ? source_->name() : "host") + " allocation of " + std::to_string(want) + " bytes for " + to_string(cat) +
                        " failed (live " + std::to_string(stats_.live_total) + " bytes)");
    stats_.reserved += static_cast<std::int64_t>(want);
    ++stats_.system_allocations;
  }
  in_use_.emplace(p, Block{size, cat});
  const int c = static_cast<int>(cat);
  stats_.live[c] += static_cast<std::int64_t>(size);
  stats_.live_total += static_cast<std::int64_t>(size);
  stats_.peak[c] = std::max(stats_.peak[c], stats_.live[c]);
  stats_.peak_total = std::max(stats_.peak_total, stats_.live_total);
  return p;
}

void MemoryPool::release(void* p) {
  if (!p) return;
  auto it = in_use_.find(p);
  TH_CHECK(it != in_use_.end(), "release of a pointer this pool did not allocate");
  const int c = static_cast<int>(it->second.cat);
  stats_.live[c] -= static_cast<std::int64_t>(it->second.size);
  stats_.live_total -= static_cast<std::int64_t>(it->second.size);
  free_.emplace(it->second.size, p);
  in_use_.erase(it);
}

void MemoryPool::trim() {
  for (auto& kv : free_) {
    system_release(kv.second, kv.first);
    stats_.reserved -= static_cast<std::int64_t>(kv.first);
  }
  free_.clear();
}

void MemoryPool::account(MemCategory cat, std::int64_t delta) {
  const int c = static_cast<int>(cat);
  stats_.live[c] += delta;
  stats_.live_total += delta;
  stats_.peak[c] = std::max(stats_.peak[c], stats_.live[c]);
  stats_.peak_total = std::max(stats_.peak_total, stats_.live_total);
}

void MemoryPool::reset_peaks() {
  stats_.peak = stats_.live;
  stats_.peak_total = stats_.live_total;
}

MemoryPool& host_pool() {
  static MemoryPool pool;
  return pool;
}

}  // namespace th
