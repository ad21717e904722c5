// task = 'train': the training loop of one process in the SPMD job. Every rank runs the same
// steps on its own shard of each global batch; gradients are averaged over ranks before the
// optimizer, so the parameters stay identical everywhere.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>

#include "io/metrics.hpp"
#include "th/core/error.hpp"
#include "th/data/batching.hpp"
#include "th/kernels/cpu.hpp"
#include "th/train/data_parallel.hpp"
#include "th/train/optimizer.hpp"
#include "th/train/progress.hpp"
#include "th/train/tasks.hpp"

namespace th {

ModelSpec model_spec(const Config& cfg, int vocab_size) {
  ModelSpec s;
  s.decoder_only = cfg.model.arch == "decoder-only";
  s.d_model = cfg.model.d_model;
  s.n_heads = cfg.model.n_heads;
  s.d_ff = cfg.model.d_ff;
  s.n_encoder_layers = s.decoder_only ? 0 : cfg.model.n_encoder_layers;
  s.n_decoder_layers = cfg.model.n_decoder_layers;
  s.activation = cfg.model.activation == "gelu" ? cpu::Activation::GELU : cpu::Activation::ReLU;
  s.pre_norm = cfg.model.norm == "pre";
  s.dropout = static_cast<float>(cfg.model.dropout);
  s.tie_embeddings = cfg.model.tie_embeddings;
  s.max_len = cfg.model.max_len;
  s.vocab_size = vocab_size;
  s.pad_id = SpecialTokens::pad;
  s.label_smoothing = cfg.optim.label_smoothing;
  s.activation_checkpointing = cfg.parallel.activation_checkpointing;
  return s;
}

namespace {
using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

void check_supported(const Config& cfg) {
  auto unsupported = [](const std::string& what) {
    throw InputError(what + " is not available in this build yet");
  };
  if (cfg.precision.dtype != "fp32") unsupported("precision%dtype = '" + cfg.precision.dtype + "'");
  if (cfg.parallel.zero_stage != 0) unsupported("parallel%zero_stage = " + std::to_string(cfg.parallel.zero_stage));
  if (cfg.parallel.offload_optimizer != "none") unsupported("parallel%offload_optimizer");
  if (cfg.parallel.offload_param != "none") unsupported("parallel%offload_param");
}

struct Datasets {
  std::vector<Example> train, valid;
  int vocab = 0;
};

Datasets load_data(const Config& cfg) {
  Datasets d;
  if (cfg.data.synthetic == "none")
    throw InputError("data%synthetic = 'none' needs data%train_file from task='prepare', which is not "
                     "available in this build yet; use data%synthetic = 'copy' or 'reverse'");
  const auto seed = static_cast<std::uint64_t>(cfg.run.seed);
  d.vocab = cfg.model.vocab_size;
  d.train = make_synthetic(cfg.data.synthetic, cfg.data.synthetic_samples, cfg.data.synthetic_min_len,
                           cfg.data.synthetic_max_len, d.vocab, seed, 1);
  d.valid = make_synthetic(cfg.data.synthetic, cfg.data.synthetic_valid_samples, cfg.data.synthetic_min_len,
                           cfg.data.synthetic_max_len, d.vocab, seed, 2);
  return d;
}

// Mean loss over the validation set, sharded over ranks, dropout off.
double validate(Transformer<float>& model, const Datasets& data, const Config& cfg, Comm& comm) {
  const bool dec_only = model.spec().decoder_only;
  auto batches = make_batches(data.valid, cfg.data.max_tokens, 0, 0, false, dec_only);
  double sum = 0, count = 0;
  for (std::size_t k = static_cast<std::size_t>(comm.rank()); k < batches.size(); k += comm.size()) {
    Batch b = collate(data.valid, batches[k], dec_only);
    const double loss = model.forward(b, 0, 0, /*train=*/false);
    sum += loss * static_cast<double>(model.target_tokens());
    count += static_cast<double>(model.target_tokens());
    model.backward(0.0);  // frees the activations; gradients get zero added
  }
  double v[2] = {sum, count};
  comm.allreduce(v, 2, ReduceOp::Sum);
  return v[1] > 0 ? v[0] / v[1] : 0.0;
}
}  // namespace

void run_train(const Config& cfg, Comm& comm) {
  check_supported(cfg);
  const bool root = comm.rank() == 0;
  Datasets data = load_data(cfg);
  Transformer<float> model(model_spec(cfg, data.vocab));
  ParamStore<float>& ps = model.params();
  const auto seed = static_cast<std::uint64_t>(cfg.run.seed);
  ps.initialize(seed);
  comm.broadcast(ps.values(), sizeof(float) * static_cast<std::size_t>(ps.size()), 0);  // rank 0's copy wins
  AdamW<float> opt(ps.size(), AdamWConfig{cfg.optim.lr, cfg.optim.betas[0], cfg.optim.betas[1], cfg.optim.eps,
                                          cfg.optim.weight_decay});
  const bool dec_only = model.spec().decoder_only;
  const int accum = cfg.optim.grad_accum;
  const auto probe = shard_batches(make_batches(data.train, cfg.data.max_tokens, seed, 0, cfg.data.shuffle, dec_only),
                                   comm.rank(), comm.size());
  const std::int64_t steps_per_epoch = static_cast<std::int64_t>(probe.size()) / accum;
  if (steps_per_epoch == 0)
    throw InputError("the training set gives no optimizer step per epoch (" + std::to_string(probe.size()) +
                     " micro-batches per rank, optim%grad_accum = " + std::to_string(accum) +
                     "): lower data%max_tokens or grad_accum, or add samples");
  const std::int64_t total = cfg.run.max_steps > 0 ? cfg.run.max_steps : steps_per_epoch * cfg.data.epochs;
  LRSchedule schedule(cfg.optim.schedule, cfg.optim.lr, cfg.optim.warmup_steps, total, cfg.optim.min_lr_ratio);

  std::unique_ptr<MetricsFile> metrics;
  if (root) metrics = std::make_unique<MetricsFile>(cfg.run.output_dir + "/metrics.h5", cfg.resolved_deck);
  Progress progress(total, root);
  if (root)
    std::printf("model: %s, %lld parameters; %zu training examples, %lld steps per epoch, %lld steps\n",
                cfg.model.arch.c_str(), static_cast<long long>(ps.size()), data.train.size(),
                static_cast<long long>(steps_per_epoch), static_cast<long long>(total));

  std::int64_t step = 0;
  std::uint64_t micro = 0;
  double window_loss = 0, window_tokens = 0, window_time = 0;
  std::int64_t window_steps = 0;
  for (std::int64_t epoch = 0; step < total; ++epoch) {
    auto mine = shard_batches(make_batches(data.train, cfg.data.max_tokens, seed, epoch, cfg.data.shuffle, dec_only),
                              comm.rank(), comm.size());
    for (std::int64_t s = 0; s < steps_per_epoch && step < total; ++s) {
      const auto t0 = Clock::now();
      ps.zero_grad();
      double loss = 0, tokens = 0;
      for (int a = 0; a < accum; ++a) {
        Batch b = collate(data.train, mine[static_cast<std::size_t>(s * accum + a)], dec_only);
        loss += model.forward(b, seed, ++micro * static_cast<std::uint64_t>(comm.size()) + comm.rank()) / accum;
        model.backward(1.0 / accum);
        tokens += static_cast<double>(b.positions());
      }
      average_gradients(comm, ps.grads(), ps.size());
      const double gnorm = clip_by_global_norm(ps.grads(), ps.size(), cpu::sum_squares(ps.grads(), ps.size()),
                                               cfg.optim.clip_norm);
      if (!std::isfinite(gnorm))
        throw Error("gradient norm is " + std::to_string(gnorm) + " at step " + std::to_string(step + 1) +
                    " (loss " + std::to_string(loss) + "): training diverged; lower optim%lr or raise warmup_steps");
      ++step;
      const double lr = schedule.at(step);
      opt.step(ps.values(), ps.grads(), lr);
      const int check_every = cfg.parallel.consistency_check_every;
      if (check_every > 0 && step % check_every == 0 && !replicas_identical(comm, ps.values(), ps.size()))
        throw Error("parameters differ between ranks after step " + std::to_string(step) +
                    " (parallel%consistency_check_every): the replicas diverged");
      double stats[2] = {loss, tokens};
      comm.allreduce(stats, 2, ReduceOp::Sum);
      window_loss += stats[0] / comm.size();
      window_tokens += stats[1];
      window_time += seconds_since(t0);
      ++window_steps;
      if (step % cfg.log.every_steps == 0 || step == total) {
        const double mean_loss = window_loss / window_steps, tps = window_tokens / window_time,
                     step_s = window_time / window_steps;
        const double peak = comm.max(static_cast<double>(host_pool().stats().peak_total));
        progress.report(step, epoch, mean_loss, lr, gnorm, tps, step_s);
        if (metrics)
          metrics->append("train", {{"step", double(step)}, {"epoch", double(epoch)}, {"loss", mean_loss},
                                    {"lr", lr}, {"grad_norm", gnorm}, {"loss_scale", 1.0},
                                    {"tokens_per_s", tps}, {"step_s", step_s}, {"peak_bytes", peak}});
        window_loss = window_tokens = window_time = 0;
        window_steps = 0;
      }
    }
  }
  const double vloss = validate(model, data, cfg, comm);
  if (root) {
    std::printf("validation: loss %.4f, perplexity %.3f\n", vloss, std::exp(vloss));
    print_memory_report(host_pool().stats());
  }
  if (metrics) metrics->append("valid", {{"step", double(step)}, {"loss", vloss}, {"perplexity", std::exp(vloss)}});
}

}  // namespace th
