// task = 'evaluate' and task = 'translate': a trained checkpoint applied to held-out data or to
// the user's sentences, data-parallel (each rank takes a contiguous block, rank 0 writes the
// results in input order).
#include <algorithm>
#include <chrono>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "th/io/metrics.hpp"
#include "th/core/error.hpp"
#include "th/data/dataset_h5.hpp"
#include "th/data/packing.hpp"
#include "th/eval/bleu.hpp"
#include "th/eval/evaluate.hpp"
#include "th/parallel/agree.hpp"
#include "th/eval/tasks.hpp"
#include "th/train/tasks.hpp"

namespace th {

namespace {
using Clock = std::chrono::steady_clock;

TranslateOptions translate_options(const Config& cfg) {
  TranslateOptions o;
  o.decode.beam_size = cfg.translate.beam_size;
  o.decode.max_len_ratio = cfg.translate.max_len_ratio;
  o.decode.length_penalty = cfg.translate.length_penalty;
  o.batch_sentences = cfg.translate.batch_sentences;
  return o;
}

// One line of text per sentence: a decoded string never spans lines in our outputs.
std::string one_line(std::string s) {
  std::replace(s.begin(), s.end(), '\n', ' ');
  std::replace(s.begin(), s.end(), '\r', ' ');
  return s;
}

// The vocabulary of the model: the dataset's, checked against model%vocab_size when that is set.
int dataset_vocab(const Config& cfg, const DatasetInfo& info, const std::string& key) {
  if (cfg.model.vocab_size > 0 && cfg.model.vocab_size != info.vocab_size)
    throw InputError(key + " = '" + info.path + "' was made with a SentencePiece vocabulary of " +
                     std::to_string(info.vocab_size) + " pieces, but model%vocab_size = " +
                     std::to_string(cfg.model.vocab_size) + "; set model%vocab_size = 0 (take it from the dataset)");
  return static_cast<int>(info.vocab_size);
}

// This rank's share of the test examples, the codec, the vocabulary.
struct TestShare {
  std::vector<Example> examples;
  std::int64_t total = 0, skipped = 0;  // examples used (all ranks) and skipped as too long
  std::unique_ptr<TextCodec> codec;
  int vocab = 0;
  std::string what;  // for the report
  std::string data_key, fingerprint;  // "data%test_file = '...'" and its tokenizer fingerprint
};

TestShare load_test_share(const Config& cfg, Comm& comm) {
  TestShare t;
  const bool decoder_only = cfg.model.arch == "decoder-only";
  if (cfg.data.synthetic != "none") {
    // A third stream of the synthetic generator (training uses 1, validation 2): unseen examples.
    t.vocab = cfg.model.vocab_size;
    const auto all = make_synthetic(cfg.data.synthetic, cfg.data.synthetic_valid_samples, cfg.data.synthetic_min_len,
                                    cfg.data.synthetic_max_len, t.vocab, static_cast<std::uint64_t>(cfg.run.seed), 3);
    const auto [first, last] = block_share(static_cast<std::int64_t>(all.size()), comm.rank(), comm.size());
    t.examples.assign(all.begin() + first, all.begin() + last);
    t.total = static_cast<std::int64_t>(all.size());
    t.codec = make_codec("", "");
    t.what = "synthetic '" + cfg.data.synthetic + "' test set";
    t.data_key = "data%synthetic = '" + cfg.data.synthetic + "'";
    t.fingerprint = kNoTokenizer;
    return t;
  }
  if (cfg.data.test_file.empty())
    throw InputError("run%task = 'evaluate' needs data%test_file (the test split written by run%task = 'prepare')");
  DatasetReader reader(cfg.data.test_file, comm);
  t.vocab = dataset_vocab(cfg, reader.info(), "data%test_file");
  if (reader.info().examples == 0)
    throw InputError("data%test_file = '" + cfg.data.test_file + "' holds no examples (num_examples = 0); make it "
                     "again with a larger prepare%test_fraction");
  std::vector<std::int64_t> rows;  // the same list on every rank: the lengths are read by all
  for (std::int64_t r = 0; r < reader.info().examples; ++r) {
    if (fits_max_len(reader.lengths()[static_cast<std::size_t>(r)], cfg.model.max_len, decoder_only)) rows.push_back(r);
    else ++t.skipped;
  }
  t.total = static_cast<std::int64_t>(rows.size());
  const auto [first, last] = block_share(t.total, comm.rank(), comm.size());
  const std::vector<std::int64_t> mine(rows.begin() + first, rows.begin() + last);
  t.examples = reader.read(mine, /*collective=*/true);
  t.codec = make_codec(reader.tokenizer_model(), cfg.data.test_file);
  t.what = cfg.data.test_file;
  t.data_key = "data%test_file = '" + cfg.data.test_file + "'";
  t.fingerprint = reader.info().tokenizer_fingerprint;
  return t;
}

// This rank's share in batches; a share that cannot be batched (an example over data%max_tokens)
// stops every rank alike.
std::vector<Batch> teacher_forced_batches(const std::vector<Example>& examples, const Config& cfg, Comm& comm) {
  const bool decoder_only = cfg.model.arch == "decoder-only";
  std::vector<Batch> batches;
  agree_each(comm, [&] {
    for (const auto& rows : make_batches(examples, cfg.data.max_tokens, 0, 0, false, decoder_only))
      batches.push_back(collate(examples, rows, decoder_only));
  });
  return batches;
}

// Translates this rank's sources and returns the detokenized outputs, timing the whole share of
// every rank (the slowest rank's time is the task's).
std::vector<std::string> translate_share(Transformer<float>& model, const TextCodec& codec,
                                         const std::vector<std::vector<int>>& sources, const TranslateOptions& o,
                                         Comm& comm, double* seconds) {
  comm.barrier();
  const auto t0 = Clock::now();
  const std::vector<Hypothesis> hyps = translate_ids(model, sources, o);
  std::vector<std::string> out;
  out.reserve(hyps.size());
  for (std::size_t k = 0; k < hyps.size(); ++k)
    out.push_back(sources[k].empty() ? std::string() : one_line(codec.decode(hyps[k].tokens)));
  *seconds = comm.max(std::chrono::duration<double>(Clock::now() - t0).count());
  return out;
}

void write_lines(const std::string& path, const std::vector<std::string>& lines) {
  std::ofstream out(path);
  for (const auto& l : lines) out << l << '\n';
  out.flush();
  if (!out) throw Error("cannot write " + path);
}
}  // namespace

void run_evaluate(const Config& cfg, Comm& comm) {
  if (parse_packing(cfg.data.packing) == Packing::Concat) {  // a language model: perplexities, no BLEU
    run_evaluate_lm(cfg, comm);
    return;
  }
  const bool root = comm.rank() == 0;
  TestShare test = load_test_share(cfg, comm);
  LoadedModel m = load_trained_model(cfg, comm, test.vocab, test.data_key, test.fingerprint);
  if (root) {
    std::printf("test set: %s, %lld examples", test.what.c_str(), static_cast<long long>(test.total));
    if (test.skipped > 0)
      std::printf(" (%lld longer than model%%max_len = %d skipped)", static_cast<long long>(test.skipped),
                  cfg.model.max_len);
    std::printf("\n");
    std::fflush(stdout);
  }
  const EvalStats stats = evaluate_batches(*m.model, teacher_forced_batches(test.examples, cfg, comm), comm);

  std::vector<std::vector<int>> sources;
  std::vector<std::string> refs, srcs;
  for (const Example& e : test.examples) {
    sources.push_back(e.src);
    refs.push_back(one_line(test.codec->decode(e.tgt)));
    srcs.push_back(one_line(test.codec->decode(e.src)));
  }
  const TranslateOptions opt = translate_options(cfg);
  double seconds = 0;
  const std::vector<std::string> hyps = translate_share(*m.model, *test.codec, sources, opt, comm, &seconds);
  const auto all_hyps = gather_lines(comm, hyps), all_refs = gather_lines(comm, refs),
             all_srcs = gather_lines(comm, srcs);
  if (!root) return;
  const BleuResult bleu = corpus_bleu(all_hyps, all_refs);
  const double per_s = seconds > 0 ? static_cast<double>(all_hyps.size()) / seconds : 0.0;
  const int samples = std::min<int>(cfg.translate.samples, static_cast<int>(all_hyps.size()));
  for (int k = 0; k < samples; ++k)
    std::printf("sample %d\n  source:    %s\n  reference: %s\n  output:    %s\n", k + 1, all_srcs[k].c_str(),
                all_refs[k].c_str(), all_hyps[k].c_str());
  std::printf("evaluate: loss %.4f, perplexity %.3f, token accuracy %.2f%% (%.0f target tokens, teacher-forced)\n",
              stats.loss, stats.perplexity, 100.0 * stats.accuracy, stats.tokens);
  std::printf("evaluate: %s (%s, beam %d, %zu sentences in %.2f s, %.1f sentences/s on %d ranks)\n",
              format_bleu(bleu).c_str(), opt.decode.beam_size == 1 ? "greedy" : "beam search", opt.decode.beam_size,
              all_hyps.size(), seconds, per_s, comm.size());
  const std::string hyp_path = cfg.run.output_dir + "/test.hyp.txt";
  write_lines(hyp_path, all_hyps);
  MetricsFile out(cfg.run.output_dir + "/evaluate.h5", cfg.resolved_deck);
  out.append("test", {{"step", double(m.step)}, {"loss", stats.loss}, {"perplexity", stats.perplexity},
                      {"accuracy", stats.accuracy}, {"tokens", stats.tokens}, {"bleu", bleu.score},
                      {"bp", bleu.bp}, {"sentences", double(all_hyps.size())}, {"beam_size", double(opt.decode.beam_size)},
                      {"decode_s", seconds}, {"sentences_per_s", per_s}});
  std::printf("evaluate: translations in %s, figures in %s/evaluate.h5\n", hyp_path.c_str(), cfg.run.output_dir.c_str());
}

void run_translate(const Config& cfg, Comm& comm) {
  const bool root = comm.rank() == 0;
  // The vocabulary: the synthetic ids, or the SentencePiece model stored in the training data.
  std::unique_ptr<TextCodec> codec;
  int vocab = cfg.model.vocab_size;
  std::string data_key = "data%synthetic = '" + cfg.data.synthetic + "'", fingerprint = kNoTokenizer;
  if (cfg.data.synthetic != "none") {
    codec = make_codec("", "");
  } else {
    const std::pair<const char*, std::string> files[] = {
        {"data%test_file", cfg.data.test_file}, {"data%valid_file", cfg.data.valid_file},
        {"data%train_file", cfg.data.train_file}};
    const auto it = std::find_if(std::begin(files), std::end(files), [](const auto& f) { return !f.second.empty(); });
    if (it == std::end(files))
      throw InputError("run%task = 'translate' takes the SentencePiece vocabulary from a dataset of the training run; "
                       "set data%test_file, data%valid_file or data%train_file");
    DatasetReader reader(it->second, comm);
    vocab = dataset_vocab(cfg, reader.info(), it->first);
    codec = make_codec(reader.tokenizer_model(), it->second);
    data_key = std::string(it->first) + " = '" + it->second + "'";
    fingerprint = reader.info().tokenizer_fingerprint;
  }
  // Rank 0 reads the input, before the weights are loaded (a bad file stops the task at once);
  // every rank gets it (or the same error).
  std::string text;
  agree_root(comm, [&]() -> std::string {
    const std::string& in = cfg.translate.input_file;
    std::ostringstream buf;
    std::error_code ec;
    if (in == "-") {
      buf << std::cin.rdbuf();
    } else if (std::filesystem::is_directory(in, ec)) {
      return "translate%input_file = '" + in + "' is a folder; name a text file (one sentence per line) or '-' "
             "for the standard input";
    } else {
      std::ifstream f(in, std::ios::binary);
      if (!f) return "translate%input_file = '" + in + "': cannot open it: " + std::strerror(errno);
      buf << f.rdbuf();
      if (f.bad()) return "translate%input_file = '" + in + "': read error";
    }
    text = buf.str();
    return "";
  }, ErrorKind::Input);
  comm.broadcast_string(text, 0);
  LoadedModel m = load_trained_model(cfg, comm, vocab, data_key, fingerprint);
  std::vector<std::string> lines;
  {
    std::istringstream in(text);
    for (std::string l; std::getline(in, l);) {
      if (!l.empty() && l.back() == '\r') l.pop_back();
      lines.push_back(l);
    }
  }
  const auto [first, last] = block_share(static_cast<std::int64_t>(lines.size()), comm.rank(), comm.size());
  // A source must leave room in model%max_len: longer ones are cut (and counted).
  const int room = cfg.model.arch == "decoder-only" ? cfg.model.max_len - 3 : cfg.model.max_len - 1;
  std::vector<std::vector<int>> sources;
  double truncated = 0;
  agree_each(comm, [&] {  // a bad line is in one rank's share: every rank stops with its message
    for (std::int64_t k = first; k < last; ++k) {
      std::vector<int> ids = codec->encode(lines[static_cast<std::size_t>(k)]);
      for (int id : ids)
        if (id >= vocab)
          throw InputError("translate%input_file line " + std::to_string(k + 1) + ": token id " + std::to_string(id) +
                           " is outside the vocabulary of " + std::to_string(vocab));
      if (static_cast<int>(ids.size()) > room) {
        ids.resize(static_cast<std::size_t>(room));
        truncated += 1;
      }
      sources.push_back(std::move(ids));
    }
  });
  comm.allreduce(&truncated, 1, ReduceOp::Sum);
  const TranslateOptions opt = translate_options(cfg);
  double seconds = 0;
  const auto outputs = gather_lines(comm, translate_share(*m.model, *codec, sources, opt, comm, &seconds));
  if (!root) return;
  if (cfg.translate.output_file.empty()) {
    for (const auto& l : outputs) std::printf("%s\n", l.c_str());
  } else {
    write_lines(cfg.translate.output_file, outputs);
  }
  // The report goes to stderr when the translations go to stdout, so they can be piped.
  std::FILE* report = task_log(cfg);
  if (truncated > 0)
    std::fprintf(report, "warning: %.0f input line(s) longer than model%%max_len = %d tokens were cut\n", truncated,
                 cfg.model.max_len);
  std::fprintf(report, "translate: %zu sentence%s, %s (beam %d), %.2f s, %.1f sentences/s on %d ranks%s%s\n",
               outputs.size(), outputs.size() == 1 ? "" : "s", opt.decode.beam_size == 1 ? "greedy" : "beam search", opt.decode.beam_size, seconds,
               seconds > 0 ? static_cast<double>(outputs.size()) / seconds : 0.0, comm.size(),
               cfg.translate.output_file.empty() ? "" : "; output in ",
               cfg.translate.output_file.c_str());
}

}  // namespace th
