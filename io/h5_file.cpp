#include "th/io/h5_file.hpp"

#include "th/core/error.hpp"

namespace th {

hid_t h5_check(hid_t status, const char* call, const std::string& path) {
  if (status < 0) throw Error(std::string("HDF5 ") + call + " failed on " + path);
  return status;
}

#define TH_H5(call) h5_check((call), #call, path_)

namespace {
template <typename T> hid_t mem_type();
template <> hid_t mem_type<double>() { return H5T_NATIVE_DOUBLE; }
template <> hid_t mem_type<float>() { return H5T_NATIVE_FLOAT; }
template <> hid_t mem_type<int>() { return H5T_NATIVE_INT; }

template <typename T>
void write_dataset(H5File& f, hid_t parent, const std::string& leaf, const std::vector<T>& v,
                   const std::vector<hsize_t>& dims) {
  hsize_t n = 1;
  for (auto d : dims) n *= d;
  if (n != v.size()) throw Error("HDF5 write of " + leaf + ": dims do not match the data size");
  hid_t space = h5_check(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), "H5Screate_simple", f.path());
  hid_t ds = h5_check(H5Dcreate2(parent, leaf.c_str(), mem_type<T>(), space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
                      "H5Dcreate2", f.path());
  h5_check(H5Dwrite(ds, mem_type<T>(), H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data()), "H5Dwrite", f.path());
  H5Dclose(ds);
  H5Sclose(space);
}

template <typename T>
std::vector<T> read_dataset(hid_t file, const std::string& name, const std::string& path, std::vector<hsize_t>* dims) {
  hid_t ds = H5Dopen2(file, name.c_str(), H5P_DEFAULT);
  if (ds < 0) throw Error(path + ": no dataset '" + name + "'");
  hid_t space = H5Dget_space(ds);
  const int rank = H5Sget_simple_extent_ndims(space);
  std::vector<hsize_t> d(static_cast<std::size_t>(std::max(rank, 0)));
  H5Sget_simple_extent_dims(space, d.data(), nullptr);
  hsize_t n = 1;
  for (auto x : d) n *= x;
  std::vector<T> v(n);
  h5_check(H5Dread(ds, mem_type<T>(), H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data()), "H5Dread", path);
  H5Sclose(space);
  H5Dclose(ds);
  if (dims) *dims = d;
  return v;
}
}  // namespace

H5File::H5File(const std::string& path, Mode mode) : path_(path) {
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);  // every call is checked here; no stack dumps on stderr
  if (mode == Mode::Create) {
    file_ = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  } else {
    file_ = H5Fopen(path.c_str(), mode == Mode::Read ? H5F_ACC_RDONLY : H5F_ACC_RDWR, H5P_DEFAULT);
  }
  if (file_ < 0) throw Error(path + ": cannot " + (mode == Mode::Create ? "create" : "open") + " HDF5 file");
}

H5File::~H5File() {
  if (file_ >= 0) H5Fclose(file_);
}

bool H5File::exists(const std::string& name) const {
  // Walk the path so that a missing intermediate group is "no", not an error.
  std::string sofar;
  std::size_t start = 0;
  while (start <= name.size()) {
    const std::size_t slash = name.find('/', start);
    sofar = name.substr(0, slash == std::string::npos ? name.size() : slash);
    if (!sofar.empty() && H5Lexists(file_, sofar.c_str(), H5P_DEFAULT) <= 0) return false;
    if (slash == std::string::npos) break;
    start = slash + 1;
  }
  return true;
}

hid_t H5File::ensure_parent(const std::string& name) {
  std::size_t pos = 0;
  while ((pos = name.find('/', pos + 1)) != std::string::npos) {
    const std::string g = name.substr(0, pos);
    if (H5Lexists(file_, g.c_str(), H5P_DEFAULT) <= 0) H5Gclose(TH_H5(H5Gcreate2(file_, g.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)));
  }
  return file_;
}

void H5File::write(const std::string& name, const std::vector<double>& v, const std::vector<hsize_t>& dims) {
  write_dataset(*this, ensure_parent(name), name, v, dims);
}
void H5File::write(const std::string& name, const std::vector<float>& v, const std::vector<hsize_t>& dims) {
  write_dataset(*this, ensure_parent(name), name, v, dims);
}
void H5File::write(const std::string& name, const std::vector<int>& v, const std::vector<hsize_t>& dims) {
  write_dataset(*this, ensure_parent(name), name, v, dims);
}

void H5File::write_string(const std::string& name, const std::string& s) {
  ensure_parent(name);
  hid_t type = TH_H5(H5Tcopy(H5T_C_S1));
  TH_H5(H5Tset_size(type, H5T_VARIABLE));
  TH_H5(H5Tset_cset(type, H5T_CSET_UTF8));
  hid_t space = TH_H5(H5Screate(H5S_SCALAR));
  hid_t ds = TH_H5(H5Dcreate2(file_, name.c_str(), type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
  const char* p = s.c_str();
  TH_H5(H5Dwrite(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, &p));
  H5Dclose(ds);
  H5Sclose(space);
  H5Tclose(type);
}

std::vector<double> H5File::read_doubles(const std::string& name, std::vector<hsize_t>* dims) const {
  return read_dataset<double>(file_, name, path_, dims);
}
std::vector<int> H5File::read_ints(const std::string& name, std::vector<hsize_t>* dims) const {
  return read_dataset<int>(file_, name, path_, dims);
}

namespace {
herr_t collect(hid_t, const char* name, const H5O_info_t* info, void* out) {
  if (info->type == H5O_TYPE_DATASET) static_cast<std::vector<std::string>*>(out)->push_back(name);
  return 0;
}
}  // namespace

std::vector<std::string> H5File::list(const std::string& group) const {
  std::vector<std::string> names;
  hid_t g = H5Gopen2(file_, group.c_str(), H5P_DEFAULT);
  if (g < 0) throw Error(path_ + ": no group '" + group + "'");
  H5Ovisit2(g, H5_INDEX_NAME, H5_ITER_INC, collect, &names, H5O_INFO_BASIC);
  H5Gclose(g);
  return names;
}

namespace {
void put_attr(hid_t file, const std::string& name, hid_t type, const void* value, const std::string& path) {
  if (H5Aexists(file, name.c_str()) > 0) H5Adelete(file, name.c_str());
  hid_t space = h5_check(H5Screate(H5S_SCALAR), "H5Screate", path);
  hid_t a = h5_check(H5Acreate2(file, name.c_str(), type, space, H5P_DEFAULT, H5P_DEFAULT), "H5Acreate2", path);
  h5_check(H5Awrite(a, type, value), "H5Awrite", path);
  H5Aclose(a);
  H5Sclose(space);
}
}  // namespace

void H5File::set_attr(const std::string& name, double v) { put_attr(file_, name, H5T_NATIVE_DOUBLE, &v, path_); }
void H5File::set_attr(const std::string& name, std::int64_t v) { put_attr(file_, name, H5T_NATIVE_INT64, &v, path_); }
void H5File::set_attr(const std::string& name, const std::string& v) {
  hid_t type = TH_H5(H5Tcopy(H5T_C_S1));
  TH_H5(H5Tset_size(type, H5T_VARIABLE));
  TH_H5(H5Tset_cset(type, H5T_CSET_UTF8));
  const char* p = v.c_str();
  put_attr(file_, name, type, &p, path_);
  H5Tclose(type);
}

void H5File::flush() { TH_H5(H5Fflush(file_, H5F_SCOPE_GLOBAL)); }

}  // namespace th
