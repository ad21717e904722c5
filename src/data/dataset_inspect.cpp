// Checking a dataset file on one rank before any rank opens it with MPI-IO.
#include "dataset_file.hpp"
#include "th/core/error.hpp"
#include "th/data/dataset_h5.hpp"
#include "th/io/h5.hpp"

namespace th {

namespace {
// Why `name` is not a 1-D integer dataset ("" if it is one): the message says what it is instead.
std::string not_integer_1d(hid_t file, const std::string& name, const std::string& path) {
  if (h5_length_1d(file, name, H5T_INTEGER, path) >= 0) return "";
  if (h5_length_1d(file, name, H5T_FLOAT, path) >= 0) {
    H5Id ds = h5_own(H5Dopen2(file, name.c_str(), H5P_DEFAULT), H5Dclose, "H5Dopen2", path);
    H5Id type = h5_own(H5Dget_type(ds.get()), H5Tclose, "H5Dget_type", path);
    return name + " holds floating-point numbers (float" + std::to_string(8 * H5Tget_size(type.get())) +
           "); token ids and offsets are integers (int32 and int64, as run%task = 'prepare' writes them)";
  }
  return "";  // missing or not 1-D: the length check below says so
}

}  // namespace

DatasetInfo inspect_dataset(const std::string& path) {
  std::lock_guard<std::mutex> lock(hdf5_mutex());
  const H5Id file = open_dataset_file(path, "a dataset is made by run%task = 'prepare'");
  const hid_t fid = file.get();
  const std::string bad = path + ": ";
  check_dataset_format(fid, path, kDatasetFormat, kDatasetFormatVersion, "dataset");
  DatasetInfo info;
  info.path = path;
  auto need_int = [&](const char* name, std::int64_t& v) {
    if (!h5_get_attr(fid, name, v, path)) throw InputError(bad + "missing integer attribute '" + name + "'");
  };
  need_int("num_examples", info.examples);
  need_int("src_tokens", info.src_tokens);
  need_int("tgt_tokens", info.tgt_tokens);
  need_int("vocab_size", info.vocab_size);
  if (!h5_get_attr(fid, "split", info.split, path) || !h5_get_attr(fid, "source", info.source, path) ||
      !h5_get_attr(fid, "tokenizer_fingerprint", info.tokenizer_fingerprint, path))
    throw InputError(bad + "missing string attribute 'split', 'source' or 'tokenizer_fingerprint'");
  if (info.vocab_size <= SpecialTokens::first_regular || info.vocab_size > (1LL << 31) - 1 || info.examples < 0)
    throw InputError(bad + "implausible attributes (vocab_size " + std::to_string(info.vocab_size) + ", num_examples " +
                     std::to_string(info.examples) + ")");
  if (h5_length_1d(fid, "tokenizer/model", H5T_INTEGER, path) <= 0)
    throw InputError(bad + "no tokenizer/model (the embedded SentencePiece model)");
  for (const char* side : {"src", "tgt"}) {
    const std::string s(side);
    for (const std::string part : {"/tokens", "/offsets"}) {
      const std::string why = not_integer_1d(fid, s + part, path);
      if (!why.empty()) throw InputError(bad + why);
    }
    const std::int64_t ntok = h5_length_1d(fid, s + "/tokens", H5T_INTEGER, path);
    const std::int64_t noff = h5_length_1d(fid, s + "/offsets", H5T_INTEGER, path);
    const std::int64_t want = s == "src" ? info.src_tokens : info.tgt_tokens;
    if (ntok != want || noff != info.examples + 1)
      throw InputError(bad + s + "/tokens or " + s + "/offsets missing or of the wrong length (tokens " +
                       std::to_string(ntok) + ", attribute says " + std::to_string(want) + "; offsets " +
                       std::to_string(noff) + ", expected num_examples + 1 = " + std::to_string(info.examples + 1) + ")");
    const auto off = h5_read_all<std::int64_t>(fid, s + "/offsets", H5T_NATIVE_INT64, H5P_DEFAULT, path);
    bool ok = off.front() == 0 && off.back() == ntok;
    for (std::size_t i = 1; ok && i < off.size(); ++i) ok = off[i] >= off[i - 1];
    if (!ok) throw InputError(bad + s + "/offsets do not run from 0 to the token count without going back");
  }
  return info;
}

}  // namespace th
