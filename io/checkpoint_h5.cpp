// The checkpoint files' state attributes, range selections and the serial verification (find_checkpoint's checks).
#include <zlib.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <filesystem>
#include <mutex>
#include <set>

#include "checkpoint_internal.hpp"
#include "th/core/error.hpp"
#include "th/core/version.hpp"
#include "th/io/h5.hpp"

namespace th::ckpt {

const char* const kKindGroup[kKinds] = {"model", "optimizer/exp_avg", "optimizer/exp_avg_sq"};

void put_state(hid_t file, const CheckpointState& s, const std::string& created, const std::string& path) {
  h5_put_attr(file, "format", std::string("torch-handle checkpoint"), path);
  h5_put_attr(file, "format_version", kCheckpointFormatVersion, path);
  h5_put_attr(file, "created", created, path);
  h5_put_attr(file, "th_version", version_string(), path);
  h5_put_attr(file, "step", s.step, path);
  h5_put_attr(file, "epoch", s.epoch, path);
  h5_put_attr(file, "step_in_epoch", s.step_in_epoch, path);
  h5_put_attr_u64(file, "micro", s.micro, path);
  h5_put_attr(file, "loss_scale", s.loss_scale, path);
  h5_put_attr(file, "deck", s.deck, path);
  h5_put_attr(file, "world_size", static_cast<std::int64_t>(s.world_size), path);
  h5_put_attr(file, "zero_stage", static_cast<std::int64_t>(s.zero_stage), path);
  h5_put_attr(file, "optimizer_steps", s.optimizer_steps, path);
  h5_put_attr(file, "scaler_clean_steps", s.scaler_clean_steps, path);
  h5_put_attr(file, "scaler_hysteresis_left", s.scaler_hysteresis_left, path);
  h5_put_attr(file, "scaler_floor_overflows", s.scaler_floor_overflows, path);
  h5_put_attr(file, "scaler_skipped_steps", s.scaler_skipped_steps, path);
  if (!s.tokenizer_fingerprint.empty()) h5_put_attr(file, "tokenizer_fingerprint", s.tokenizer_fingerprint, path);
}

bool get_state(hid_t file, CheckpointState& s, std::string* missing, const std::string& path) {
  std::int64_t world = 0, stage = 0;
  const auto need = [&](bool ok, const char* name) {
    if (!ok && missing && missing->empty()) *missing = name;
    return ok;
  };
  // Every read is attempted (no short circuit): with collective metadata reads, every rank must
  // make the same calls whatever it finds.
  bool ok = need(h5_get_attr(file, "step", s.step, path), "step");
  ok = need(h5_get_attr(file, "epoch", s.epoch, path), "epoch") && ok;
  ok = need(h5_get_attr(file, "step_in_epoch", s.step_in_epoch, path), "step_in_epoch") && ok;
  ok = need(h5_get_attr(file, "micro", s.micro, path), "micro") && ok;
  ok = need(h5_get_attr(file, "loss_scale", s.loss_scale, path), "loss_scale") && ok;
  ok = need(h5_get_attr(file, "deck", s.deck, path), "deck") && ok;
  ok = need(h5_get_attr(file, "world_size", world, path), "world_size") && ok;
  ok = need(h5_get_attr(file, "zero_stage", stage, path), "zero_stage") && ok;
  s.world_size = static_cast<int>(world);
  s.zero_stage = static_cast<int>(stage);
  // Optional (mixed precision; absent in files of earlier versions). Every read still attempted.
  if (!h5_get_attr(file, "optimizer_steps", s.optimizer_steps, path)) s.optimizer_steps = -1;
  if (!h5_get_attr(file, "scaler_clean_steps", s.scaler_clean_steps, path)) s.scaler_clean_steps = 0;
  if (!h5_get_attr(file, "scaler_hysteresis_left", s.scaler_hysteresis_left, path)) s.scaler_hysteresis_left = 0;
  if (!h5_get_attr(file, "scaler_floor_overflows", s.scaler_floor_overflows, path)) s.scaler_floor_overflows = 0;
  if (!h5_get_attr(file, "scaler_skipped_steps", s.scaler_skipped_steps, path)) s.scaler_skipped_steps = 0;
  if (!h5_get_attr(file, "tokenizer_fingerprint", s.tokenizer_fingerprint, path)) s.tokenizer_fingerprint.clear();
  return ok;
}

std::vector<hsize_t> dims_of(const CheckpointTensor& t) {
  return std::vector<hsize_t>(t.shape.begin(), t.shape.end());
}

std::string shape_str(const std::vector<hsize_t>& dims) {
  std::string s = "[";
  for (std::size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
  return s + "]";
}

void select_range(hid_t space, const std::vector<hsize_t>& dims, std::uint64_t a, std::uint64_t b,
                  const std::string& path) {
  h5_check(H5Sselect_none(space), "H5Sselect_none", path);
  if (a >= b) return;
  if (dims.empty()) {  // scalar: its one element
    h5_check(H5Sselect_all(space), "H5Sselect_all", path);
    return;
  }
  const std::size_t n = dims.size();
  std::vector<std::uint64_t> stride(n, 1);  // elements per index step of each dimension
  for (std::size_t k = n - 1; k > 0; --k) stride[k - 1] = stride[k] * dims[k];
  std::vector<hsize_t> start(n), count(n);
  while (a < b) {
    // The outermost dimension j at whose step a is aligned and of which one whole step still fits:
    // the block takes as many steps of j as fit (without wrapping dimension j), all of the inner
    // dimensions, one index of the outer ones. Each block ends aligned one level further out, or
    // at b, so a range needs at most 2n - 1 blocks.
    std::size_t j = 0;
    while (!(a % stride[j] == 0 && a + stride[j] <= b)) ++j;  // ends at j = n - 1 (stride 1)
    for (std::size_t k = 0; k < n; ++k) {
      start[k] = (a / stride[k]) % dims[k];
      count[k] = k < j ? 1 : dims[k];
    }
    count[j] = std::min<std::uint64_t>((b - a) / stride[j], dims[j] - start[j]);
    h5_check(H5Sselect_hyperslab(space, H5S_SELECT_OR, start.data(), nullptr, count.data(), nullptr),
             "H5Sselect_hyperslab", path);
    a += count[j] * stride[j];
  }
}

namespace {
void transfer_range(hid_t ds, const std::vector<hsize_t>& dims, std::uint64_t a, std::uint64_t b, bool write,
                    const float* in, float* out, hid_t dxpl, const std::string& path) {
  H5Id fspace = h5_own(H5Dget_space(ds), H5Sclose, "H5Dget_space", path);
  select_range(fspace.get(), dims, a, b, path);
  const hsize_t m = std::max<hsize_t>(b > a ? b - a : 0, 1);
  H5Id mspace = h5_own(H5Screate_simple(1, &m, nullptr), H5Sclose, "H5Screate_simple", path);
  static float dummy = 0.0f;  // HDF5 wants a buffer even for an empty selection
  if (a >= b) {
    h5_check(H5Sselect_none(mspace.get()), "H5Sselect_none", path);
    in = out = &dummy;
  }
  if (write)
    h5_check(H5Dwrite(ds, H5T_NATIVE_FLOAT, mspace.get(), fspace.get(), dxpl, in), "H5Dwrite", path);
  else
    h5_check(H5Dread(ds, H5T_NATIVE_FLOAT, mspace.get(), fspace.get(), dxpl, out), "H5Dread", path);
}
}  // namespace

void write_range(hid_t ds, const std::vector<hsize_t>& dims, std::uint64_t a, std::uint64_t b, const float* buf,
                 hid_t dxpl, const std::string& path) {
  transfer_range(ds, dims, a, b, true, buf, nullptr, dxpl, path);
}

void read_range(hid_t ds, const std::vector<hsize_t>& dims, std::uint64_t a, std::uint64_t b, float* buf,
                hid_t dxpl, const std::string& path) {
  transfer_range(ds, dims, a, b, false, nullptr, buf, dxpl, path);
}

std::uint32_t crc_floats(const float* p, std::int64_t n) {
  if (n <= 0) return 0;
  return static_cast<std::uint32_t>(
      crc32_z(0, reinterpret_cast<const Bytef*>(p), static_cast<z_size_t>(n) * sizeof(float)));
}

std::uint32_t crc_join(std::uint32_t first, std::uint32_t second, std::int64_t second_floats) {
  return static_cast<std::uint32_t>(
      crc32_combine(first, second, static_cast<z_off_t>(second_floats) * static_cast<z_off_t>(sizeof(float))));
}

std::string check_tensor_list(const std::vector<CheckpointTensor>& tensors) {
  std::set<std::string> seen;
  for (const CheckpointTensor& t : tensors) {
    const std::string& n = t.name;
    if (n.empty() || n.front() == '/' || n.back() == '/' || n.find("//") != std::string::npos ||
        ("/" + n + "/").find("/./") != std::string::npos || ("/" + n + "/").find("/../") != std::string::npos)
      return "tensor name '" + n + "' is not a relative HDF5 path";
    if (!seen.insert(n).second) return "tensor '" + n + "' is listed twice";
    std::int64_t numel = 1;
    for (const std::int64_t d : t.shape) {
      if (d < 0) return "tensor '" + n + "' has a negative dimension";
      numel *= d;
    }
    if (numel != t.numel)
      return "tensor '" + n + "': numel " + std::to_string(t.numel) + " is not the product of its shape";
    if (t.offset < 0) return "tensor '" + n + "' has a negative offset";
  }
  return "";
}

namespace {
herr_t innermost_error(unsigned, const H5E_error2_t* e, void* out) {
  auto* s = static_cast<std::string*>(out);
  // Keep the message that says why (HDF5's "truncated file: eof = ..."), else the innermost one.
  if (e->desc && *e->desc && s->find("truncated") == std::string::npos) *s = e->desc;
  return 0;
}

herr_t collect_dataset(hid_t, const char* name, const H5O_info_t* info, void* out) {
  if (info->type == H5O_TYPE_DATASET) static_cast<std::vector<std::string>*>(out)->push_back(name);
  return 0;
}

std::string hex32(std::uint32_t v) {
  char b[16];
  std::snprintf(b, sizeof b, "0x%08" PRIx32, v);
  return b;
}

std::string verify_open_file(hid_t f, const std::string& path, const std::vector<CheckpointTensor>& expected,
                             bool checksums) {
  std::int64_t version = 0;
  if (!h5_get_attr(f, "format_version", version, path))
    return "missing attribute format_version (not a torch-handle checkpoint)";
  if (version < 1 || version > kCheckpointFormatVersion)
    return "format version " + std::to_string(version) + "; this program reads versions 1 to " +
           std::to_string(kCheckpointFormatVersion);
  CheckpointState state;
  std::string missing;
  if (!get_state(f, state, &missing, path)) return "missing attribute " + missing;
  if (version >= 2) {  // version 1 files predate the checksum of the state
    const std::string problem = check_state_crc(f, path);
    if (!problem.empty()) return problem;
  }

  // Structure first (cheap): a wrong model is found without reading any data.
  std::vector<std::uint32_t> stored;
  for (int kind = 0; kind < kKinds; ++kind) {
    for (const CheckpointTensor& t : expected) {
      const std::string p = dataset_path(kind, t.name);
      if (!h5_link_exists(f, p)) return "missing dataset " + p;
      H5Id ds = h5_own(H5Dopen2(f, p.c_str(), H5P_DEFAULT), H5Dclose, "H5Dopen2", path);
      H5Id type = h5_own(H5Dget_type(ds.get()), H5Tclose, "H5Dget_type", path);
      if (H5Tget_class(type.get()) != H5T_FLOAT || H5Tget_size(type.get()) != 4)
        return "dataset " + p + " is not float32";
      H5Id space = h5_own(H5Dget_space(ds.get()), H5Sclose, "H5Dget_space", path);
      const int rank = H5Sget_simple_extent_ndims(space.get());
      std::vector<hsize_t> dims(static_cast<std::size_t>(std::max(rank, 0)));
      if (rank > 0) h5_check(H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr), "H5Sget_simple_extent_dims", path);
      if (rank < 0 || dims != dims_of(t))
        return "wrong shape: dataset " + p + " is " + shape_str(dims) + " in the file, " + shape_str(dims_of(t)) +
               " expected";
      std::int64_t crc = 0;
      if (!h5_get_attr(ds.get(), "crc32", crc, path)) return "dataset " + p + " has no crc32 attribute";
      stored.push_back(static_cast<std::uint32_t>(crc));
    }
  }
  std::set<std::string> names;
  for (const CheckpointTensor& t : expected) names.insert(t.name);
  for (int kind = 0; kind < kKinds; ++kind) {
    std::vector<std::string> found;
    H5Id g = h5_own(H5Gopen2(f, (std::string("/") + kKindGroup[kind]).c_str(), H5P_DEFAULT), H5Gclose, "H5Gopen2", path);
    h5_check(H5Ovisit2(g.get(), H5_INDEX_NAME, H5_ITER_INC, collect_dataset, &found, H5O_INFO_BASIC), "H5Ovisit2", path);
    for (const std::string& n : found)
      if (!names.count(n)) return "dataset " + dataset_path(kind, n) + " is not a tensor of this model";
  }
  if (!checksums) return "";

  constexpr std::int64_t kChunk = 1 << 22;  // 16 MiB of floats at a time, whatever the tensor size
  std::vector<float> buf;
  std::size_t i = 0;
  for (int kind = 0; kind < kKinds; ++kind) {
    for (const CheckpointTensor& t : expected) {
      const std::string p = dataset_path(kind, t.name);
      H5Id ds = h5_own(H5Dopen2(f, p.c_str(), H5P_DEFAULT), H5Dclose, "H5Dopen2", path);
      std::uint32_t crc = 0;
      for (std::int64_t a = 0; a < t.numel; a += kChunk) {
        const std::int64_t n = std::min(kChunk, t.numel - a);
        buf.resize(static_cast<std::size_t>(n));
        read_range(ds.get(), dims_of(t), static_cast<std::uint64_t>(a), static_cast<std::uint64_t>(a + n), buf.data(),
                   H5P_DEFAULT, path);
        crc = crc_join(crc, crc_floats(buf.data(), n), n);
      }
      if (crc != stored[i])
        return "bad checksum: dataset " + p + " has crc32 " + hex32(stored[i]) + " stored but its data gives " +
               hex32(crc);
      ++i;
    }
  }
  return "";
}
}  // namespace

std::string verify_file(const std::string& path, const std::vector<CheckpointTensor>& expected, bool checksums) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return "file does not exist";
  if (!std::filesystem::is_regular_file(path, ec)) return "not a regular file";
  const std::string list = check_tensor_list(expected);
  if (!list.empty()) return "the expected tensors are inconsistent: " + list;
  std::lock_guard<std::mutex> lock(hdf5_mutex());
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);  // problems are returned, not printed by HDF5
  const htri_t is_h5 = H5Fis_hdf5(path.c_str());
  if (is_h5 <= 0) return is_h5 == 0 ? "not an HDF5 file" : "cannot be read";
  const hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0) {
    std::string why;
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, innermost_error, &why);
    H5Eclear2(H5E_DEFAULT);
    if (why.find("truncated") != std::string::npos) return "truncated file (" + why + ")";
    return "cannot be opened as HDF5" + (why.empty() ? std::string() : " (" + why + ")");
  }
  H5Id file(f, H5Fclose, false);
  try {
    return verify_open_file(f, path, expected, checksums);
  } catch (const std::exception& e) {  // a read that fails: damaged metadata or data past the end
    H5Eclear2(H5E_DEFAULT);
    return std::string("unreadable: ") + e.what();
  }
}

}  // namespace th::ckpt

namespace th {

std::string verify_checkpoint(const std::string& path, const std::vector<CheckpointTensor>& expected) {
  return ckpt::verify_file(path, expected, true);
}

}  // namespace th
