// The parallel dataset reader: MPI-IO driver, offsets read whole by every rank, token rows read
// as hyperslab unions of just the rows a rank needs (rule in th/data/dataset_h5.hpp).
#include <mpi.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <exception>
#include <numeric>

#include "th/parallel/mpi_comm.hpp"
#include "th/core/error.hpp"
#include "th/data/dataset_h5.hpp"
#include "th/io/h5.hpp"
#include "th/parallel/agree.hpp"

namespace th {

namespace {

// What identifies the bytes under a path: the file (device, inode), its size and its last
// modification. A dataset rewritten in place (prepare again: same inode, truncated and refilled),
// truncated, or replaced by another file (a rename over it) shows here. Reading past a truncated
// end through MPI-IO gives zeros, which are valid token ids: the check is what makes it an error.
struct FileIdentity {
  bool exists = false;
  dev_t dev = 0;
  ino_t ino = 0;
  off_t size = 0;
  timespec mtime{};
};
FileIdentity identity_of(const std::string& path) {
  FileIdentity id;
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return id;
  id.exists = true;
  id.dev = st.st_dev;
  id.ino = st.st_ino;
  id.size = st.st_size;
  id.mtime = st.st_mtim;
  return id;
}
// "" when `now` is the file that was opened, else what changed. A file gone from its path is
// still the one the reader holds open (its bytes cannot change): not a change.
std::string change(const FileIdentity& opened, const FileIdentity& now) {
  if (!now.exists) return "";
  if (now.dev != opened.dev || now.ino != opened.ino) return "it was replaced by another file";
  if (now.size != opened.size)
    return "its size went from " + std::to_string(opened.size) + " to " + std::to_string(now.size) + " bytes";
  if (now.mtime.tv_sec != opened.mtime.tv_sec || now.mtime.tv_nsec != opened.mtime.tv_nsec)
    return "it was modified (its modification time changed)";
  return "";
}

// Readers opened by this process, for TH_FAULT kind 'open'.
std::atomic<std::int64_t> g_opened{0};
}  // namespace

struct DatasetReader::Impl {
  DatasetInfo info;
  std::vector<ExampleLength> lengths;
  std::vector<std::int64_t> offsets[2];  // src, tgt
  std::string model;
  int rank = 0;
  std::int64_t independent_reads = 0;  // for TH_FAULT kind 'read'
  FileIdentity opened;                 // the file as this rank opened it
  std::unique_ptr<H5ParallelFile> file;  // its close is collective unless an exception unwinds
  H5Id tokens[2], coll, indep;

  // Datasets and property lists close locally; the file last (H5ParallelFile).
  ~Impl() {
    std::lock_guard<std::mutex> lock(hdf5_mutex());
    tokens[0].reset();
    tokens[1].reset();
    coll.reset();
    indep.reset();
    file.reset();
  }

  // After a read: the file must still be the one that was opened (see FileIdentity).
  void check_unchanged() const {
    const std::string what = change(opened, identity_of(info.path));
    if (!what.empty())
      throw Error(info.path + ": the dataset file changed while this run reads it (" + what +
                  "); what was read cannot be trusted. A dataset must stay as it is while a run uses it: write a new "
                  "one under another name (run%task = 'prepare' with other data%*_file), or restart the run on it");
  }

