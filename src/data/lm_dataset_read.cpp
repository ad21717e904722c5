// Checking and reading a text dataset: rank 0 checks the file alone first (serial driver), then
// every rank opens it with MPI-IO and reads the token spans of its own blocks.
#include <mpi.h>
#include <sys/stat.h>

#include <algorithm>
#include <numeric>

#include "dataset_file.hpp"
#include "th/core/error.hpp"
#include "th/data/batching.hpp"
#include "th/io/h5.hpp"
#include "th/data/lm_dataset.hpp"
#include "th/parallel/agree.hpp"

namespace th {

namespace {
bool read_info(hid_t f, LmDatasetInfo& info, const std::string& path) {
  return h5_get_attr(f, "num_documents", info.documents, path) && h5_get_attr(f, "num_tokens", info.tokens, path) &&
         h5_get_attr(f, "vocab_size", info.vocab_size, path) && h5_get_attr(f, "text_bytes", info.text_bytes, path) &&
         h5_get_attr(f, "split", info.split, path) && h5_get_attr(f, "source", info.source, path) &&
         h5_get_attr(f, "tokenizer_fingerprint", info.tokenizer_fingerprint, path);
}
}  // namespace

std::string dataset_format_of(const std::string& path) {
  std::lock_guard<std::mutex> lock(hdf5_mutex());
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  struct stat st;
  if (path.empty() || ::stat(path.c_str(), &st) != 0 || H5Fis_hdf5(path.c_str()) <= 0) return "";
  const hid_t fid = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  if (fid < 0) return "";
  H5Id file(fid, H5Fclose);
  std::string format;
  try {
    if (!h5_get_attr(fid, "format", format, path)) format.clear();
  } catch (const Error&) {
    format.clear();
  }
  return format;
}

LmDatasetInfo inspect_lm_dataset(const std::string& path) {
  const std::string format = dataset_format_of(path);
  std::lock_guard<std::mutex> lock(hdf5_mutex());
  const H5Id file = open_dataset_file(path, "a text dataset is made by run%task = 'prepare' with "
                                           "prepare%source = 'text:...', 'jsonl:...' or 'bible:MODULE'");
  const hid_t fid = file.get();
  if (format == "torch-handle-dataset")
    throw InputError(path + ": a dataset of sentence pairs (format 'torch-handle-dataset'), but data%packing = "
                     "'concat' reads a text dataset (format '" + std::string(kLmDatasetFormat) +
                     "'): prepare one from 'text:PATH', 'jsonl:PATH:FIELD' or 'bible:MODULE', or set "
                     "data%packing = 'none'");
  const std::string bad = path + ": ";
  check_dataset_format(fid, path, kLmDatasetFormat, kLmDatasetFormatVersion, "text dataset");
  LmDatasetInfo info;
  info.path = path;
  if (!read_info(fid, info, path))
    throw InputError(bad + "missing attribute (num_documents, num_tokens, vocab_size, text_bytes, split, source or "
                     "tokenizer_fingerprint)");
  if (info.vocab_size <= SpecialTokens::first_regular || info.vocab_size > (1LL << 31) - 1 || info.documents < 0 ||
      info.tokens < 0)
    throw InputError(bad + "implausible attributes (vocab_size " + std::to_string(info.vocab_size) + ", num_documents " +
                     std::to_string(info.documents) + ", num_tokens " + std::to_string(info.tokens) + ")");
  if (h5_length_1d(fid, "tokenizer/model", H5T_INTEGER, path) <= 0)
    throw InputError(bad + "no tokenizer/model (the embedded SentencePiece model)");
  const std::int64_t ntok = h5_length_1d(fid, "tokens", H5T_INTEGER, path);
  const std::int64_t noff = h5_length_1d(fid, "doc_offsets", H5T_INTEGER, path);
  if (ntok != info.tokens || noff != info.documents + 1)
    throw InputError(bad + "tokens or doc_offsets missing or of the wrong length (tokens " + std::to_string(ntok) +
                     ", attribute num_tokens says " + std::to_string(info.tokens) + "; doc_offsets " +
                     std::to_string(noff) + ", expected num_documents + 1 = " + std::to_string(info.documents + 1) +
                     "): the file is truncated or damaged");
  // Offsets from 0 to the token count, never going back; read in chunks (a corpus may have
  // hundreds of millions of documents).
  H5Id ds = h5_own(H5Dopen2(fid, "doc_offsets", H5P_DEFAULT), H5Dclose, "H5Dopen2", path);
  std::int64_t prev = -1;
  constexpr std::int64_t kChunk = 1 << 20;
  for (std::int64_t first = 0; first < noff; first += kChunk) {
    std::vector<std::int64_t> v(static_cast<std::size_t>(std::min(kChunk, noff - first)));
    h5_read_ranges(ds.get(), H5T_NATIVE_INT64, {{static_cast<hsize_t>(first), v.size()}}, v.data(), H5P_DEFAULT, false,
                   path);
    for (std::size_t i = 0; i < v.size(); ++i) {
      const bool ok = (first + static_cast<std::int64_t>(i) == 0 ? v[i] == 0 : v[i] >= prev) && v[i] <= ntok;
      if (!ok)
        throw InputError(bad + "doc_offsets[" + std::to_string(first + static_cast<std::int64_t>(i)) + "] = " +
                         std::to_string(v[i]) + " breaks the rule (from 0 to num_tokens, never going back)");
      prev = v[i];
    }
  }
  if (prev != ntok) throw InputError(bad + "the last doc_offsets entry is not num_tokens");
  return info;
}

struct LmDatasetReader::Impl {
  LmDatasetInfo info;
  std::string model;
  std::unique_ptr<H5ParallelFile> file;  // its close is collective unless an exception unwinds
  H5Id tokens, coll, indep;

