// Cross-key rules: what no single key's range can say. Each is checked in the order below and the
// first broken one is reported at the line of whichever involved key was set last (the one the
// user most likely just changed).
#include <cmath>

#include "th/io/deck.hpp"

namespace th {

void Deck::check_rules() const {
  const std::string task = get_string("run", "task");
  const std::string synthetic = get_string("data", "synthetic");

  // What each task cannot start without.
  if (task == "prepare" && get_string("prepare", "source").empty())
    fail_at(
        {"run%task", "prepare%source"},
        show("run%task") + " needs 'prepare%source' (a TSV file, 'bible:SRC_MODULE:TGT_MODULE', 'text:PATH', "
                           "'jsonl:PATH:FIELD' or 'bible:MODULE')");
  if (task == "train" && synthetic == "none" && get_string("data", "train_file").empty())
    fail_at({"run%task", "data%synthetic", "data%train_file"},
            show("run%task") + " needs 'data%train_file' or 'data%synthetic'");
  if (task == "translate" && get_string("translate", "input_file").empty())
    fail_at({"run%task", "translate%input_file"},
            show("run%task") + " needs 'translate%input_file'");

  // Language models (docs/running.md, "Language models").
  const bool decoder_only = get_string("model", "arch") == "decoder-only";
  if (task == "generate") {
    const bool prompt = !get_string("generate", "prompt").empty(), file = !get_string("generate", "input_file").empty();
    if (!prompt && !file)
      fail_at({"run%task", "generate%prompt", "generate%input_file"},
              show("run%task") + " needs 'generate%prompt' or 'generate%input_file'");
    if (prompt && file)
      fail_at({"generate%prompt", "generate%input_file"},
              "give one of " + show("generate%prompt") + " and " + show("generate%input_file") + ", not both");
    if (!decoder_only)
      fail_at({"run%task", "model%arch"}, show("run%task") + " needs 'model%arch' = 'decoder-only'");
  }
  const bool packed = get_string("data", "packing") == "concat";
  if (packed && !decoder_only)
    fail_at({"data%packing", "model%arch"}, show("data%packing") + " needs 'model%arch' = 'decoder-only'");
  if (packed && get_int("data", "max_tokens") < get_int("model", "max_len"))
    fail_at({"data%max_tokens", "model%max_len", "data%packing"},
            show("data%max_tokens") + " is less than one block of " + show("model%max_len") + " (" +
                show("data%packing") + ")");
  if (get_bool("data", "document_mask") && !packed)
    fail_at({"data%document_mask", "data%packing"},
            show("data%document_mask") + " needs 'data%packing' = 'concat'");

  // Model shape.
  if (get_int("model", "d_model") % get_int("model", "n_heads") != 0)
    fail_at({"model%n_heads", "model%d_model"},
            show("model%n_heads") + " does not divide " + show("model%d_model"));
  const std::string arch = get_string("model", "arch");
  const long long encoder_layers = get_int("model", "n_encoder_layers");
  if (arch == "decoder-only" && encoder_layers != 0)
    fail_at({"model%n_encoder_layers", "model%arch"},
            show("model%n_encoder_layers") + " must be 0 when " + show("model%arch"));
  if (arch == "encoder-decoder" && encoder_layers < 1)
    fail_at({"model%n_encoder_layers", "model%arch"},
            show("model%n_encoder_layers") + " must be >= 1 when " + show("model%arch"));
  // Without a tokenizer there is nothing to take the vocabulary size from.
  if (get_int("model", "vocab_size") == 0) {
    if (synthetic != "none")
      fail_at({"model%vocab_size", "data%synthetic"},
              show("model%vocab_size") + " must be > 0 when " + show("data%synthetic"));
    if (task == "bench")
      fail_at({"model%vocab_size", "run%task"},
              show("model%vocab_size") + " must be > 0 when " + show("run%task"));
  }

  // Synthetic data.
  if (get_int("data", "synthetic_max_len") < get_int("data", "synthetic_min_len"))
    fail_at({"data%synthetic_max_len", "data%synthetic_min_len"},
            show("data%synthetic_max_len") + " is less than " + show("data%synthetic_min_len"));
  if (synthetic != "none" && get_int("data", "synthetic_max_len") + 2 > get_int("model", "max_len"))
    fail_at({"data%synthetic_max_len", "model%max_len", "data%synthetic"},
            show("data%synthetic_max_len") + " leaves no room for BOS and EOS within " +
                show("model%max_len") + " (synthetic_max_len + 2 <= max_len)");

  // Held-out shares.
  if (get_real("prepare", "valid_fraction") + get_real("prepare", "test_fraction") >= 1.0)
    fail_at({"prepare%valid_fraction", "prepare%test_fraction"},
            show("prepare%valid_fraction") + " plus " + show("prepare%test_fraction") +
                " leaves nothing to train on (their sum must be < 1)");

  // The inverse-square-root schedule divides by the warmup length.
  if (get_string("optim", "schedule") == "inverse_sqrt" && get_int("optim", "warmup_steps") < 1)
    fail_at({"optim%warmup_steps", "optim%schedule"},
            show("optim%warmup_steps") + " must be >= 1 when " + show("optim%schedule"));

  // Offload moves partitioned state: there must be a partition of it.
  const long long stage = get_int("parallel", "zero_stage");
  const std::string offload_optimizer = get_string("parallel", "offload_optimizer");
  const std::string offload_param = get_string("parallel", "offload_param");
  if (offload_optimizer != "none" && stage < 1)
    fail_at({"parallel%offload_optimizer", "parallel%zero_stage"},
            show("parallel%offload_optimizer") + " needs 'parallel%zero_stage' >= 1 (it is " +
                std::to_string(stage) + ")");
  if (offload_param != "none" && stage != 3)
    fail_at({"parallel%offload_param", "parallel%zero_stage"},
            show("parallel%offload_param") + " needs 'parallel%zero_stage' = 3 (it is " +
                std::to_string(stage) + ")");
  if ((offload_optimizer == "nvme" || offload_param == "nvme") &&
      get_string("parallel", "nvme_path").empty())
    fail_at({"parallel%nvme_path", "parallel%offload_optimizer", "parallel%offload_param"},
            "NVMe offload needs 'parallel%nvme_path'");

  // A dynamic fp16 scaler that starts below its own floor cannot work.
  if (get_string("precision", "dtype") == "fp16" && get_real("precision", "loss_scale") == 0.0 &&
      get_real("precision", "min_loss_scale") >
          std::ldexp(1.0, static_cast<int>(get_int("precision", "initial_scale_power"))))
    fail_at({"precision%min_loss_scale", "precision%initial_scale_power", "precision%dtype"},
            show("precision%min_loss_scale") + " is above the initial dynamic scale 2^" +
                std::to_string(get_int("precision", "initial_scale_power")) + " (" +
                show("precision%initial_scale_power") + ")");

  if (task == "bench" && get_int("bench", "seq_len") > get_int("model", "max_len"))
    fail_at({"bench%seq_len", "model%max_len", "run%task"},
            show("bench%seq_len") + " exceeds " + show("model%max_len"));

  // task = 'plan': a machine to plan for, and a model (the deck's, or a bare parameter count).
  if (task == "plan") {
    if (get_string("plan", "machine").empty() && !get_bool("plan", "calibrate"))
      fail_at({"run%task", "plan%machine", "plan%calibrate"},
              show("run%task") + " needs 'plan%machine' (a machine file) or 'plan%calibrate' = .true.");
    const long long width = get_int("plan", "width"), heads = get_int("plan", "heads");
    if (get_real("plan", "params") > 0) {
      if (get_int("plan", "layers") < 1 || width < 1)
        fail_at({"plan%params", "plan%layers", "plan%width"},
                show("plan%params") + " needs 'plan%layers' >= 1 and 'plan%width' >= 1");
      if (heads > 0 && width % heads != 0)
        fail_at({"plan%heads", "plan%width"}, show("plan%heads") + " does not divide " + show("plan%width"));
    } else if (get_int("model", "vocab_size") == 0) {
      fail_at({"model%vocab_size", "run%task"},
              show("model%vocab_size") + " must be > 0 when " + show("run%task") + " plans the deck's model");
    }
  }
}

}  // namespace th
