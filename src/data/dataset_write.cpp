// Writing one split of a dataset (task='prepare', rank 0, serial driver).
#include "dataset_file.hpp"
#include "th/core/error.hpp"
#include "th/data/dataset_h5.hpp"
#include "th/io/h5.hpp"

namespace th {

void DatasetContent::add(const std::string& key, const std::vector<int>& src, const std::vector<int>& tgt) {
  keys.push_back(key);
  src_tokens.insert(src_tokens.end(), src.begin(), src.end());
  tgt_tokens.insert(tgt_tokens.end(), tgt.begin(), tgt.end());
  src_offsets.push_back(static_cast<std::int64_t>(src_tokens.size()));
  tgt_offsets.push_back(static_cast<std::int64_t>(tgt_tokens.size()));
}

void write_dataset(const std::string& path, const DatasetContent& c, const DatasetProvenance& p) {
  std::lock_guard<std::mutex> lock(hdf5_mutex());
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);  // errors are reported by h5_check, not on stderr
  H5Id file = h5_own(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), H5Fclose, "H5Fcreate", path);
  const hid_t f = file.get();
  for (const char* side : {"src", "tgt"}) {
    const H5Id g = h5_create_group(f, side, path);
    const bool s = side[0] == 's';
    const auto& tok = s ? c.src_tokens : c.tgt_tokens;
    const auto& off = s ? c.src_offsets : c.tgt_offsets;
    h5_write_1d(g.get(), "tokens", H5T_STD_I32LE, H5T_NATIVE_INT32, tok.data(), tok.size(), path);
    h5_write_1d(g.get(), "offsets", H5T_STD_I64LE, H5T_NATIVE_INT64, off.data(), off.size(), path);
  }
  h5_write_strings(f, "key", c.keys, path);
  {
    const H5Id g = h5_create_group(f, "tokenizer", path);
    h5_write_1d(g.get(), "model", H5T_STD_U8LE, H5T_NATIVE_UCHAR, p.tokenizer_model.data(), p.tokenizer_model.size(),
                path);
    h5_put_attr(g.get(), "type", std::string("sentencepiece"), path);
  }
  h5_put_attr(f, "format", std::string(kDatasetFormat), path);
  h5_put_attr(f, "format_version", kDatasetFormatVersion, path);
  h5_put_attr(f, "split", p.split, path);
  h5_put_attr(f, "num_examples", c.size(), path);
  h5_put_attr(f, "src_tokens", static_cast<std::int64_t>(c.src_tokens.size()), path);
  h5_put_attr(f, "tgt_tokens", static_cast<std::int64_t>(c.tgt_tokens.size()), path);
  put_token_id_attrs(f, p.vocab_size, path);
  h5_put_attr(f, "tokenizer_fingerprint", tokenizer_fingerprint(p.tokenizer_model), path);
  h5_put_attr(f, "source", p.source, path);
  put_split_attrs(f, p.split_key, p.valid_fraction, p.test_fraction, path);
  h5_put_attr(f, "corpus_records", p.corpus_records, path);
  h5_put_attr(f, "corpus_pairs", p.corpus_pairs, path);
  h5_put_attr(f, "skipped_empty", p.skipped_empty, path);
  h5_put_attr(f, "skipped_missing", p.skipped_missing, path);
  h5_put_attr(f, "created_by", p.created_by, path);
  h5_put_attr(f, "deck", p.deck, path);
  file.close("H5Fclose", path);  // a full disk shows here: check it
}

}  // namespace th
