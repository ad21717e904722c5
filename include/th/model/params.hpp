#pragma once
// All parameters of a model live in one flat buffer, gradients in a second one with the same
// layout (llm.c style). Layers declare their parameters here, in one place each, and keep only
// offsets; data parallelism, ZeRO partitions, checkpoints and the optimizer all work on offsets
// into these two buffers. The buffers live in the device memory of the store's backend
// (th/backend/backend.hpp); the layers reach their kernels and buffers through backend().
#include <cstdint>
#include <string>
#include <vector>

#include "th/backend/backend.hpp"
#include "th/core/tensor.hpp"

namespace th {

// EmbeddingNormal: N(0, 1/D) for token tables [V, D]; PositionNormal: N(0, 0.02^2) for a learned
// positional table [max_len, D] (GPT-2's initialisation).
enum class ParamInit { Zeros, Ones, XavierUniform, EmbeddingNormal, PositionNormal };

struct ParamInfo {
  std::string name;                 // "encoder/layer_0/self_attn/q_proj/weight"
  std::vector<std::int64_t> shape;  // Linear weights [out, in] (PyTorch convention)
  std::int64_t offset = 0;          // elements from the start of the flat buffer
  std::int64_t numel = 0;
  ParamInit init = ParamInit::Zeros;
};

// A segment: a padded element range [begin, end) of whole parameters of one unit. ZeRO splits each
// segment evenly over the ranks (its length is a multiple of the alignment) and communicates it
// as one bucket. `unit` numbers the model's gather units (a block, the embeddings, ...): the
// parameters a layer needs together.
struct ParamSegment {
  std::int64_t begin = 0, end = 0;
  int unit = 0;
};

template <typename T>
class ParamStore {
 public:
  explicit ParamStore(Backend& backend = cpu_backend()) : backend_(&backend) {}
  Backend& backend() const { return *backend_; }
  // Layout for partitioning (before the first declare): every segment is padded to a multiple of
  // `align` elements and closed before it would pass `max_elems` (0: no limit; a larger single
  // parameter gets a segment of its own). align 1 (the default) adds no padding.
  void set_segmenting(std::int64_t align, std::int64_t max_elems);
  // Returns the offset of the new parameter; only before allocate().
  std::int64_t declare(const std::string& name, std::vector<std::int64_t> shape, ParamInit init);
  // Ends the current gather unit (and its segment); returns the number of the next unit. A model
  // calls it after the parameters of each block. Empty units are not counted.
  int end_unit();
  int current_unit() const { return unit_; }
  void allocate();                      // values (Parameters) and grads (Gradients), zeroed
  // Or external storage (ZeRO): size() elements each, owned and accounted by the caller.
  void attach(T* values, T* grads);
  // Initial values are computed on the host and copied to the device (a no-op on the CPU backend).
  void initialize(std::uint64_t seed);  // deterministic: identical on every rank for one seed
  // Only the parameters whose offset lies in [begin, end) (same values as initialize()).
  void initialize(std::uint64_t seed, std::int64_t begin, std::int64_t end);
  void zero_grad();

  bool allocated() const { return values_ptr_ != nullptr; }
  std::int64_t size() const { return total_; }
  T* values() const { return values_ptr_; }
  T* grads() const { return grads_ptr_; }
  T* value(std::int64_t offset) const { return values() + offset; }
  T* grad(std::int64_t offset) const { return grads() + offset; }
  const std::vector<ParamInfo>& infos() const { return infos_; }
  const ParamInfo& find(const std::string& name) const;  // throws th::Error naming it
  const std::vector<ParamSegment>& segments() const { return segments_; }  // after allocate/attach
  int num_units() const { return unit_; }

 private:
  void close_segment();
  Backend* backend_;
  std::vector<ParamInfo> infos_;
  std::vector<ParamSegment> segments_;
  std::int64_t total_ = 0, seg_begin_ = 0, unit_begin_ = 0, align_ = 1, max_seg_ = 0;
  int unit_ = 0;
  Tensor values_, grads_;
  T* values_ptr_ = nullptr;
  T* grads_ptr_ = nullptr;
};

}  // namespace th
