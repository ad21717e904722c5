#pragma once
// HDF5 for every file of the project (datasets, checkpoints, metrics, test exchange files): the
// process HDF5 lock, owned ids, checked calls, attributes, whole and partial 1-D reads and writes,
// and the one MPI-IO set-up of a file opened by every rank of a communicator.
//
// Every HDF5 call is checked: a negative id or status throws th::Error naming the call and the file.
#include <hdf5.h>

#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace th {

class Comm;

// Debian's parallel HDF5 is built without its thread-safety option: two threads must never be
// inside the library at the same time. The loader reads datasets on its prefetch thread while
// the main thread may write metrics or checkpoints, so every HDF5 user of the process holds this
// one lock around its HDF5 calls (not recursive: take it once, outside the handles below).
std::mutex& hdf5_mutex();

// Throws th::Error naming the call and file when an HDF5 call returns a negative id/status.
hid_t h5_check(hid_t status, const char* call, const std::string& path);

// An HDF5 id (file, group, dataset, dataspace, datatype, attribute, property list) closed on
// destruction. A `collective` id (a file opened through MPI-IO) is NOT closed while an exception
// unwinds: its close is a collective call the other ranks may never make, and a hang there would
// keep main() from aborting the job. (Datasets, attributes, dataspaces close locally: their
// changes reach the file at the file's flush or close.)
class H5Id {
 public:
  using Closer = herr_t (*)(hid_t);
  H5Id() = default;
  H5Id(hid_t id, Closer closer, bool collective = false)
      : id_(id), close_(closer), collective_(collective), unwinding_(std::uncaught_exceptions()) {}
  ~H5Id() {
    if (collective_ && std::uncaught_exceptions() > unwinding_) return;
    reset();
  }
  H5Id(H5Id&& o) noexcept
      : id_(std::exchange(o.id_, -1)), close_(o.close_), collective_(o.collective_), unwinding_(o.unwinding_) {}
  H5Id& operator=(H5Id&& o) noexcept {
    if (this != &o) {
      reset();
      id_ = std::exchange(o.id_, -1);
      close_ = o.close_;
      collective_ = o.collective_;
      unwinding_ = o.unwinding_;
    }
    return *this;
  }
  H5Id(const H5Id&) = delete;
  H5Id& operator=(const H5Id&) = delete;
  hid_t get() const { return id_; }
  bool valid() const { return id_ >= 0; }
  // Closes now, unchecked (a failing close of a local id has nobody to report to).
  void reset() {
    if (id_ >= 0 && close_) close_(id_);
    id_ = -1;
  }
  // Closes now and returns the status (a file's close is where its last writes happen).
  herr_t close_status() {
    const hid_t id = std::exchange(id_, -1);
    return id >= 0 && close_ ? close_(id) : 0;
  }
  // Closes now and checks the result.
  void close(const char* call, const std::string& path) { h5_check(close_status(), call, path); }

 private:
  hid_t id_ = -1;
  Closer close_ = nullptr;
  bool collective_ = false;
  int unwinding_ = 0;
};

// h5_check for an id, wrapped with its closer.
inline H5Id h5_own(hid_t id, H5Id::Closer closer, const char* call, const std::string& path, bool collective = false) {
  return H5Id(h5_check(id, call, path), closer, collective);
}

// Variable-length UTF-8 string type (h5py reads it as str; a long string lives in the global heap
// instead of the 64 KiB object header).
H5Id h5_string_type(const std::string& path);

// True if every link of the path exists (a missing group is "no", not an error).
bool h5_link_exists(hid_t loc, const std::string& name);

// Scalar attributes. put_* create them (collectively on an MPI-IO file: the same value on every
// rank) with little-endian file types; get_* return false when the attribute is missing or of
// another class (integer, float, string). Strings: variable-length UTF-8 written; fixed-length
// ones (other tools) read too.
void h5_put_attr(hid_t obj, const std::string& name, std::int64_t v, const std::string& path);
void h5_put_attr_u64(hid_t obj, const std::string& name, std::uint64_t v, const std::string& path);
void h5_put_attr_u32(hid_t obj, const std::string& name, std::uint32_t v, const std::string& path);
void h5_put_attr(hid_t obj, const std::string& name, double v, const std::string& path);
void h5_put_attr(hid_t obj, const std::string& name, const std::string& v, const std::string& path);
bool h5_get_attr(hid_t obj, const std::string& name, std::int64_t& v, const std::string& path);
bool h5_get_attr(hid_t obj, const std::string& name, std::uint64_t& v, const std::string& path);
bool h5_get_attr(hid_t obj, const std::string& name, double& v, const std::string& path);
bool h5_get_attr(hid_t obj, const std::string& name, std::string& v, const std::string& path);

// Groups and datasets. Empty dims: a scalar dataset.
H5Id h5_create_group(hid_t loc, const std::string& name, const std::string& path);
H5Id h5_create_dataset(hid_t loc, const std::string& name, hid_t file_type, const std::vector<hsize_t>& dims,
                       const std::string& path, hid_t lcpl = H5P_DEFAULT, hid_t dcpl = H5P_DEFAULT);
