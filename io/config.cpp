#include "th/config/config.hpp"

#include <vector>

#include "th/io/deck.hpp"
#include "th/io/deck_schema.hpp"
#include "th/core/error.hpp"

namespace th {
namespace {

// Reads keys of one group and remembers which, so that a key added to the schema but not to
// Config is caught the first time any test builds a Config.
class GroupReader {
 public:
  GroupReader(const Deck& deck, std::vector<bool>& seen, const char* group)
      : deck_(deck), seen_(seen), group_(group) {}

  void get(const char* key, int& out) { out = static_cast<int>(deck_.get_int(group_, mark(key))); }
  void get(const char* key, long long& out) { out = deck_.get_int(group_, mark(key)); }
  void get(const char* key, double& out) { out = deck_.get_real(group_, mark(key)); }
  void get(const char* key, bool& out) { out = deck_.get_bool(group_, mark(key)); }
  void get(const char* key, std::string& out) { out = deck_.get_string(group_, mark(key)); }
  void get(const char* key, std::vector<int>& out) {
    out.clear();
    for (long long v : deck_.get_ints(group_, mark(key))) out.push_back(static_cast<int>(v));
  }
  void get(const char* key, std::vector<std::string>& out) { out = deck_.get_strings(group_, mark(key)); }
  void get(const char* key, std::array<double, 2>& out) {
    const std::vector<double> v = deck_.get_reals(group_, mark(key));
    if (v.size() != out.size()) throw Error(group_ + "%" + key + " does not have 2 values");
    out = {v[0], v[1]};
  }

 private:
  const char* mark(const char* key) {
    const int index = deck_key_index(group_, key);
    if (index >= 0) seen_[static_cast<std::size_t>(index)] = true;
    return key;
  }

