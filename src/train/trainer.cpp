#include "th/train/trainer.hpp"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "th/io/checkpoint.hpp"
#include "th/io/deck.hpp"
#include "th/io/metrics.hpp"
#include "th/core/error.hpp"
#include "th/core/profiler.hpp"
#include "th/data/dataset_h5.hpp"
#include "th/kernels/cpu.hpp"
#include "th/parallel/replica_check.hpp"
#include "th/train/memory_budget.hpp"
#include "th/train/progress.hpp"
#include "th/train/tasks.hpp"

namespace th {

namespace {
using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }
}  // namespace

Trainer::Trainer(const Config& cfg, Comm& comm) : cfg_(cfg), comm_(comm) {
  // Everything below uses the member copy (the loader keeps a reference to it).
  check_synthetic_data_fits(cfg_, comm);  // sizes refused before anything is allocated
  loader_ = make_batch_source(cfg_, comm);
  if (cfg_.model.vocab_size == 0) {
    // vocab_size = 0 means "the dataset's": store the resolved value in the deck that goes into
    // checkpoints, so a checkpoint's deck alone describes the model it holds.
    cfg_.model.vocab_size = loader_->vocab_size();
    cfg_.resolved_deck = Deck::from_text(cfg_.resolved_deck, "the resolved deck",
                                         {"model%vocab_size=" + std::to_string(cfg_.model.vocab_size)})
                             .to_namelist();
  }
  ModelSpec spec = model_spec(cfg_, loader_->vocab_size());
  const ZeroOptions zopt = zero_options(cfg_);
  ZeroEngine::configure(spec, zopt, comm.size());
  check_model_fits(cfg_, spec, comm);
  model_ = std::make_unique<Transformer<float>>(spec, run_backend(cfg_));
  // Before any step: a folder that cannot take checkpoints stops the run now, not at its first save.
  prepare_checkpoint_dir(comm, checkpoint_dir(),
                         cfg_.checkpoint.dir.empty() ? "checkpoint folder '" + checkpoint_dir() +
                                                           "' (checkpoint%dir = '', so <run%output_dir>/checkpoints)"
                                                     : "checkpoint%dir = '" + cfg_.checkpoint.dir + "'",
                         checkpoint_bytes(checkpoint_tensors(model_->params().infos()), cfg_.resolved_deck.size()));
  device_comm_ = std::make_unique<DeviceCommAttachment>(model_->backend(), comm, cfg_.parallel.comm);
  if (comm.rank() == 0 && !model_->backend().device_is_host() && comm.size() > 1)
    std::printf("collectives: %s (parallel%%comm = '%s')\n", device_comm_->describe(), cfg_.parallel.comm.c_str());
  engine_ = std::make_unique<ZeroEngine>(comm, *model_, zopt);  // allocates and initializes the parameters
  total_ = cfg_.run.max_steps > 0 ? cfg_.run.max_steps : loader_->steps_per_epoch() * cfg_.data.epochs;
  schedule_ = std::make_unique<LRSchedule>(cfg_.optim.schedule, cfg_.optim.lr, cfg_.optim.warmup_steps, total_,
                                           cfg_.optim.min_lr_ratio);
  profiler().configure(cfg_.profile.enabled, cfg_.profile.start_step, cfg_.profile.num_steps);
  if (cfg_.precision.dtype == "fp16")  // bf16 has fp32's exponent range: no scaling
    scaler_ = LossScaler({cfg_.precision.loss_scale, cfg_.precision.initial_scale_power, cfg_.precision.loss_scale_window,
                          cfg_.precision.hysteresis, cfg_.precision.min_loss_scale, cfg_.precision.max_skipped_steps});
  resume();
}

std::string Trainer::checkpoint_dir() const {
  return checkpoint_folder(cfg_);
}

