#include "h5_attr.hpp"

#include "h5_handle.hpp"
#include "th/core/error.hpp"

namespace th {

namespace {
H5Handle utf8_string_type(const std::string& path) {
  H5Handle t = h5_owned(H5Tcopy(H5T_C_S1), H5Tclose, "H5Tcopy", path);
  h5_check(H5Tset_size(t.get(), H5T_VARIABLE), "H5Tset_size", path);
  h5_check(H5Tset_cset(t.get(), H5T_CSET_UTF8), "H5Tset_cset", path);
  return t;
}

void put(hid_t obj, const std::string& name, hid_t type, const void* value, const std::string& path) {
  H5Handle space = h5_owned(H5Screate(H5S_SCALAR), H5Sclose, "H5Screate", path);
  H5Handle a = h5_owned(H5Acreate2(obj, name.c_str(), type, space.get(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose,
                        "H5Acreate2", path);
  h5_check(H5Awrite(a.get(), type, value), "H5Awrite", path);
}

// The attribute if it exists and its type is of class cls, else an empty handle.
H5Handle open_attr(hid_t obj, const std::string& name, H5T_class_t cls, const std::string& path) {
  if (h5_check(H5Aexists(obj, name.c_str()), "H5Aexists", path) <= 0) return {};
  H5Handle a = h5_owned(H5Aopen(obj, name.c_str(), H5P_DEFAULT), H5Aclose, "H5Aopen", path);
  H5Handle t = h5_owned(H5Aget_type(a.get()), H5Tclose, "H5Aget_type", path);
  if (H5Tget_class(t.get()) != cls) return {};
  return a;
}
}  // namespace

void h5_put_attr(hid_t obj, const std::string& name, const std::string& value, const std::string& path) {
  H5Handle t = utf8_string_type(path);
  const char* p = value.c_str();
  put(obj, name, t.get(), &p, path);
}
void h5_put_attr(hid_t obj, const std::string& name, std::int64_t value, const std::string& path) {
  put(obj, name, H5T_STD_I64LE, &value, path);
}
void h5_put_attr(hid_t obj, const std::string& name, double value, const std::string& path) {
  put(obj, name, H5T_IEEE_F64LE, &value, path);
}

bool h5_get_attr(hid_t obj, const std::string& name, std::string& value, const std::string& path) {
  H5Handle a = open_attr(obj, name, H5T_STRING, path);
  if (a.get() < 0) return false;
  H5Handle ftype = h5_owned(H5Aget_type(a.get()), H5Tclose, "H5Aget_type", path);
  const htri_t vlen = h5_check(H5Tis_variable_str(ftype.get()), "H5Tis_variable_str", path);
  if (vlen > 0) {
    H5Handle mtype = utf8_string_type(path);
    char* p = nullptr;
    h5_check(H5Aread(a.get(), mtype.get(), &p), "H5Aread", path);
    value = p ? p : "";
    H5free_memory(p);
  } else {  // fixed-length string (written by other tools)
    const std::size_t n = H5Tget_size(ftype.get());
    std::string buf(n, '\0');
    h5_check(H5Aread(a.get(), ftype.get(), &buf[0]), "H5Aread", path);
    value = buf.substr(0, buf.find('\0'));
  }
  return true;
}

bool h5_get_attr(hid_t obj, const std::string& name, std::int64_t& value, const std::string& path) {
  H5Handle a = open_attr(obj, name, H5T_INTEGER, path);
  if (a.get() < 0) return false;
  h5_check(H5Aread(a.get(), H5T_NATIVE_INT64, &value), "H5Aread", path);
  return true;
}

void h5_write_1d(hid_t loc, const std::string& name, hid_t file_type, hid_t mem_type, const void* data,
                 std::uint64_t n, const std::string& path) {
  const hsize_t dims[1] = {n};
  H5Handle space = h5_owned(H5Screate_simple(1, dims, nullptr), H5Sclose, "H5Screate_simple", path);
  H5Handle ds = h5_owned(H5Dcreate2(loc, name.c_str(), file_type, space.get(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
                         H5Dclose, "H5Dcreate2", path);
  if (n > 0) h5_check(H5Dwrite(ds.get(), mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data), "H5Dwrite", path);
}

void h5_write_strings(hid_t loc, const std::string& name, const std::vector<std::string>& v, const std::string& path) {
  std::vector<const char*> p(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) p[i] = v[i].c_str();
  H5Handle t = utf8_string_type(path);
  h5_write_1d(loc, name, t.get(), t.get(), p.data(), v.size(), path);
}

hid_t h5_make_group(hid_t loc, const std::string& name, const std::string& path) {
  return h5_check(H5Gcreate2(loc, name.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), "H5Gcreate2", path);
}

}  // namespace th
