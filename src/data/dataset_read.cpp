// The parallel dataset reader: MPI-IO driver, offsets read whole by every rank, token rows read
// as hyperslab unions of just the rows a rank needs (rule in th/data/dataset_h5.hpp).
#include <mpi.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <exception>
#include <numeric>

#include "h5_attr.hpp"
#include "h5_handle.hpp"
#include "th/parallel/mpi_comm.hpp"
#include "th/core/error.hpp"
#include "th/data/dataset_h5.hpp"
#include "th/io/hdf5_lock.hpp"
#include "th/parallel/agree.hpp"

namespace th {

namespace {

H5Handle transfer_plist(H5FD_mpio_xfer_t mode, const std::string& path) {
  H5Handle p = h5_owned(H5Pcreate(H5P_DATASET_XFER), H5Pclose, "H5Pcreate", path);
  h5_check(H5Pset_dxpl_mpio(p.get(), mode), "H5Pset_dxpl_mpio", path);
  return p;
}

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
  MPI_Comm comm = MPI_COMM_NULL;
  H5Handle file, tokens[2], coll, indep;
  const int unwinding = std::uncaught_exceptions();

  // Closing an MPI-IO file and freeing a communicator are collective calls. While an exception
  // unwinds the stack (an error this rank may have alone, or a constructor that failed half way)
  // they are skipped: the other ranks may never make them, and a rank waiting in one would never
  // reach the error path. The file stays open until the job ends (HDF5 closes what is left when
  // MPI finalizes, on every rank alike after an agreed error); datasets, property lists and
  // dataspaces close locally.
  ~Impl() {
    std::lock_guard<std::mutex> lock(hdf5_mutex());
    tokens[0].reset();
    tokens[1].reset();
    coll.reset();
    indep.reset();
    if (std::uncaught_exceptions() > unwinding) {
      file.release();
      return;
    }
    file.reset();  // collective with the MPI-IO driver: every rank destroys its reader
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized && comm != MPI_COMM_NULL) MPI_Comm_free(&comm);
  }

  // After a read: the file must still be the one that was opened (see FileIdentity).
  void check_unchanged() const {
    const std::string what = change(opened, identity_of(info.path));
    if (!what.empty())
      throw Error(info.path + ": the dataset file changed while this run reads it (" + what +
                  "); what was read cannot be trusted. A dataset must stay as it is while a run uses it: write a new "
                  "one under another name (run%task = 'prepare' with other data%*_file), or restart the run on it");
  }

  // Reads whole 1-D dataset `name` collectively (every rank the same selection).
  template <typename T>
  std::vector<T> read_all(const std::string& name, hid_t mem_type) {
    const std::string& path = info.path;
    H5Handle ds = h5_owned(H5Dopen2(file.get(), name.c_str(), H5P_DEFAULT), H5Dclose, "H5Dopen2", path);
    H5Handle space = h5_owned(H5Dget_space(ds.get()), H5Sclose, "H5Dget_space", path);
    hsize_t n = 0;
    h5_check(H5Sget_simple_extent_dims(space.get(), &n, nullptr), "H5Sget_simple_extent_dims", path);
    std::vector<T> v(static_cast<std::size_t>(n));
    if (n > 0) h5_check(H5Dread(ds.get(), mem_type, H5S_ALL, H5S_ALL, coll.get(), v.data()), "H5Dread", path);
    return v;
  }

  // One side's tokens of the rows (sorted by row), as one hyperslab union.
  std::vector<std::int32_t> read_side(int side, const std::vector<std::int64_t>& sorted_rows, bool collective) {
    const std::string& path = info.path;
    const auto& off = offsets[side];
    H5Handle fspace = h5_owned(H5Dget_space(tokens[side].get()), H5Sclose, "H5Dget_space", path);
    h5_check(H5Sselect_none(fspace.get()), "H5Sselect_none", path);
    hsize_t total = 0, start = 0, count = 0;
    auto flush = [&] {
      if (count == 0) return;
      h5_check(H5Sselect_hyperslab(fspace.get(), H5S_SELECT_OR, &start, nullptr, &count, nullptr),
               "H5Sselect_hyperslab", path);
      total += count;
      count = 0;
    };
    for (const std::int64_t r : sorted_rows) {
      const auto b = static_cast<hsize_t>(off[static_cast<std::size_t>(r)]);
      const auto e = static_cast<hsize_t>(off[static_cast<std::size_t>(r) + 1]);
      if (e == b) continue;
      if (count > 0 && start + count == b) {
        count += e - b;  // adjacent rows: one range
      } else {
        flush();
        start = b;
        count = e - b;
      }
    }
    flush();
    std::vector<std::int32_t> buf(std::max<hsize_t>(total, 1));
    const hsize_t mdim = std::max<hsize_t>(total, 1);
    H5Handle mspace = h5_owned(H5Screate_simple(1, &mdim, nullptr), H5Sclose, "H5Screate_simple", path);
    if (total == 0) h5_check(H5Sselect_none(mspace.get()), "H5Sselect_none", path);
    // A rank with nothing to read still takes part in a collective read (with empty selections).
    if (total > 0 || collective)
      h5_check(H5Dread(tokens[side].get(), H5T_NATIVE_INT32, mspace.get(), fspace.get(),
                       collective ? coll.get() : indep.get(), buf.data()),
               "H5Dread", path);
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
  m.comm = mpi_comm_of(comm);
  m.opened = identity_of(path);
  std::lock_guard<std::mutex> lock(hdf5_mutex());
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  m.info.path = path;
  H5Handle fapl = h5_owned(H5Pcreate(H5P_FILE_ACCESS), H5Pclose, "H5Pcreate", path);
  h5_check(H5Pset_fapl_mpio(fapl.get(), m.comm, MPI_INFO_NULL), "H5Pset_fapl_mpio", path);
  m.file = h5_owned(H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl.get()), H5Fclose, "H5Fopen (MPI-IO)", path);
  inject_fault("open", m.rank, ++g_opened, "opening " + path);
  m.coll = transfer_plist(H5FD_MPIO_COLLECTIVE, path);
  m.indep = transfer_plist(H5FD_MPIO_INDEPENDENT, path);
  const hid_t f = m.file.get();
  bool ok = h5_get_attr(f, "num_examples", m.info.examples, path) && h5_get_attr(f, "src_tokens", m.info.src_tokens, path) &&
            h5_get_attr(f, "tgt_tokens", m.info.tgt_tokens, path) && h5_get_attr(f, "vocab_size", m.info.vocab_size, path) &&
            h5_get_attr(f, "split", m.info.split, path) && h5_get_attr(f, "source", m.info.source, path) &&
            h5_get_attr(f, "tokenizer_fingerprint", m.info.tokenizer_fingerprint, path);
  if (!ok) throw Error(path + ": attributes vanished between the check on rank 0 and the parallel open");
  const char* names[2] = {"src", "tgt"};
  for (int s = 0; s < 2; ++s) {
    m.offsets[s] = m.read_all<std::int64_t>(std::string(names[s]) + "/offsets", H5T_NATIVE_INT64);
    m.tokens[s] = h5_owned(H5Dopen2(f, (std::string(names[s]) + "/tokens").c_str(), H5P_DEFAULT), H5Dclose, "H5Dopen2", path);
    if (static_cast<std::int64_t>(m.offsets[s].size()) != m.info.examples + 1)
      throw Error(path + ": offsets changed between the check on rank 0 and the parallel open");
  }
  const auto bytes = m.read_all<unsigned char>("tokenizer/model", H5T_NATIVE_UCHAR);
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
