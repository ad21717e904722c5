#include "dataset_file.hpp"

#include <sys/stat.h>

#include "th/core/error.hpp"
#include "th/data/batching.hpp"

namespace th {

H5Id open_dataset_file(const std::string& path, const std::string& made_by) {
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);  // our messages, not HDF5's error stack
  struct stat st;
  if (path.empty()) throw InputError("no dataset file named (data%train_file is '')");
  if (::stat(path.c_str(), &st) != 0) throw InputError(path + ": no such dataset file");
  if (H5Fis_hdf5(path.c_str()) <= 0) throw InputError(path + ": not an HDF5 file (" + made_by + ")");
  const hid_t fid = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  if (fid < 0) throw InputError(path + ": cannot be opened as HDF5: the file is truncated or damaged");
  return H5Id(fid, H5Fclose);
}

void check_dataset_format(hid_t file, const std::string& path, const std::string& format, std::int64_t version,
                          const std::string& kind) {
  std::string found;
  if (!h5_get_attr(file, "format", found, path) || found != format)
    throw InputError(path + ": an HDF5 file, but not a torch-handle " + kind + " (no root attribute format = '" +
                     format + "'); make one with run%task = 'prepare'");
  std::int64_t v = 0;
  if (!h5_get_attr(file, "format_version", v, path) || v != version)
    throw InputError(path + ": " + kind + " format version " + std::to_string(v) + ", this build reads version " +
                     std::to_string(version) + "; run task='prepare' again");
}

void put_token_id_attrs(hid_t file, std::int64_t vocab_size, const std::string& path) {
  h5_put_attr(file, "vocab_size", vocab_size, path);
  h5_put_attr(file, "pad_id", std::int64_t{SpecialTokens::pad}, path);
  h5_put_attr(file, "unk_id", std::int64_t{SpecialTokens::unk}, path);
  h5_put_attr(file, "bos_id", std::int64_t{SpecialTokens::bos}, path);
  h5_put_attr(file, "eos_id", std::int64_t{SpecialTokens::eos}, path);
}

void put_split_attrs(hid_t file, const std::string& split_key, double valid_fraction, double test_fraction,
                     const std::string& path) {
  h5_put_attr(file, "split_key", split_key, path);
  h5_put_attr(file, "split_rule",
              std::string("u = top 53 bits of splitmix64_finalize(fnv1a64(key)) / 2^53; valid if u < valid_fraction, "
                          "test if u < valid_fraction + test_fraction, else train"),
              path);
  h5_put_attr(file, "valid_fraction", valid_fraction, path);
  h5_put_attr(file, "test_fraction", test_fraction, path);
}

}  // namespace th
