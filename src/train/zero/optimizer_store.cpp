#include "optimizer_store.hpp"

#include <cstring>

namespace th::zero {

namespace {

// Moments with the parameters.
class DeviceStore final : public OptimizerStore {
 public:
  DeviceStore(std::int64_t n, const AdamWConfig& cfg) : n_(n), adam_(n, cfg) {}
  void next_step() override { adam_.next_step(); }
  std::int64_t steps() const override { return adam_.steps(); }
  void set_steps(std::int64_t t) override { adam_.set_steps(t); }
  void update(const std::vector<AdamSpan>& spans, double lr) override {
    for (const AdamSpan& a : spans) adam_.update(a.param, a.grad, a.offset, a.n, lr);
  }
  bool does_io() const override { return false; }
  float* exp_avg() override { return adam_.exp_avg(); }
  float* exp_avg_sq() override { return adam_.exp_avg_sq(); }
  void read_moments(float* m, float* v) override {
    std::memcpy(m, adam_.exp_avg(), sizeof(float) * static_cast<std::size_t>(n_));
    std::memcpy(v, adam_.exp_avg_sq(), sizeof(float) * static_cast<std::size_t>(n_));
  }
  void write_moments(const float* m, const float* v) override {
    std::memcpy(adam_.exp_avg(), m, sizeof(float) * static_cast<std::size_t>(n_));
    std::memcpy(adam_.exp_avg_sq(), v, sizeof(float) * static_cast<std::size_t>(n_));
  }
  OffloadMemory memory() const override { return {}; }
  std::string where() const override { return ""; }

 private:
  std::int64_t n_;
  AdamW<float> adam_;
};

// Moments on the host or in the NVMe file (th/train/offload.hpp).
class OffloadedStore final : public OptimizerStore {
 public:
  explicit OffloadedStore(std::unique_ptr<OffloadedAdamW> a) : a_(std::move(a)) {}
  void next_step() override { a_->next_step(); }
  std::int64_t steps() const override { return a_->steps(); }
  void set_steps(std::int64_t t) override { a_->set_steps(t); }
  void update(const std::vector<AdamSpan>& spans, double lr) override { a_->update(spans, lr); }
  bool does_io() const override { return true; }
  float* exp_avg() override { return a_->host_exp_avg(); }
  float* exp_avg_sq() override { return a_->host_exp_avg_sq(); }
  void read_moments(float* m, float* v) override { a_->read_moments(m, v); }
  void write_moments(const float* m, const float* v) override { a_->write_moments(m, v); }
  OffloadMemory memory() const override { return a_->memory(); }
  std::string where() const override { return a_->where(); }

 private:
  std::unique_ptr<OffloadedAdamW> a_;
};

}  // namespace

std::unique_ptr<OptimizerStore> make_optimizer_store(const OffloadOptions& opt, std::int64_t n, const AdamWConfig& cfg,
                                                     int rank) {
  if (opt.optimizer == OffloadTarget::None) return std::make_unique<DeviceStore>(n, cfg);
  return std::make_unique<OffloadedStore>(OffloadedAdamW::make(opt, n, cfg, rank));
}

}  // namespace th::zero
