// Checking and reading a text dataset: rank 0 checks the file alone first (serial driver), then
// every rank opens it with MPI-IO and reads the token spans of its own blocks.
#include <mpi.h>
#include <sys/stat.h>

#include <algorithm>
#include <numeric>

#include "h5_attr.hpp"
#include "h5_handle.hpp"
#include "th/parallel/mpi_comm.hpp"
#include "th/core/error.hpp"
#include "th/data/batching.hpp"
#include "th/io/hdf5_lock.hpp"
#include "th/data/lm_dataset.hpp"
#include "th/parallel/agree.hpp"

namespace th {

namespace {
// Length of a 1-D dataset of class cls, or -1 when it is missing or of another shape/class.
std::int64_t length_1d(hid_t file, const std::string& name, H5T_class_t cls, const std::string& path) {
  const std::size_t slash = name.find('/');
  if (slash != std::string::npos &&
      h5_check(H5Lexists(file, name.substr(0, slash).c_str(), H5P_DEFAULT), "H5Lexists", path) <= 0)
    return -1;
  if (h5_check(H5Lexists(file, name.c_str(), H5P_DEFAULT), "H5Lexists", path) <= 0) return -1;
  H5Handle obj = h5_owned(H5Oopen(file, name.c_str(), H5P_DEFAULT), H5Oclose, "H5Oopen", path);
  if (H5Iget_type(obj.get()) != H5I_DATASET) return -1;
  H5Handle ds = h5_owned(H5Dopen2(file, name.c_str(), H5P_DEFAULT), H5Dclose, "H5Dopen2", path);
  H5Handle type = h5_owned(H5Dget_type(ds.get()), H5Tclose, "H5Dget_type", path);
  if (H5Tget_class(type.get()) != cls) return -1;
  H5Handle space = h5_owned(H5Dget_space(ds.get()), H5Sclose, "H5Dget_space", path);
  if (H5Sget_simple_extent_ndims(space.get()) != 1) return -1;
  hsize_t n = 0;
  h5_check(H5Sget_simple_extent_dims(space.get(), &n, nullptr), "H5Sget_simple_extent_dims", path);
  return static_cast<std::int64_t>(n);
}

// Reads [first, first + n) of a 1-D dataset (serial driver).
std::vector<std::int64_t> read_int64_range(hid_t ds, hsize_t first, hsize_t n, const std::string& path) {
  std::vector<std::int64_t> v(static_cast<std::size_t>(n));
  if (n == 0) return v;
  H5Handle fspace = h5_owned(H5Dget_space(ds), H5Sclose, "H5Dget_space", path);
  h5_check(H5Sselect_hyperslab(fspace.get(), H5S_SELECT_SET, &first, nullptr, &n, nullptr), "H5Sselect_hyperslab", path);
  H5Handle mspace = h5_owned(H5Screate_simple(1, &n, nullptr), H5Sclose, "H5Screate_simple", path);
  h5_check(H5Dread(ds, H5T_NATIVE_INT64, mspace.get(), fspace.get(), H5P_DEFAULT, v.data()), "H5Dread", path);
  return v;
}

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
  H5Handle file(fid, H5Fclose);
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
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  struct stat st;
  if (path.empty()) throw InputError("no dataset file named (data%train_file is '')");
  if (::stat(path.c_str(), &st) != 0) throw InputError(path + ": no such dataset file");
  if (H5Fis_hdf5(path.c_str()) <= 0)
    throw InputError(path + ": not an HDF5 file (a text dataset is made by run%task = 'prepare' with "
                     "prepare%source = 'text:...', 'jsonl:...' or 'bible:MODULE')");
  if (format == "torch-handle-dataset")
    throw InputError(path + ": a dataset of sentence pairs (format 'torch-handle-dataset'), but data%packing = "
                     "'concat' reads a text dataset (format '" + std::string(kLmDatasetFormat) +
                     "'): prepare one from 'text:PATH', 'jsonl:PATH:FIELD' or 'bible:MODULE', or set "
                     "data%packing = 'none'");
  const hid_t fid = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  if (fid < 0) throw InputError(path + ": cannot be opened as HDF5: the file is truncated or damaged");
  H5Handle file(fid, H5Fclose);
  const std::string bad = path + ": ";
  if (format != kLmDatasetFormat)
    throw InputError(bad + "an HDF5 file, but not a torch-handle text dataset (no root attribute format = '" +
                     kLmDatasetFormat + "'); make one with run%task = 'prepare'");
  std::int64_t version = 0;
  if (!h5_get_attr(fid, "format_version", version, path) || version != kLmDatasetFormatVersion)
    throw InputError(bad + "text dataset format version " + std::to_string(version) + ", this build reads version " +
                     std::to_string(kLmDatasetFormatVersion) + "; run task='prepare' again");
  LmDatasetInfo info;
  info.path = path;
  if (!read_info(fid, info, path))
    throw InputError(bad + "missing attribute (num_documents, num_tokens, vocab_size, text_bytes, split, source or "
                     "tokenizer_fingerprint)");
  if (info.vocab_size <= SpecialTokens::first_regular || info.vocab_size > (1LL << 31) - 1 || info.documents < 0 ||
      info.tokens < 0)
    throw InputError(bad + "implausible attributes (vocab_size " + std::to_string(info.vocab_size) + ", num_documents " +
                     std::to_string(info.documents) + ", num_tokens " + std::to_string(info.tokens) + ")");
  if (length_1d(fid, "tokenizer/model", H5T_INTEGER, path) <= 0)
    throw InputError(bad + "no tokenizer/model (the embedded SentencePiece model)");
  const std::int64_t ntok = length_1d(fid, "tokens", H5T_INTEGER, path);
  const std::int64_t noff = length_1d(fid, "doc_offsets", H5T_INTEGER, path);
  if (ntok != info.tokens || noff != info.documents + 1)
    throw InputError(bad + "tokens or doc_offsets missing or of the wrong length (tokens " + std::to_string(ntok) +
                     ", attribute num_tokens says " + std::to_string(info.tokens) + "; doc_offsets " +
                     std::to_string(noff) + ", expected num_documents + 1 = " + std::to_string(info.documents + 1) +
                     "): the file is truncated or damaged");
  // Offsets from 0 to the token count, never going back; read in chunks (a corpus may have
  // hundreds of millions of documents).
  H5Handle ds = h5_owned(H5Dopen2(fid, "doc_offsets", H5P_DEFAULT), H5Dclose, "H5Dopen2", path);
  std::int64_t prev = -1;
  constexpr std::int64_t kChunk = 1 << 20;
  for (std::int64_t first = 0; first < noff; first += kChunk) {
    const auto v = read_int64_range(ds.get(), static_cast<hsize_t>(first),
                                    static_cast<hsize_t>(std::min(kChunk, noff - first)), path);
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
  MPI_Comm comm = MPI_COMM_NULL;
  H5Handle file, tokens, coll, indep;
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
  m.comm = mpi_comm_of(comm);
  std::lock_guard<std::mutex> lock(hdf5_mutex());
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  H5Handle fapl = h5_owned(H5Pcreate(H5P_FILE_ACCESS), H5Pclose, "H5Pcreate", path);
  h5_check(H5Pset_fapl_mpio(fapl.get(), m.comm, MPI_INFO_NULL), "H5Pset_fapl_mpio", path);
  m.file = h5_owned(H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl.get()), H5Fclose, "H5Fopen (MPI-IO)", path);
  m.coll = h5_owned(H5Pcreate(H5P_DATASET_XFER), H5Pclose, "H5Pcreate", path);
  h5_check(H5Pset_dxpl_mpio(m.coll.get(), H5FD_MPIO_COLLECTIVE), "H5Pset_dxpl_mpio", path);
  m.indep = h5_owned(H5Pcreate(H5P_DATASET_XFER), H5Pclose, "H5Pcreate", path);
  h5_check(H5Pset_dxpl_mpio(m.indep.get(), H5FD_MPIO_INDEPENDENT), "H5Pset_dxpl_mpio", path);
  m.info.path = path;
  if (!read_info(m.file.get(), m.info, path))
    throw Error(path + ": attributes vanished between the check on rank 0 and the parallel open");
  m.tokens = h5_owned(H5Dopen2(m.file.get(), "tokens", H5P_DEFAULT), H5Dclose, "H5Dopen2", path);
  H5Handle ds = h5_owned(H5Dopen2(m.file.get(), "tokenizer/model", H5P_DEFAULT), H5Dclose, "H5Dopen2", path);
  H5Handle space = h5_owned(H5Dget_space(ds.get()), H5Sclose, "H5Dget_space", path);
  hsize_t n = 0;
  h5_check(H5Sget_simple_extent_dims(space.get(), &n, nullptr), "H5Sget_simple_extent_dims", path);
  m.model.resize(static_cast<std::size_t>(n));
  h5_check(H5Dread(ds.get(), H5T_NATIVE_UCHAR, H5S_ALL, H5S_ALL, m.coll.get(), &m.model[0]), "H5Dread", path);
}

LmDatasetReader::~LmDatasetReader() {
  if (!impl_) return;
  {
    std::lock_guard<std::mutex> lock(hdf5_mutex());
    impl_->tokens.reset();
    impl_->coll.reset();
    impl_->indep.reset();
    impl_->file.reset();  // collective with the MPI-IO driver: every rank destroys its reader
  }
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized && impl_->comm != MPI_COMM_NULL) MPI_Comm_free(&impl_->comm);
}

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
  std::vector<std::int32_t> buf(std::max<hsize_t>(total, 1));
  {
    std::lock_guard<std::mutex> lock(hdf5_mutex());
    H5Handle fspace = h5_owned(H5Dget_space(m.tokens.get()), H5Sclose, "H5Dget_space", path);
    h5_check(H5Sselect_none(fspace.get()), "H5Sselect_none", path);
    for (const auto& iv : merged) {
      const hsize_t start = static_cast<hsize_t>(iv.first), count = static_cast<hsize_t>(iv.second - iv.first);
      h5_check(H5Sselect_hyperslab(fspace.get(), H5S_SELECT_OR, &start, nullptr, &count, nullptr),
               "H5Sselect_hyperslab", path);
    }
    const hsize_t mdim = std::max<hsize_t>(total, 1);
    H5Handle mspace = h5_owned(H5Screate_simple(1, &mdim, nullptr), H5Sclose, "H5Screate_simple", path);
    if (total == 0) h5_check(H5Sselect_none(mspace.get()), "H5Sselect_none", path);
    // A rank with nothing to read still takes part in a collective read (empty selections).
    if (total > 0 || collective)
      h5_check(H5Dread(m.tokens.get(), H5T_NATIVE_INT32, mspace.get(), fspace.get(),
                       collective ? m.coll.get() : m.indep.get(), buf.data()),
               "H5Dread", path);
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
