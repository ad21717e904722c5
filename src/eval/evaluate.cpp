#include "th/eval/evaluate.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <sstream>

#include "th/io/checkpoint.hpp"
#include "th/core/error.hpp"
#include "th/core/profiler.hpp"
#include "th/data/dataset_h5.hpp"
#include "th/data/tokenizer.hpp"
#include "th/train/memory_budget.hpp"
#include "th/train/tasks.hpp"

namespace th {

LoadedModel load_trained_model(const Config& cfg, Comm& comm, int vocab_size, const std::string& data_what,
                               const std::string& data_fingerprint) {
  LoadedModel m;
  ModelSpec spec = model_spec(cfg, vocab_size);
  spec.dropout = 0;
  check_model_fits(cfg, spec, comm, /*weights_only=*/true);
  m.model = std::make_unique<Transformer<float>>(spec, run_backend(cfg));
  ParamStore<float>& ps = m.model->params();
  const std::string dir = checkpoint_folder(cfg);
  if (cfg.checkpoint.resume == "never")
    throw InputError("run%task = '" + cfg.run.task + "' needs trained weights, but checkpoint%resume = 'never'; "
                     "give 'auto' (the newest checkpoint in " + dir + ") or a checkpoint file");
  const auto tensors = checkpoint_tensors(ps.infos());
  m.path = find_checkpoint(comm, dir, cfg.checkpoint.resume, tensors, CheckpointUse::Weights);
  if (m.path.empty())
    throw InputError("run%task = '" + cfg.run.task + "': no checkpoint in " + dir +
                     " (checkpoint%dir, default <run%output_dir>/checkpoints); train first with this deck and "
                     "run%task = 'train', or name a file in checkpoint%resume");
  // Read on the host, then copied to the model's device memory (the CPU backend reads in place).
  Tensor staging;
  float* host = host_target(ps.backend(), ps.values(), ps.size(), staging);
  const CheckpointState st = load_checkpoint(comm, m.path, tensors, host, nullptr, nullptr, 0, ps.size());
  copy_to_device(ps.backend(), ps.values(), host, ps.size());
  // The same verdict on every rank (the state is read collectively).
  const std::string mismatch = tokenizer_mismatch(m.path, st.tokenizer_fingerprint, data_what, data_fingerprint);
  if (!mismatch.empty()) throw InputError("run%task = '" + cfg.run.task + "': " + mismatch);
  m.step = st.step;
  if (comm.rank() == 0)
    std::fprintf(task_log(cfg), "weights: %s (step %lld, %lld parameters)\n", m.path.c_str(), static_cast<long long>(st.step),
                static_cast<long long>(ps.size()));
  return m;
}

namespace {
class SentencePieceCodec : public TextCodec {
 public:
  SentencePieceCodec(const std::string& model, const std::string& what) : tok_(model, what) {}
  std::vector<int> encode(const std::string& text) const override { return tok_.encode(text); }
  std::string decode(const std::vector<int>& ids) const override { return tok_.decode(ids); }

 private:
  Tokenizer tok_;
};

// Synthetic tasks have no text: a sentence is its ids in decimal ("5 17 9").
class IdCodec : public TextCodec {
 public:
  std::vector<int> encode(const std::string& text) const override {
    std::istringstream in(text);
    std::vector<int> ids;
    std::string word;
    while (in >> word) {
      std::size_t used = 0;
      int id = -1;
      try {
        id = std::stoi(word, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (used != word.size() || id < 0)
        throw InputError("synthetic-data model: input '" + text + "' is not a list of token ids ('" + word + "')");
      ids.push_back(id);
    }
    return ids;
  }
  std::string decode(const std::vector<int>& ids) const override {
    std::string s;
    for (int id : ids) s += (s.empty() ? "" : " ") + std::to_string(id);
    return s;
  }
};
}  // namespace

std::unique_ptr<TextCodec> make_codec(const std::string& sentencepiece_model, const std::string& what) {
  if (sentencepiece_model.empty()) return std::make_unique<IdCodec>();
  return std::make_unique<SentencePieceCodec>(sentencepiece_model, what);
}

std::vector<Hypothesis> translate_ids(Transformer<float>& model, const std::vector<std::vector<int>>& sources,
                                      const TranslateOptions& options) {
  // Longest first, so a batch holds sentences of similar length and the first batch shows the
  // memory peak at once.
  // Empty sources get the empty translation without decoding.
  std::vector<std::size_t> order;
  for (std::size_t k = 0; k < sources.size(); ++k)
    if (!sources[k].empty()) order.push_back(k);
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t a, std::size_t b) { return sources[a].size() > sources[b].size(); });
  std::vector<Hypothesis> out(sources.size());
  const std::size_t per = static_cast<std::size_t>(std::max(1, options.batch_sentences));
  for (std::size_t first = 0; first < order.size(); first += per) {
    const std::size_t last = std::min(order.size(), first + per);
    std::vector<std::vector<int>> batch;
    for (std::size_t k = first; k < last; ++k) batch.push_back(sources[order[k]]);
    ProfileScope scope(profiler(), "translate/decode", Category::Compute);
    std::vector<Hypothesis> h = decode(model, batch, options.decode);
    for (std::size_t k = first; k < last; ++k) out[order[k]] = std::move(h[k - first]);
  }
  return out;
}

std::pair<std::int64_t, std::int64_t> block_share(std::int64_t n, int rank, int size) {
  const std::int64_t base = n / size, extra = n % size;
  const std::int64_t first = rank * base + std::min<std::int64_t>(rank, extra);
  return {first, first + base + (rank < extra ? 1 : 0)};
}

std::vector<std::string> gather_lines(Comm& comm, const std::vector<std::string>& mine) {
  // One string per rank: the lines joined by '\n' (lines never contain one: callers flatten).
  std::string joined;
  for (const auto& l : mine) joined += l + '\n';
  const std::vector<std::string> parts = comm.gather_strings(joined, 0);
  std::vector<std::string> all;
  for (const auto& p : parts) {
    std::size_t start = 0;
    for (std::size_t nl = p.find('\n'); nl != std::string::npos; nl = p.find('\n', start)) {
      all.push_back(p.substr(start, nl - start));
      start = nl + 1;
    }
  }
  return all;
}

}  // namespace th