  const Deck& deck_;
  std::vector<bool>& seen_;
  std::string group_;
};

}  // namespace

Config make_config(const Deck& deck) {
  Config c;
  std::vector<bool> seen(deck_schema().size(), false);

  GroupReader run(deck, seen, "run");
  run.get("task", c.run.task);
  run.get("output_dir", c.run.output_dir);
  run.get("seed", c.run.seed);
  run.get("backend", c.run.backend);
  run.get("max_steps", c.run.max_steps);
  run.get("threads", c.run.threads);

  GroupReader model(deck, seen, "model");
  model.get("arch", c.model.arch);
  model.get("d_model", c.model.d_model);
  model.get("n_heads", c.model.n_heads);
  model.get("d_ff", c.model.d_ff);
  model.get("n_encoder_layers", c.model.n_encoder_layers);
  model.get("n_decoder_layers", c.model.n_decoder_layers);
  model.get("activation", c.model.activation);
  model.get("norm", c.model.norm);
  model.get("dropout", c.model.dropout);
  model.get("tie_embeddings", c.model.tie_embeddings);
  model.get("max_len", c.model.max_len);
  model.get("vocab_size", c.model.vocab_size);

  GroupReader data(deck, seen, "data");
  data.get("train_file", c.data.train_file);
  data.get("valid_file", c.data.valid_file);
  data.get("test_file", c.data.test_file);
  data.get("max_tokens", c.data.max_tokens);
  data.get("epochs", c.data.epochs);
  data.get("shuffle", c.data.shuffle);
  data.get("synthetic", c.data.synthetic);
  data.get("synthetic_min_len", c.data.synthetic_min_len);
  data.get("synthetic_max_len", c.data.synthetic_max_len);
  data.get("synthetic_samples", c.data.synthetic_samples);
  data.get("synthetic_valid_samples", c.data.synthetic_valid_samples);
  data.get("packing", c.data.packing);
  data.get("document_mask", c.data.document_mask);

  GroupReader prepare(deck, seen, "prepare");
  prepare.get("source", c.prepare.source);
  prepare.get("vocab_size", c.prepare.vocab_size);
  prepare.get("valid_fraction", c.prepare.valid_fraction);
  prepare.get("test_fraction", c.prepare.test_fraction);
  prepare.get("text_documents", c.prepare.text_documents);
  prepare.get("spm_type", c.prepare.spm_type);
  prepare.get("spm_sample_sentences", c.prepare.spm_sample_sentences);

  GroupReader optim(deck, seen, "optim");
  optim.get("lr", c.optim.lr);
  optim.get("betas", c.optim.betas);
  optim.get("eps", c.optim.eps);
  optim.get("weight_decay", c.optim.weight_decay);
  optim.get("warmup_steps", c.optim.warmup_steps);
  optim.get("schedule", c.optim.schedule);
  optim.get("min_lr_ratio", c.optim.min_lr_ratio);
  optim.get("clip_norm", c.optim.clip_norm);
  optim.get("label_smoothing", c.optim.label_smoothing);
  optim.get("grad_accum", c.optim.grad_accum);

  GroupReader parallel(deck, seen, "parallel");
  parallel.get("zero_stage", c.parallel.zero_stage);
  parallel.get("bucket_mb", c.parallel.bucket_mb);
  parallel.get("overlap_comm", c.parallel.overlap_comm);
  parallel.get("stage3_prefetch", c.parallel.stage3_prefetch);
  parallel.get("param_persistence_threshold", c.parallel.param_persistence_threshold);
  parallel.get("offload_optimizer", c.parallel.offload_optimizer);
  parallel.get("offload_param", c.parallel.offload_param);
  parallel.get("nvme_path", c.parallel.nvme_path);
  parallel.get("nvme_chunk_mb", c.parallel.nvme_chunk_mb);
  parallel.get("activation_checkpointing", c.parallel.activation_checkpointing);
  parallel.get("consistency_check_every", c.parallel.consistency_check_every);

  GroupReader precision(deck, seen, "precision");
  precision.get("dtype", c.precision.dtype);
  precision.get("loss_scale", c.precision.loss_scale);
  precision.get("initial_scale_power", c.precision.initial_scale_power);
  precision.get("loss_scale_window", c.precision.loss_scale_window);
  precision.get("hysteresis", c.precision.hysteresis);
  precision.get("min_loss_scale", c.precision.min_loss_scale);
  precision.get("max_skipped_steps", c.precision.max_skipped_steps);

  GroupReader checkpoint(deck, seen, "checkpoint");
  checkpoint.get("dir", c.checkpoint.dir);
  checkpoint.get("every_steps", c.checkpoint.every_steps);
  checkpoint.get("keep_last", c.checkpoint.keep_last);
  checkpoint.get("resume", c.checkpoint.resume);

  GroupReader profile(deck, seen, "profile");
  profile.get("enabled", c.profile.enabled);
  profile.get("start_step", c.profile.start_step);
  profile.get("num_steps", c.profile.num_steps);

  GroupReader log(deck, seen, "log");
  log.get("every_steps", c.log.every_steps);
  log.get("per_rank", c.log.per_rank);
  log.get("valid_every_steps", c.log.valid_every_steps);

  GroupReader translate(deck, seen, "translate");
  translate.get("input_file", c.translate.input_file);
  translate.get("output_file", c.translate.output_file);
  translate.get("beam_size", c.translate.beam_size);
  translate.get("max_len_ratio", c.translate.max_len_ratio);
  translate.get("length_penalty", c.translate.length_penalty);
  translate.get("batch_sentences", c.translate.batch_sentences);
  translate.get("samples", c.translate.samples);

  GroupReader generate(deck, seen, "generate");
  generate.get("prompt", c.generate.prompt);
  generate.get("input_file", c.generate.input_file);
  generate.get("output_file", c.generate.output_file);
  generate.get("max_new_tokens", c.generate.max_new_tokens);
  generate.get("temperature", c.generate.temperature);
  generate.get("top_k", c.generate.top_k);
  generate.get("top_p", c.generate.top_p);
  generate.get("repetition_penalty", c.generate.repetition_penalty);
  generate.get("seed", c.generate.seed);
  generate.get("batch_prompts", c.generate.batch_prompts);

  GroupReader bench(deck, seen, "bench");
  bench.get("batch", c.bench.batch);
  bench.get("seq_len", c.bench.seq_len);
  bench.get("steps", c.bench.steps);
  bench.get("warmup", c.bench.warmup);

  GroupReader plan(deck, seen, "plan");
  plan.get("params", c.plan.params);
  plan.get("layers", c.plan.layers);
  plan.get("width", c.plan.width);
  plan.get("heads", c.plan.heads);
  plan.get("seq_len", c.plan.seq_len);
  plan.get("micro_batch", c.plan.micro_batch);
  plan.get("nodes", c.plan.nodes);
  plan.get("ranks_per_node", c.plan.ranks_per_node);
  plan.get("zero_stages", c.plan.zero_stages);
  plan.get("offload", c.plan.offload);
  plan.get("machine", c.plan.machine);
  plan.get("calibrate", c.plan.calibrate);

  for (std::size_t i = 0; i < seen.size(); ++i)
    if (!seen[i])
      throw Error("deck key '" + deck_schema()[i].group + "%" + deck_schema()[i].key +
                  "' has no field in th::Config (include/th/config/config.hpp)");
  c.resolved_deck = deck.to_namelist();
  return c;
}

std::string checkpoint_folder(const Config& cfg) {
  return cfg.checkpoint.dir.empty() ? cfg.run.output_dir + "/checkpoints" : cfg.checkpoint.dir;
}

}  // namespace th
