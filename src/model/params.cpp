#include "th/model/params.hpp"

#include <cmath>
#include <algorithm>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "th/core/error.hpp"
#include "th/core/rng.hpp"

namespace th {

template <typename T> void ParamStore<T>::set_segmenting(std::int64_t align, std::int64_t max_elems) {
  TH_CHECK(infos_.empty() && align >= 1 && max_elems >= 0, "set_segmenting after declarations or with bad values");
  align_ = align;
  max_seg_ = max_elems;
}

template <typename T> void ParamStore<T>::close_segment() {
  if (total_ == seg_begin_) return;
  total_ = (total_ + align_ - 1) / align_ * align_;
  segments_.push_back({seg_begin_, total_, unit_});
  seg_begin_ = total_;
}

template <typename T> int ParamStore<T>::end_unit() {
  if (total_ == unit_begin_) return unit_;  // nothing declared since the last boundary
  close_segment();
  unit_begin_ = total_;
  return ++unit_;
}

template <typename T>
std::int64_t ParamStore<T>::declare(const std::string& name, std::vector<std::int64_t> shape, ParamInit init) {
  TH_CHECK(!allocated(), "parameter '" + name + "' declared after allocation");
  for (const auto& p : infos_) TH_CHECK(p.name != name, "parameter '" + name + "' declared twice");
  ParamInfo info;
  info.name = name;
  info.numel = 1;
  for (auto d : shape) info.numel *= d;
  if (max_seg_ > 0 && total_ > seg_begin_ && total_ - seg_begin_ + info.numel > max_seg_) close_segment();
  info.shape = std::move(shape);
  info.offset = total_;
  info.init = init;
  total_ += info.numel;
  infos_.push_back(std::move(info));
  return infos_.back().offset;
}

template <typename T> void ParamStore<T>::allocate(DType values16, bool grads) {
  end_unit();
  laid_out_ = true;
  if (grads) {
    grads_ = backend_->zeros({total_}, dtype_of<T>(), MemCategory::Gradients);
    grads_ptr_ = grads_.template data<T>();
  }
  if (values16 != DType::F32) return use_16bit_values(values16);
  values_ = backend_->zeros({total_}, dtype_of<T>(), MemCategory::Parameters);
  values_ptr_ = values_.template data<T>();
}

template <typename T> void ParamStore<T>::attach(T* values, T* grads) {
  end_unit();
  laid_out_ = true;
  values_.reset();
  grads_.reset();
  values_ptr_ = values;
  grads_ptr_ = grads;
}

template <typename T> void ParamStore<T>::attach_grads(T* grads) {
  TH_CHECK(laid_out_ && !grads_.defined(), "attach_grads: after allocate(.., false)");
  grads_ptr_ = grads;
}

template <typename T> void ParamStore<T>::zero_grad() {
  backend_->zero(grads_ptr_, sizeof(T) * static_cast<std::size_t>(total_), MemorySpace::Device);
}

template <typename T> void ParamStore<T>::initialize(std::uint64_t seed) { initialize(seed, 0, total_); }

namespace {
// One parameter's initial values (host), from the seed and its stream (its declaration index).
template <typename T>
std::vector<T> initial(const ParamInfo& p, std::uint64_t seed, std::size_t index) {
  std::vector<T> host(static_cast<std::size_t>(p.numel));
  T* w = host.data();
  const std::uint64_t stream = 0x1000 + index;  // one stream per parameter, in declaration order
  switch (p.init) {
    case ParamInit::Zeros:
      std::fill(host.begin(), host.end(), T(0));
      break;
    case ParamInit::Ones:
      for (std::int64_t i = 0; i < p.numel; ++i) w[i] = T(1);
      break;
    case ParamInit::XavierUniform: {  // U(-a, a), a = sqrt(6 / (fan_in + fan_out))
      const double a = std::sqrt(6.0 / static_cast<double>(p.shape[0] + p.shape[1]));
      for (std::int64_t i = 0; i < p.numel; ++i) w[i] = static_cast<T>(a * (2.0 * uniform01(seed, stream, i) - 1.0));
      break;
    }
    case ParamInit::EmbeddingNormal: {  // N(0, 1/D): unit scale after the sqrt(D) multiplier
      const double sd = 1.0 / std::sqrt(static_cast<double>(p.shape[1]));
      for (std::int64_t i = 0; i < p.numel; ++i) w[i] = static_cast<T>(sd * normal01(seed, stream, i));
      break;
    }
    case ParamInit::PositionNormal: {  // N(0, 0.02^2), GPT-2's learned positions
      for (std::int64_t i = 0; i < p.numel; ++i) w[i] = static_cast<T>(0.02 * normal01(seed, stream, i));
      break;
    }
  }
  return host;
}
}  // namespace

template <typename T> void ParamStore<T>::initialize(std::uint64_t seed, std::int64_t begin, std::int64_t end) {
  TH_CHECK(allocated(), "initialize before allocate");
  TH_CHECK(!two_byte_values(), "initialize on 2-byte values: take initial_values() and convert");
  initial_values(seed, values() + begin, begin, end);  // fp32 values: value(offset) is values() + offset
}

template <typename T>
void ParamStore<T>::initial_values(std::uint64_t seed, T* out, std::int64_t begin, std::int64_t end) const {
  for (std::size_t k = 0; k < infos_.size(); ++k) {
    if (infos_[k].offset < begin || infos_[k].offset >= end) continue;
    // Computed on the host, then copied to the parameter's device memory.
    const std::vector<T> host = initial<T>(infos_[k], seed, k);
    backend_->host_to_device(out + (infos_[k].offset - begin), host.data(), sizeof(T) * host.size());
  }
}

template <typename T> void ParamStore<T>::use_16bit_values(DType type, std::uint16_t* external) {
  TH_CHECK((std::is_same_v<T, float>), "2-byte values need a float model");
  TH_CHECK(type == DType::BF16 || type == DType::F16, "2-byte values are bf16 or fp16");
  TH_CHECK(!two_byte_values() && laid_out_, "use_16bit_values: allocate or attach first, once");
  if (!external) values16_ = backend_->zeros({total_}, type, MemCategory::Parameters);
  values16_ptr_ = external ? external : static_cast<std::uint16_t*>(values16_.raw());
  values16_type_ = type;
  std::int64_t n = 0;
  for (const ParamInfo& p : infos_)
    if (wide(p.init)) {
      wide_at_.emplace_back(p.offset, n);
      n += p.numel;
    }
  wide_ = backend_->zeros({std::max<std::int64_t>(n, 1)}, dtype_of<T>(), MemCategory::Parameters);
  values_.reset();
  values_ptr_ = nullptr;
}

template <typename T> std::int64_t ParamStore<T>::wide_index(std::int64_t offset) const {
  const auto it = std::lower_bound(wide_at_.begin(), wide_at_.end(), std::make_pair(offset, std::int64_t(-1)));
  return it != wide_at_.end() && it->first == offset ? it->second : -1;
}

template <typename T> T* ParamStore<T>::wide_value(std::int64_t offset) const {
  const std::int64_t i = wide_index(offset);
  TH_CHECK(i >= 0, "parameter at offset " + std::to_string(offset) + " has only its 2-byte compute copy (read value16())");
  return wide_.template data<T>() + i;
}

template <typename T> void ParamStore<T>::widen_copies(std::int64_t begin, std::int64_t end) {
  if constexpr (std::is_same_v<T, float>) {
    if (!two_byte_values()) return;
    if (end < 0) end = total_;
    for (const ParamInfo& p : infos_)
      if (wide(p.init) && p.offset >= begin && p.offset < end)
        backend_->widen_16bit(values16_type_, wide_value(p.offset), values16_ptr_ + p.offset, p.numel);
  }
}

template <typename T> const ParamInfo& ParamStore<T>::find(const std::string& name) const {
  for (const auto& p : infos_)
    if (p.name == name) return p;
  throw Error("no parameter named '" + name + "'");
}

template class ParamStore<float>;
template class ParamStore<double>;

}  // namespace th
