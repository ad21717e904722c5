#pragma once
// All parameters of a model live in one flat buffer, gradients in a second one with the same
// layout (llm.c style). Layers declare their parameters here, in one place each, and keep only
// offsets; data parallelism, ZeRO partitions, checkpoints and the optimizer all work on offsets
// into these two buffers. The buffers live in the device memory of the store's backend
// (th/backend/backend.hpp); the layers reach their kernels and buffers through backend().
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
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
  // values (Parameters) and grads (Gradients), zeroed; values16 BF16 / F16: the values as the
  // 2-byte compute copy of that type (use_16bit_values), the fp32 buffer never allocated (F32: in
  // fp32); grads false: no gradient buffer (the caller attaches one, attach_grads: the 2-byte
  // gradients of th/train/zero.hpp).
  void allocate(DType values16 = DType::F32, bool grads = true);
  // Or external storage (ZeRO): size() elements each, owned and accounted by the caller.
  void attach(T* values, T* grads);
  void attach_grads(T* grads);  // the gradients alone, after allocate(.., false)
  // Initial values are computed on the host and copied to the device (a no-op on the CPU backend).
  void initialize(std::uint64_t seed);  // deterministic: identical on every rank for one seed
  // Only the parameters whose offset lies in [begin, end) (same values as initialize()).
  void initialize(std::uint64_t seed, std::int64_t begin, std::int64_t end);
  void zero_grad();
  // Initial values of every parameter, fp32, into `out` (size() elements of device memory, in the
  // flat layout; padding untouched): what initialize() stores, for a caller that keeps them itself.
  void initial_values(std::uint64_t seed, T* out) const { initial_values(seed, out, 0, total_); }
  // Only the parameters whose offset lies in [begin, end), out[offset - begin] onwards.
  void initial_values(std::uint64_t seed, T* out, std::int64_t begin, std::int64_t end) const;

  // The 2-byte compute copy (bf16 and fp16 runs on a backend that takes bf16 operands;
  // th/train/zero.hpp): after allocate() or attach(), the values become size() 16-bit values of
  // `type`, BF16 or F16 (Parameters; or `external` storage of that many, owned and accounted by
  // the caller: stage 3's gathered range), and their fp32 buffer is released (an attached one stays
  // its owner's). The parameters no GEMM and no embedding lookup reads (biases, LayerNorm, learned
  // positions: the `wide` ones, a few per cent of the model) keep an fp32 copy as well, which
  // widen_copies() refreshes from the 2-byte values whenever those change (those starting in
  // [begin, end): stage 3, as a unit is gathered). Layers ask
  // value16() first: a 16-bit weight where there is one (nullptr otherwise, and always in fp32
  // storage), else value(); the kernels take bf16 bits as they are, fp16 bits widened first
  // (src/model/weights.hpp: no CPU kernel multiplies fp16).
  void use_16bit_values(DType type, std::uint16_t* external = nullptr);
  bool two_byte_values() const { return values16_ptr_ != nullptr; }
  DType values16_type() const { return values16_type_; }  // BF16 / F16 where two_byte_values()
  std::uint16_t* values16() const { return values16_ptr_; }
  const std::uint16_t* value16(std::int64_t offset) const {
    return values16_ptr_ && wide_index(offset) < 0 ? values16_ptr_ + offset : nullptr;
  }
  void widen_copies(std::int64_t begin = 0, std::int64_t end = -1);
  static bool wide(ParamInit init) { return init != ParamInit::XavierUniform && init != ParamInit::EmbeddingNormal; }

  bool allocated() const { return values_ptr_ != nullptr || values16_ptr_ != nullptr; }
  std::int64_t size() const { return total_; }
  T* values() const { return values_ptr_; }
  T* grads() const { return grads_ptr_; }
  // fp32 values at `offset` (a parameter's start); with 2-byte values only a wide parameter's.
  T* value(std::int64_t offset) const { return values16_ptr_ ? wide_value(offset) : values() + offset; }
  T* grad(std::int64_t offset) const { return grads() + offset; }
  // A 2-byte gradient store (th/train/zero.hpp) takes each gradient as soon as backward has
  // written it: layers call written(offset, n) after the kernel that wrote gradients
  // [offset, offset + n) (a no-op unless a store asked for them with on_written).
  void on_written(std::function<void(std::int64_t, std::int64_t)> f) { written_ = std::move(f); }
  bool takes_written() const { return static_cast<bool>(written_); }
  void written(std::int64_t offset, std::int64_t n) const {
    if (written_) written_(offset, offset + n);
  }
  // Layers call writing(offset, n) just before a kernel writes all of gradients [offset, offset +
  // n): a store backing its gradients on demand backs those pages then, in one call (on_writing).
  void on_writing(std::function<void(std::int64_t, std::int64_t)> f) { writing_ = std::move(f); }
  void writing(std::int64_t offset, std::int64_t n) const {
    if (writing_) writing_(offset, offset + n);
  }
  const std::vector<ParamInfo>& infos() const { return infos_; }
  const ParamInfo& find(const std::string& name) const;  // throws th::Error naming it
  const std::vector<ParamSegment>& segments() const { return segments_; }  // after allocate/attach
  int num_units() const { return unit_; }

 private:
  void close_segment();
  std::int64_t wide_index(std::int64_t offset) const;  // into wide_, or -1: no wide parameter starts there
  T* wide_value(std::int64_t offset) const;  // throws unless a wide parameter starts at offset
  Backend* backend_;
  std::vector<ParamInfo> infos_;
  std::vector<ParamSegment> segments_;
  std::int64_t total_ = 0, seg_begin_ = 0, unit_begin_ = 0, align_ = 1, max_seg_ = 0;
  int unit_ = 0;
  Tensor values_, grads_;
  T* values_ptr_ = nullptr;
  T* grads_ptr_ = nullptr;
  bool laid_out_ = false;  // allocate() or attach() done
  // 2-byte values: the buffer, and the wide parameters' fp32 copies (offset -> index in wide_).
  Tensor values16_, wide_;
  std::uint16_t* values16_ptr_ = nullptr;
  DType values16_type_ = DType::F32;
  std::vector<std::pair<std::int64_t, std::int64_t>> wide_at_;
  std::function<void(std::int64_t, std::int64_t)> written_, writing_;
};

}  // namespace th
