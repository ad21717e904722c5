// task='prepare' for a language model: monolingual text in, one text dataset per split out
// (th/data/prepare.hpp, docs/data-format.md "Text datasets"). Streamed: nothing holds the corpus.
//   pass 1 (rank 0): read every document once; count; split by a hash of the document; keep a
//     bounded, seeded reservoir sample of the training split's sentences; note where every 1024th
//     document starts.
//   SentencePiece (rank 0, threads) on the sample; the model goes to every rank.
//   pass 2 (every rank): seek to its share of the documents, encode each, append it and EOS to
//     spill files of its split; then each split's file is written collectively (parallel HDF5).
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include "th/core/error.hpp"
#include "th/core/rng.hpp"
#include "th/core/version.hpp"
#include "th/data/batching.hpp"
#include "th/data/lm_dataset.hpp"
#include "th/data/prepare.hpp"
#include "th/data/split.hpp"
#include "th/data/text_corpus.hpp"
#include "th/data/tokenizer.hpp"
#include "th/parallel/agree.hpp"

namespace th {

namespace {
using Clock = std::chrono::steady_clock;
double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

constexpr std::size_t kSentenceBytes = 512;  // training sentences: short ones train fast (and < 4192)
constexpr std::int64_t kSeekEvery = 1024;     // documents between two seek points
constexpr double kProgressEvery = 10.0;       // seconds between two progress lines

// The other ranks wait for rank 0 here without spinning on the cores it needs.
void wait_quietly(Comm& comm) {
  float token = 0.0f;
  CommRequestPtr done = comm.iallreduce(&token, 1, ReduceOp::Sum);
  while (!done->test()) std::this_thread::sleep_for(std::chrono::milliseconds(20));
}

// Cuts a document into SentencePiece training sentences of at most kSentenceBytes, at spaces
// (or, in a run without one, at a UTF-8 character boundary).
void cut_sentences(const std::string& text, std::vector<std::string>& out) {
  std::size_t start = 0;
  while (start < text.size()) {
    std::size_t end = std::min(text.size(), start + kSentenceBytes);
    if (end < text.size()) {
      const std::size_t space = text.rfind(' ', end);
      if (space != std::string::npos && space > start) {
        end = space;
      } else {
        while (end > start && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80) --end;
      }
    }
    out.push_back(text.substr(start, end - start));
    start = end;
    while (start < text.size() && text[start] == ' ') ++start;
  }
}

struct CorpusPass {
  std::int64_t documents = 0, skipped_empty = 0, sentences_seen = 0, bytes = 0;
  std::int64_t split_documents[3] = {0, 0, 0};
  std::vector<std::string> sample;  // SentencePiece training sentences (training split)
  std::vector<DocumentPosition> seeks;
};

// The source's documents: from its files, or (Bible) from the chapters read once.
std::unique_ptr<DocumentReader> open_source(const TextSource& src, const std::vector<Document>& chapters) {
  return src.kind == TextSource::Kind::Bible ? open_documents(chapters) : open_documents(src);
}

CorpusPass read_corpus_pass(const TextSource& src, const std::vector<Document>& chapters, const Config& cfg) {
  CorpusPass p;
  std::unique_ptr<DocumentReader> reader = open_source(src, chapters);
  const auto t0 = Clock::now();
  auto last = t0;
  const auto cap = static_cast<std::int64_t>(cfg.prepare.spm_sample_sentences);
  const auto seed = static_cast<std::uint64_t>(cfg.run.seed);
  Document doc;
  std::vector<std::string> pieces;
  for (;;) {
    if (p.documents % kSeekEvery == 0) p.seeks.push_back(reader->position());
    if (!reader->next(doc)) break;
    ++p.documents;
    p.bytes += static_cast<std::int64_t>(doc.text.size());
    if (doc.text.empty()) {
      ++p.skipped_empty;
      continue;
    }
    const Split s = assign_split(doc.key, cfg.prepare.valid_fraction, cfg.prepare.test_fraction);
    ++p.split_documents[static_cast<int>(s)];
    if (s != Split::Train) continue;  // valid/test text must not shape the tokenizer
    pieces.clear();
    cut_sentences(doc.text, pieces);
    for (std::string& sentence : pieces) {  // reservoir sampling (Algorithm R), seeded
      const std::int64_t i = p.sentences_seen++;
      if (i < cap) {
        p.sample.push_back(std::move(sentence));
      } else {
        const auto j = static_cast<std::int64_t>(uniform01(seed, 0x5e47, static_cast<std::uint64_t>(i)) *
                                                 static_cast<double>(i + 1));
        if (j < cap) p.sample[static_cast<std::size_t>(j)] = std::move(sentence);
      }
    }
    if (since(last) >= kProgressEvery) {
      last = Clock::now();
      std::printf("prepare: read %.1f MB, %lld documents (%.1f MB/s)\n", static_cast<double>(p.bytes) / 1e6,
                  static_cast<long long>(p.documents), static_cast<double>(p.bytes) / 1e6 / since(t0));
      std::fflush(stdout);
    }
  }
  return p;
}

// An append-only file of native values, buffered.
class SpillFile {
 public:
  explicit SpillFile(std::string path) : path_(std::move(path)), f_(std::fopen(path_.c_str(), "wb")) {
    if (!f_) throw Error(path_ + ": cannot create a spill file of task='prepare': " + std::strerror(errno));
    std::setvbuf(f_, nullptr, _IOFBF, 1 << 20);
  }
  ~SpillFile() {
    if (f_) std::fclose(f_);
  }
  SpillFile(const SpillFile&) = delete;
  SpillFile& operator=(const SpillFile&) = delete;
  void append(const void* data, std::size_t bytes) {
    if (bytes > 0 && std::fwrite(data, 1, bytes, f_) != bytes)
      throw Error(path_ + ": write failed (disk full?): " + std::strerror(errno));
  }
  void close() {
    const int rc = std::fclose(f_);
    f_ = nullptr;
    if (rc != 0) throw Error(path_ + ": write failed at close (disk full?)");
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::FILE* f_;
};

// Pass 2 on this rank: documents [first, last) encoded into the spill files of their splits.
// Returns the seconds spent encoding and spilling (after the seek).
double encode_share(const TextSource& src, const std::vector<Document>& chapters, const Config& cfg, const Tokenizer& tok,
                  const std::vector<DocumentPosition>& seeks, std::int64_t first, std::int64_t last,
                  const std::string& spill_dir, int rank, LmSplitPart part[3], bool report) {
  std::unique_ptr<SpillFile> tokens[3], ends[3];
  for (int s = 0; s < 3; ++s) {
    const std::string base = spill_dir + "/rank" + std::to_string(rank) + "." + split_name(static_cast<Split>(s));
    tokens[s] = std::make_unique<SpillFile>(base + ".tokens");
    ends[s] = std::make_unique<SpillFile>(base + ".ends");
    part[s].tokens_path = tokens[s]->path();
    part[s].ends_path = ends[s]->path();
  }
  std::unique_ptr<DocumentReader> reader = open_source(src, chapters);
  if (first > 0) reader->seek(seeks[static_cast<std::size_t>(first / kSeekEvery)]);
  Document doc;
  while (reader->position().document < first && reader->next(doc)) {
  }
  const auto t0 = Clock::now();
  auto last_report = t0;
  std::int64_t done_tokens = 0;
  CachedEncoder encoder(tok);
  std::vector<int> ids;
  for (std::int64_t d = first; d < last; ++d) {
    if (!reader->next(doc)) throw Error("prepare%source = '" + src.spec + "' gave fewer documents in the second pass "
                                        "(" + std::to_string(d) + ") than in the first: did it change meanwhile?");
    if (doc.text.empty()) continue;
    const int s = static_cast<int>(assign_split(doc.key, cfg.prepare.valid_fraction, cfg.prepare.test_fraction));
    ids.clear();
    encoder.encode(doc.text, ids);
    ids.push_back(SpecialTokens::eos);
    static_assert(sizeof(int) == sizeof(std::int32_t), "token spill files hold int32");
    tokens[s]->append(ids.data(), ids.size() * sizeof(int));
    part[s].tokens += static_cast<std::int64_t>(ids.size());
    ends[s]->append(&part[s].tokens, sizeof(std::int64_t));
    ++part[s].documents;
    part[s].text_bytes += static_cast<std::int64_t>(doc.text.size());
    done_tokens += static_cast<std::int64_t>(ids.size());
    if (report && since(last_report) >= kProgressEvery) {
      last_report = Clock::now();
      std::printf("prepare: encode %.0f%% of rank 0's documents, %.2f M tokens, %.2f M tokens/s\n",
                  100.0 * static_cast<double>(d + 1 - first) / static_cast<double>(std::max<std::int64_t>(1, last - first)),
                  static_cast<double>(done_tokens) / 1e6, static_cast<double>(done_tokens) / 1e6 / since(t0));
      std::fflush(stdout);
    }
  }
  for (int s = 0; s < 3; ++s) {
    tokens[s]->close();
    ends[s]->close();
  }
  return since(t0);
}

std::string output_path(const Config& cfg, const std::string& set, const char* name) {
  return set.empty() ? cfg.run.output_dir + "/" + name + ".h5" : set;
}

}  // namespace

TextPrepareSummary prepare_text_datasets(const Config& cfg, Comm& comm) {
  const auto t0 = Clock::now();
  const bool root = comm.rank() == 0;
  TextPrepareSummary sum;
  TextSource src;
  std::vector<Document> chapters;  // a Bible source: read once on rank 0, then sent to every rank
  CorpusPass pass;
  std::string model, error;
  // Pass 1 and the tokenizer on rank 0; the others wait without spinning.
  if (root) {
    try {
      src = parse_text_source(cfg.prepare.source, parse_text_documents(cfg.prepare.text_documents));
      if (src.kind == TextSource::Kind::Bible) chapters = read_bible_chapters(src.module);
      pass = read_corpus_pass(src, chapters, cfg);
      sum.read_s = since(t0);
      if (pass.documents == pass.skipped_empty)
        throw InputError("prepare%source = '" + cfg.prepare.source + "': no non-empty document in " +
                         std::to_string(pass.documents) + " read");
      if (pass.split_documents[0] == 0)
        throw InputError("prepare%source = '" + cfg.prepare.source + "': no document falls into the training split (" +
                         std::to_string(pass.documents - pass.skipped_empty) +
                         " documents); lower prepare%valid_fraction / test_fraction");
      std::printf("prepare: %s: %lld documents (%.1f MB; %lld empty skipped) read in %.1f s; SentencePiece %s on %lld of "
                  "the training split's %lld sentences\n",
                  cfg.prepare.source.c_str(), static_cast<long long>(pass.documents), static_cast<double>(pass.bytes) / 1e6,
                  static_cast<long long>(pass.skipped_empty), sum.read_s, cfg.prepare.spm_type.c_str(),
                  static_cast<long long>(pass.sample.size()), static_cast<long long>(pass.sentences_seen));
      std::fflush(stdout);
      const auto t1 = Clock::now();
      TokenizerOptions topt;
      topt.vocab_size = cfg.prepare.vocab_size;
      const unsigned hw = std::thread::hardware_concurrency();
      topt.threads = cfg.run.threads > 0 ? cfg.run.threads : static_cast<int>(std::max(1u, std::min(hw, 16u)));
      topt.model_type = cfg.prepare.spm_type;
      topt.input_sentence_size = cfg.prepare.spm_sample_sentences;
      model = train_sentencepiece(pass.sample, topt);
      sum.tokenizer_s = since(t1);
      pass.sample.clear();
      pass.sample.shrink_to_fit();
    } catch (const InputError& e) {
      error = e.what();
      if (error.empty()) error = "prepare failed";
    }
  }
  wait_quietly(comm);
  agree_on_error(comm, error, ErrorKind::Input);
  comm.broadcast_string(model, 0);
  std::int64_t counts[3] = {pass.documents, pass.skipped_empty, static_cast<std::int64_t>(pass.seeks.size())};
  comm.broadcast(counts, sizeof counts, 0);
  pass.documents = counts[0];
  pass.skipped_empty = counts[1];
  pass.seeks.resize(static_cast<std::size_t>(counts[2]));
  comm.broadcast(pass.seeks.data(), pass.seeks.size() * sizeof(DocumentPosition), 0);
  if (!root) {  // every rank reads its own share: the files must be visible to every rank
    try {
      src = parse_text_source(cfg.prepare.source, parse_text_documents(cfg.prepare.text_documents));
    } catch (const InputError& e) {
      error = std::string("on rank ") + std::to_string(comm.rank()) + ": " + e.what();
    }
  }
  agree_on_error(comm, error, ErrorKind::Input);
  if (src.kind == TextSource::Kind::Bible) {
    std::string packed = root ? pack_documents(chapters) : std::string();
    comm.broadcast_string(packed, 0);
    if (!root) chapters = unpack_documents(packed);
  }
  const Tokenizer tok(model, "prepare");
  sum.vocab_size = tok.vocab_size();
  sum.documents = pass.documents;
  sum.skipped_empty = pass.skipped_empty;
  sum.sample_sentences = pass.sentences_seen;

  // Pass 2: this rank's contiguous share of the documents, into spill files next to the output.
  std::int64_t spill_id = root ? static_cast<std::int64_t>(::getpid()) : 0;
  comm.broadcast(&spill_id, sizeof spill_id, 0);
  const std::string spill_dir = cfg.run.output_dir + "/.prepare-spill-" + std::to_string(spill_id);
  if (root) std::filesystem::create_directories(spill_dir);
  comm.barrier();
  const std::int64_t D = pass.documents, N = comm.size(), r = comm.rank();
  const std::int64_t first = D * r / N, last = D * (r + 1) / N;
  LmSplitPart part[3];
  error.clear();
  double encode_s = 0, write_s = 0;
  try {
    encode_s = encode_share(src, chapters, cfg, tok, pass.seeks, first, last, spill_dir, comm.rank(), part, root);
  } catch (const std::exception& e) {
    error = e.what();
  }
  agree_on_error(comm, error, ErrorKind::Input);

  LmProvenance prov;
  prov.tokenizer_model = model;
  prov.vocab_size = sum.vocab_size;
  prov.source = cfg.prepare.source;
  prov.documents = text_documents_name(src);
  prov.spm_type = cfg.prepare.spm_type;
  prov.split_key = text_split_key(src);
  prov.valid_fraction = cfg.prepare.valid_fraction;
  prov.test_fraction = cfg.prepare.test_fraction;
  prov.corpus_documents = pass.documents;
  prov.skipped_empty = pass.skipped_empty;
  prov.created_by = "torch-handle " + version_string();
  prov.deck = cfg.resolved_deck;
  const std::string set[3] = {cfg.data.train_file, cfg.data.valid_file, cfg.data.test_file};
  std::int64_t mine[6];
  for (int s = 0; s < 3; ++s) {
    sum.files[s] = output_path(cfg, set[s], split_name(static_cast<Split>(s)));
    prov.split = split_name(static_cast<Split>(s));
    if (root) {
      std::error_code ec;
      const auto parent = std::filesystem::path(sum.files[s]).parent_path();
      if (!parent.empty()) std::filesystem::create_directories(parent, ec);
    }
    comm.barrier();
    const auto t2 = Clock::now();
    write_lm_dataset(sum.files[s], comm, part[s], prov);
    write_s += since(t2);
    mine[s] = part[s].tokens;
    mine[3 + s] = part[s].documents;
  }
  std::int64_t totals[6];
  std::copy(mine, mine + 6, totals);
  comm.allreduce(totals, 6, ReduceOp::Sum);
  for (int s = 0; s < 3; ++s) {
    sum.split_tokens[s] = totals[s];
    sum.split_documents[s] = totals[3 + s];
    std::error_code ec;
    std::filesystem::remove(part[s].tokens_path, ec);
    std::filesystem::remove(part[s].ends_path, ec);
  }
  const double my_rate = static_cast<double>(mine[0] + mine[1] + mine[2]) / std::max(encode_s + write_s, 1e-9);
  double rates[1] = {-my_rate};  // the slowest rank's rate: the max of the negated rates
  comm.allreduce(rates, 1, ReduceOp::Max);
  sum.tokens_per_s_per_rank = -rates[0];
  sum.encode_s = comm.max(encode_s);
  sum.write_s = comm.max(write_s);
  comm.barrier();
  if (root) {
    std::error_code ec;
    std::filesystem::remove_all(spill_dir, ec);
    const std::string model_file = cfg.run.output_dir + "/sentencepiece.model";
    std::ofstream out(model_file, std::ios::binary);
    out << model;
    if (!out.flush()) error = model_file + ": cannot write";
  }
  agree_on_error(comm, error, ErrorKind::Input);
  sum.total_s = since(t0);
  return sum;
}

void run_prepare_text(const Config& cfg, Comm& comm) {
  const TextPrepareSummary s = prepare_text_datasets(cfg, comm);
  if (comm.rank() != 0) return;
  std::printf("prepare: SentencePiece %s, %d pieces (asked %d), trained on a sample of the training split in %.1f s\n",
              cfg.prepare.spm_type.c_str(), s.vocab_size, cfg.prepare.vocab_size, s.tokenizer_s);
  for (int k = 0; k < 3; ++k)
    std::printf("prepare: %-5s %9lld documents, %11lld tokens -> %s\n", split_name(static_cast<Split>(k)),
                static_cast<long long>(s.split_documents[k]), static_cast<long long>(s.split_tokens[k]),
                s.files[k].c_str());
  const long long tokens = s.split_tokens[0] + s.split_tokens[1] + s.split_tokens[2];
  std::printf("prepare: encode + write %lld tokens on %d rank(s): %.2f M tokens/s per rank (the slowest; encode %.2f s, "
              "write %.2f s); %.1f s in all\n",
              tokens, comm.size(), s.tokens_per_s_per_rank / 1e6, s.encode_s, s.write_s, s.total_s);
  std::fflush(stdout);
}

}  // namespace th
