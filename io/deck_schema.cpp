#include "th/io/deck_schema.hpp"

namespace th {
namespace {

Bound ge(double v) { return {true, v, false}; }
Bound gt(double v) { return {true, v, true}; }
Bound le(double v) { return {true, v, false}; }
Bound lt(double v) { return {true, v, true}; }
Bound any() { return {}; }

KeySpec integer(const char* group, const char* key, long long def, Bound lo, Bound hi,
                const char* doc) {
  KeySpec s;
  s.group = group;
  s.key = key;
  s.type = KeyType::Int;
  s.default_value = {def};
  s.lo = lo;
  s.hi = hi;
  s.doc = doc;
  return s;
}

KeySpec real(const char* group, const char* key, double def, Bound lo, Bound hi, const char* doc) {
  KeySpec s = integer(group, key, 0, lo, hi, doc);
  s.type = KeyType::Real;
  s.default_value = {def};
  return s;
}

KeySpec reals(const char* group, const char* key, std::vector<double> def, Bound lo, Bound hi,
              const char* doc) {
  KeySpec s = real(group, key, 0, lo, hi, doc);
  s.length = static_cast<int>(def.size());
  s.default_value.assign(def.begin(), def.end());
  return s;
}

KeySpec logical(const char* group, const char* key, bool def, const char* doc) {
  KeySpec s = integer(group, key, 0, any(), any(), doc);
  s.type = KeyType::Bool;
  s.default_value = {def};
  return s;
}

KeySpec string(const char* group, const char* key, const char* def, const char* doc) {
  KeySpec s = integer(group, key, 0, any(), any(), doc);
  s.type = KeyType::String;
  s.default_value = {std::string(def)};
  return s;
}

KeySpec choice(const char* group, const char* key, const char* def,
               std::vector<std::string> choices, const char* doc) {
  KeySpec s = string(group, key, def, doc);
  s.choices = std::move(choices);
  return s;
}

// A list of 1 to `max` values (plan%nodes = 1, 16, 128); the default may be shorter.
template <typename T>
KeySpec list_of(KeySpec s, std::vector<T> def, int max) {
  s.length = max;
  s.list = true;
  s.default_value.assign(def.begin(), def.end());
  return s;
}

KeySpec non_empty(KeySpec s) {
  s.non_empty = true;
  return s;
}

KeySpec wide(KeySpec s) {
  s.wide = true;
  return s;
}

std::vector<KeySpec> build_schema() {
  return {
      // &run
      choice("run", "task", "train", {"prepare", "train", "evaluate", "translate", "bench", "plan", "generate"},
             "what the run does"),
      non_empty(string("run", "output_dir", "runs/default", "folder for every output of the run")),
      wide(integer("run", "seed", 1234, ge(0), any(),
                   "one seed for everything random (init, sampler, dropout)")),
      choice("run", "backend", "cpu", {"cpu", "cuda", "auto"},
             "compute backend; 'auto' takes cuda when a GPU is visible"),
      integer("run", "max_steps", 0, ge(0), any(),
              "stop after this many optimizer steps (0: run data%epochs)"),
      integer("run", "threads", 0, ge(0), any(),
              "host threads per rank (0: OMP_NUM_THREADS, else 1)"),

      // &model
      choice("model", "arch", "encoder-decoder", {"encoder-decoder", "decoder-only"},
             "Transformer layout"),
      integer("model", "d_model", 512, ge(1), any(), "width of the residual stream"),
      integer("model", "n_heads", 8, ge(1), any(), "attention heads (must divide d_model)"),
      integer("model", "d_ff", 2048, ge(1), any(), "inner width of the feed-forward block"),
      integer("model", "n_encoder_layers", 6, ge(0), any(),
              "encoder blocks (0 for decoder-only, >= 1 for encoder-decoder)"),
      integer("model", "n_decoder_layers", 6, ge(1), any(), "decoder blocks"),
      choice("model", "activation", "relu", {"relu", "gelu"}, "feed-forward activation"),
      choice("model", "norm", "post", {"post", "pre"},
             "'post': LN(x + f(x)) as in Vaswani et al.; 'pre': x + f(LN(x))"),
      real("model", "dropout", 0.1, ge(0), lt(1), "dropout probability"),
      logical("model", "tie_embeddings", true,
              "share source/target embedding and output projection"),
      integer("model", "max_len", 256, ge(1), any(),
              "longest sequence in tokens (positional table size)"),
      integer("model", "vocab_size", 0, ge(0), any(),
              "vocabulary size (0: from the dataset's tokenizer; must be > 0 for synthetic data "
              "and bench)"),

      // &data
      string("data", "train_file", "", "training set, HDF5 made by task='prepare'"),
      string("data", "valid_file", "", "validation set, HDF5 made by task='prepare'"),
      string("data", "test_file", "", "test set, HDF5 made by task='prepare'"),
      integer("data", "max_tokens", 4096, ge(1), any(),
              "token budget of one rank's micro-batch, padding included"),
      integer("data", "epochs", 1, ge(1), any(), "passes over the training set"),
      logical("data", "shuffle", true, "reshuffle every epoch from (seed, epoch)"),
      choice("data", "synthetic", "none", {"none", "copy", "reverse"},
             "generated toy task instead of files ('copy': target = source; 'reverse': reversed)"),
      integer("data", "synthetic_min_len", 4, ge(1), any(),
              "shortest synthetic sequence in tokens"),
      integer("data", "synthetic_max_len", 16, ge(1), any(),
              "longest synthetic sequence in tokens (>= synthetic_min_len, <= model%max_len - 2)"),
      integer("data", "synthetic_samples", 4096, ge(1), any(), "synthetic training pairs"),
      integer("data", "synthetic_valid_samples", 256, ge(1), any(), "synthetic validation pairs (task='evaluate': as many test pairs, unseen)"),
      choice("data", "packing", "none", {"none", "concat"},
             "'none': examples padded to the longest row; 'concat' (language model, text datasets): the "
             "token stream cut into model%max_len blocks, no padding"),
      logical("data", "document_mask", false,
              "with packing = 'concat': attention does not cross document boundaries inside a block"),

      // &prepare
      string("prepare", "source", "",
             "a TSV file of 'source TAB target' lines, 'bible:SRC_MODULE:TGT_MODULE', or monolingual "
             "text: 'text:PATH' (file, folder of *.txt, glob), 'jsonl:PATH:FIELD', 'bible:MODULE' "
             "(needed by task='prepare')"),
      integer("prepare", "vocab_size", 8000, ge(8), any(),
              "SentencePiece vocabulary size (joint source+target)"),
      real("prepare", "valid_fraction", 0.01, ge(0), lt(1),
           "share of pairs held out for validation"),
      real("prepare", "test_fraction", 0.01, ge(0), lt(1),
           "share of pairs held out for test (valid_fraction + test_fraction < 1)"),
      choice("prepare", "text_documents", "blank_line", {"blank_line", "file"},
             "text: sources: documents separated by blank lines, or one document per file"),
      choice("prepare", "spm_type", "unigram", {"unigram", "bpe"}, "SentencePiece model type"),
      integer("prepare", "spm_sample_sentences", 1000000, ge(1), any(),
              "most training-split sentences the SentencePiece trainer sees (a sample of them beyond)"),

      // &optim
      real("optim", "lr", 7e-4, gt(0), any(), "peak learning rate (AdamW)"),
      reals("optim", "betas", {0.9, 0.98}, ge(0), lt(1), "AdamW beta1, beta2"),
      real("optim", "eps", 1e-9, gt(0), any(), "AdamW epsilon"),
      real("optim", "weight_decay", 0.0, ge(0), any(), "decoupled weight decay (AdamW)"),
      integer("optim", "warmup_steps", 4000, ge(0), any(),
              "linear warmup steps (>= 1 for inverse_sqrt)"),
      choice("optim", "schedule", "inverse_sqrt", {"inverse_sqrt", "cosine", "constant"},
             "learning-rate schedule after warmup"),
      real("optim", "min_lr_ratio", 0.0, ge(0), le(1),
           "cosine: final learning rate as a fraction of lr"),
      real("optim", "clip_norm", 1.0, ge(0), any(), "global gradient-norm clip (0: off)"),
      real("optim", "label_smoothing", 0.1, ge(0), lt(1), "label smoothing of the cross-entropy"),
      integer("optim", "grad_accum", 1, ge(1), any(), "micro-batches per optimizer step"),

      // &parallel
      integer("parallel", "zero_stage", 0, ge(0), le(3),
              "ZeRO stage: 0 plain data parallel, 1 optimizer states, 2 + gradients, 3 + "
              "parameters"),
      real("parallel", "bucket_mb", 25.0, gt(0), any(),
           "gradient bucket size in MiB for all-reduce / reduce-scatter"),
      logical("parallel", "overlap_comm", true, "overlap gradient communication with backward"),
      integer("parallel", "stage3_prefetch", 1, ge(0), any(),
              "ZeRO stage 3: blocks whose parameters are gathered ahead of use (0: none)"),
      integer("parallel", "param_persistence_threshold", 4096, ge(0), any(),
              "ZeRO stage 3: blocks with fewer parameters stay whole on every rank"),
      choice("parallel", "offload_optimizer", "none", {"none", "cpu", "nvme"},
             "where optimizer states live (needs zero_stage >= 1)"),
      choice("parallel", "offload_param", "none", {"none", "cpu", "nvme"},
             "where parameters live (needs zero_stage = 3)"),
      string("parallel", "nvme_path", "/tmp/torch-handle-nvme", "folder for NVMe offload files"),
      real("parallel", "nvme_chunk_mb", 4.0, gt(0), any(),
           "NVMe offload: MiB per streamed chunk (optimizer state: m and v together; parameters: values)"),
      logical("parallel", "activation_checkpointing", false, "recompute each block in backward"),
      integer("parallel", "consistency_check_every", 0, ge(0), any(),
              "check every N steps that replicated state agrees across ranks (0: off)"),

      // &precision
      choice("precision", "dtype", "fp32", {"fp32", "bf16", "fp16"},
             "compute dtype (master weights stay fp32)"),
      real("precision", "loss_scale", 0.0, ge(0), any(), "0: dynamic loss scaling; > 0: static"),
      integer("precision", "initial_scale_power", 16, ge(0), le(40),
              "dynamic scaler starts at 2^initial_scale_power"),
      integer("precision", "loss_scale_window", 1000, ge(1), any(),
              "overflow-free steps before the dynamic scale doubles"),
      integer("precision", "hysteresis", 2, ge(1), any(),
              "overflows tolerated before the dynamic scale halves"),
      real("precision", "min_loss_scale", 1.0, gt(0), any(), "floor of the dynamic scale"),
      integer("precision", "max_skipped_steps", 20, ge(1), any(),
              "consecutive overflowing steps at the floor scale before the run stops"),

      // &checkpoint
      string("checkpoint", "dir", "",
             "checkpoint folder ('': the checkpoints folder inside run%output_dir); made and write-tested at start-up"),
      integer("checkpoint", "every_steps", 0, ge(0), any(),
              "save period in steps (0: only at the end)"),
      integer("checkpoint", "keep_last", 3, ge(1), any(), "how many checkpoints to keep"),
      non_empty(string("checkpoint", "resume", "auto",
                       "'auto' (latest valid checkpoint), 'never' (start afresh; refused where checkpoints exist), "
                       "or a checkpoint path")),

      // &profile
      logical("profile", "enabled", false, "write a Chrome/Perfetto trace"),
      integer("profile", "start_step", 5, ge(0), any(), "first traced step"),
      integer("profile", "num_steps", 5, ge(1), any(), "traced steps"),

      // &log
      integer("log", "every_steps", 10, ge(1), any(), "progress line and metrics record period"),
      logical("log", "per_rank", false, "every rank also writes its own log"),
      integer("log", "valid_every_steps", 0, ge(0), any(),
              "validation period in steps (0: only at the end of the run)"),

      // &translate
      string("translate", "input_file", "",
             "sentences to translate, one per line; '-' reads stdin (needed by task='translate')"),
      string("translate", "output_file", "", "where translations go, one per line (empty: stdout)"),
      integer("translate", "beam_size", 4, ge(1), any(), "beam width (1: greedy)"),
      real("translate", "max_len_ratio", 1.5, gt(0), any(),
           "longest output as a multiple of the input length"),
      real("translate", "length_penalty", 1.0, ge(0), any(),
           "beam ranking by score / length^length_penalty (0: raw log-probability)"),
      integer("translate", "batch_sentences", 32, ge(1), any(),
              "sentences decoded together (per rank, sorted by length)"),
      integer("translate", "samples", 3, ge(0), any(),
              "task='evaluate': sample translations printed (source, reference, output)"),

      // &generate
      string("generate", "prompt", "", "one prompt to continue (or generate%input_file)"),
      string("generate", "input_file", "", "prompts, one per line; '-' reads stdin"),
      string("generate", "output_file", "",
             "continuations, one line per prompt, in input order (empty: stdout)"),
      integer("generate", "max_new_tokens", 64, ge(1), any(), "most tokens generated per prompt"),
      real("generate", "temperature", 1.0, ge(0), any(), "softmax temperature (0: greedy arg-max)"),
      integer("generate", "top_k", 0, ge(0), any(), "sample among the k most likely tokens (0: all)"),
      real("generate", "top_p", 1.0, gt(0), le(1),
           "nucleus: sample among the most likely tokens holding probability top_p (1: all)"),
      real("generate", "repetition_penalty", 1.0, gt(0), any(),
           "logits of tokens already in the text divided by it (if > 0) or multiplied (if < 0); 1: off"),
      wide(integer("generate", "seed", 1234, ge(0), any(),
                   "sampling seed: the same seed gives the same text on any number of ranks")),
      integer("generate", "batch_prompts", 16, ge(1), any(),
              "consecutive prompts decoded together (the grouping does not depend on the ranks)"),

      // &bench
      integer("bench", "batch", 32, ge(1), any(), "global sentences per step"),
      integer("bench", "seq_len", 64, ge(1), any(), "tokens per sentence (<= model%max_len)"),
      integer("bench", "steps", 8, ge(1), any(), "timed steps"),
      integer("bench", "warmup", 2, ge(0), any(), "untimed steps before the timed ones"),

      // &plan (task = 'plan': memory and step time of every layout; docs/planning.md)
      real("plan", "params", 0.0, ge(0), any(),
           "a bare parameter count instead of the deck's model (0: use &model)"),
      integer("plan", "layers", 0, ge(0), any(), "with plan%params: decoder blocks"),
      integer("plan", "width", 0, ge(0), any(), "with plan%params: d_model (d_ff = 4 x width)"),
      integer("plan", "heads", 0, ge(0), any(),
              "with plan%params: attention heads (0: width / 128, GPT-3's head size)"),
      integer("plan", "seq_len", 0, ge(0), any(), "tokens per sequence (0: model%max_len)"),
      integer("plan", "micro_batch", 0, ge(0), any(),
              "sequences per rank per micro-batch (0: data%max_tokens / tokens per sequence)"),
      list_of(integer("plan", "nodes", 0, ge(1), any(), "node counts to consider"),
              std::vector<long long>{1}, 64),
      list_of(integer("plan", "ranks_per_node", 0, ge(1), any(), "ranks per node to consider"),
              std::vector<long long>{1}, 64),
      list_of(integer("plan", "zero_stages", 0, ge(0), le(3), "ZeRO stages to consider"),
              std::vector<long long>{0, 1, 2, 3}, 4),
      list_of(choice("plan", "offload", "none", {"none", "cpu", "nvme"},
                     "placements of the optimizer state (and, at stage 3, the parameters) to consider"),
              std::vector<std::string>{"none"}, 3),
      string("plan", "machine", "",
             "machine description file (inputs/machines/; '' with plan%calibrate: measured only)"),
      logical("plan", "calibrate", false,
              "measure this machine first (writes <output_dir>/machine.nml and plans with it)"),
  };
}

std::string format_bound(const KeySpec& spec, double v) {
  if (spec.type == KeyType::Int) return format_namelist_value(static_cast<long long>(v));
  return format_namelist_value(v);
}

}  // namespace

const std::vector<KeySpec>& deck_schema() {
  static const std::vector<KeySpec> schema = build_schema();
  return schema;
}

const std::vector<std::string>& deck_groups() {
  static const std::vector<std::string> groups = [] {
    std::vector<std::string> g;
    for (const KeySpec& s : deck_schema())
      if (g.empty() || g.back() != s.group) g.push_back(s.group);
    return g;
  }();
  return groups;
}

int deck_key_index(const std::string& group, const std::string& key) {
  const std::vector<KeySpec>& schema = deck_schema();
  for (std::size_t i = 0; i < schema.size(); ++i)
    if (schema[i].group == group && schema[i].key == key) return static_cast<int>(i);
  return -1;
}

std::string key_type_name(const KeySpec& spec) {
  std::string name;
  switch (spec.type) {
    case KeyType::Int:
      name = "integer";
      break;
    case KeyType::Real:
      name = "real";
      break;
    case KeyType::Bool:
      name = "logical";
      break;
    case KeyType::String:
      name = "string";
      break;
  }
  if (spec.list) return name + " list";
  return spec.length > 0 ? name + "(" + std::to_string(spec.length) + ")" : name;
}

std::string key_allowed(const KeySpec& spec) {
  if (!spec.choices.empty()) {
    std::string out;
    for (const std::string& c : spec.choices)
      out += (out.empty() ? "" : ", ") + format_namelist_value(c);
    return out;
  }
  if (spec.non_empty) return "non-empty";
  if (spec.lo.set && spec.hi.set && !spec.lo.open && !spec.hi.open)
    return format_bound(spec, spec.lo.value) + " to " + format_bound(spec, spec.hi.value);
  std::string out;
  if (spec.lo.set) out = (spec.lo.open ? "> " : ">= ") + format_bound(spec, spec.lo.value);
  if (spec.hi.set)
    out += (out.empty() ? "" : " and ") + std::string(spec.hi.open ? "< " : "<= ") +
           format_bound(spec, spec.hi.value);
  return out;
}

std::string key_default(const KeySpec& spec) {
  std::string out;
  for (const NamelistValue& v : spec.default_value)
    out += (out.empty() ? "" : ", ") + format_namelist_value(v);
  return out;
}

}  // namespace th
