#pragma once
// Pieces shared by the checkpoint files (internal to io/checkpoint*.cpp): owned HDF5 ids, the
// attribute helpers, element-range selections, CRC-32 of pieces and their combination, and the
// serial verification.
#include <hdf5.h>

#include <cstdint>
#include <exception>
#include <string>
#include <utility>
#include <vector>

#include "th/io/checkpoint.hpp"
#include "th/io/h5_file.hpp"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "checkpoint CRC-32s are defined over little-endian float32 bytes; byte-swap before hashing here"
#endif

namespace th::ckpt {

// The three kinds of buffers, in this order everywhere: /model, /optimizer/exp_avg, ..._sq.
constexpr int kKinds = 3;
extern const char* const kKindGroup[kKinds];  // "model", "optimizer/exp_avg", "optimizer/exp_avg_sq"
inline std::string dataset_path(int kind, const std::string& name) {
  return std::string("/") + kKindGroup[kind] + "/" + name;
}

// An HDF5 id closed on destruction. A `collective` id (a file opened through MPI-IO) is NOT
// closed while an exception unwinds: its close is a collective call the other ranks may never
// make, and a hang there would keep main() from aborting the job. (Datasets, attributes,
// dataspaces close locally: their changes reach the file at the file's flush or close.)
class H5Id {
 public:
  using Closer = herr_t (*)(hid_t);
  H5Id() = default;
  H5Id(hid_t id, Closer closer, bool collective)
      : id_(id), close_(closer), collective_(collective), unwinding_(std::uncaught_exceptions()) {}
  ~H5Id() {
    if (collective_ && std::uncaught_exceptions() > unwinding_) return;
    if (id_ >= 0 && close_) close_(id_);
  }
  H5Id(H5Id&& o) noexcept
      : id_(std::exchange(o.id_, -1)), close_(o.close_), collective_(o.collective_), unwinding_(o.unwinding_) {}
  H5Id& operator=(H5Id&& o) noexcept {
    if (this != &o) {
      if (id_ >= 0 && close_) close_(id_);
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
  // Closes now and checks the result (a file's close is where its last writes happen).
  void close(const char* call, const std::string& path) {
    const hid_t id = std::exchange(id_, -1);
    if (id >= 0 && close_) h5_check(close_(id), call, path);
  }

 private:
  hid_t id_ = -1;
  Closer close_ = nullptr;
  bool collective_ = false;
  int unwinding_ = 0;
};

inline H5Id own(hid_t id, H5Id::Closer closer, const char* call, const std::string& path, bool collective = false) {
  return H5Id(h5_check(id, call, path), closer, collective);
}

// True if every link of the absolute path exists (a missing group is "no", not an error).
bool link_exists(hid_t file, const std::string& path);

// Attributes (scalar). put_* create them (collectively on an MPI-IO file: same value on every
// rank); get_* return false when the attribute is missing or of another class.
void put_attr(hid_t obj, const std::string& name, std::int64_t v, const std::string& path);
void put_attr_u64(hid_t obj, const std::string& name, std::uint64_t v, const std::string& path);
void put_attr_u32(hid_t obj, const std::string& name, std::uint32_t v, const std::string& path);
void put_attr(hid_t obj, const std::string& name, double v, const std::string& path);
void put_attr(hid_t obj, const std::string& name, const std::string& v, const std::string& path);
bool get_attr(hid_t obj, const std::string& name, std::int64_t& v, const std::string& path);
bool get_attr(hid_t obj, const std::string& name, std::uint64_t& v, const std::string& path);
bool get_attr(hid_t obj, const std::string& name, double& v, const std::string& path);
bool get_attr(hid_t obj, const std::string& name, std::string& v, const std::string& path);

// The state attributes of the root group (false + the missing name in *missing).
void put_state(hid_t file, const CheckpointState& s, const std::string& created, const std::string& path);
bool get_state(hid_t file, CheckpointState& s, std::string* missing, const std::string& path);

// The checksum of the root attributes (io/checkpoint_state_crc.cpp): CRC-32 over every root
// attribute but state_crc32 itself, in name order. state_crc computes it from the file (false and
// *why when an attribute is of a kind a checkpoint never holds); put_state_crc writes it after all
// other root attributes (collectively on an MPI-IO file); check_state_crc returns "" when the
// stored value matches, else what is wrong. Files of format_version 1 have none.
constexpr const char* kStateCrcAttr = "state_crc32";
bool state_crc(hid_t file, std::uint32_t& crc, std::string* why, const std::string& path);
void put_state_crc(hid_t file, const std::string& path);
std::string check_state_crc(hid_t file, const std::string& path);

// Dataset dims of a tensor's shape ({} = scalar).
std::vector<hsize_t> dims_of(const CheckpointTensor& t);
std::string shape_str(const std::vector<hsize_t>& dims);

// Selects the row-major element range [a, b) of a dataspace of `dims` (a union of at most
// 2 * rank - 1 blocks; HDF5 walks a selection in row-major file order, so it maps onto a
// contiguous memory range). An empty range selects nothing.
void select_range(hid_t space, const std::vector<hsize_t>& dims, std::uint64_t a, std::uint64_t b,
                  const std::string& path);

// Writes / reads the elements [a, b) of a float32 dataset from / into buf[0, b - a), with
// transfer properties dxpl. Collective callers with nothing to move pass a == b and still call
// (an empty selection takes part in the collective operation); buf may then be null.
void write_range(hid_t ds, const std::vector<hsize_t>& dims, std::uint64_t a, std::uint64_t b, const float* buf,
                 hid_t dxpl, const std::string& path);
void read_range(hid_t ds, const std::vector<hsize_t>& dims, std::uint64_t a, std::uint64_t b, float* buf,
                hid_t dxpl, const std::string& path);

// CRC-32 (zlib's, = Python's zlib.crc32) of n floats' bytes, and of two pieces joined.
std::uint32_t crc_floats(const float* p, std::int64_t n);
std::uint32_t crc_join(std::uint32_t first, std::uint32_t second, std::int64_t second_floats);

// Problems with the tensor list itself ("" if none): sizes, names usable as HDF5 paths, duplicates.
std::string check_tensor_list(const std::vector<CheckpointTensor>& tensors);

// The serial checks of verify_checkpoint; checksums = false stops after the structure (cheap).
std::string verify_file(const std::string& path, const std::vector<CheckpointTensor>& expected, bool checksums);

}  // namespace th::ckpt
