#include "optimizer_store.hpp"


namespace th::zero {

namespace {

// Moments with the parameters.
class DeviceStore final : public OptimizerStore {
 public:
  DeviceStore(std::int64_t n, const AdamWConfig& cfg, Backend& be) : n_(n), be_(be), adam_(n, cfg, be) {}
  void next_step() override { adam_.next_step(); }
  std::int64_t steps() const override { return adam_.steps(); }
  void set_steps(std::int64_t t) override { adam_.set_steps(t); }
  void update(const std::vector<AdamSpan>& spans, double lr) override {
    for (const AdamSpan& a : spans) adam_.update(a.param, a.grad, a.offset, a.n, lr);
  }
  bool does_io() const override { return false; }
  float* exp_avg() override { return adam_.exp_avg(); }
  float* exp_avg_sq() override { return adam_.exp_avg_sq(); }
  bool on_device() const override { return true; }
  void read_moments(float* m, float* v) override {  // host m, v
    copy_to_host(be_, m, adam_.exp_avg(), n_);
    copy_to_host(be_, v, adam_.exp_avg_sq(), n_);
  }
  void write_moments(const float* m, const float* v) override {
    copy_to_device(be_, adam_.exp_avg(), m, n_);
    copy_to_device(be_, adam_.exp_avg_sq(), v, n_);
  }
  OffloadMemory memory() const override { return {}; }
  std::string where() const override { return ""; }

 private:
  std::int64_t n_;
  Backend& be_;
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
  bool on_device() const override { return false; }  // host (or nullptr: in the file)
  void read_moments(float* m, float* v) override { a_->read_moments(m, v); }
  void write_moments(const float* m, const float* v) override { a_->write_moments(m, v); }
  OffloadMemory memory() const override { return a_->memory(); }
  std::string where() const override { return a_->where(); }

 private:
  std::unique_ptr<OffloadedAdamW> a_;
};

}  // namespace

std::unique_ptr<OptimizerStore> make_optimizer_store(const OffloadOptions& opt, std::int64_t n, const AdamWConfig& cfg,
                                                     int rank, Backend& backend) {
  if (opt.optimizer == OffloadTarget::None) return std::make_unique<DeviceStore>(n, cfg, backend);
  return std::make_unique<OffloadedStore>(OffloadedAdamW::make(opt, n, cfg, rank));
}

}  // namespace th::zero
