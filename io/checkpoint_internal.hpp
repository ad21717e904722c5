#pragma once
// Pieces shared by the checkpoint files (internal to io/checkpoint*.cpp): the state attributes,
// element-range selections, CRC-32 of pieces and their combination, the ranks' pieces of the
// tensors, the checkpoint folder, and the serial verification. Owned ids, attributes and the
// MPI-IO set-up: th/io/h5.hpp.
#include <hdf5.h>

#include <cstdint>
#include <string>
#include <vector>

#include "th/io/checkpoint.hpp"
#include "th/io/h5.hpp"

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