// Continue from a checkpoint (checkpoint%resume): parameters, Adam moments and step, the sampler
// position and the dropout counter, so the run goes on exactly as if it had not stopped. Written
// on any number of ranks and any ZeRO stage: each rank reads what it holds now (stage 0: the
// whole state; stages 1-3: its partition, then the parameters it keeps whole are all-gathered).
// The sampler position
// is kept in micro-batches, so a run may continue on another world size x grad_accum; the batches
// of each step are the same only when that product is unchanged (the elastic rule).
void Trainer::resume() {
  ParamStore<float>& ps = model_->params();
  const auto tensors = checkpoint_tensors(ps.infos());
  const std::string path = find_checkpoint(comm_, checkpoint_dir(), cfg_.checkpoint.resume, tensors);
  if (path.empty()) return;
  const auto t0 = Clock::now();
  const CheckpointState st = engine_->load(path);
  const double load_s = seconds_since(t0);
  // The same verdict on every rank: the state's attributes and the dataset's are read by all.
  const std::string data = cfg_.data.synthetic != "none" ? "data%synthetic = '" + cfg_.data.synthetic + "'"
                                                         : "data%train_file = '" + cfg_.data.train_file + "'";
  const std::string mismatch = tokenizer_mismatch(path, st.tokenizer_fingerprint, data, loader_->tokenizer_fingerprint());
  if (!mismatch.empty()) throw InputError("cannot resume: " + mismatch);
  step_ = saved_step_ = st.step;
  engine_->set_steps(st.optimizer_steps >= 0 ? st.optimizer_steps : st.step);
  if (scaler_.enabled()) {
    LossScaler::State s = scaler_.state();
    s.scale = st.loss_scale;
    if (st.scaler_hysteresis_left > 0) {  // written by an fp16 run
      s.clean_steps = st.scaler_clean_steps;
      s.hysteresis_left = st.scaler_hysteresis_left;
      s.floor_overflows = st.scaler_floor_overflows;
      s.skipped_steps = st.scaler_skipped_steps;
    }
    scaler_.restore(s);
  }
  const std::int64_t old_group =
      static_cast<std::int64_t>(st.world_size) * make_config(Deck::from_text(st.deck, path)).optim.grad_accum;
  const std::int64_t new_group = static_cast<std::int64_t>(comm_.size()) * cfg_.optim.grad_accum;
  const std::int64_t consumed = st.step_in_epoch * old_group;  // micro-batches of the epoch used
  loader_->restore({st.epoch, consumed / new_group});
  if (comm_.rank() == 0) {
    std::printf("resumed from %s: step %lld, epoch %lld (written on %d ranks, ZeRO stage %d; read in %.2f s)\n",
                path.c_str(), static_cast<long long>(st.step), static_cast<long long>(st.epoch), st.world_size,
                st.zero_stage, load_s);
    if (consumed % new_group != 0)
      std::printf("warning: ranks x grad_accum changed from %lld to %lld mid-epoch: %lld micro-batches of epoch %lld "
                  "are skipped\n", static_cast<long long>(old_group), static_cast<long long>(new_group),
                  static_cast<long long>(consumed % new_group), static_cast<long long>(st.epoch));
  }
}

void Trainer::save_checkpoint_now() {
  const auto sampler = loader_->state();
  CheckpointState st;
  st.step = step_;
  st.epoch = sampler.epoch;
  st.step_in_epoch = sampler.step_in_epoch;
  st.micro = static_cast<std::uint64_t>(step_) * static_cast<std::uint64_t>(comm_.size() * cfg_.optim.grad_accum);
  st.deck = cfg_.resolved_deck;
  st.tokenizer_fingerprint = loader_->tokenizer_fingerprint();
  st.world_size = comm_.size();
  st.zero_stage = cfg_.parallel.zero_stage;
  st.loss_scale = scaler_.scale();
  st.optimizer_steps = engine_->steps();
  if (scaler_.enabled()) {
    const LossScaler::State& s = scaler_.state();
    st.scaler_clean_steps = s.clean_steps;
    st.scaler_hysteresis_left = s.hysteresis_left;
    st.scaler_floor_overflows = s.floor_overflows;
    st.scaler_skipped_steps = s.skipped_steps;
  }
  ProfileScope scope(profiler(), "checkpoint/save", Category::IO);
  const auto t0 = Clock::now();
  engine_->save(checkpoint_dir(), st, cfg_.checkpoint.keep_last);
  const double seconds = seconds_since(t0);  // the save is collective: every rank left it together
  saved_step_ = step_;
  if (comm_.rank() == 0) {
    const std::string path = checkpoint_dir() + "/" + checkpoint_file_name(step_);
    std::error_code ec;
    const double mb = static_cast<double>(std::filesystem::file_size(path, ec)) / 1e6;
    std::printf("checkpoint: step %lld -> %s (%.1f MB, written and verified in %.2f s, %.0f MB/s)\n",
                static_cast<long long>(step_), path.c_str(), ec ? 0.0 : mb, seconds, ec ? 0.0 : mb / seconds);
    std::fflush(stdout);
  }
}

