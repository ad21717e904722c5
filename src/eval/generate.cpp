// task = 'generate': prompts in (generate%prompt, a file, or stdin), continuations out, one line
// per prompt in input order. Data-parallel over fixed groups of generate%batch_prompts
// consecutive prompts (rank r takes a contiguous block of groups), so the text is the same on
// any number of ranks (th/model/generation.hpp).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>

#include "th/core/error.hpp"
#include "th/core/profiler.hpp"
#include "th/data/dataset_h5.hpp"
#include "th/data/lm_dataset.hpp"
#include "th/data/packed_loader.hpp"
#include "th/eval/evaluate.hpp"
#include "th/model/generation.hpp"
#include "th/eval/tasks.hpp"
#include "th/train/tasks.hpp"
#include "th/parallel/agree.hpp"

namespace th {

namespace {
using Clock = std::chrono::steady_clock;

std::string one_line(std::string s) {
  std::replace(s.begin(), s.end(), '\n', ' ');
  std::replace(s.begin(), s.end(), '\r', ' ');
  return s;
}

// The prompts, read on rank 0 and sent to every rank (or the same error everywhere).
std::vector<std::string> read_prompts(const Config& cfg, Comm& comm) {
  std::string text, error;
  if (comm.rank() == 0) {
    const std::string& in = cfg.generate.input_file;
    if (in.empty()) {
      text = cfg.generate.prompt + "\n";
    } else {
      std::ostringstream buf;
      if (in == "-") {
        buf << std::cin.rdbuf();
      } else {
        std::ifstream f(in);
        if (!f) error = "generate%input_file = '" + in + "': cannot open it";
        else buf << f.rdbuf();
      }
      text = buf.str();
    }
  }
  agree_on_error(comm, error, ErrorKind::Input);  // rank 0's verdict, on every rank
  comm.broadcast_string(text, 0);
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) {
    if (!l.empty() && l.back() == '\r') l.pop_back();
    lines.push_back(l);
  }
  return lines;
}

// The SentencePiece model and vocabulary of the training run: the first text dataset the deck names.
struct Vocabulary {
  std::string model, path, key;  // key: "data%test_file = '...'", for messages
  int size = 0;
};
Vocabulary dataset_vocabulary(const Config& cfg, Comm& comm) {
  const std::pair<const char*, std::string> files[] = {
      {"data%test_file", cfg.data.test_file}, {"data%valid_file", cfg.data.valid_file}, {"data%train_file", cfg.data.train_file}};
  const auto it = std::find_if(std::begin(files), std::end(files), [](const auto& f) { return !f.second.empty(); });
  if (it == std::end(files))
    throw InputError("run%task = 'generate' takes the SentencePiece vocabulary from a text dataset of the training run; "
                     "set data%test_file, data%valid_file or data%train_file");
  LmDatasetReader reader(it->second, comm);
  return {reader.tokenizer_model(), it->second, std::string(it->first) + " = '" + it->second + "'",
          lm_vocab_size(cfg, reader.info().vocab_size, it->first, it->second)};
}
}  // namespace

void run_generate(const Config& cfg, Comm& comm) {
  const bool root = comm.rank() == 0;
  const Vocabulary vocab = dataset_vocabulary(cfg, comm);
  const std::unique_ptr<TextCodec> codec = make_codec(vocab.model, vocab.path);
  // The checkpoint must have been trained with this tokenizer (its fingerprint, th/data/dataset_h5.hpp).
  LoadedModel m = load_trained_model(cfg, comm, vocab.size, vocab.key, tokenizer_fingerprint(vocab.model));
  const std::vector<std::string> prompts = read_prompts(cfg, comm);

  GenerateOptions opt;
  opt.sampling = {cfg.generate.temperature, cfg.generate.top_k, cfg.generate.top_p, cfg.generate.repetition_penalty};
  opt.max_new_tokens = cfg.generate.max_new_tokens;
  opt.seed = static_cast<std::uint64_t>(cfg.generate.seed);
  // Groups of consecutive prompts; this rank's contiguous block of groups.
  const std::int64_t n = static_cast<std::int64_t>(prompts.size()), per = cfg.generate.batch_prompts;
  const std::int64_t groups = (n + per - 1) / per;
  const auto [g0, g1] = block_share(groups, comm.rank(), comm.size());
  comm.barrier();
  const auto t0 = Clock::now();
  std::vector<std::string> mine;
  double counts[3] = {0, 0, 0};  // generated tokens, prompts that hit EOS, prompts truncated
  for (std::int64_t g = g0; g < g1; ++g) {
    const std::int64_t first = g * per, last = std::min(n, first + per);
    std::vector<std::vector<int>> ids;
    for (std::int64_t k = first; k < last; ++k) ids.push_back(codec->encode(prompts[static_cast<std::size_t>(k)]));
    for (const auto& p : ids)
      for (const int id : p)
        if (id >= vocab.size) throw InputError("a prompt's token id " + std::to_string(id) + " is outside the vocabulary");
    ProfileScope scope(profiler(), "generate/decode", Category::Compute);
    for (const Generated& gen : generate_ids(*m.model, ids, first, opt)) {
      mine.push_back(one_line(codec->decode(gen.tokens)));
      counts[0] += static_cast<double>(gen.tokens.size());
      counts[1] += gen.eos ? 1 : 0;
      counts[2] += gen.truncated ? 1 : 0;
    }
  }
  const double seconds = comm.max(std::chrono::duration<double>(Clock::now() - t0).count());
  comm.allreduce(counts, 3, ReduceOp::Sum);
  const std::vector<std::string> all = gather_lines(comm, mine);
  if (!root) return;
  if (cfg.generate.output_file.empty()) {
    for (const auto& l : all) std::printf("%s\n", l.c_str());
    std::fflush(stdout);
  } else {
    std::ofstream out(cfg.generate.output_file);
    for (const auto& l : all) out << l << '\n';
    out.flush();
    if (!out) throw Error("cannot write " + cfg.generate.output_file);
  }
  // The report goes to stderr when the text goes to stdout, so it can be piped.
  std::FILE* report = task_log(cfg);
  if (counts[2] > 0)
    std::fprintf(report, "warning: %.0f prompt(s) longer than model%%max_len - 2 = %d tokens kept their last tokens\n",
                 counts[2], cfg.model.max_len - 2);
  std::fprintf(report,
               "generate: %zu prompt%s, %.0f tokens (%.0f stopped at EOS), temperature %g, top_k %d, top_p %g, "
               "repetition_penalty %g, seed %lld; %.2f s, %.1f tokens/s on %d ranks%s%s\n",
               all.size(), all.size() == 1 ? "" : "s", counts[0], counts[1], cfg.generate.temperature,
               cfg.generate.top_k, cfg.generate.top_p, cfg.generate.repetition_penalty,
               static_cast<long long>(cfg.generate.seed), seconds, seconds > 0 ? counts[0] / seconds : 0.0,
               comm.size(), cfg.generate.output_file.empty() ? "" : "; output in ", cfg.generate.output_file.c_str());
}

}  // namespace th
