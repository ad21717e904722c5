// The tokenizer is part of the data's identity (1, 2 and 4 ranks). Two SentencePiece models of
// the same vocabulary size, trained on two halves of the Genesis fixture, make two sets of
// datasets. A checkpoint trained on set A records A's fingerprint; resuming it on set B's
// training file, evaluating it on B's test file or translating with B's tokenizer is an
// InputError on every rank that names both fingerprints, while A's files are accepted. A
// checkpoint without a fingerprint (written before they were recorded) is accepted only with
// synthetic data, which has no tokenizer either; a synthetic run's checkpoint is refused on a
// dataset.
#include <gtest/gtest.h>

#include <fstream>
#include <functional>

#include "th/io/checkpoint.hpp"
#include "th/io/deck.hpp"
#include "th/core/error.hpp"
#include "th/data/dataset_h5.hpp"
#include "th/data/split.hpp"
#include "th/data/tokenizer.hpp"
#include "th/eval/tasks.hpp"
#include "th/train/tasks.hpp"
#include "training_support.hpp"

using namespace th;
using testing_support::world;

namespace {
struct Sets {
  std::string dir, fp_a, fp_b;
  int vocab = 0;
};

// Rank 0 trains the two tokenizers and writes {a,b}_{train,test}.h5; every rank gets the names.
const Sets& sets() {
  static Sets s = [] {
    Comm& w = world();
    Sets r;
    r.dir = testing_support::fresh_test_dir(w, "tokenizer_identity");
    std::string fps;
    if (w.rank() == 0) {
      std::ifstream in(std::string(TH_TEST_DIR) + "/data/genesis_1-4_en_es.tsv");
      std::vector<std::pair<std::string, std::string>> pairs;
      for (std::string line; std::getline(in, line);) {
        const auto tab = line.find('\t');
        if (tab != std::string::npos) pairs.emplace_back(line.substr(0, tab), line.substr(tab + 1));
      }
      const std::size_t half = pairs.size() / 2;
      for (const char* set : {"a", "b"}) {
        const bool a = set[0] == 'a';
        const std::vector<std::pair<std::string, std::string>> mine(a ? pairs.begin() : pairs.begin() + half,
                                                                    a ? pairs.begin() + half : pairs.end());
        std::vector<std::string> sentences;
        for (const auto& [src, tgt] : mine) sentences.insert(sentences.end(), {src, tgt});
        TokenizerOptions opt;
        opt.vocab_size = 120;
        opt.hard_vocab_limit = true;  // both exactly 120 pieces: only the fingerprint tells them apart
        const std::string model = train_sentencepiece(sentences, opt);
        const Tokenizer tok(model, "test");
        DatasetContent train, test;
        for (std::size_t i = 0; i < mine.size(); ++i)
          (i % 5 == 0 ? test : train).add(set + std::to_string(i), tok.encode(mine[i].first), tok.encode(mine[i].second));
        DatasetProvenance p;
        p.tokenizer_model = model;
        p.vocab_size = tok.vocab_size();
        p.split = "train";
        write_dataset(r.dir + "/" + set + "_train.h5", train, p);
        p.split = "test";
        write_dataset(r.dir + "/" + set + "_test.h5", test, p);
        fps += tokenizer_fingerprint(model) + " " + std::to_string(tok.vocab_size()) + " ";
      }
    }
    w.broadcast_string(fps, 0);
    char a[17] = {}, b[17] = {};
    int va = 0, vb = 0;
    std::sscanf(fps.c_str(), "%16s %d %16s %d", a, &va, b, &vb);
    r.fp_a = a;
    r.fp_b = b;
    r.vocab = va;
    EXPECT_EQ(va, vb) << "the two tokenizers must have the same vocabulary size";
    EXPECT_NE(r.fp_a, r.fp_b);
    return r;
  }();
  return s;
}

// A deck on set A's files (set = "a") or set B's, in run folder `run`.
Config deck(const std::string& run, const std::string& task, const std::string& set, const std::string& resume,
            const std::string& extra = "") {
  const Sets& s = sets();
  return make_config(Deck::from_text(
      "&run task = '" + task + "', output_dir = '" + s.dir + "/" + run + "', seed = 3, max_steps = 2 /\n"
      "&model d_model = 16, n_heads = 2, d_ff = 32, n_encoder_layers = 1, n_decoder_layers = 1, max_len = 128, "
      "vocab_size = 0 /\n"
      "&data train_file = '" + s.dir + "/" + set + "_train.h5', test_file = '" + s.dir + "/" + set +
          "_test.h5', max_tokens = 256 /\n"
      "&checkpoint resume = '" + resume + "' /\n&translate beam_size = 1 /\n" + extra,
      "tokenizer-identity-test"));
}

Config synthetic_deck(const std::string& run, const std::string& resume) {
  const Sets& s = sets();
  return make_config(Deck::from_text(
      "&run task = 'train', output_dir = '" + s.dir + "/" + run + "', seed = 3, max_steps = 2 /\n"
      "&model d_model = 16, n_heads = 2, d_ff = 32, n_encoder_layers = 1, n_decoder_layers = 1, max_len = 128, "
      "vocab_size = " + std::to_string(s.vocab) + " /\n"
      "&data synthetic = 'copy', synthetic_samples = 64, synthetic_valid_samples = 8, max_tokens = 256 /\n"
      "&checkpoint resume = '" + resume + "' /\n",
      "tokenizer-identity-test"));
}

// The InputError f raises, after checking every rank raised one with the same text.
std::string input_error_everywhere(const std::function<void()>& f) {
  std::string msg;
  bool other = false;
  try {
    f();
  } catch (const InputError& e) {
    msg = e.what();
  } catch (const std::exception& e) {
    other = true;
    msg = e.what();
  }
  EXPECT_FALSE(other) << "not an InputError: " << msg;
  const double h = static_cast<double>(fnv1a64(msg) >> 12);
  EXPECT_EQ(world().max(h), h) << "ranks disagree: " << msg;
  EXPECT_EQ(-world().max(-h), h) << "ranks disagree: " << msg;
  EXPECT_FALSE(msg.empty()) << "no error raised";
  return msg;
}
bool has(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// A checkpoint of the trainer's current state that records no tokenizer, as the files written
// before fingerprints were (the same save, the attribute left out).
void save_without_fingerprint(Trainer& t, const Config& cfg) {
  CheckpointState st;
  st.step = t.steps_done();
  st.deck = cfg.resolved_deck;
  st.world_size = world().size();
  st.tokenizer_fingerprint = "";
  t.zero().save(t.checkpoint_dir(), st, 0);
}
}  // namespace

TEST(TokenizerIdentity, CheckpointRecordsTheTrainingDataTokenizer) {
  const Sets& s = sets();
  {
    Trainer t(deck("a", "train", "a", "never"), world());
    t.step();
    t.step();
    t.save_checkpoint_now();
  }
  // Recorded in the file, a root attribute.
  std::string path;
  {
    Trainer t(deck("a", "train", "a", "auto"), world());  // the same tokenizer: accepted
    EXPECT_EQ(t.steps_done(), 2);
    path = t.checkpoint_dir() + "/" + checkpoint_file_name(2);
    const auto tensors = checkpoint_tensors(t.model().params().infos());
    std::vector<float> values(static_cast<std::size_t>(t.model().params().size()));
    const CheckpointState st = load_checkpoint(world(), path, tensors, values.data(), nullptr, nullptr, 0,
                                               static_cast<std::int64_t>(values.size()));
    EXPECT_EQ(st.tokenizer_fingerprint, s.fp_a);
  }

  // Set B: same vocabulary size (the shapes fit), another tokenizer.
  std::string m = input_error_everywhere([&] { Trainer t(deck("a", "train", "b", "auto"), world()); });
  EXPECT_TRUE(has(m, "cannot resume: checkpoint " + path + " was trained on data with tokenizer fingerprint " + s.fp_a +
                         ", but data%train_file = '" + s.dir + "/b_train.h5' has tokenizer fingerprint " + s.fp_b))
      << m;
  m = input_error_everywhere([&] { run_evaluate(deck("a", "evaluate", "b", "auto"), world()); });
  EXPECT_TRUE(has(m, "run%task = 'evaluate': checkpoint " + path + " was trained on data with tokenizer fingerprint " +
                         s.fp_a + ", but data%test_file = '" + s.dir + "/b_test.h5' has tokenizer fingerprint " + s.fp_b))
      << m;
  const std::string input = s.dir + "/input.txt";
  if (world().rank() == 0) std::ofstream(input) << "In the beginning\n";
  world().barrier();
  m = input_error_everywhere([&] {
    run_translate(deck("a", "translate", "b", "auto", "&translate input_file = '" + input + "', output_file = '" +
                                                          s.dir + "/out.txt' /\n"),
                  world());
  });
  EXPECT_TRUE(has(m, "run%task = 'translate': checkpoint " + path) && has(m, s.fp_a) && has(m, s.fp_b)) << m;

  // Set A's own test file evaluates, A's tokenizer translates.
  run_evaluate(deck("a", "evaluate", "a", "auto"), world());
  run_translate(deck("a", "translate", "a", "auto", "&translate input_file = '" + input + "', output_file = '" + s.dir +
                                                        "/out.txt' /\n"),
                world());
  if (world().rank() == 0) std::printf("[ tokenizer ] %s\n", m.c_str());
}

TEST(TokenizerIdentity, CheckpointWithoutFingerprintOnlyWithoutTokenizer) {
  const Sets& s = sets();
  {
    const Config cfg = deck("old", "train", "a", "never");
    Trainer t(cfg, world());
    t.step();
    save_without_fingerprint(t, cfg);
  }
  const std::string m = input_error_everywhere([&] { Trainer t(deck("old", "train", "a", "auto"), world()); });
  EXPECT_TRUE(has(m, "was trained on data with no tokenizer fingerprint (written before they were recorded), but "
                     "data%train_file = '" + s.dir + "/a_train.h5' has tokenizer fingerprint " + s.fp_a))
      << m;

  // Synthetic data: an old checkpoint is accepted (neither side has a tokenizer) ...
  {
    const Config cfg = synthetic_deck("old_synthetic", "never");
    Trainer t(cfg, world());
    t.step();
    save_without_fingerprint(t, cfg);
  }
  {
    Trainer t(synthetic_deck("old_synthetic", "auto"), world());
    EXPECT_EQ(t.steps_done(), 1);
    t.step();
    t.save_checkpoint_now();  // ... and the new one records "none"
  }
  // A synthetic run's checkpoint on a dataset of the same vocabulary size: refused.
  const std::string n = input_error_everywhere([&] { Trainer t(deck("old_synthetic", "train", "a", "auto"), world()); });
  EXPECT_TRUE(has(n, "was trained on data with no tokenizer (synthetic token ids), but data%train_file = '" + s.dir +
                         "/a_train.h5' has tokenizer fingerprint " + s.fp_a))
      << n;
}
