// ZeroEngine (th/train/zero.hpp): the parts wired together, and the step-level calls handed to them.
#include <algorithm>

#include "engine_impl.hpp"
#include "th/core/error.hpp"
#include "th/parallel/agree.hpp"

namespace th {

namespace {
const std::vector<ParamSegment>& closed_segments(ParamStore<float>& ps) {
  ps.end_unit();  // the model's last unit (idempotent)
  return ps.segments();
}
}  // namespace

void ZeroEngine::configure(ModelSpec& spec, const ZeroOptions& opt, int world) {
  const zero::StagePolicy policy = zero::stage_policy(opt.stage);
  zero::configure_layout(spec, policy, opt.bucket_mb, world, opt.compute);
  spec.two_byte_params = opt.compute != DType::F32 && opt.two_byte_params && !policy.params_partitioned;
  spec.two_byte_grads = opt.compute != DType::F32 && opt.two_byte_grads && opt.grad_accum == 1 &&
                        opt.offload.optimizer == OffloadTarget::None && opt.offload.param == OffloadTarget::None;
}

ZeroEngine::Impl::Impl(Comm& c, Transformer<float>& m, const ZeroOptions& o)
    : comm(c), model(m), ps(m.params()), opt(o), policy(zero::stage_policy(o.stage)),
      part(closed_segments(m.params()), policy.replicated ? 0 : c.rank(), policy.replicated ? 1 : c.size()) {
  const int N = comm.size();
  const std::int64_t P = ps.size(), S = part.shard_size();
  TH_CHECK(policy.replicated || (m.spec().param_align == zero::layout_align(policy, N, opt.compute) &&
                                 m.spec().external_param_storage == policy.grads_partitioned),
           "the model was not configured for ZeRO stage " + std::to_string(policy.stage) + " (ZeroEngine::configure)");
  TH_CHECK(opt.offload.optimizer == OffloadTarget::None || !policy.replicated, "optimizer offload needs ZeRO stage >= 1");
  TH_CHECK(opt.offload.param == OffloadTarget::None || policy.params_partitioned,
           "parameter offload is 'cpu' or 'nvme' with ZeRO stage 3");

  // 2-byte gradients: the model was configured for them, on a backend that takes bf16 operands
  // (as the model's allocation asks, Transformer's constructor).
  grads = zero::make_grad_reduction(policy, ps, part, opt.compute,
                                    m.spec().two_byte_grads && m.backend().kernels<float>().bf16_operands());
  m.set_grad_access(grads->grad_access());
  params = zero::make_param_home(policy, comm, model, part, opt, grads->working());
  // The moment space: stage 0 the whole buffer, else the partition. An NVMe file that cannot be
  // created stops every rank.
  const std::int64_t moments = policy.replicated ? P : S;
  if (opt.offload.optimizer == OffloadTarget::None)
    store = zero::make_optimizer_store(opt.offload, moments, opt.adam, comm.rank(), m.backend());
  else
    agree_each(comm, [&] {
      store = zero::make_optimizer_store(opt.offload, moments, opt.adam, comm.rank(), m.backend());
    });

  // The owned spans (stable pointers): the whole buffer when replicated, else one per piece.
  if (policy.replicated)
    spans.push_back({ps.values(), grads->owned({0, P, 0, 0}), 0, P, ps.values16(), grads->owned16({0, P, 0, 0})});
  else
    for (const ZeroPartition::Piece& p : part.pieces())
      spans.push_back({params->owned(p), grads->owned(p), p.shard, p.count, params->owned16(p), grads->owned16(p)});
  const int summed_over = policy.replicated ? 1 : N;
  step = std::make_unique<zero::OptimizerStep>(comm, spans, *params, *store, opt.compute, summed_over,
                                               grads->two_byte() ? N : summed_over, moments, m.backend());

  params->initialize(opt.seed, spans, step->master(), opt.compute);  // the same on every rank
  grads->init_sync(comm, opt);
}

ZeroEngine::ZeroEngine(Comm& comm, Transformer<float>& model, const ZeroOptions& opt)
    : impl_(std::make_unique<Impl>(comm, model, opt)) {}

ZeroEngine::~ZeroEngine() {
  impl_->model.set_param_access(nullptr);
  impl_->model.set_grad_access(nullptr);
}

const ZeroPartition& ZeroEngine::partition() const { return impl_->part; }
bool ZeroEngine::collective_forward() const { return impl_->params->collective_forward(); }

void ZeroEngine::zero_grad() { impl_->grads->zero_grad(); }
void ZeroEngine::begin_backward(bool last_micro_batch) { impl_->grads->begin_backward(last_micro_batch); }
Transformer<float>::GradsReadyFn ZeroEngine::hook() {
  zero::GradReduction* g = impl_->grads.get();
  return [g](std::int64_t w) { g->grads_ready(w); };
}
void ZeroEngine::finish_backward() { impl_->grads->finish(); }
double ZeroEngine::clip_and_norm(double max_norm, double loss_scale) {
  return impl_->step->clip_and_norm(max_norm, loss_scale);
}
bool ZeroEngine::local_overflow() { return impl_->step->local_overflow(); }
void ZeroEngine::inject_overflow() { impl_->step->inject_overflow(); }
void ZeroEngine::update(double lr) { impl_->step->update(lr); }
void ZeroEngine::skip_update() { impl_->step->skip_update(); }
void ZeroEngine::drop_prefetched() { impl_->params->drop_prefetched(); }

std::int64_t ZeroEngine::steps() const { return impl_->store->steps(); }
void ZeroEngine::set_steps(std::int64_t t) { impl_->store->set_steps(t); }
GradientSync& ZeroEngine::sync() { return impl_->grads->sync(); }

std::vector<float> ZeroEngine::gather_values() { return impl_->params->gather_values(); }
bool ZeroEngine::replicas_identical() { return impl_->params->replicas_identical(); }
std::string ZeroEngine::offload_where() const { return impl_->store->where(); }

}  // namespace th
