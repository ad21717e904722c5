// The checksum of a checkpoint's root attributes (state_crc32): the state a run resumes from
// (step, epoch, sampler position, RNG counter, loss scale, deck, ...) is covered like the tensors.
// Defined over every root attribute but state_crc32 itself, so an attribute added later is covered
// without a change here. Definition (docs/checkpoint-format.md, with a Python equivalent): CRC-32
// over the attributes in byte order of their names, each contributing
//   name (UTF-8) | 0x00 | length of the value bytes (uint64 LE) | value bytes
// where an integer is its 8 bytes little-endian (two's complement, any width or sign in the
// file), a float its float64 little-endian bytes, a string its UTF-8 bytes.
#include <zlib.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstring>

#include "checkpoint_internal.hpp"
#include "th/core/error.hpp"

namespace th::ckpt {

namespace {

herr_t collect_name(hid_t, const char* name, const H5A_info_t*, void* out) {
  static_cast<std::vector<std::string>*>(out)->push_back(name);
  return 0;
}

void append_le64(std::string& out, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) out += static_cast<char>((v >> (8 * i)) & 0xff);
}

// The value bytes of one scalar root attribute, or false (and *why) if it is of a kind this
// format never writes (an array, a compound, ...).
bool value_bytes(hid_t file, const std::string& name, std::string& out, std::string* why, const std::string& path) {
  H5Id a = h5_own(H5Aopen(file, name.c_str(), H5P_DEFAULT), H5Aclose, "H5Aopen", path);
  H5Id type = h5_own(H5Aget_type(a.get()), H5Tclose, "H5Aget_type", path);
  H5Id space = h5_own(H5Aget_space(a.get()), H5Sclose, "H5Aget_space", path);
  const H5T_class_t cls = H5Tget_class(type.get());
  if (H5Sget_simple_extent_type(space.get()) != H5S_SCALAR) {
    *why = "root attribute " + name + " is not a scalar";
    return false;
  }
  if (cls == H5T_STRING) {
    a.close("H5Aclose", path);
    std::string s;
    if (!h5_get_attr(file, name, s, path)) {
      *why = "root attribute " + name + " cannot be read as a string";
      return false;
    }
    out = s;
    return true;
  }
  std::uint64_t bits = 0;
  if (cls == H5T_INTEGER) {
    if (H5Tget_sign(type.get()) == H5T_SGN_NONE) {
      h5_check(H5Aread(a.get(), H5T_NATIVE_UINT64, &bits), "H5Aread", path);
    } else {
      std::int64_t v = 0;
      h5_check(H5Aread(a.get(), H5T_NATIVE_INT64, &v), "H5Aread", path);
      std::memcpy(&bits, &v, 8);
    }
  } else if (cls == H5T_FLOAT) {
    double v = 0;
    h5_check(H5Aread(a.get(), H5T_NATIVE_DOUBLE, &v), "H5Aread", path);
    std::memcpy(&bits, &v, 8);  // little-endian host (checked in checkpoint_internal.hpp)
  } else {
    *why = "root attribute " + name + " is of a type a checkpoint never holds";
    return false;
  }
  out.clear();
  append_le64(out, bits);
  return true;
}

}  // namespace

bool state_crc(hid_t file, std::uint32_t& crc, std::string* why, const std::string& path) {
  std::vector<std::string> names;
  hsize_t idx = 0;
  h5_check(H5Aiterate2(file, H5_INDEX_NAME, H5_ITER_INC, &idx, collect_name, &names), "H5Aiterate2", path);
  std::sort(names.begin(), names.end());  // byte order, whatever order the file's index keeps
  uLong c = crc32_z(0, nullptr, 0);
  std::string value, record;
  for (const std::string& name : names) {
    if (name == kStateCrcAttr) continue;
    if (!value_bytes(file, name, value, why, path)) return false;
    record.assign(name);
    record += '\0';
    append_le64(record, value.size());
    record += value;
    c = crc32_z(c, reinterpret_cast<const Bytef*>(record.data()), record.size());
  }
  crc = static_cast<std::uint32_t>(c);
  return true;
}

void put_state_crc(hid_t file, const std::string& path) {
  std::uint32_t crc = 0;
  std::string why;
  if (!state_crc(file, crc, &why, path)) throw Error(path + ": " + why);
  h5_put_attr_u32(file, kStateCrcAttr, crc, path);
}

std::string check_state_crc(hid_t file, const std::string& path) {
  std::int64_t stored = -1;
  if (!h5_get_attr(file, kStateCrcAttr, stored, path)) return std::string("missing attribute ") + kStateCrcAttr;
  std::uint32_t crc = 0;
  std::string why;
  if (!state_crc(file, crc, &why, path)) return why;
  if (static_cast<std::uint32_t>(stored) == crc) return "";
  char b[160];
  std::snprintf(b, sizeof b,
                "bad checksum of the state attributes: %s is 0x%08" PRIx32 " but step, epoch, deck, ... give 0x%08" PRIx32,
                kStateCrcAttr, static_cast<std::uint32_t>(stored), crc);
  return b;
}

}  // namespace th::ckpt
