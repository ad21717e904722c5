#pragma once
// All parameters of a model live in one flat buffer, gradients in a second one with the same
// layout (llm.c style). Layers declare their parameters here, in one place each, and keep only
// offsets; data parallelism, ZeRO partitions, checkpoints and the optimizer all work on offsets
// into these two buffers.
#include <cstdint>
#include <string>
#include <vector>

#include "th/core/tensor.hpp"

namespace th {

enum class ParamInit { Zeros, Ones, XavierUniform, EmbeddingNormal };

struct ParamInfo {
  std::string name;                 // "encoder/layer_0/self_attn/q_proj/weight"
  std::vector<std::int64_t> shape;  // Linear weights [out, in] (PyTorch convention)
  std::int64_t offset = 0;          // elements from the start of the flat buffer
  std::int64_t numel = 0;
  ParamInit init = ParamInit::Zeros;
};

template <typename T>
class ParamStore {
 public:
  // Returns the offset of the new parameter; only before allocate().
  std::int64_t declare(const std::string& name, std::vector<std::int64_t> shape, ParamInit init);
  void allocate();                      // values (Parameters) and grads (Gradients), zeroed
  void initialize(std::uint64_t seed);  // deterministic: identical on every rank for one seed
  void zero_grad();

  bool allocated() const { return values_.defined(); }
  std::int64_t size() const { return total_; }
  T* values() const { return values_.template data<T>(); }
  T* grads() const { return grads_.template data<T>(); }
  T* value(std::int64_t offset) const { return values() + offset; }
  T* grad(std::int64_t offset) const { return grads() + offset; }
  const std::vector<ParamInfo>& infos() const { return infos_; }
  const ParamInfo& find(const std::string& name) const;  // throws th::Error naming it

 private:
  std::vector<ParamInfo> infos_;
  std::int64_t total_ = 0;
  Tensor values_, grads_;
};

}  // namespace th