  // Datasets and property lists close locally; the file last (H5ParallelFile).
  ~Impl() {
    std::lock_guard<std::mutex> lock(hdf5_mutex());
    tokens.reset();
    coll.reset();
    indep.reset();
    file.reset();
  }
};

LmDatasetReader::LmDatasetReader(const std::string& path, Comm& comm) : impl_(std::make_unique<Impl>()) {
  std::string verdict;
  if (comm.rank() == 0) {
    try {
      inspect_lm_dataset(path);
    } catch (const InputError& e) {
      verdict = e.what();
      if (verdict.empty()) verdict = path + ": bad text dataset";
    }
  }
  agree_on_error(comm, verdict, ErrorKind::Input);  // rank 0's verdict, on every rank

  Impl& m = *impl_;
  std::lock_guard<std::mutex> lock(hdf5_mutex());
  // Independent metadata: the prefetch thread reads spans on its own (independent transfers).
  m.file = std::make_unique<H5ParallelFile>(comm, path, H5ParallelFile::Access::ReadOnly, H5Metadata::Independent);
  m.coll = h5_mpio_dxpl(H5Transfer::Collective, path);
  m.indep = h5_mpio_dxpl(H5Transfer::Independent, path);
  m.info.path = path;
  const hid_t f = m.file->get();
  if (!read_info(f, m.info, path))
    throw Error(path + ": attributes vanished between the check on rank 0 and the parallel open");
  m.tokens = h5_open_dataset(f, "tokens", path);
  const auto bytes = h5_read_all<unsigned char>(f, "tokenizer/model", H5T_NATIVE_UCHAR, m.coll.get(), path);
  m.model.assign(bytes.begin(), bytes.end());
}

LmDatasetReader::~LmDatasetReader() = default;  // Impl releases the file (collective unless unwinding)

const LmDatasetInfo& LmDatasetReader::info() const { return impl_->info; }
const std::string& LmDatasetReader::tokenizer_model() const { return impl_->model; }

std::vector<std::vector<int>> LmDatasetReader::read_spans(const std::vector<std::pair<std::int64_t, std::int64_t>>& spans,
                                                          bool collective) {
  Impl& m = *impl_;
  const std::string& path = m.info.path;
  for (const auto& [first, count] : spans)
    TH_CHECK(first >= 0 && count >= 0 && first + count <= m.info.tokens,
             "span [" + std::to_string(first) + ", +" + std::to_string(count) + ") outside " + path);
  // Spans may overlap (neighbouring blocks share a token): read the union of their ranges, in
  // file order, in one selection; then cut each span out of it.
  std::vector<std::size_t> order(spans.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return spans[a].first < spans[b].first; });
  std::vector<std::pair<std::int64_t, std::int64_t>> merged;  // [begin, end) in file order
  for (const std::size_t k : order) {
    const std::int64_t b = spans[k].first, e = b + spans[k].second;
    if (e == b) continue;
    if (!merged.empty() && b <= merged.back().second) merged.back().second = std::max(merged.back().second, e);
    else merged.push_back({b, e});
  }
  hsize_t total = 0;
  for (const auto& iv : merged) total += static_cast<hsize_t>(iv.second - iv.first);
  std::vector<std::pair<hsize_t, hsize_t>> ranges;  // {first, count}
  for (const auto& iv : merged) ranges.push_back({static_cast<hsize_t>(iv.first), static_cast<hsize_t>(iv.second - iv.first)});
  std::vector<std::int32_t> buf(std::max<hsize_t>(total, 1));
  {
    std::lock_guard<std::mutex> lock(hdf5_mutex());
    // A rank with nothing to read still takes part in a collective read (empty selections).
    h5_read_ranges(m.tokens.get(), H5T_NATIVE_INT32, ranges, buf.data(), collective ? m.coll.get() : m.indep.get(),
                   collective, path);
  }
  // Where each merged interval starts in buf.
  std::vector<std::int64_t> at(merged.size(), 0);
  for (std::size_t i = 1; i < merged.size(); ++i) at[i] = at[i - 1] + (merged[i - 1].second - merged[i - 1].first);
  std::vector<std::vector<int>> out(spans.size());
  for (std::size_t k = 0; k < spans.size(); ++k) {
    const auto [first, count] = spans[k];
    if (count == 0) continue;
    const auto it = std::upper_bound(merged.begin(), merged.end(), first,
                                     [](std::int64_t v, const auto& iv) { return v < iv.first; }) - 1;
    const std::int64_t pos = at[static_cast<std::size_t>(it - merged.begin())] + (first - it->first);
    out[k].assign(buf.begin() + pos, buf.begin() + pos + count);
    for (const int id : out[k])
      if (id < 0 || id >= m.info.vocab_size)
        throw Error(path + ": token id " + std::to_string(id) + " near stream position " + std::to_string(first) +
                    " is outside the vocabulary [0, " + std::to_string(m.info.vocab_size) + "): the file is corrupt");
  }
  return out;
}

}  // namespace th
