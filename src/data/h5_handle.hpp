#pragma once
// An HDF5 id that closes itself (dataset, dataspace, type, attribute, property list, file), and
// checked opening: every id comes through h5_check, which throws th::Error naming the call and
// the file. Internal to src/data.
#include <hdf5.h>

#include <string>
#include <utility>

#include "th/io/h5_file.hpp"

namespace th {

class H5Handle {
 public:
  using Closer = herr_t (*)(hid_t);
  H5Handle() = default;
  H5Handle(hid_t id, Closer close) : id_(id), close_(close) {}
  ~H5Handle() { reset(); }
  H5Handle(H5Handle&& o) noexcept : id_(std::exchange(o.id_, -1)), close_(o.close_) {}
  H5Handle& operator=(H5Handle&& o) noexcept {
    if (this != &o) {
      reset();
      id_ = std::exchange(o.id_, -1);
      close_ = o.close_;
    }
    return *this;
  }
  H5Handle(const H5Handle&) = delete;
  H5Handle& operator=(const H5Handle&) = delete;
  hid_t get() const { return id_; }
  hid_t release() { return std::exchange(id_, -1); }  // to close it by hand and check the result
  void reset() {
    if (id_ >= 0 && close_) close_(id_);  // a failing close has nobody to report to
    id_ = -1;
  }

 private:
  hid_t id_ = -1;
  Closer close_ = nullptr;
};

// h5_check for an id, wrapped with its closer.
inline H5Handle h5_owned(hid_t id, H5Handle::Closer close, const char* call, const std::string& path) {
  return H5Handle(h5_check(id, call, path), close);
}

}  // namespace th
