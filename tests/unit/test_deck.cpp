// The deck: schema validation, defaults, --set overrides, cross-key rules, the resolved echo and
// its round trip, the typed Config, the bad decks of tests/decks, and docs/deck.md against the
// schema.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "th/config/config.hpp"
#include "th/io/deck.hpp"
#include "th/io/deck_schema.hpp"
#include "io/deck_suggest.hpp"
#include "th/core/error.hpp"

namespace th {
namespace {

// Appended to decks that do not care about the data: makes the default task ('train') valid.
const char* const kData = "&data synthetic = 'copy' /\n&model vocab_size = 32 /\n";

Deck deck_of(const std::string& text, const std::vector<std::string>& overrides = {}) {
  return Deck::from_text(text + kData, "run.nml", overrides);
}

// The message of the InputError that building the deck throws; fails the test when none is.
std::string error_of_text(const std::string& text, const std::vector<std::string>& overrides = {}) {
  try {
    Deck::from_text(text, "run.nml", overrides);
  } catch (const InputError& e) {
    const std::string message = e.what();
    EXPECT_EQ(message.find('\n'), std::string::npos) << "message is not one line: " << message;
    return message;
  }
  ADD_FAILURE() << "no InputError for:\n" << text;
  return "";
}

std::string error_of(const std::string& text, const std::vector<std::string>& overrides = {}) {
  return error_of_text(text + kData, overrides);
}

// A key's value read back through the typed getters, in the schema's own representation.
std::vector<NamelistValue> values_in(const Deck& d, const KeySpec& s) {
  if (s.length > 0 && s.type == KeyType::String) {
    const std::vector<std::string> v = d.get_strings(s.group, s.key);
    return {v.begin(), v.end()};
  }
  if (s.length > 0 && s.type == KeyType::Real) {
    const std::vector<double> v = d.get_reals(s.group, s.key);
    return {v.begin(), v.end()};
  }
  if (s.length > 0) {
    const std::vector<long long> v = d.get_ints(s.group, s.key);
    return {v.begin(), v.end()};
  }
  switch (s.type) {
    case KeyType::Int:
      return {d.get_int(s.group, s.key)};
    case KeyType::Real:
      return {d.get_real(s.group, s.key)};
    case KeyType::Bool:
      return {d.get_bool(s.group, s.key)};
    case KeyType::String:
      return {d.get_string(s.group, s.key)};
  }
  return {};
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << "cannot read " << path;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Every key set away from its default, and consistent with every cross-key rule.
const char* const kFullDeck = R"(
&run
  task = 'evaluate', output_dir = 'runs/full', seed = 3000000000, backend = 'auto'
  max_steps = 100, threads = 2, gemm = 'openblas'
/
&model
  arch = 'decoder-only', d_model = 64, n_heads = 2, d_ff = 128, n_encoder_layers = 0
  n_decoder_layers = 3, activation = 'gelu', norm = 'pre', dropout = 0.25
  tie_embeddings = F, max_len = 40, positions = 'learned', vocab_size = 50
/
&data
  train_file = 'tr.h5', valid_file = 'va.h5', test_file = 'te.h5', max_tokens = 1000
  epochs = 3, shuffle = .false., synthetic = 'reverse', synthetic_min_len = 2
  synthetic_max_len = 30, synthetic_samples = 100, synthetic_valid_samples = 10, packing = 'concat', document_mask = T
/
&prepare source = 'pairs.tsv', vocab_size = 1000, valid_fraction = 0.05, test_fraction = 0.1, text_documents = 'file', spm_type = 'bpe', spm_sample_sentences = 5000 /
&optim
  lr = 3e-4, betas = 0.8, 0.95, eps = 1d-8, weight_decay = 0.01, warmup_steps = 0
  schedule = 'cosine', min_lr_ratio = 0.1, clip_norm = 0.5, label_smoothing = 0
  grad_accum = 2
/
&parallel
  zero_stage = 3, bucket_mb = 12.5, overlap_comm = F, offload_optimizer = 'cpu'
  stage3_prefetch = 2, param_persistence_threshold = 100000
  offload_param = 'nvme', nvme_path = '/scratch/nvme', nvme_chunk_mb = 0.5, activation_checkpointing = T
  consistency_check_every = 50, comm = 'mpi'
/
&precision
  dtype = 'bf16', loss_scale = 128, initial_scale_power = 12, loss_scale_window = 500
  hysteresis = 4, min_loss_scale = 0.5, max_skipped_steps = 7, param_storage = 'fp32', grad_storage = 'fp32', allow_tf32 = T
/
&checkpoint dir = 'ckpt', every_steps = 20, keep_last = 5, resume = 'never' /
&profile enabled = T, start_step = 3, num_steps = 2 /
&log every_steps = 1, per_rank = T, valid_every_steps = 7 /
&translate input_file = 'in.txt', output_file = 'out.txt', beam_size = 5, max_len_ratio = 2
  length_penalty = 0.6, batch_sentences = 8, samples = 0 /
&generate prompt = 'x', input_file = 'p.txt', output_file = 'g.txt', max_new_tokens = 10
  temperature = 0.5, top_k = 5, top_p = 0.9, repetition_penalty = 1.3, seed = 9, batch_prompts = 4 /
&bench batch = 16, seq_len = 32, steps = 4, warmup = 1 /
&plan params = 7.5e9, layers = 32, width = 4096, heads = 32, seq_len = 1024, micro_batch = 2
  nodes = 1, 8, ranks_per_node = 8, zero_stages = 1, 3, offload = 'none', 'cpu'
  machine = 'inputs/machines/h200_8gpu_ib.nml', calibrate = T /
)";

// ---- the schema itself ----

TEST(DeckSchema, NamesAreUniqueLowerCaseAndDocumented) {
  std::set<std::string> seen;
  for (const KeySpec& s : deck_schema()) {
    const std::string name = s.group + "%" + s.key;
    EXPECT_TRUE(seen.insert(name).second) << name << " declared twice";
    for (char c : s.group + s.key)
      EXPECT_TRUE((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_') << name;
    EXPECT_FALSE(s.doc.empty()) << name;
    if (s.list)  // a list: 1 to `length` values
      EXPECT_TRUE(!s.default_value.empty() && s.default_value.size() <= static_cast<std::size_t>(s.length)) << name;
    else
      EXPECT_EQ(s.default_value.size(), s.length == 0 ? 1u : static_cast<std::size_t>(s.length)) << name;
    if (!s.choices.empty()) {
      EXPECT_NE(
          std::find(s.choices.begin(), s.choices.end(), std::get<std::string>(s.default_value[0])),
          s.choices.end())
          << name << ": default is not a choice";
    }
    EXPECT_EQ(deck_key_index(s.group, s.key), static_cast<int>(seen.size()) - 1);
  }
  EXPECT_EQ(deck_key_index("model", "nope"), -1);
  // Groups are contiguous, so the resolved echo can write each once.
  std::set<std::string> groups;
  std::string previous;
  for (const KeySpec& s : deck_schema()) {
    if (s.group != previous) {
      EXPECT_TRUE(groups.insert(s.group).second) << s.group << " is split";
    }
    previous = s.group;
  }
  EXPECT_EQ(deck_groups(), (std::vector<std::string>{"run", "model", "data", "prepare", "optim",
                                                     "parallel", "precision", "checkpoint",
                                                     "profile", "log", "translate", "generate", "bench", "plan"}));
}

TEST(DeckSchema, ContractKeysOfDeckMdExist) {
  // The public interface (DECK.md): these names must never disappear.
  const std::vector<std::string> contract = {"run%task",
                                             "run%output_dir",
                                             "run%seed",
                                             "run%backend",
                                             "run%max_steps",
                                             "model%arch",
                                             "model%d_model",
                                             "model%n_heads",
                                             "model%d_ff",
                                             "model%n_encoder_layers",
                                             "model%n_decoder_layers",
                                             "model%activation",
                                             "model%norm",
                                             "model%dropout",
                                             "model%tie_embeddings",
                                             "model%max_len",
                                             "data%train_file",
                                             "data%valid_file",
                                             "data%test_file",
                                             "data%max_tokens",
                                             "data%epochs",
                                             "data%shuffle",
                                             "data%packing",
                                             "data%document_mask",
                                             "prepare%source",
                                             "prepare%text_documents",
                                             "prepare%spm_type",
                                             "prepare%vocab_size",
                                             "prepare%valid_fraction",
                                             "prepare%test_fraction",
                                             "optim%lr",
                                             "optim%betas",
                                             "optim%eps",
                                             "optim%weight_decay",
                                             "optim%warmup_steps",
                                             "optim%schedule",
                                             "optim%clip_norm",
                                             "optim%label_smoothing",
                                             "optim%grad_accum",
                                             "parallel%zero_stage",
                                             "parallel%bucket_mb",
                                             "parallel%overlap_comm",
                                             "parallel%stage3_prefetch",
                                             "parallel%param_persistence_threshold",
                                             "parallel%offload_optimizer",
                                             "parallel%offload_param",
                                             "parallel%nvme_path",
                                             "parallel%nvme_chunk_mb",
                                             "parallel%activation_checkpointing",
                                             "parallel%comm",
                                             "precision%dtype",
                                             "precision%loss_scale",
                                             "precision%initial_scale_power",
                                             "precision%loss_scale_window",
                                             "precision%hysteresis",
                                             "precision%min_loss_scale",
                                             "precision%max_skipped_steps",
                                             "precision%param_storage",
                                             "precision%grad_storage",
                                             "precision%allow_tf32",
                                             "checkpoint%dir",
                                             "checkpoint%every_steps",
                                             "checkpoint%keep_last",
                                             "checkpoint%resume",
                                             "profile%enabled",
                                             "profile%start_step",
                                             "profile%num_steps",
                                             "log%every_steps",
                                             "translate%input_file",
                                             "translate%output_file",
                                             "translate%beam_size",
                                             "translate%max_len_ratio",
                                             "generate%prompt",
                                             "generate%input_file",
                                             "generate%output_file",
                                             "generate%max_new_tokens",
                                             "generate%top_k",
                                             "generate%temperature",
                                             "generate%top_p",
                                             "generate%repetition_penalty",
                                             "generate%seed"};
  for (const std::string& name : contract) {
    const std::size_t pct = name.find('%');
    EXPECT_GE(deck_key_index(name.substr(0, pct), name.substr(pct + 1)), 0) << name;
  }
}

TEST(DeckSchema, DescribesTypesDefaultsAndRanges) {
  const KeySpec& stage =
      deck_schema()[static_cast<std::size_t>(deck_key_index("parallel", "zero_stage"))];
  EXPECT_EQ(key_type_name(stage), "integer");
  EXPECT_EQ(key_allowed(stage), "0 to 3");
  EXPECT_EQ(key_default(stage), "0");
  const KeySpec& betas = deck_schema()[static_cast<std::size_t>(deck_key_index("optim", "betas"))];
  EXPECT_EQ(key_type_name(betas), "real(2)");
  EXPECT_EQ(key_allowed(betas), ">= 0.0 and < 1.0");
  EXPECT_EQ(key_default(betas), "0.9, 0.98");
  const KeySpec& act =
      deck_schema()[static_cast<std::size_t>(deck_key_index("model", "activation"))];
  EXPECT_EQ(key_allowed(act), "'relu', 'gelu'");
  EXPECT_EQ(key_default(act), "'relu'");
  const KeySpec& lr = deck_schema()[static_cast<std::size_t>(deck_key_index("optim", "lr"))];
  EXPECT_EQ(key_allowed(lr), "> 0.0");
  const KeySpec& resume =
      deck_schema()[static_cast<std::size_t>(deck_key_index("checkpoint", "resume"))];
  EXPECT_EQ(key_allowed(resume), "non-empty");
}

TEST(DeckSuggest, EditDistanceCountsASwapAsOneEdit) {
  EXPECT_EQ(edit_distance("d_modle", "d_model"), 1u);
  EXPECT_EQ(edit_distance("modle", "model"), 1u);
  EXPECT_EQ(edit_distance("", "abc"), 3u);
  EXPECT_EQ(edit_distance("kitten", "sitting"), 3u);
  EXPECT_EQ(closest_name("zero_stag", {"bucket_mb", "zero_stage"}), "zero_stage");
  EXPECT_EQ(closest_name("xyzzy", {"task", "seed"}), "");
  EXPECT_EQ(closest_name("lt", {"lr", "eps"}), "lr");
}

// ---- defaults and typed values ----

TEST(Deck, UnsetKeysTakeTheirDefaults) {
  const Deck d = deck_of("");
  for (const KeySpec& s : deck_schema()) {
    const std::string name = s.group + "%" + s.key;
    if (name == "data%synthetic" || name == "model%vocab_size") {
      EXPECT_TRUE(d.is_set(s.group, s.key));
      continue;
    }
    EXPECT_FALSE(d.is_set(s.group, s.key)) << name;
    EXPECT_EQ(d.origin(s.group, s.key), "default") << name;
    EXPECT_TRUE(values_in(d, s) == s.default_value) << name;
  }
  EXPECT_EQ(d.get_int("model", "d_model"), 512);
  EXPECT_EQ(d.get_string("run", "task"), "train");
  EXPECT_EQ(d.get_reals("optim", "betas"), (std::vector<double>{0.9, 0.98}));
  EXPECT_EQ(d.get_real("optim", "lr"), 7e-4);
  EXPECT_TRUE(d.get_bool("model", "tie_embeddings"));
  EXPECT_EQ(d.name(), "run.nml");
}

TEST(Deck, ReadsEveryKeyOfAFullDeck) {
  const Deck d = Deck::from_text(kFullDeck, "full.nml");
  EXPECT_EQ(d.get_int("run", "seed"), 3000000000LL);  // 64-bit key
  EXPECT_EQ(d.get_string("model", "arch"), "decoder-only");
  EXPECT_EQ(d.get_real("precision", "loss_scale"), 128.0);  // integer literal for a real
  EXPECT_EQ(d.get_real("optim", "eps"), 1e-8);
  EXPECT_FALSE(d.get_bool("data", "shuffle"));
  EXPECT_EQ(d.origin("optim", "lr"), "full.nml:18");
  for (const KeySpec& s : deck_schema()) {
    EXPECT_TRUE(d.is_set(s.group, s.key)) << s.group << "%" << s.key;
    EXPECT_FALSE(values_in(d, s) == s.default_value)
        << s.group << "%" << s.key << ": the full deck should move every key off its default";
  }
}

TEST(Deck, ChoicesMatchIgnoringCaseAndAreStoredAsDeclared) {
  const Deck d =
      deck_of("&model activation = 'GELU', norm = \"Pre\" /\n&precision dtype = 'BF16' /\n");
  EXPECT_EQ(d.get_string("model", "activation"), "gelu");
  EXPECT_EQ(d.get_string("model", "norm"), "pre");
  EXPECT_EQ(d.get_string("precision", "dtype"), "bf16");
  // Free strings (paths) keep their case.
  EXPECT_EQ(deck_of("&run output_dir = 'Runs/A' /").get_string("run", "output_dir"), "Runs/A");
}

TEST(Deck, IntegersAreAcceptedForReals) {
  const Deck d = deck_of("&optim lr = 1, betas = 0, 0, clip_norm = 2 /");
  EXPECT_EQ(d.get_real("optim", "lr"), 1.0);
  EXPECT_EQ(d.get_reals("optim", "betas"), (std::vector<double>{0.0, 0.0}));
  EXPECT_EQ(deck_of("&optim betas = 2*0.5 /").get_reals("optim", "betas"),
            (std::vector<double>{0.5, 0.5}));
}

TEST(Deck, WrongTypeOrShapeIsAProgrammingError) {
  const Deck d = deck_of("");
  const auto programming_error = [](auto read) {
    try {
      read();
    } catch (const InputError&) {
      return false;
    } catch (const Error&) {
      return true;
    }
    return false;
  };
  EXPECT_TRUE(programming_error([&] { d.get_int("model", "no_such_key"); }));
  EXPECT_TRUE(programming_error([&] { d.get_int("no_such_group", "d_model"); }));
  EXPECT_TRUE(programming_error([&] { d.get_int("optim", "lr"); }));
  EXPECT_TRUE(programming_error([&] { d.get_real("model", "d_model"); }));
  EXPECT_TRUE(programming_error([&] { d.get_bool("run", "task"); }));
  EXPECT_TRUE(programming_error([&] { d.get_string("data", "shuffle"); }));
  EXPECT_TRUE(programming_error([&] { d.get_real("optim", "betas"); }));
  EXPECT_TRUE(programming_error([&] { d.get_reals("optim", "lr"); }));
  EXPECT_TRUE(programming_error([&] { d.get_ints("optim", "betas"); }));
  EXPECT_TRUE(programming_error([&] { d.is_set("model", "no_such_key"); }));
  EXPECT_FALSE(programming_error([&] { d.get_int("model", "d_model"); }));
}

// ---- schema errors: whole messages, so file, line and key are asserted ----

TEST(DeckErrors, UnknownGroup) {
  EXPECT_EQ(error_of("! deck\n&modle\n  d_model = 512\n/\n"),
            "run.nml:2: unknown group '&modle' (did you mean '&model'?)");
  EXPECT_EQ(error_of("&MODLE /"), "run.nml:1: unknown group '&modle' (did you mean '&model'?)");
  EXPECT_EQ(error_of("&xyzzy /"),
            "run.nml:1: unknown group '&xyzzy' (groups: run, model, data, prepare, optim, "
            "parallel, precision, checkpoint, profile, log, translate, generate, bench, plan)");
}

TEST(DeckErrors, UnknownKey) {
  EXPECT_EQ(error_of("&model\n  n_heads = 8\n  d_modle = 512\n/\n"),
            "run.nml:3: 'model%d_modle' is not a key of &model (did you mean 'd_model'?)");
  EXPECT_EQ(error_of("&parallel zero_stag = 1 /"),
            "run.nml:1: 'parallel%zero_stag' is not a key of &parallel (did you mean "
            "'zero_stage'?)");
  EXPECT_EQ(error_of("&model lr = 1e-3 /"),
            "run.nml:1: 'model%lr' is not a key of &model ('lr' is a key of &optim)");
  EXPECT_EQ(error_of("&data vocab_size = 5 /"),
            "run.nml:1: 'data%vocab_size' is not a key of &data ('vocab_size' is a key of "
            "&model, &prepare)");
  EXPECT_EQ(error_of("&run xyzzy = 1 /"),
            "run.nml:1: 'run%xyzzy' is not a key of &run (keys of &run: task, output_dir, seed, "
            "backend, max_steps, threads, gemm)");
}

TEST(DeckErrors, WrongType) {
  EXPECT_EQ(error_of("&model\n\n  d_model = 'abc'\n/"),
            "run.nml:3: 'model%d_model' expects an integer, got 'abc'");
  EXPECT_EQ(error_of("&model d_model = 512.0 /"),
            "run.nml:1: 'model%d_model' expects an integer, got 512.0");
  EXPECT_EQ(error_of("&model tie_embeddings = 1 /"),
            "run.nml:1: 'model%tie_embeddings' expects a logical, got 1");
  EXPECT_EQ(error_of("&model arch = T /"), "run.nml:1: 'model%arch' expects a string, got .true.");
  EXPECT_EQ(error_of("&optim lr = 'fast' /"), "run.nml:1: 'optim%lr' expects a real, got 'fast'");
  EXPECT_EQ(error_of("&optim betas = 0.9, 'x' /"),
            "run.nml:1: 'optim%betas' expects reals, got 'x'");
}

TEST(DeckErrors, WrongNumberOfValues) {
  EXPECT_EQ(error_of("&model d_model = 512, 256 /"),
            "run.nml:1: 'model%d_model' expects one integer, got 2 values");
  EXPECT_EQ(error_of("&optim betas = 0.9 /"),
            "run.nml:1: 'optim%betas' expects 2 reals, got 1 value");
  EXPECT_EQ(error_of("&optim betas = 3*0.9 /"),
            "run.nml:1: 'optim%betas' expects 2 reals, got 3 values");
}

TEST(DeckErrors, OutOfRange) {
  EXPECT_EQ(error_of("&run /\n&parallel\n  zero_stage = 7\n/"),
            "run.nml:3: 'parallel%zero_stage' = 7 is out of range (0 to 3)");
  EXPECT_EQ(error_of("&parallel zero_stage = -1 /"),
            "run.nml:1: 'parallel%zero_stage' = -1 is out of range (0 to 3)");
  EXPECT_EQ(error_of("&optim lr = 0 /"), "run.nml:1: 'optim%lr' = 0.0 is out of range (> 0.0)");
  EXPECT_EQ(error_of("&model dropout = 1 /"),
            "run.nml:1: 'model%dropout' = 1.0 is out of range (>= 0.0 and < 1.0)");
  EXPECT_EQ(error_of("&optim warmup_steps = -5 /"),
            "run.nml:1: 'optim%warmup_steps' = -5 is out of range (>= 0)");
  EXPECT_EQ(error_of("&optim min_lr_ratio = 1.5 /"),
            "run.nml:1: 'optim%min_lr_ratio' = 1.5 is out of range (0.0 to 1.0)");
  EXPECT_EQ(error_of("&optim betas = 0.9, 1 /"),
            "run.nml:1: 'optim%betas' = 1.0 is out of range (>= 0.0 and < 1.0)");
  EXPECT_EQ(error_of("&precision initial_scale_power = 41 /"),
            "run.nml:1: 'precision%initial_scale_power' = 41 is out of range (0 to 40)");
  EXPECT_EQ(error_of("&run seed = -1 /"), "run.nml:1: 'run%seed' = -1 is out of range (>= 0)");
  EXPECT_EQ(error_of("&model d_model = 3000000000 /"),
            "run.nml:1: 'model%d_model' = 3000000000 is out of range (it must fit a 32-bit "
            "integer)");
  // The edges of closed ranges are inside.
  EXPECT_NO_THROW(
      deck_of("&parallel zero_stage = 3 /&optim min_lr_ratio = 1 /&model dropout = 0 /"));
}

TEST(DeckErrors, NotAChoiceOrEmpty) {
  EXPECT_EQ(error_of("&model activation = 'gleu' /"),
            "run.nml:1: 'model%activation' = 'gleu' is not one of 'relu', 'gelu' (did you mean "
            "'gelu'?)");
  EXPECT_EQ(error_of("&optim schedule = 'linear' /"),
            "run.nml:1: 'optim%schedule' = 'linear' is not one of 'inverse_sqrt', 'cosine', "
            "'constant'");
  EXPECT_EQ(error_of("&checkpoint resume = '' /"),
            "run.nml:1: 'checkpoint%resume' must not be empty");
  EXPECT_EQ(error_of("&run output_dir = \"\" /"), "run.nml:1: 'run%output_dir' must not be empty");
}

TEST(DeckErrors, SyntaxErrorsComeThroughWithTheDeckName) {
  EXPECT_EQ(error_of("&run\n  output_dir = 'runs/x\n/\n"),
            "run.nml:2: unterminated string for key 'run%output_dir'");
  EXPECT_EQ(error_of_text("&model\n  d_model = 512\n"),
            "run.nml:2: &model: missing '/' to close the group (opened at line 1)");
}

TEST(DeckErrors, TheFirstProblemInTheDeckIsReported) {
  EXPECT_EQ(error_of("&model\n  d_model = 'x'\n  n_heads = 'y'\n/\n&parallel zero_stage = 9 /\n"),
            "run.nml:2: 'model%d_model' expects an integer, got 'x'");
  EXPECT_EQ(error_of("&modle /\n&model d_modle = 1 /\n"),
            "run.nml:1: unknown group '&modle' (did you mean '&model'?)");
}

// ---- cross-key rules ----

TEST(DeckRules, HeadsMustDivideTheWidth) {
  EXPECT_EQ(error_of("&model\n  d_model = 512\n  n_heads = 3\n/"),
            "run.nml:3: 'model%n_heads' = 3 does not divide 'model%d_model' = 512");
  // Located at whichever of the two keys was set last.
  EXPECT_EQ(error_of("&model\n  n_heads = 3\n\n  d_model = 512\n/"),
            "run.nml:4: 'model%n_heads' = 3 does not divide 'model%d_model' = 512");
  EXPECT_EQ(error_of("&model\n  d_model = 100\n/"),
            "run.nml:2: 'model%n_heads' = 8 does not divide 'model%d_model' = 100");
  EXPECT_NO_THROW(deck_of("&model d_model = 96, n_heads = 3 /"));
}

TEST(DeckRules, ArchitectureAndEncoderDepth) {
  EXPECT_EQ(error_of("&model\n  arch = 'decoder-only'\n/"),
            "run.nml:2: 'model%n_encoder_layers' = 6 must be 0 when 'model%arch' = 'decoder-only'");
  EXPECT_NO_THROW(deck_of("&model arch = 'decoder-only', n_encoder_layers = 0 /"));
  EXPECT_EQ(error_of("&model n_encoder_layers = 0 /"),
            "run.nml:1: 'model%n_encoder_layers' = 0 must be >= 1 when 'model%arch' = "
            "'encoder-decoder'");
}

TEST(DeckRules, LanguageModelTasksAndPacking) {
  const std::string lm = "&model arch = 'decoder-only', n_encoder_layers = 0, max_len = 64 /\n";
  EXPECT_EQ(error_of_text(lm + "&run task = 'generate' /\n"),
            "run.nml:2: 'run%task' = 'generate' needs 'generate%prompt' or 'generate%input_file'");
  EXPECT_EQ(error_of_text(lm + "&run task = 'generate' /\n&generate prompt = 'a', input_file = '-' /\n"),
            "run.nml:3: give one of 'generate%prompt' = 'a' and 'generate%input_file' = '-', not both");
  EXPECT_EQ(error_of_text("&run task = 'generate' /\n&generate prompt = 'a' /\n"),
            "run.nml:1: 'run%task' = 'generate' needs 'model%arch' = 'decoder-only'");
  EXPECT_NO_THROW(Deck::from_text(lm + "&run task = 'generate' /\n&generate prompt = 'a' /", "g.nml"));
  EXPECT_EQ(error_of("&data packing = 'concat' /"),
            "run.nml:1: 'data%packing' = 'concat' needs 'model%arch' = 'decoder-only'");
  EXPECT_EQ(error_of_text(lm + "&data packing = 'concat', max_tokens = 32, train_file = 't.h5' /\n"),
            "run.nml:2: 'data%max_tokens' = 32 is less than one block of 'model%max_len' = 64 ('data%packing' = "
            "'concat')");
  EXPECT_EQ(error_of_text(lm + "&data document_mask = .true., train_file = 't.h5' /\n"),
            "run.nml:2: 'data%document_mask' = .true. needs 'data%packing' = 'concat'");
  EXPECT_NO_THROW(Deck::from_text(lm + "&data packing = 'concat', document_mask = .true., train_file = 't.h5' /",
                                  "p.nml"));
}

TEST(DeckRules, VocabularySizeWithoutATokenizer) {
  EXPECT_EQ(error_of_text("&run task = 'train' /\n&data synthetic = 'reverse' /\n"),
            "run.nml:2: 'model%vocab_size' = 0 must be > 0 when 'data%synthetic' = 'reverse'");
  EXPECT_EQ(error_of_text("&run task = 'bench' /\n"),
            "run.nml:1: 'model%vocab_size' = 0 must be > 0 when 'run%task' = 'bench'");
  EXPECT_NO_THROW(Deck::from_text("&run task = 'bench' /\n&model vocab_size = 100 /", "b.nml"));
  EXPECT_NO_THROW(Deck::from_text("&data train_file = 'train.h5' /", "t.nml"));  // from tokenizer
}

TEST(DeckRules, EachTaskHasWhatItNeeds) {
  EXPECT_EQ(error_of_text(""),
            "run.nml: 'run%task' = 'train' needs 'data%train_file' or 'data%synthetic'");
  EXPECT_EQ(error_of_text("&run task = 'prepare' /"),
            "run.nml:1: 'run%task' = 'prepare' needs 'prepare%source' (a TSV file, "
            "'bible:SRC_MODULE:TGT_MODULE', 'text:PATH', 'jsonl:PATH:FIELD' or 'bible:MODULE')");
  EXPECT_NO_THROW(Deck::from_text("&run task = 'prepare' /&prepare source = 'a.tsv' /", "p.nml"));
  EXPECT_EQ(error_of_text("&run task = 'translate' /"),
            "run.nml:1: 'run%task' = 'translate' needs 'translate%input_file'");
  EXPECT_NO_THROW(
      Deck::from_text("&run task = 'translate' /&translate input_file = 'x' /", "t.nml"));
  EXPECT_NO_THROW(Deck::from_text("&run task = 'evaluate' /", "e.nml"));
  EXPECT_EQ(error_of("&run task = 'bench' /&bench seq_len = 300 /"),
            "run.nml:1: 'bench%seq_len' = 300 exceeds 'model%max_len' = 256");
}

TEST(DeckRules, SyntheticLengths) {
  EXPECT_EQ(error_of("&data synthetic_min_len = 8, synthetic_max_len = 6 /"),
            "run.nml:1: 'data%synthetic_max_len' = 6 is less than 'data%synthetic_min_len' = 8");
  EXPECT_EQ(error_of("&model max_len = 17 /"),
            "run.nml:1: 'data%synthetic_max_len' = 16 leaves no room for BOS and EOS within "
            "'model%max_len' = 17 (synthetic_max_len + 2 <= max_len)");
  EXPECT_NO_THROW(deck_of("&model max_len = 18 /"));
}

TEST(DeckRules, HeldOutShares) {
  EXPECT_EQ(error_of("&prepare valid_fraction = 0.5, test_fraction = 0.5 /"),
            "run.nml:1: 'prepare%valid_fraction' = 0.5 plus 'prepare%test_fraction' = 0.5 leaves "
            "nothing to train on (their sum must be < 1)");
  EXPECT_NO_THROW(deck_of("&prepare valid_fraction = 0.5, test_fraction = 0.4 /"));
}

TEST(DeckRules, InverseSqrtNeedsWarmup) {
  EXPECT_EQ(error_of("&optim warmup_steps = 0 /"),
            "run.nml:1: 'optim%warmup_steps' = 0 must be >= 1 when 'optim%schedule' = "
            "'inverse_sqrt'");
  EXPECT_NO_THROW(deck_of("&optim warmup_steps = 0, schedule = 'constant' /"));
}

TEST(DeckRules, OffloadNeedsZero) {
  EXPECT_EQ(error_of("&parallel offload_optimizer = 'cpu' /"),
            "run.nml:1: 'parallel%offload_optimizer' = 'cpu' needs 'parallel%zero_stage' >= 1 (it "
            "is 0)");
  EXPECT_NO_THROW(deck_of("&parallel offload_optimizer = 'cpu', zero_stage = 1 /"));
  EXPECT_EQ(
      error_of("&parallel\n zero_stage = 2\n offload_param = 'cpu'\n/"),
      "run.nml:3: 'parallel%offload_param' = 'cpu' needs 'parallel%zero_stage' = 3 (it is 2)");
  EXPECT_NO_THROW(deck_of("&parallel offload_param = 'nvme', zero_stage = 3 /"));
  EXPECT_EQ(error_of("&parallel zero_stage = 3, offload_param = 'nvme'\n nvme_path = '' /"),
            "run.nml:2: NVMe offload needs 'parallel%nvme_path'");
}

TEST(DeckRules, DynamicScalerStartsAboveItsFloor) {
  EXPECT_EQ(error_of("&precision dtype = 'fp16', initial_scale_power = 2, min_loss_scale = 8 /"),
            "run.nml:1: 'precision%min_loss_scale' = 8.0 is above the initial dynamic scale 2^2 "
            "('precision%initial_scale_power' = 2)");
  EXPECT_NO_THROW(
      deck_of("&precision dtype = 'fp16', initial_scale_power = 3, min_loss_scale = 8 /"));
  EXPECT_NO_THROW(
      deck_of("&precision dtype = 'fp16', initial_scale_power = 2, min_loss_scale = 8, "
              "loss_scale = 1024 /"));
}

// ---- --set overrides ----

TEST(DeckOverrides, ReplaceDeckValuesInOrder) {
  const Deck d = deck_of("&optim\n  lr = 1e-3\n/\n",
                         {"optim%lr=3e-4", "parallel%zero_stage=2", " Optim % Clip_Norm = 0.5 ",
                          "optim%betas=0.9 0.999", "run%output_dir='runs/it''s'",
                          "model%tie_embeddings=F", "parallel%zero_stage=1"});
  EXPECT_EQ(d.get_real("optim", "lr"), 3e-4);
  EXPECT_EQ(d.get_int("parallel", "zero_stage"), 1);  // the last one wins
  EXPECT_EQ(d.get_real("optim", "clip_norm"), 0.5);
  EXPECT_EQ(d.get_reals("optim", "betas"), (std::vector<double>{0.9, 0.999}));
  EXPECT_EQ(d.get_string("run", "output_dir"), "runs/it's");
  EXPECT_FALSE(d.get_bool("model", "tie_embeddings"));
  EXPECT_EQ(d.origin("optim", "lr"), "--set optim%lr=3e-4");
  EXPECT_EQ(d.origin("parallel", "zero_stage"), "--set parallel%zero_stage=1");
  EXPECT_TRUE(d.is_set("optim", "clip_norm"));
}

TEST(DeckOverrides, FromFileAppliesThem) {
  const Deck d = Deck::from_file(TH_TEST_DIR "/decks/ok_minimal.nml", {"model%d_model=64"});
  EXPECT_EQ(d.get_int("model", "d_model"), 64);
  EXPECT_EQ(d.get_int("model", "n_heads"), 4);
}

TEST(DeckOverrides, Errors) {
  EXPECT_EQ(error_of("", {"optim%lr"}),
            "--set optim%lr: expected group%key=value (e.g. --set optim%lr=3e-4)");
  EXPECT_EQ(error_of("", {"lr=3e-4"}),
            "--set lr=3e-4: expected group%key=value (e.g. --set optim%lr=3e-4)");
  EXPECT_EQ(error_of("", {"%lr=3e-4"}),
            "--set %lr=3e-4: expected group%key=value (e.g. --set optim%lr=3e-4)");
  EXPECT_EQ(error_of("", {"optm%lr=3e-4"}),
            "--set optm%lr=3e-4: unknown group '&optm' (did you mean '&optim'?)");
  EXPECT_EQ(error_of("", {"optim%lrr=3e-4"}),
            "--set optim%lrr=3e-4: 'optim%lrr' is not a key of &optim (did you mean 'lr'?)");
  EXPECT_EQ(error_of("", {"optim%lr=fast"}),
            "--set optim%lr=fast: cannot read 'fast' as a value of 'optim%lr' (a string needs "
            "quotes: 'fast')");
  EXPECT_EQ(error_of("", {"model%d_model='abc'"}),
            "--set model%d_model='abc': 'model%d_model' expects an integer, got 'abc'");
  EXPECT_EQ(error_of("", {"optim%lr=-1"}),
            "--set optim%lr=-1: 'optim%lr' = -1.0 is out of range (> 0.0)");
  EXPECT_EQ(error_of("", {"parallel%zero_stage=4"}),
            "--set parallel%zero_stage=4: 'parallel%zero_stage' = 4 is out of range (0 to 3)");
  EXPECT_EQ(error_of("", {"run%output_dir='runs/x"}),
            "--set run%output_dir='runs/x: unterminated string for key 'run%output_dir'");
  EXPECT_EQ(error_of("", {"model%d_model="}), "--set model%d_model=: 'model%d_model' has no value");
  // A rule broken by an override is reported at the override.
  EXPECT_EQ(error_of("&model d_model = 512 /", {"model%n_heads=3"}),
            "--set model%n_heads=3: 'model%n_heads' = 3 does not divide 'model%d_model' = 512");
  // Control characters from a command line cannot break the one-line message.
  EXPECT_EQ(error_of("", {"optim%x\n=1"}),
            "--set optim%x?=1: 'optim%x' is not a key of &optim (keys of &optim: lr, betas, eps, "
            "weight_decay, warmup_steps, schedule, min_lr_ratio, clip_norm, label_smoothing, "
            "grad_accum)");
}

TEST(DeckOverrides, TheDeckItselfIsCheckedFirst) {
  EXPECT_EQ(error_of("&parallel zero_stage = 7 /", {"parallel%zero_stage=1"}),
            "run.nml:1: 'parallel%zero_stage' = 7 is out of range (0 to 3)");
}

// ---- files ----

TEST(DeckFiles, MissingFileOrFolder) {
  try {
    Deck::from_file("/no/such/dir/run.nml", {});
    ADD_FAILURE() << "no error for a missing deck";
  } catch (const InputError& e) {
    EXPECT_STREQ(e.what(), "/no/such/dir/run.nml: cannot open deck: No such file or directory");
  }
  try {
    Deck::from_file(TH_TEST_DIR "/decks", {});
    ADD_FAILURE() << "no error for a folder";
  } catch (const InputError& e) {
    EXPECT_EQ(std::string(e.what()), TH_TEST_DIR "/decks: cannot open deck: Is a directory");
  }
}

TEST(DeckFiles, MinimalDeckIsValid) {
  const Deck d = Deck::from_file(TH_TEST_DIR "/decks/ok_minimal.nml", {});
  EXPECT_EQ(d.get_string("data", "synthetic"), "copy");
  EXPECT_EQ(d.get_int("model", "d_model"), 32);
  EXPECT_EQ(d.origin("model", "d_model"), TH_TEST_DIR "/decks/ok_minimal.nml:6");
}

// Each bad deck names the message it must produce on its first line ("! expect: <text>"); the
// same line drives the MPI test (tests/scripts/check_deck_error.sh), so both check one thing.
TEST(DeckFiles, EveryBadDeckFailsWithItsExpectedMessage) {
  int checked = 0;
  for (const auto& entry : std::filesystem::directory_iterator(TH_TEST_DIR "/decks")) {
    const std::string file = entry.path().filename().string();
    if (file.rfind("bad_", 0) != 0 || entry.path().extension() != ".nml") continue;
    const std::string text = read_text(entry.path().string());
    const std::string tag = "! expect: ";
    ASSERT_EQ(text.rfind(tag, 0), 0u) << file << " has no '! expect:' first line";
    const std::string expected = text.substr(tag.size(), text.find('\n') - tag.size());
    EXPECT_EQ(expected.rfind(file + ":", 0), 0u) << file << ": expectation names another file";
    try {
      Deck::from_file(entry.path().string(), {});
      ADD_FAILURE() << file << " was accepted";
    } catch (const InputError& e) {
      const std::string message = e.what();
      EXPECT_EQ(message, entry.path().parent_path().string() + "/" + expected) << file;
    }
    ++checked;
  }
  EXPECT_GE(checked, 7);  // unknown key, group, type, '/', string, range, heads
}

// ---- the resolved echo ----

TEST(DeckResolved, ListsEveryKeyInSchemaOrder) {
  const std::string text = deck_of("").to_namelist();
  EXPECT_EQ(text.rfind("! ", 0), 0u) << "starts with a header comment";
  std::size_t at = 0;
  std::string group;
  for (const KeySpec& s : deck_schema()) {
    if (s.group != group) {
      group = s.group;
      at = text.find("\n&" + group + "\n", at);
      ASSERT_NE(at, std::string::npos) << "&" << group;
    }
    at = text.find("\n  " + s.key + " ", at);
    ASSERT_NE(at, std::string::npos) << s.group << "%" << s.key << " missing or out of order";
  }
  EXPECT_NE(text.find("  betas           = 0.9, 0.98\n"), std::string::npos) << text;
  EXPECT_NE(text.find("  tie_embeddings   = .true.\n"), std::string::npos) << text;
  EXPECT_NE(text.find("  task       = 'train'\n"), std::string::npos) << text;
}

TEST(DeckResolved, ReadsBackToTheIdenticalDeck) {
  const std::vector<Deck> decks = {
      deck_of(""), Deck::from_text(kFullDeck, "full.nml"),
      deck_of(
          "&optim lr = 0.30000000000000004, eps = 1e-300, betas = 0.1, 0.3333333333333333 /",
          {"run%output_dir='it''s \"here\" ! not / a & comment'", "run%seed=9223372036854775807",
           "parallel%bucket_mb=1e10", "checkpoint%resume=\"/ckpt/step 10\""})};
  for (const Deck& d : decks) {
    const std::string text = d.to_namelist();
    const Deck back = Deck::from_text(text, "resolved.nml");
    EXPECT_TRUE(back == d) << text;
    EXPECT_EQ(back.to_namelist(), text);
    for (const KeySpec& s : deck_schema()) EXPECT_TRUE(back.is_set(s.group, s.key));
  }
  EXPECT_EQ(decks[2].get_real("optim", "lr"), 0.1 + 0.2);
  EXPECT_EQ(decks[2].get_string("run", "output_dir"), "it's \"here\" ! not / a & comment");
  // Equality really compares values.
  EXPECT_TRUE(decks[0] != decks[1]);
  EXPECT_TRUE(deck_of("", {"optim%lr=0.0007"}) == deck_of(""));
  EXPECT_TRUE(deck_of("", {"optim%lr=0.00070000000000001"}) != deck_of(""));
}

// ---- the typed Config ----

TEST(Config, HoldsEveryKey) {
  const Deck d = Deck::from_text(kFullDeck, "full.nml");
  const Config c = make_config(d);
  EXPECT_EQ(c.run.task, "evaluate");
  EXPECT_EQ(c.run.output_dir, "runs/full");
  EXPECT_EQ(c.run.seed, 3000000000LL);
  EXPECT_EQ(c.run.backend, "auto");
  EXPECT_EQ(c.run.max_steps, 100);
  EXPECT_EQ(c.run.threads, 2);
  EXPECT_EQ(c.model.arch, "decoder-only");
  EXPECT_EQ(c.model.d_model, 64);
  EXPECT_EQ(c.model.n_heads, 2);
  EXPECT_EQ(c.model.d_ff, 128);
  EXPECT_EQ(c.model.n_encoder_layers, 0);
  EXPECT_EQ(c.model.n_decoder_layers, 3);
  EXPECT_EQ(c.model.activation, "gelu");
  EXPECT_EQ(c.model.norm, "pre");
  EXPECT_EQ(c.model.dropout, 0.25);
  EXPECT_FALSE(c.model.tie_embeddings);
  EXPECT_EQ(c.model.max_len, 40);
  EXPECT_EQ(c.model.vocab_size, 50);
  EXPECT_EQ(c.data.train_file, "tr.h5");
  EXPECT_EQ(c.data.valid_file, "va.h5");
  EXPECT_EQ(c.data.test_file, "te.h5");
  EXPECT_EQ(c.data.max_tokens, 1000);
  EXPECT_EQ(c.data.epochs, 3);
  EXPECT_FALSE(c.data.shuffle);
  EXPECT_EQ(c.data.synthetic, "reverse");
  EXPECT_EQ(c.data.synthetic_min_len, 2);
  EXPECT_EQ(c.data.synthetic_max_len, 30);
  EXPECT_EQ(c.data.synthetic_samples, 100);
  EXPECT_EQ(c.data.synthetic_valid_samples, 10);
  EXPECT_EQ(c.prepare.source, "pairs.tsv");
  EXPECT_EQ(c.prepare.vocab_size, 1000);
  EXPECT_EQ(c.prepare.valid_fraction, 0.05);
  EXPECT_EQ(c.prepare.test_fraction, 0.1);
  EXPECT_EQ(c.optim.lr, 3e-4);
  EXPECT_EQ(c.optim.betas[0], 0.8);
  EXPECT_EQ(c.optim.betas[1], 0.95);
  EXPECT_EQ(c.optim.eps, 1e-8);
  EXPECT_EQ(c.optim.weight_decay, 0.01);
  EXPECT_EQ(c.optim.warmup_steps, 0);
  EXPECT_EQ(c.optim.schedule, "cosine");
  EXPECT_EQ(c.optim.min_lr_ratio, 0.1);
  EXPECT_EQ(c.optim.clip_norm, 0.5);
  EXPECT_EQ(c.optim.label_smoothing, 0.0);
  EXPECT_EQ(c.optim.grad_accum, 2);
  EXPECT_EQ(c.parallel.zero_stage, 3);
  EXPECT_EQ(c.parallel.bucket_mb, 12.5);
  EXPECT_FALSE(c.parallel.overlap_comm);
  EXPECT_EQ(c.parallel.stage3_prefetch, 2);
  EXPECT_EQ(c.parallel.param_persistence_threshold, 100000);
  EXPECT_EQ(c.parallel.offload_optimizer, "cpu");
  EXPECT_EQ(c.parallel.offload_param, "nvme");
  EXPECT_EQ(c.parallel.nvme_path, "/scratch/nvme");
  EXPECT_EQ(c.parallel.nvme_chunk_mb, 0.5);
  EXPECT_TRUE(c.parallel.activation_checkpointing);
  EXPECT_EQ(c.parallel.consistency_check_every, 50);
  EXPECT_EQ(c.precision.dtype, "bf16");
  EXPECT_EQ(c.precision.loss_scale, 128.0);
  EXPECT_EQ(c.precision.initial_scale_power, 12);
  EXPECT_EQ(c.precision.loss_scale_window, 500);
  EXPECT_EQ(c.precision.hysteresis, 4);
  EXPECT_EQ(c.precision.min_loss_scale, 0.5);
  EXPECT_EQ(c.precision.max_skipped_steps, 7);
  EXPECT_EQ(c.checkpoint.dir, "ckpt");
  EXPECT_EQ(c.checkpoint.every_steps, 20);
  EXPECT_EQ(c.checkpoint.keep_last, 5);
  EXPECT_EQ(c.checkpoint.resume, "never");
  EXPECT_TRUE(c.profile.enabled);
  EXPECT_EQ(c.profile.start_step, 3);
  EXPECT_EQ(c.profile.num_steps, 2);
  EXPECT_EQ(c.log.every_steps, 1);
  EXPECT_TRUE(c.log.per_rank);
  EXPECT_EQ(c.translate.input_file, "in.txt");
  EXPECT_EQ(c.translate.output_file, "out.txt");
  EXPECT_EQ(c.translate.beam_size, 5);
  EXPECT_EQ(c.translate.max_len_ratio, 2.0);
  EXPECT_EQ(c.translate.length_penalty, 0.6);
  EXPECT_EQ(c.translate.batch_sentences, 8);
  EXPECT_EQ(c.translate.samples, 0);
  EXPECT_EQ(c.log.valid_every_steps, 7);
  EXPECT_EQ(c.data.packing, "concat");
  EXPECT_TRUE(c.data.document_mask);
  EXPECT_EQ(c.prepare.text_documents, "file");
  EXPECT_EQ(c.prepare.spm_type, "bpe");
  EXPECT_EQ(c.prepare.spm_sample_sentences, 5000);
  EXPECT_EQ(c.generate.prompt, "x");
  EXPECT_EQ(c.generate.input_file, "p.txt");
  EXPECT_EQ(c.generate.output_file, "g.txt");
  EXPECT_EQ(c.generate.max_new_tokens, 10);
  EXPECT_EQ(c.generate.temperature, 0.5);
  EXPECT_EQ(c.generate.top_k, 5);
  EXPECT_EQ(c.generate.top_p, 0.9);
  EXPECT_EQ(c.generate.repetition_penalty, 1.3);
  EXPECT_EQ(c.generate.seed, 9);
  EXPECT_EQ(c.generate.batch_prompts, 4);
  EXPECT_EQ(c.bench.batch, 16);
  EXPECT_EQ(c.bench.seq_len, 32);
  EXPECT_EQ(c.bench.steps, 4);
  EXPECT_EQ(c.bench.warmup, 1);
  EXPECT_EQ(c.resolved_deck, d.to_namelist());
  EXPECT_TRUE(Deck::from_text(c.resolved_deck, "echo.nml") == d);
}

TEST(Config, DefaultsComeFromTheSchema) {
  const Config c = make_config(deck_of(""));
  EXPECT_EQ(c.model.d_model, 512);
  EXPECT_EQ(c.model.d_ff, 2048);
  EXPECT_EQ(c.optim.betas[1], 0.98);
  EXPECT_EQ(c.parallel.nvme_path, "/tmp/torch-handle-nvme");
  EXPECT_EQ(c.checkpoint.resume, "auto");
  EXPECT_EQ(c.run.seed, 1234);
}

// ---- docs/deck.md documents exactly the schema ----

TEST(DeckDocs, EveryKeyIsDocumentedWithItsTypeDefaultAndRange) {
  const std::string doc = read_text(TH_TEST_DIR "/../docs/deck.md");
  ASSERT_FALSE(doc.empty());
  const auto section = [&](const std::string& group) {
    const std::size_t begin = doc.find("\n### `&" + group + "`\n");
    if (begin == std::string::npos) return std::string();
    const std::size_t end = doc.find("\n#", begin + 1);
    return doc.substr(begin, end == std::string::npos ? std::string::npos : end - begin);
  };
  for (const KeySpec& s : deck_schema()) {
    const std::string text = section(s.group);
    ASSERT_FALSE(text.empty()) << "docs/deck.md has no section '### `&" << s.group << "`'";
    const std::string row = "\n| `" + s.key + "` | " + key_type_name(s) + " | `" + key_default(s) +
                            "` | " + key_allowed(s) + " | ";
    EXPECT_NE(text.find(row), std::string::npos)
        << "docs/deck.md lacks (or has a stale) row for " << s.group << "%" << s.key
        << "; expected it to start with:" << row;
  }
  // And documents nothing that is not a key.
  for (const std::string& group : deck_groups()) {
    std::istringstream lines(section(group));
    for (std::string line; std::getline(lines, line);) {
      if (line.rfind("| `", 0) != 0) continue;
      const std::string key = line.substr(3, line.find('`', 3) - 3);
      EXPECT_GE(deck_key_index(group, key), 0)
          << "docs/deck.md documents " << group << "%" << key << ", which is not in the schema";
    }
  }
}

TEST(DeckDocs, TheExampleDeckIsValid) {
  const std::string doc = read_text(TH_TEST_DIR "/../docs/deck.md");
  const std::string marker = "<!-- example-deck -->";
  const std::size_t at = doc.find(marker);
  ASSERT_NE(at, std::string::npos) << "docs/deck.md has no " << marker;
  const std::size_t begin = doc.find('\n', doc.find("```", at)) + 1;
  const std::size_t end = doc.find("\n```", begin);
  ASSERT_NE(end, std::string::npos);
  const Deck d = Deck::from_text(doc.substr(begin, end - begin + 1), "docs/deck.md example");
  EXPECT_TRUE(d.is_set("model", "d_model"));
}

}  // namespace
}  // namespace th
