#pragma once
// task = 'train': the training loop of one rank of the SPMD job. Every rank runs the same steps
// on its own micro-batches (TrainLoader's elastic rule); gradients are averaged over ranks in
// buckets overlapped with backward (GradientSync) before the optimizer, so the parameters stay
// identical everywhere.
#include <cstdint>
#include <memory>
#include <string>

#include "th/config/config.hpp"
#include "th/core/stop_signal.hpp"
#include "th/data/loader.hpp"
#include "th/data/batch_source.hpp"
#include "th/model/teacher_forced.hpp"
#include "th/model/transformer.hpp"
#include "th/parallel/comm.hpp"
#include "th/train/device_comm.hpp"
#include "th/train/grad_sync.hpp"
#include "th/train/loss_scaler.hpp"
#include "th/train/optimizer.hpp"
#include "th/train/zero.hpp"

namespace th {

class MetricsFile;

// Stop requests by signal (SIGUSR1, SIGTERM, SIGINT): th/core/stop_signal.hpp. The training loop
// checks them (collectively) before every step.

class MetricsFile;

class Trainer {
 public:
  Trainer(const Config& cfg, Comm& comm);
  ~Trainer();

  struct StepResult {
    double loss = 0;       // mean over the step's micro-batches and ranks
    double grad_norm = 0;  // before clipping
    double lr = 0;
    double tokens = 0;     // positions of all ranks' micro-batches, padding included
    double seconds = 0;
    double loss_scale = 1;  // the scale this step's backward used (fp16; 1 otherwise)
    bool skipped = false;   // fp16 overflow: no update (grad_norm 0)
  };
  StepResult step();  // one optimizer step (optim%grad_accum micro-batches)
  EvalStats validate();  // NLL, perplexity, token accuracy over the validation set, dropout off, all ranks
  void run();         // the whole task: steps, progress, metrics, validation, memory report

  // Checkpoints (io/checkpoint.hpp): the folder, and a save of the current state (collective).
  std::string checkpoint_dir() const;
  void save_checkpoint_now();

  std::int64_t steps_done() const { return step_; }
  std::int64_t total_steps() const { return total_; }
  Transformer<float>& model() { return *model_; }
  GradientSync& sync() { return engine_->sync(); }
  ZeroEngine& zero() { return *engine_; }
  const LossScaler& scaler() const { return scaler_; }
  // The full parameter vector (flat layout), on every rank; collective (stage 3 gathers it).
  std::vector<float> parameters() { return engine_->gather_values(); }
  // Rank 0 prints the per-rank memory table (model states vs the ZeRO formula); collective.
  // With `metrics`, the figures also go to /memory/ of metrics.h5 (one record per rank).
  std::vector<ZeroMemory> memory_report(const char* when, MetricsFile* metrics = nullptr);

 private:
  Config cfg_;  // a copy (callers may pass a temporary), model%vocab_size resolved from the data
  Comm& comm_;
  std::unique_ptr<BatchSource> loader_;  // TrainLoader, or PackedLoader (data%packing = 'concat')
  std::unique_ptr<Transformer<float>> model_;
  std::unique_ptr<DeviceCommAttachment> device_comm_;  // parallel%comm on device buffers (before the engine)
  std::unique_ptr<ZeroEngine> engine_;
  std::unique_ptr<LRSchedule> schedule_;
  LossScaler scaler_;  // fp16 only (scale 1 otherwise)
  void resume();
  void record_validation(MetricsFile* metrics);  // validate, print (rank 0), append to /valid/
  std::int64_t step_ = 0, total_ = 0, saved_step_ = -1;
};

}  // namespace th