  // One side's tokens of the rows (sorted by row), as one hyperslab union.
  std::vector<std::int32_t> read_side(int side, const std::vector<std::int64_t>& sorted_rows, bool collective) {
    const std::string& path = info.path;
    const auto& off = offsets[side];
    std::vector<std::pair<hsize_t, hsize_t>> ranges;  // {first, count}, adjacent rows merged
    hsize_t total = 0;
    for (const std::int64_t r : sorted_rows) {
      const auto b = static_cast<hsize_t>(off[static_cast<std::size_t>(r)]);
      const auto e = static_cast<hsize_t>(off[static_cast<std::size_t>(r) + 1]);
      if (e == b) continue;
      if (!ranges.empty() && ranges.back().first + ranges.back().second == b)
        ranges.back().second += e - b;
      else
        ranges.push_back({b, e - b});
      total += e - b;
    }
    std::vector<std::int32_t> buf(std::max<hsize_t>(total, 1));
    // A rank with nothing to read still takes part in a collective read (with empty selections).
    h5_read_ranges(tokens[side].get(), H5T_NATIVE_INT32, ranges, buf.data(), collective ? coll.get() : indep.get(),
                   collective, path);
    buf.resize(total);
    return buf;
  }
};

DatasetReader::DatasetReader(const std::string& path, Comm& comm) : impl_(std::make_unique<Impl>()) {
  // Rank 0 checks the file alone first: a bad file is the same InputError on every rank.
  agree_root(comm, [&] {
    inspect_dataset(path);
    return std::string();
  }, ErrorKind::Input);

  Impl& m = *impl_;
  m.rank = comm.rank();
  m.opened = identity_of(path);
  std::lock_guard<std::mutex> lock(hdf5_mutex());
  m.info.path = path;
  // Independent metadata: the prefetch thread reads rows on its own (independent transfers).
  m.file = std::make_unique<H5ParallelFile>(comm, path, H5ParallelFile::Access::ReadOnly, H5Metadata::Independent);
  inject_fault("open", m.rank, ++g_opened, "opening " + path);
  m.coll = h5_mpio_dxpl(H5Transfer::Collective, path);
  m.indep = h5_mpio_dxpl(H5Transfer::Independent, path);
  const hid_t f = m.file->get();
  bool ok = h5_get_attr(f, "num_examples", m.info.examples, path) && h5_get_attr(f, "src_tokens", m.info.src_tokens, path) &&
            h5_get_attr(f, "tgt_tokens", m.info.tgt_tokens, path) && h5_get_attr(f, "vocab_size", m.info.vocab_size, path) &&
            h5_get_attr(f, "split", m.info.split, path) && h5_get_attr(f, "source", m.info.source, path) &&
            h5_get_attr(f, "tokenizer_fingerprint", m.info.tokenizer_fingerprint, path);
  if (!ok) throw Error(path + ": attributes vanished between the check on rank 0 and the parallel open");
  const char* names[2] = {"src", "tgt"};
  for (int s = 0; s < 2; ++s) {
    m.offsets[s] = h5_read_all<std::int64_t>(f, std::string(names[s]) + "/offsets", H5T_NATIVE_INT64, m.coll.get(), path);
    m.tokens[s] = h5_open_dataset(f, std::string(names[s]) + "/tokens", path);
    if (static_cast<std::int64_t>(m.offsets[s].size()) != m.info.examples + 1)
      throw Error(path + ": offsets changed between the check on rank 0 and the parallel open");
  }
  const auto bytes = h5_read_all<unsigned char>(f, "tokenizer/model", H5T_NATIVE_UCHAR, m.coll.get(), path);
  m.model.assign(bytes.begin(), bytes.end());
  m.check_unchanged();  // between rank 0's check and here
  m.lengths.resize(static_cast<std::size_t>(m.info.examples));
  for (std::size_t i = 0; i < m.lengths.size(); ++i)
    m.lengths[i] = {static_cast<std::int32_t>(m.offsets[0][i + 1] - m.offsets[0][i]),
                    static_cast<std::int32_t>(m.offsets[1][i + 1] - m.offsets[1][i])};
}

DatasetReader::~DatasetReader() = default;  // Impl releases the file (collective unless unwinding)

const DatasetInfo& DatasetReader::info() const { return impl_->info; }
const std::vector<ExampleLength>& DatasetReader::lengths() const { return impl_->lengths; }
const std::string& DatasetReader::tokenizer_model() const { return impl_->model; }

bool DatasetReader::background_reads_allowed() {
  int provided = MPI_THREAD_SINGLE;
  TH_MPI_CHECK(MPI_Query_thread(&provided));
  return provided == MPI_THREAD_MULTIPLE;
}

std::vector<Example> DatasetReader::read(const std::vector<std::int64_t>& rows, bool collective) {
  Impl& m = *impl_;
  for (const std::int64_t r : rows)
    TH_CHECK(r >= 0 && r < m.info.examples, "row " + std::to_string(r) + " outside " + m.info.path);
  // HDF5 maps a file selection to memory in file order: read the rows sorted, hand them back in
  // the order asked.
  std::vector<std::size_t> order(rows.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return rows[a] < rows[b]; });
  std::vector<std::int64_t> sorted(rows.size());
  for (std::size_t k = 0; k < order.size(); ++k) sorted[k] = rows[order[k]];
  TH_CHECK(std::adjacent_find(sorted.begin(), sorted.end()) == sorted.end(), "rows read twice in one read");
  if (!collective) inject_fault("read", m.rank, ++m.independent_reads, "reading " + std::to_string(rows.size()) +
                                  " examples of " + m.info.path);
  std::vector<std::int32_t> tok[2];
  {
    std::lock_guard<std::mutex> lock(hdf5_mutex());
    tok[0] = m.read_side(0, sorted, collective);
    tok[1] = m.read_side(1, sorted, collective);
  }
  m.check_unchanged();
  std::vector<Example> out(rows.size());
  std::size_t pos[2] = {0, 0};
  for (std::size_t k = 0; k < order.size(); ++k) {
    const auto r = static_cast<std::size_t>(sorted[k]);
    Example& e = out[order[k]];
    for (int s = 0; s < 2; ++s) {
      const auto n = static_cast<std::size_t>(m.offsets[s][r + 1] - m.offsets[s][r]);
      auto& dst = s == 0 ? e.src : e.tgt;
      dst.assign(tok[s].begin() + static_cast<std::ptrdiff_t>(pos[s]), tok[s].begin() + static_cast<std::ptrdiff_t>(pos[s] + n));
      pos[s] += n;
      for (const int id : dst)
        if (id < 0 || id >= m.info.vocab_size)
          throw Error(m.info.path + ": token id " + std::to_string(id) + " in " + (s == 0 ? "src" : "tgt") +
                      "/tokens of example " + std::to_string(r) + " is outside the vocabulary [0, " +
                      std::to_string(m.info.vocab_size) + "): the file is corrupt");
    }
  }
  return out;
}

}  // namespace th
