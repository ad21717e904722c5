#include "th/model/params.hpp"

#include <cmath>
#include <cstring>

#include "th/core/error.hpp"
#include "th/core/rng.hpp"

namespace th {

template <typename T>
std::int64_t ParamStore<T>::declare(const std::string& name, std::vector<std::int64_t> shape, ParamInit init) {
  TH_CHECK(!allocated(), "parameter '" + name + "' declared after allocation");
  for (const auto& p : infos_) TH_CHECK(p.name != name, "parameter '" + name + "' declared twice");
  ParamInfo info;
  info.name = name;
  info.numel = 1;
  for (auto d : shape) info.numel *= d;
  info.shape = std::move(shape);
  info.offset = total_;
  info.init = init;
  total_ += info.numel;
  infos_.push_back(std::move(info));
  return infos_.back().offset;
}

template <typename T> void ParamStore<T>::allocate() {
  values_ = Tensor::zeros({total_}, dtype_of<T>(), MemCategory::Parameters);
  grads_ = Tensor::zeros({total_}, dtype_of<T>(), MemCategory::Gradients);
}

template <typename T> void ParamStore<T>::zero_grad() { grads_.zero_(); }

template <typename T> void ParamStore<T>::initialize(std::uint64_t seed) {
  TH_CHECK(allocated(), "initialize before allocate");
  for (std::size_t k = 0; k < infos_.size(); ++k) {
    const ParamInfo& p = infos_[k];
    T* w = value(p.offset);
    const std::uint64_t stream = 0x1000 + k;  // one stream per parameter, in declaration order
    switch (p.init) {
      case ParamInit::Zeros:
        std::memset(w, 0, sizeof(T) * static_cast<std::size_t>(p.numel));
        break;
      case ParamInit::Ones:
        for (std::int64_t i = 0; i < p.numel; ++i) w[i] = T(1);
        break;
      case ParamInit::XavierUniform: {  // U(-a, a), a = sqrt(6 / (fan_in + fan_out))
        const double a = std::sqrt(6.0 / static_cast<double>(p.shape[0] + p.shape[1]));
        for (std::int64_t i = 0; i < p.numel; ++i)
          w[i] = static_cast<T>(a * (2.0 * uniform01(seed, stream, i) - 1.0));
        break;
      }
      case ParamInit::EmbeddingNormal: {  // N(0, 1/D): unit scale after the sqrt(D) multiplier
        const double sd = 1.0 / std::sqrt(static_cast<double>(p.shape[1]));
        for (std::int64_t i = 0; i < p.numel; ++i) w[i] = static_cast<T>(sd * normal01(seed, stream, i));
        break;
      }
    }
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
