// The parallel dataset reader: MPI-IO driver, offsets read whole by every rank, token rows read
// as hyperslab unions of just the rows a rank needs (rule in th/data/dataset_h5.hpp).
#include <mpi.h>

#include <algorithm>
#include <numeric>

#include "h5_attr.hpp"
#include "h5_handle.hpp"
#include "parallel/mpi_comm.hpp"
#include "th/core/error.hpp"
#include "th/data/dataset_h5.hpp"
#include "th/data/hdf5_lock.hpp"

namespace th {

std::mutex& hdf5_mutex() {
  static std::mutex m;
  return m;
}

namespace {

H5Handle transfer_plist(H5FD_mpio_xfer_t mode, const std::string& path) {
  H5Handle p = h5_owned(H5Pcreate(H5P_DATASET_XFER), H5Pclose, "H5Pcreate", path);
  h5_check(H5Pset_dxpl_mpio(p.get(), mode), "H5Pset_dxpl_mpio", path);
  return p;
}
}  // namespace

struct DatasetReader::Impl {
  DatasetInfo info;
  std::vector<ExampleLength> lengths;
  std::vector<std::int64_t> offsets[2];  // src, tgt
  std::string model;
  MPI_Comm comm = MPI_COMM_NULL;
  H5Handle file, tokens[2], coll, indep;

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
  std::string verdict;
  if (comm.rank() == 0) {
    try {
      inspect_dataset(path);
    } catch (const InputError& e) {
      verdict = e.what();
      if (verdict.empty()) verdict = path + ": bad dataset";
    }
  }
  comm.broadcast_string(verdict, 0);
  if (!verdict.empty()) throw InputError(verdict);

  Impl& m = *impl_;
  m.comm = mpi_comm_of(comm);
  std::lock_guard<std::mutex> lock(hdf5_mutex());
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  m.info.path = path;
  H5Handle fapl = h5_owned(H5Pcreate(H5P_FILE_ACCESS), H5Pclose, "H5Pcreate", path);
  h5_check(H5Pset_fapl_mpio(fapl.get(), m.comm, MPI_INFO_NULL), "H5Pset_fapl_mpio", path);
  m.file = h5_owned(H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl.get()), H5Fclose, "H5Fopen (MPI-IO)", path);
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
  m.lengths.resize(static_cast<std::size_t>(m.info.examples));
  for (std::size_t i = 0; i < m.lengths.size(); ++i)
    m.lengths[i] = {static_cast<std::int32_t>(m.offsets[0][i + 1] - m.offsets[0][i]),
                    static_cast<std::int32_t>(m.offsets[1][i + 1] - m.offsets[1][i])};
}

DatasetReader::~DatasetReader() {
  if (!impl_) return;
  {
    std::lock_guard<std::mutex> lock(hdf5_mutex());
    impl_->tokens[0].reset();
    impl_->tokens[1].reset();
    impl_->coll.reset();
    impl_->indep.reset();
    impl_->file.reset();  // collective with the MPI-IO driver: every rank destroys its reader
  }
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized && impl_->comm != MPI_COMM_NULL) MPI_Comm_free(&impl_->comm);
}

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
  std::vector<std::int32_t> tok[2];
  {
    std::lock_guard<std::mutex> lock(hdf5_mutex());
    tok[0] = m.read_side(0, sorted, collective);
    tok[1] = m.read_side(1, sorted, collective);
  }
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
          throw Error(m.info.path + ": token id " + std::to_string(id) + " of example " + std::to_string(r) +
                      " is outside the vocabulary [0, " + std::to_string(m.info.vocab_size) + "): the file is corrupt");
    }
  }
  return out;
}

}  // namespace th