Trainer::~Trainer() = default;

namespace {
// Testing aid for the no-hang guarantee: TH_FAULT="rank:step:kind" makes that rank fail at the
// start of that step, by throwing (kind 'throw') or by dying without a word (kind 'exit'); kind
// 'save' is a SIGKILL in the middle of writing that step's checkpoint (io/checkpoint_save.cpp).
// Kind 'overflow' sets one of that rank's reduced gradients to inf before the overflow check of
// that step (the step number 0 means every step: a permanent overflow).
void maybe_inject_fault(int rank, std::int64_t step) {
  const std::string kind = injected_fault(rank, step);
  if (kind == "exit") std::_Exit(9);
  if (kind == "throw") throw Error("fault injected by TH_FAULT at step " + std::to_string(step));
  inject_fault("input", rank, step, "an input error raised by this rank alone");
}
}  // namespace

Trainer::StepResult Trainer::step() {
  const auto t0 = Clock::now();
  maybe_inject_fault(comm_.rank(), step_ + 1);
  Profiler& prof = profiler();
  prof.set_step(step_ + 1);  // the window counts steps as the progress line does
  if (prof.window_done() && !prof.trace_written()) prof.finish(comm_, cfg_.run.output_dir + "/trace.json");
  const auto seed = static_cast<std::uint64_t>(cfg_.run.seed);
  std::vector<Batch> micro;
  {
    ProfileScope scope(prof, "data/next_step", Category::Data);
    micro = loader_->next_step();
  }
  const int accum = static_cast<int>(micro.size());
  StepResult r;
  engine_->zero_grad();
  for (int a = 0; a < accum; ++a) {
    // Dropout masks are keyed by the global number of the micro-batch (step x world x accum +
    // a x world + rank, the elastic rule's numbering), so they too do not depend on how the global
    // batch is split over ranks and accumulation.
    const auto world = static_cast<std::uint64_t>(comm_.size());
    const std::uint64_t micro_id = static_cast<std::uint64_t>(step_) * world * static_cast<std::uint64_t>(accum) +
                                   static_cast<std::uint64_t>(a) * world + static_cast<std::uint64_t>(comm_.rank()) + 1;
    {
      ProfileScope scope(prof, "forward", Category::Compute);
      r.loss += model_->forward(micro[a], seed, micro_id) / accum;
    }
    engine_->begin_backward(a + 1 == accum);
    {
      ProfileScope scope(prof, "backward", Category::Compute);
      model_->backward(scaler_.scale() / accum, engine_->hook());
    }
    engine_->finish_backward();
    r.tokens += static_cast<double>(micro[a].positions());
  }
  r.loss_scale = scaler_.scale();
  {
    ProfileScope scope(prof, "optimizer", Category::Optimizer);
    r.lr = schedule_->at(step_ + 1);
    if (scaler_.enabled()) {
      // fp16: did any rank's gradients overflow? One decision for all ranks, taken before
      // anything is skipped; update() throws on every rank alike when the scale is stuck.
      if (injected_fault(comm_.rank(), step_ + 1) == "overflow") engine_->inject_overflow();
      r.skipped = scaler_.update(comm_.any_true(engine_->local_overflow()), step_ + 1);
    }
    if (!r.skipped) {
      r.grad_norm = engine_->clip_and_norm(cfg_.optim.clip_norm, r.loss_scale);
      if (std::isfinite(r.grad_norm)) engine_->update(r.lr);
    } else {
      engine_->skip_update();
    }
  }
  // The norm is computed from the averaged gradients, identical on every rank: skipping or
  // stopping on it is a decision all ranks take together.
  if (!std::isfinite(r.grad_norm))
    throw Error("gradient norm is " + std::to_string(r.grad_norm) + " at step " + std::to_string(step_ + 1) +
                " (loss " + std::to_string(r.loss) + "): training diverged; lower optim%lr or raise warmup_steps");
  ++step_;
  const int check_every = cfg_.parallel.consistency_check_every;
  if (check_every > 0 && step_ % check_every == 0 && !engine_->replicas_identical())
    throw Error("parameters differ between ranks after step " + std::to_string(step_) +
                " (parallel%consistency_check_every): the replicas diverged");
  double stats[2] = {r.loss, r.tokens};
  comm_.allreduce(stats, 2, ReduceOp::Sum);
  r.loss = stats[0] / comm_.size();
  r.tokens = stats[1];
  r.seconds = seconds_since(t0);
  return r;
}

