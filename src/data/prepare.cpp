#include "th/data/prepare.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

#include "th/core/error.hpp"
#include "th/core/version.hpp"
#include "th/data/corpus.hpp"
#include "th/data/dataset_h5.hpp"
#include "th/data/split.hpp"
#include "th/data/text_corpus.hpp"
#include "th/data/tokenizer.hpp"
#include "th/parallel/agree.hpp"

namespace th {

namespace {
using Clock = std::chrono::steady_clock;
double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

std::string output_path(const Config& cfg, const std::string& set, const char* name) {
  return set.empty() ? cfg.run.output_dir + "/" + name + ".h5" : set;
}

void make_parent(const std::string& path) {
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  std::error_code ec;
  if (!parent.empty()) std::filesystem::create_directories(parent, ec);
  if (ec) throw InputError(path + ": cannot create its folder: " + ec.message());
}

int tokenizer_threads(const Config& cfg) {
  if (cfg.run.threads > 0) return cfg.run.threads;
  const unsigned hw = std::thread::hardware_concurrency();  // the other ranks sleep meanwhile
  return hw > 0 ? static_cast<int>(std::min(hw, 16u)) : 1;
}
}  // namespace

PrepareSummary prepare_datasets(const Config& cfg) {
  const auto t0 = Clock::now();
  PrepareSummary sum;
  const Corpus corpus = read_corpus(cfg.prepare.source);
  sum.records = corpus.records;
  sum.pairs = static_cast<std::int64_t>(corpus.pairs.size());
  sum.skipped_empty = corpus.skipped_empty;
  sum.skipped_missing = corpus.skipped_missing;
  sum.read_s = since(t0);

  std::vector<Split> split(corpus.pairs.size());
  std::vector<std::string> sentences;  // training split only: valid/test text must not shape the tokenizer
  for (std::size_t i = 0; i < corpus.pairs.size(); ++i) {
    split[i] = assign_split(corpus.pairs[i].key, cfg.prepare.valid_fraction, cfg.prepare.test_fraction);
    ++sum.split_pairs[static_cast<int>(split[i])];
    if (split[i] == Split::Train) {
      sentences.push_back(corpus.pairs[i].src);
      sentences.push_back(corpus.pairs[i].tgt);
    }
  }
  if (sum.split_pairs[0] == 0)
    throw InputError("prepare%source = '" + cfg.prepare.source + "': no pair falls into the training split (" +
                     std::to_string(sum.pairs) + " pairs); lower prepare%valid_fraction / test_fraction");

  const auto t1 = Clock::now();
  TokenizerOptions topt;
  topt.vocab_size = cfg.prepare.vocab_size;
  topt.threads = tokenizer_threads(cfg);
  topt.model_type = cfg.prepare.spm_type;
  topt.input_sentence_size = cfg.prepare.spm_sample_sentences;
  const std::string model = train_sentencepiece(sentences, topt);
  sentences.clear();
  const Tokenizer tok(model, "prepare");
  sum.vocab_size = tok.vocab_size();
  sum.tokenizer_s = since(t1);

  const auto t2 = Clock::now();
  DatasetContent content[3];
  for (std::size_t i = 0; i < corpus.pairs.size(); ++i) {
    const SentencePair& p = corpus.pairs[i];
    content[static_cast<int>(split[i])].add(p.key, tok.encode(p.src), tok.encode(p.tgt));
  }
  const bool bible = cfg.prepare.source.rfind("bible:", 0) == 0;
  DatasetProvenance prov;
  prov.tokenizer_model = model;
  prov.vocab_size = sum.vocab_size;
  prov.source = cfg.prepare.source;
  prov.split_key = bible ? "verse reference (e.g. 'Genesis 1:1')" : "source TAB target (the normalized pair text)";
  prov.valid_fraction = cfg.prepare.valid_fraction;
  prov.test_fraction = cfg.prepare.test_fraction;
  prov.corpus_records = sum.records;
  prov.corpus_pairs = sum.pairs;
  prov.skipped_empty = sum.skipped_empty;
  prov.skipped_missing = sum.skipped_missing;
  prov.created_by = "torch-handle " + version_string();
  prov.deck = cfg.resolved_deck;
  const std::string set[3] = {cfg.data.train_file, cfg.data.valid_file, cfg.data.test_file};
  for (int s = 0; s < 3; ++s) {
    sum.files[s] = output_path(cfg, set[s], split_name(static_cast<Split>(s)));
    sum.split_tokens[s] = static_cast<std::int64_t>(content[s].src_tokens.size() + content[s].tgt_tokens.size());
    prov.split = split_name(static_cast<Split>(s));
    make_parent(sum.files[s]);
    write_dataset(sum.files[s], content[s], prov);
  }
  const std::string model_file = cfg.run.output_dir + "/sentencepiece.model";
  make_parent(model_file);
  std::ofstream out(model_file, std::ios::binary);
  out << model;
  if (!out.flush()) throw InputError(model_file + ": cannot write");
  sum.write_s = since(t2);
  sum.total_s = since(t0);
  return sum;
}

void run_prepare(const Config& cfg, Comm& comm) {
  if (is_text_source(cfg.prepare.source)) {  // monolingual text: a language model's dataset
    run_prepare_text(cfg, comm);
    return;
  }
  // Rank 0 does the work; its problem, if any, is agreed once the others have waited for it.
  std::string problem;
  ErrorKind kind = ErrorKind::Input;
  if (comm.rank() == 0) {
    try {
      const PrepareSummary s = prepare_datasets(cfg);
      std::printf("prepare: %s: %lld pairs from %lld records (skipped: %lld empty, %lld missing in one side) in %.1f s\n",
                  cfg.prepare.source.c_str(), static_cast<long long>(s.pairs), static_cast<long long>(s.records),
                  static_cast<long long>(s.skipped_empty), static_cast<long long>(s.skipped_missing), s.read_s);
      std::printf("prepare: SentencePiece %s, %d pieces (asked %d), trained on the training split in %.1f s\n",
                  cfg.prepare.spm_type.c_str(), s.vocab_size, cfg.prepare.vocab_size, s.tokenizer_s);
      for (int k = 0; k < 3; ++k)
        std::printf("prepare: %-5s %7lld pairs, %9lld tokens -> %s\n", split_name(static_cast<Split>(k)),
                    static_cast<long long>(s.split_pairs[k]), static_cast<long long>(s.split_tokens[k]),
                    s.files[k].c_str());
      std::printf("prepare: %.1f s in all (encode + write %.1f s): %.0f records/s\n", s.total_s, s.write_s,
                  s.total_s > 0 ? static_cast<double>(s.records) / s.total_s : 0.0);
      std::fflush(stdout);
    } catch (const InputError& e) {
      problem = *e.what() ? e.what() : "prepare failed";
    } catch (const std::exception& e) {
      problem = *e.what() ? e.what() : "prepare failed";
      kind = ErrorKind::Failure;
    }
  }
  // The other ranks wait here while rank 0 works (a minute on the Bible): poll a non-blocking
  // reduction with sleeps instead of spinning in a blocking collective on cores rank 0 needs.
  float token = 0.0f;
  CommRequestPtr done = comm.iallreduce(&token, 1, ReduceOp::Sum);
  while (!done->test()) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  agree_on_error(comm, problem, kind);
}

}  // namespace th
