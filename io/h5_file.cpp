#include "th/io/h5_file.hpp"

#include "th/core/error.hpp"

namespace th {

namespace {
template <typename T> hid_t mem_type();
template <> hid_t mem_type<double>() { return H5T_NATIVE_DOUBLE; }
template <> hid_t mem_type<float>() { return H5T_NATIVE_FLOAT; }
template <> hid_t mem_type<int>() { return H5T_NATIVE_INT; }

template <typename T>
void write_dataset(hid_t file, const std::string& name, const std::vector<T>& v, const std::vector<hsize_t>& dims,
                   const std::string& path) {
  hsize_t n = 1;
  for (auto d : dims) n *= d;
  if (n != v.size()) throw Error("HDF5 write of " + name + ": dims do not match the data size");
  H5Id ds = h5_create_dataset(file, name, mem_type<T>(), dims, path);
  h5_check(H5Dwrite(ds.get(), mem_type<T>(), H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data()), "H5Dwrite", path);
}
}  // namespace

H5File::H5File(const std::string& path, Mode mode) : path_(path) {
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);  // every call is checked here; no stack dumps on stderr
  const hid_t f = mode == Mode::Create
                      ? H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT)
                      : H5Fopen(path.c_str(), mode == Mode::Read ? H5F_ACC_RDONLY : H5F_ACC_RDWR, H5P_DEFAULT);
  if (f < 0) throw Error(path + ": cannot " + (mode == Mode::Create ? "create" : "open") + " HDF5 file");
  file_ = H5Id(f, H5Fclose);
}

bool H5File::exists(const std::string& name) const { return h5_link_exists(file_.get(), name); }

void H5File::ensure_parent(const std::string& name) {
  std::size_t pos = 0;
  while ((pos = name.find('/', pos + 1)) != std::string::npos) {
    const std::string g = name.substr(0, pos);
    if (H5Lexists(file_.get(), g.c_str(), H5P_DEFAULT) <= 0) h5_create_group(file_.get(), g, path_);
  }
}

void H5File::write(const std::string& name, const std::vector<double>& v, const std::vector<hsize_t>& dims) {
  ensure_parent(name);
  write_dataset(file_.get(), name, v, dims, path_);
}
void H5File::write(const std::string& name, const std::vector<float>& v, const std::vector<hsize_t>& dims) {
  ensure_parent(name);
  write_dataset(file_.get(), name, v, dims, path_);
}
void H5File::write(const std::string& name, const std::vector<int>& v, const std::vector<hsize_t>& dims) {
  ensure_parent(name);
  write_dataset(file_.get(), name, v, dims, path_);
}

void H5File::write_string(const std::string& name, const std::string& s) {
  ensure_parent(name);
  H5Id type = h5_string_type(path_);
  H5Id ds = h5_create_dataset(file_.get(), name, type.get(), {}, path_);
  const char* p = s.c_str();
  h5_check(H5Dwrite(ds.get(), type.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, &p), "H5Dwrite", path_);
}

std::vector<double> H5File::read_doubles(const std::string& name, std::vector<hsize_t>* dims) const {
  return h5_read_all<double>(file_.get(), name, H5T_NATIVE_DOUBLE, H5P_DEFAULT, path_, dims);
}
std::vector<int> H5File::read_ints(const std::string& name, std::vector<hsize_t>* dims) const {
  return h5_read_all<int>(file_.get(), name, H5T_NATIVE_INT, H5P_DEFAULT, path_, dims);
}

namespace {
herr_t collect(hid_t, const char* name, const H5O_info_t* info, void* out) {
  if (info->type == H5O_TYPE_DATASET) static_cast<std::vector<std::string>*>(out)->push_back(name);
  return 0;
}
}  // namespace

std::vector<std::string> H5File::list(const std::string& group) const {
  std::vector<std::string> names;
  const hid_t g = H5Gopen2(file_.get(), group.c_str(), H5P_DEFAULT);
  if (g < 0) throw Error(path_ + ": no group '" + group + "'");
  const H5Id owned(g, H5Gclose);
  h5_check(H5Ovisit2(g, H5_INDEX_NAME, H5_ITER_INC, collect, &names, H5O_INFO_BASIC), "H5Ovisit2", path_);
  return names;
}

namespace {
// An attribute set again replaces the old one.
hid_t fresh(hid_t file, const std::string& name, const std::string& path) {
  if (H5Aexists(file, name.c_str()) > 0) h5_check(H5Adelete(file, name.c_str()), "H5Adelete", path);
  return file;
}
}  // namespace

void H5File::set_attr(const std::string& name, double v) {
  h5_put_attr(fresh(file_.get(), name, path_), name, v, path_);
}
void H5File::set_attr(const std::string& name, std::int64_t v) {
  h5_put_attr(fresh(file_.get(), name, path_), name, v, path_);
}
void H5File::set_attr(const std::string& name, const std::string& v) {
  h5_put_attr(fresh(file_.get(), name, path_), name, v, path_);
}

void H5File::flush() { h5_check(H5Fflush(file_.get(), H5F_SCOPE_GLOBAL), "H5Fflush", path_); }

}  // namespace th