EvalStats Trainer::validate() {
  ProfileScope scope(profiler(), "validate", Category::Compute);
  std::vector<Batch> batches = loader_->valid_batches();
  // When the engine gathers parameters inside forward (collectives, ZeRO stage 3), every rank runs
  // as many forwards as the rank with the most batches, the extra ones on an all-padding batch (no tokens).
  if (engine_->collective_forward()) {
    const auto n = static_cast<std::size_t>(comm_.max(static_cast<double>(batches.size())));
    Batch idle;
    idle.B = 1;
    idle.S = cfg_.model.arch == "decoder-only" ? 0 : 1;
    idle.T = 1;
    idle.src.assign(static_cast<std::size_t>(idle.S), SpecialTokens::pad);
    idle.src_len.assign(static_cast<std::size_t>(idle.S), 1);
    idle.tgt_in = idle.tgt_out = {SpecialTokens::pad};
    idle.tgt_len = {1};
    batches.resize(n, idle);
  }
  const EvalStats stats = evaluate_batches(*model_, batches, comm_, loader_->token_bytes());
  engine_->drop_prefetched();
  return stats;
}

void Trainer::record_validation(MetricsFile* metrics) {
  const EvalStats v = validate();
  const bool per_byte = !loader_->token_bytes().empty();  // text datasets: perplexity per byte too
  if (comm_.rank() == 0) {
    std::printf("validation at step %lld: loss %.4f, perplexity %.3f, token accuracy %.2f%%", static_cast<long long>(step_),
                v.loss, v.perplexity, 100.0 * v.accuracy);
    if (per_byte) std::printf(", per byte: perplexity %.4f, %.4f bits", v.byte_perplexity, v.bits_per_byte);
    std::printf("\n");
  }
  std::vector<std::pair<std::string, double>> record = {{"step", double(step_)}, {"loss", v.loss},
                                                        {"perplexity", v.perplexity}, {"accuracy", v.accuracy},
                                                        {"tokens", v.tokens}};
  if (per_byte)
    record.insert(record.end(), {{"bytes", v.bytes}, {"byte_perplexity", v.byte_perplexity},
                                 {"bits_per_byte", v.bits_per_byte}});
  if (metrics) metrics->append("valid", record);
}

