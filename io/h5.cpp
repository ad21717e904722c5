#include "th/io/h5.hpp"

#include <algorithm>

#include "th/parallel/mpi_comm.hpp"
#include "th/core/error.hpp"

namespace th {

std::mutex& hdf5_mutex() {
  static std::mutex m;
  return m;
}

hid_t h5_check(hid_t status, const char* call, const std::string& path) {
  if (status < 0) throw Error(std::string("HDF5 ") + call + " failed on " + path);
  return status;
}

H5Id h5_string_type(const std::string& path) {
  H5Id t = h5_own(H5Tcopy(H5T_C_S1), H5Tclose, "H5Tcopy", path);
  h5_check(H5Tset_size(t.get(), H5T_VARIABLE), "H5Tset_size", path);
  h5_check(H5Tset_cset(t.get(), H5T_CSET_UTF8), "H5Tset_cset", path);
  return t;
}

bool h5_link_exists(hid_t loc, const std::string& name) {
  // H5Lexists on a/b/c fails (not "no") when a/b is missing: test each prefix.
  std::size_t pos = 1;
  while (pos <= name.size()) {
    const std::size_t slash = name.find('/', pos);
    const std::string prefix = name.substr(0, slash == std::string::npos ? name.size() : slash);
    if (H5Lexists(loc, prefix.c_str(), H5P_DEFAULT) <= 0) return false;
    if (slash == std::string::npos) break;
    pos = slash + 1;
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// Attributes

namespace {
void put_raw(hid_t obj, const std::string& name, hid_t type, const void* value, const std::string& path) {
  H5Id space = h5_own(H5Screate(H5S_SCALAR), H5Sclose, "H5Screate", path);
  H5Id a = h5_own(H5Acreate2(obj, name.c_str(), type, space.get(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose,
                  "H5Acreate2", path);
  h5_check(H5Awrite(a.get(), type, value), "H5Awrite", path);
  a.close("H5Aclose", path);
}

// Opens attribute `name` if it exists and its type is of class cls (else an empty id).
H5Id open_attr(hid_t obj, const std::string& name, H5T_class_t cls, const std::string& path) {
  if (H5Aexists(obj, name.c_str()) <= 0) return {};
  H5Id a = h5_own(H5Aopen(obj, name.c_str(), H5P_DEFAULT), H5Aclose, "H5Aopen", path);
  H5Id type = h5_own(H5Aget_type(a.get()), H5Tclose, "H5Aget_type", path);
  if (H5Tget_class(type.get()) != cls) return {};
  return a;
}

template <typename T>
bool get_number(hid_t obj, const std::string& name, H5T_class_t cls, hid_t mem, T& v, const std::string& path) {
  H5Id a = open_attr(obj, name, cls, path);
  if (!a.valid()) return false;
  h5_check(H5Aread(a.get(), mem, &v), "H5Aread", path);
  return true;
}
}  // namespace

void h5_put_attr(hid_t obj, const std::string& name, std::int64_t v, const std::string& path) {
  put_raw(obj, name, H5T_STD_I64LE, &v, path);
}
void h5_put_attr_u64(hid_t obj, const std::string& name, std::uint64_t v, const std::string& path) {
  put_raw(obj, name, H5T_STD_U64LE, &v, path);
}
void h5_put_attr_u32(hid_t obj, const std::string& name, std::uint32_t v, const std::string& path) {
  put_raw(obj, name, H5T_STD_U32LE, &v, path);
}
void h5_put_attr(hid_t obj, const std::string& name, double v, const std::string& path) {
  put_raw(obj, name, H5T_IEEE_F64LE, &v, path);
}
void h5_put_attr(hid_t obj, const std::string& name, const std::string& v, const std::string& path) {
  H5Id type = h5_string_type(path);
  const char* p = v.c_str();
  put_raw(obj, name, type.get(), &p, path);
}

bool h5_get_attr(hid_t obj, const std::string& name, std::int64_t& v, const std::string& path) {
  return get_number(obj, name, H5T_INTEGER, H5T_NATIVE_INT64, v, path);
}
bool h5_get_attr(hid_t obj, const std::string& name, std::uint64_t& v, const std::string& path) {
  return get_number(obj, name, H5T_INTEGER, H5T_NATIVE_UINT64, v, path);
}
bool h5_get_attr(hid_t obj, const std::string& name, double& v, const std::string& path) {
  return get_number(obj, name, H5T_FLOAT, H5T_NATIVE_DOUBLE, v, path);
}
bool h5_get_attr(hid_t obj, const std::string& name, std::string& v, const std::string& path) {
  H5Id a = open_attr(obj, name, H5T_STRING, path);
  if (!a.valid()) return false;
  H5Id ftype = h5_own(H5Aget_type(a.get()), H5Tclose, "H5Aget_type", path);
  H5Id mem = h5_own(H5Tcopy(H5T_C_S1), H5Tclose, "H5Tcopy", path);
  // HDF5 does not convert between character sets: read in the file's (UTF-8 or ASCII).
  h5_check(H5Tset_cset(mem.get(), H5Tget_cset(ftype.get())), "H5Tset_cset", path);
  if (h5_check(H5Tis_variable_str(ftype.get()), "H5Tis_variable_str", path) > 0) {
    h5_check(H5Tset_size(mem.get(), H5T_VARIABLE), "H5Tset_size", path);
    char* p = nullptr;
    h5_check(H5Aread(a.get(), mem.get(), &p), "H5Aread", path);
    v = p ? p : "";
    H5free_memory(p);
  } else {  // fixed length (written by another tool): may lack the terminating NUL
    const std::size_t n = H5Tget_size(ftype.get());
    std::string buf(n + 1, '\0');
    h5_check(H5Tset_size(mem.get(), n + 1), "H5Tset_size", path);
    h5_check(H5Aread(a.get(), mem.get(), &buf[0]), "H5Aread", path);
    v.assign(buf.c_str());
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// Groups and datasets

H5Id h5_create_group(hid_t loc, const std::string& name, const std::string& path) {
  return h5_own(H5Gcreate2(loc, name.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Gclose, "H5Gcreate2",
                path + " " + name);
}

H5Id h5_create_dataset(hid_t loc, const std::string& name, hid_t file_type, const std::vector<hsize_t>& dims,
                       const std::string& path, hid_t lcpl, hid_t dcpl) {
  H5Id space = dims.empty() ? h5_own(H5Screate(H5S_SCALAR), H5Sclose, "H5Screate", path)
                            : h5_own(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr),
                                     H5Sclose, "H5Screate_simple", path);
  return h5_own(H5Dcreate2(loc, name.c_str(), file_type, space.get(), lcpl, dcpl, H5P_DEFAULT), H5Dclose,
                "H5Dcreate2", path + " " + name);
}

H5Id h5_open_dataset(hid_t loc, const std::string& name, const std::string& path) {
  const hid_t ds = H5Dopen2(loc, name.c_str(), H5P_DEFAULT);
  if (ds < 0) throw Error(path + ": no dataset '" + name + "'");
  return H5Id(ds, H5Dclose);
}

std::vector<hsize_t> h5_dims(hid_t ds, const std::string& path) {
  H5Id space = h5_own(H5Dget_space(ds), H5Sclose, "H5Dget_space", path);
  const int rank = h5_check(H5Sget_simple_extent_ndims(space.get()), "H5Sget_simple_extent_ndims", path);
  std::vector<hsize_t> d(static_cast<std::size_t>(rank));
  h5_check(H5Sget_simple_extent_dims(space.get(), d.data(), nullptr), "H5Sget_simple_extent_dims", path);
  return d;
}

std::int64_t h5_length_1d(hid_t loc, const std::string& name, H5T_class_t cls, const std::string& path) {
  if (!h5_link_exists(loc, name)) return -1;
  if (h5_check(H5Oexists_by_name(loc, name.c_str(), H5P_DEFAULT), "H5Oexists_by_name", path) <= 0) return -1;
  H5Id obj = h5_own(H5Oopen(loc, name.c_str(), H5P_DEFAULT), H5Oclose, "H5Oopen", path);
  if (H5Iget_type(obj.get()) != H5I_DATASET) return -1;
  H5Id ds = h5_own(H5Dopen2(loc, name.c_str(), H5P_DEFAULT), H5Dclose, "H5Dopen2", path);
  H5Id type = h5_own(H5Dget_type(ds.get()), H5Tclose, "H5Dget_type", path);
  if (H5Tget_class(type.get()) != cls) return -1;
  const std::vector<hsize_t> d = h5_dims(ds.get(), path);
  return d.size() == 1 ? static_cast<std::int64_t>(d[0]) : -1;
}

void h5_write_1d(hid_t loc, const std::string& name, hid_t file_type, hid_t mem_type, const void* data,
                 std::uint64_t n, const std::string& path) {
  H5Id ds = h5_create_dataset(loc, name, file_type, {static_cast<hsize_t>(n)}, path);
  if (n > 0) h5_check(H5Dwrite(ds.get(), mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data), "H5Dwrite", path);
}

void h5_write_strings(hid_t loc, const std::string& name, const std::vector<std::string>& v, const std::string& path) {
  std::vector<const char*> p(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) p[i] = v[i].c_str();
  H5Id t = h5_string_type(path);
  h5_write_1d(loc, name, t.get(), t.get(), p.data(), v.size(), path);
}

namespace {
// The file and memory selections of a 1-D range list; returns the element count.
hsize_t select_ranges(hid_t ds, const std::vector<std::pair<hsize_t, hsize_t>>& ranges, H5Id& fspace, H5Id& mspace,
                      const std::string& path) {
  fspace = h5_own(H5Dget_space(ds), H5Sclose, "H5Dget_space", path);
  h5_check(H5Sselect_none(fspace.get()), "H5Sselect_none", path);
  hsize_t total = 0;
  for (const auto& [start, count] : ranges) {
    if (count == 0) continue;
    h5_check(H5Sselect_hyperslab(fspace.get(), H5S_SELECT_OR, &start, nullptr, &count, nullptr),
             "H5Sselect_hyperslab", path);
    total += count;
  }
  const hsize_t mdim = std::max<hsize_t>(total, 1);
  mspace = h5_own(H5Screate_simple(1, &mdim, nullptr), H5Sclose, "H5Screate_simple", path);
  if (total == 0) h5_check(H5Sselect_none(mspace.get()), "H5Sselect_none", path);
  return total;
}
}  // namespace

void h5_read_ranges(hid_t ds, hid_t mem_type, const std::vector<std::pair<hsize_t, hsize_t>>& ranges, void* buf,
                    hid_t dxpl, bool take_part, const std::string& path) {
  H5Id fspace, mspace;
  const hsize_t total = select_ranges(ds, ranges, fspace, mspace, path);
  if (total > 0 || take_part)
    h5_check(H5Dread(ds, mem_type, mspace.get(), fspace.get(), dxpl, buf), "H5Dread", path);
}

void h5_write_ranges(hid_t ds, hid_t mem_type, const std::vector<std::pair<hsize_t, hsize_t>>& ranges, const void* buf,
                     hid_t dxpl, bool take_part, const std::string& path) {
  H5Id fspace, mspace;
  const hsize_t total = select_ranges(ds, ranges, fspace, mspace, path);
  if (total > 0 || take_part)
    h5_check(H5Dwrite(ds, mem_type, mspace.get(), fspace.get(), dxpl, buf), "H5Dwrite", path);
}

// ---------------------------------------------------------------------------------------------
// MPI-IO

H5Id h5_mpio_fapl(MPI_Comm comm, H5Metadata metadata, const std::string& path) {
  H5Id fapl = h5_own(H5Pcreate(H5P_FILE_ACCESS), H5Pclose, "H5Pcreate", path);
  h5_check(H5Pset_fapl_mpio(fapl.get(), comm, MPI_INFO_NULL), "H5Pset_fapl_mpio", path);
  if (metadata == H5Metadata::Collective) {
    h5_check(H5Pset_all_coll_metadata_ops(fapl.get(), true), "H5Pset_all_coll_metadata_ops", path);
    h5_check(H5Pset_coll_metadata_write(fapl.get(), true), "H5Pset_coll_metadata_write", path);
  }
  return fapl;
}

H5Id h5_mpio_dxpl(H5Transfer transfer, const std::string& path) {
  H5Id dxpl = h5_own(H5Pcreate(H5P_DATASET_XFER), H5Pclose, "H5Pcreate", path);
  if (transfer == H5Transfer::Collective) {
    h5_check(H5Pset_dxpl_mpio(dxpl.get(), H5FD_MPIO_COLLECTIVE), "H5Pset_dxpl_mpio", path);
    h5_check(H5Pset_dxpl_mpio_collective_opt(dxpl.get(), H5FD_MPIO_INDIVIDUAL_IO), "H5Pset_dxpl_mpio_collective_opt",
             path);
  } else {
    h5_check(H5Pset_dxpl_mpio(dxpl.get(), H5FD_MPIO_INDEPENDENT), "H5Pset_dxpl_mpio", path);
  }
  return dxpl;
}

// An MPI communicator with comm's ranks in comm's order (mpi_comm_of), freed on destruction
// unless an exception unwinds (freeing is collective: see H5Id).
class H5ParallelFile::MpiComm {
 public:
  explicit MpiComm(Comm& comm) : comm_(mpi_comm_of(comm)), unwinding_(std::uncaught_exceptions()) {}
  ~MpiComm() {
    if (std::uncaught_exceptions() > unwinding_) return;
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized && comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
  }
  MpiComm(const MpiComm&) = delete;
  MpiComm& operator=(const MpiComm&) = delete;
  MPI_Comm get() const { return comm_; }

 private:
  MPI_Comm comm_ = MPI_COMM_NULL;
  int unwinding_ = 0;
};

H5ParallelFile::H5ParallelFile(Comm& comm, const std::string& path, Access access, H5Metadata metadata)
    : path_(path), comm_(std::make_unique<MpiComm>(comm)) {
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);  // every call is checked; no stack dumps on stderr
  const H5Id fapl = h5_mpio_fapl(comm_->get(), metadata, path);
  if (access == Access::Create)
    file_ = h5_own(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.get()), H5Fclose, "H5Fcreate (MPI-IO)",
                   path, true);
  else
    file_ = h5_own(H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl.get()), H5Fclose, "H5Fopen (MPI-IO)", path, true);
}

H5ParallelFile::~H5ParallelFile() = default;  // file_ first (collective close unless unwinding), then comm_

}  // namespace th
