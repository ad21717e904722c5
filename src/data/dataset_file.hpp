#pragma once
// What the two dataset formats (sentence pairs, th/data/dataset_h5.hpp; text, th/data/lm_dataset.hpp)
// share in their HDF5 files: rank 0's opening for the checks, the format check, and the root
// attributes of the token ids and of the split. Internal to src/data; callers hold hdf5_mutex().
#include <cstdint>
#include <string>

#include "th/io/h5.hpp"

namespace th {

// Opens a dataset file with the serial driver for rank 0's checks. InputError naming the path
// when none is named, it does not exist, is not HDF5 (`made_by` says how a dataset is made) or
// cannot be opened.
H5Id open_dataset_file(const std::string& path, const std::string& made_by);

// InputError unless the root attributes format and format_version are the ones this build reads;
// `kind` names the dataset in the message ("dataset", "text dataset").
void check_dataset_format(hid_t file, const std::string& path, const std::string& format, std::int64_t version,
                          const std::string& kind);

// vocab_size and the special token ids (pad_id, unk_id, bos_id, eos_id).
void put_token_id_attrs(hid_t file, std::int64_t vocab_size, const std::string& path);
// split_key, split_rule (the rule of th/data/split.hpp, in words), valid_fraction, test_fraction.
void put_split_attrs(hid_t file, const std::string& split_key, double valid_fraction, double test_fraction,
                     const std::string& path);

}  // namespace th