void Trainer::run() {
  const bool root = comm_.rank() == 0;
  std::unique_ptr<MetricsFile> metrics;
  if (root) {
    std::string note;
    metrics = std::make_unique<MetricsFile>(cfg_.run.output_dir + "/metrics.h5", cfg_.resolved_deck,
                                            step_ > 0 ? step_ : -1, &note);
    if (!note.empty()) std::printf("metrics: %s\n", note.c_str());
  }
  if (root)
    std::printf("model: %s, %lld parameters; %lld %s, %lld steps per epoch, %lld steps\n",
                cfg_.model.arch.c_str(), static_cast<long long>(model_->params().size()),
                static_cast<long long>(loader_->examples()), loader_->example_name(),
                static_cast<long long>(loader_->steps_per_epoch()),
                static_cast<long long>(total_));
  memory_report("at start-up");
  Progress progress(total_, root);
  std::ofstream rank_log;  // log%per_rank: every rank's own numbers, for debugging divergence
  if (cfg_.log.per_rank) rank_log.open(cfg_.run.output_dir + "/rank_" + std::to_string(comm_.rank()) + ".log");
  double w_loss = 0, w_tokens = 0, w_time = 0;
  std::int64_t w_steps = 0;
  install_stop_signals();
  bool stopped = false;
  const std::int64_t first_step = step_;
  while (step_ < total_) {
    // Preemption (Slurm's --signal=USR1@T, a TERM before a kill, Ctrl-C): a signal reaches the
    // ranks at different moments, so they agree first, then all stop before this step. Checked
    // before the first step too: a signal during start-up stops the run without a step.
    if (comm_.any_true(stop_signal_received())) {
      const bool any_step = step_ > first_step;
      if (any_step && saved_step_ != step_) save_checkpoint_now();
      if (root) {
        if (any_step || saved_step_ == step_)
          std::printf("stopped by a signal after step %lld; checkpoint in %s; run again with checkpoint%%resume = "
                      "'auto' to continue\n", static_cast<long long>(step_), checkpoint_dir().c_str());
        else
          std::printf("stopped by a signal before the first step; nothing to save\n");
        std::fflush(stdout);
      }
      stopped = true;
      break;
    }
    const StepResult r = step();
    if (step_ == first_step + 1) memory_report("after the first step", metrics.get());
    if (rank_log.is_open())
      rank_log << "step " << step_ << " loss(all ranks) " << r.loss << " grad_norm " << r.grad_norm << " lr " << r.lr
               << " loss_scale " << r.loss_scale << (r.skipped ? " skipped" : "")
               << " step_s " << r.seconds << " local_micro_batches " << cfg_.optim.grad_accum << std::endl;
    if (root && r.skipped)
      std::printf("step %lld: fp16 gradients overflowed on some rank, update skipped; loss scale now %g\n",
                  static_cast<long long>(step_), scaler_.scale());
    w_loss += r.loss;
    w_tokens += r.tokens;
    w_time += r.seconds;
    ++w_steps;
    if (step_ % cfg_.log.every_steps == 0 || step_ == total_) {
      const double loss = w_loss / w_steps, tps = w_tokens / w_time, step_s = w_time / w_steps;
      const double peak = comm_.max(static_cast<double>(model_->backend().pool(MemorySpace::Device).stats().peak_total));
      const auto epoch = loader_->state().epoch;
      progress.report(step_, epoch, loss, r.lr, r.grad_norm, tps, step_s);
      if (metrics)
        metrics->append("train", {{"step", double(step_)}, {"epoch", double(epoch)}, {"loss", loss}, {"lr", r.lr},
                                  {"grad_norm", r.grad_norm}, {"loss_scale", r.loss_scale}, {"tokens_per_s", tps},
                                  {"step_s", step_s}, {"peak_bytes", peak}});
      w_loss = w_tokens = w_time = 0;
      w_steps = 0;
    }
    const int valid_every = cfg_.log.valid_every_steps;
    if (valid_every > 0 && step_ % valid_every == 0 && step_ < total_) record_validation(metrics.get());
    const int every = cfg_.checkpoint.every_steps;
    if (every > 0 && step_ % every == 0) save_checkpoint_now();
  }
  if (!stopped && saved_step_ != step_) save_checkpoint_now();  // the final state
  if (stopped) return;
  Profiler& prof = profiler();
  if (prof.enabled() && !prof.trace_written()) {  // the window reached past the last step
    prof.set_step(step_ + 1);
    prof.finish(comm_, cfg_.run.output_dir + "/trace.json");
  }
  record_validation(metrics.get());
  if (root) print_memory_report(model_->backend());
}

std::vector<ZeroMemory> Trainer::memory_report(const char* when, MetricsFile* metrics) {
  const std::vector<ZeroMemory> all = engine_->memory_report(when);  // rank 0 prints the table
  if (metrics)
    for (std::size_t r = 0; r < all.size(); ++r)
      metrics->append("memory", {{"rank", double(r)},
                                 {"params_bytes", double(all[r].params)},
                                 {"grads_bytes", double(all[r].grads)},
                                 {"optimizer_bytes", double(all[r].optimizer)},
                                 {"formula_bytes", double(all[r].formula)},
                                 {"activation_peak_bytes", double(all[r].activation_peak)}});
  return all;
}

void run_train(const Config& cfg, Comm& comm) {
  Trainer trainer(cfg, comm);
  trainer.run();
}

}  // namespace th
