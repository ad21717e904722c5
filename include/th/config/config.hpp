#pragma once
// The deck as plain typed data: one struct per group, one field per key, named exactly as in the
// deck (cfg.model.d_model is `&model d_model`). Meanings, defaults and ranges: docs/deck.md.
// Built once from a validated Deck, so every value here has passed the deck's checks.
#include <array>
#include <string>
#include <vector>

namespace th {

class Deck;

struct Config {
  struct Run {
    std::string task;
    std::string output_dir;
    long long seed = 0;
    std::string backend;
    int max_steps = 0;
    int threads = 0;
  };
  struct Model {
    std::string arch;
    int d_model = 0;
    int n_heads = 0;
    int d_ff = 0;
    int n_encoder_layers = 0;
    int n_decoder_layers = 0;
    std::string activation;
    std::string norm;
    double dropout = 0;
    bool tie_embeddings = false;
    int max_len = 0;
    int vocab_size = 0;
  };
  struct Data {
    std::string train_file;
    std::string valid_file;
    std::string test_file;
    int max_tokens = 0;
    int epochs = 0;
    bool shuffle = false;
    std::string synthetic;
    int synthetic_min_len = 0;
    int synthetic_max_len = 0;
    int synthetic_samples = 0;
    int synthetic_valid_samples = 0;
    std::string packing;
    bool document_mask = false;
  };
  struct Prepare {
    std::string source;
    int vocab_size = 0;
    double valid_fraction = 0;
    double test_fraction = 0;
    std::string text_documents;
    std::string spm_type;
    int spm_sample_sentences = 0;
  };
  struct Optim {
    double lr = 0;
    std::array<double, 2> betas{};
    double eps = 0;
    double weight_decay = 0;
    int warmup_steps = 0;
    std::string schedule;
    double min_lr_ratio = 0;
    double clip_norm = 0;
    double label_smoothing = 0;
    int grad_accum = 0;
  };
  struct Parallel {
    int zero_stage = 0;
    double bucket_mb = 0;
    bool overlap_comm = false;
    int stage3_prefetch = 0;
    int param_persistence_threshold = 0;
    std::string offload_optimizer;
    std::string offload_param;
    std::string nvme_path;
    double nvme_chunk_mb = 0;
    bool activation_checkpointing = false;
    int consistency_check_every = 0;
  };
  struct Precision {
    std::string dtype;
    double loss_scale = 0;
    int initial_scale_power = 0;
    int loss_scale_window = 0;
    int hysteresis = 0;
    double min_loss_scale = 0;
    int max_skipped_steps = 0;
  };
  struct Checkpoint {
    std::string dir;
    int every_steps = 0;
    int keep_last = 0;
    std::string resume;
  };
  struct Profile {
    bool enabled = false;
    int start_step = 0;
    int num_steps = 0;
  };
  struct Log {
    int every_steps = 0;
    bool per_rank = false;
    int valid_every_steps = 0;
  };
  struct Translate {
    std::string input_file;
    std::string output_file;
    int beam_size = 0;
    double max_len_ratio = 0;
    double length_penalty = 0;
    int batch_sentences = 0;
    int samples = 0;
  };
  struct Generate {
    std::string prompt;
    std::string input_file;
    std::string output_file;
    int max_new_tokens = 0;
    double temperature = 0;
    int top_k = 0;
    double top_p = 0;
    double repetition_penalty = 0;
    long long seed = 0;
    int batch_prompts = 0;
  };
  struct Bench {
    int batch = 0;
    int seq_len = 0;
    int steps = 0;
    int warmup = 0;
  };
  struct Plan {
    double params = 0;
    int layers = 0;
    int width = 0;
    int heads = 0;
    int seq_len = 0;
    int micro_batch = 0;
    std::vector<int> nodes;
    std::vector<int> ranks_per_node;
    std::vector<int> zero_stages;
    std::vector<std::string> offload;
    std::string machine;
    bool calibrate = false;
  };

  Run run;
  Model model;
  Data data;
  Prepare prepare;
  Optim optim;
  Parallel parallel;
  Precision precision;
  Checkpoint checkpoint;
  Profile profile;
  Log log;
  Translate translate;
  Generate generate;
  Bench bench;
  Plan plan;

  // Deck::to_namelist() of the deck this came from, echoed into every output of the run.
  std::string resolved_deck;
};

// Throws th::Error if the schema has a key that Config does not hold (a programming error).
Config make_config(const Deck& deck);

// Where a run's checkpoints live: checkpoint%dir, or <run%output_dir>/checkpoints when empty.
std::string checkpoint_folder(const Config& cfg);

}  // namespace th