H5Id h5_open_dataset(hid_t loc, const std::string& name, const std::string& path);  // Error if missing
std::vector<hsize_t> h5_dims(hid_t ds, const std::string& path);                    // {} for a scalar
// Length of 1-D dataset `name` whose type is of class cls; -1 when it is missing, not a dataset,
// or of another shape or class.
std::int64_t h5_length_1d(hid_t loc, const std::string& name, H5T_class_t cls, const std::string& path);

// A whole 1-D dataset written from n values at `data` (serial or collective with dxpl).
void h5_write_1d(hid_t loc, const std::string& name, hid_t file_type, hid_t mem_type, const void* data,
                 std::uint64_t n, const std::string& path);
void h5_write_strings(hid_t loc, const std::string& name, const std::vector<std::string>& v, const std::string& path);

// A whole dataset (any shape) into a vector; *dims receives its shape.
template <typename T>
std::vector<T> h5_read_all(hid_t loc, const std::string& name, hid_t mem_type, hid_t dxpl, const std::string& path,
                           std::vector<hsize_t>* dims = nullptr) {
  const H5Id ds = h5_open_dataset(loc, name, path);
  const std::vector<hsize_t> d = h5_dims(ds.get(), path);
  hsize_t n = 1;
  for (const hsize_t x : d) n *= x;
  std::vector<T> v(static_cast<std::size_t>(n));
  if (n > 0) h5_check(H5Dread(ds.get(), mem_type, H5S_ALL, H5S_ALL, dxpl, v.data()), "H5Dread", path);
  if (dims) *dims = d;
  return v;
}

// 1-D element ranges {first, count} of dataset ds (sorted by first, disjoint) as one selection,
// read into / written from buf in file order (sum of the counts values). A rank with nothing
// to move still takes part when `take_part` (a collective transfer: empty selections).
void h5_read_ranges(hid_t ds, hid_t mem_type, const std::vector<std::pair<hsize_t, hsize_t>>& ranges, void* buf,
                    hid_t dxpl, bool take_part, const std::string& path);
void h5_write_ranges(hid_t ds, hid_t mem_type, const std::vector<std::pair<hsize_t, hsize_t>>& ranges, const void* buf,
                     hid_t dxpl, bool take_part, const std::string& path);

// ---------------------------------------------------------------------------------------------
// MPI-IO: the one set-up of a file every rank of a communicator opens.

// Metadata I/O of an MPI-IO file. Collective: rank 0 reads metadata and broadcasts it instead of
// every rank reading the same bytes, and metadata is written collectively; every rank must then
// make the same metadata calls (no independent dataset opens on one rank, no metadata reads in a
// background thread). Independent: HDF5's default (metadata writes are collective anyway).
enum class H5Metadata { Collective, Independent };

// A file-access property list for HDF5's MPI-IO driver over comm.
H5Id h5_mpio_fapl(MPI_Comm comm, H5Metadata metadata, const std::string& path);

// Transfer properties. Collective: every rank calls, a rank with nothing selects nothing; carried
// out by independent MPI-IO underneath. A rank's part of a contiguous dataset is a few contiguous
// byte extents, so two-phase collective buffering has little to merge; and Open MPI 4.1's OMPIO
// collective reads returned wrong bytes for partially overlapping selections of several ranks
// (caught by the CRC check of tests/mpi/test_checkpoint_io.cpp). Independent: one rank alone.
enum class H5Transfer { Collective, Independent };
H5Id h5_mpio_dxpl(H5Transfer transfer, const std::string& path);

// An HDF5 file created or opened through MPI-IO by every rank of comm (a collective call), with
// the MPI communicator HDF5 needs. Destroyed in the normal course, it closes the file and frees
// the communicator (both collective: every rank destroys its handle); while an exception unwinds
// it does neither (see H5Id): the file stays open until MPI finalizes, after an agreed error on
// every rank alike.
class H5ParallelFile {
 public:
  enum class Access { Create, ReadOnly };  // Create truncates an existing file
  H5ParallelFile(Comm& comm, const std::string& path, Access access, H5Metadata metadata);
  ~H5ParallelFile();
  H5ParallelFile(const H5ParallelFile&) = delete;
  H5ParallelFile& operator=(const H5ParallelFile&) = delete;
  hid_t get() const { return file_.get(); }
  const std::string& path() const { return path_; }
  // Collective close now, checked (every rank must call it); the communicator is freed later.
  void close() { file_.close("H5Fclose (MPI-IO)", path_); }
  // The same, returning the status instead of throwing.
  herr_t close_status() { return file_.close_status(); }

 private:
  class MpiComm;
  std::string path_;
  std::unique_ptr<MpiComm> comm_;  // declared before file_: freed after the file is closed
  H5Id file_;
};

}  // namespace th
