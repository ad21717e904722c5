#pragma once
// A thin serial HDF5 file used by one rank at a time (metrics, plan reports, test exchange files):
// datasets by path ("grads/encoder/layer_0/..."; groups made on the way), attributes on the root,
// every HDF5 call checked. Built on th/io/h5.hpp (which also has the MPI-IO file, H5ParallelFile).
#include <cstdint>
#include <string>
#include <vector>

#include "th/io/h5.hpp"

namespace th {

class H5File {
 public:
  enum class Mode { Create, Read, Append };
  H5File(const std::string& path, Mode mode);
  H5File(const H5File&) = delete;
  H5File& operator=(const H5File&) = delete;

  hid_t id() const { return file_.get(); }
  const std::string& path() const { return path_; }
  bool exists(const std::string& name) const;

  void write(const std::string& name, const std::vector<double>& v, const std::vector<hsize_t>& dims);
  void write(const std::string& name, const std::vector<float>& v, const std::vector<hsize_t>& dims);
  void write(const std::string& name, const std::vector<int>& v, const std::vector<hsize_t>& dims);
  void write_string(const std::string& name, const std::string& s);
  std::vector<double> read_doubles(const std::string& name, std::vector<hsize_t>* dims = nullptr) const;
  std::vector<int> read_ints(const std::string& name, std::vector<hsize_t>* dims = nullptr) const;
  std::vector<std::string> list(const std::string& group) const;  // dataset paths under group, recursive

  void set_attr(const std::string& name, double v);
  void set_attr(const std::string& name, std::int64_t v);
  void set_attr(const std::string& name, const std::string& v);
  void flush();

 private:
  void ensure_parent(const std::string& name);
  std::string path_;
  H5Id file_;
};

}  // namespace th
