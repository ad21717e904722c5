// The tokenizer fingerprint of the data, and whether a checkpoint may be used with data (the
// rules are in th/data/dataset_h5.hpp and docs/checkpoint-format.md).
#include <cstdio>

#include "th/data/dataset_h5.hpp"
#include "th/data/split.hpp"

namespace th {

std::string tokenizer_fingerprint(const std::string& sentencepiece_model) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(fnv1a64(sentencepiece_model)));
  return buf;
}

namespace {
std::string describe(const std::string& fingerprint) {
  if (fingerprint.empty()) return "no tokenizer fingerprint (written before they were recorded)";
  if (fingerprint == kNoTokenizer) return "no tokenizer (synthetic token ids)";
  return "tokenizer fingerprint " + fingerprint;
}
}  // namespace

std::string tokenizer_mismatch(const std::string& checkpoint_path, const std::string& checkpoint_fingerprint,
                               const std::string& data_what, const std::string& data_fingerprint) {
  if (checkpoint_fingerprint == data_fingerprint) return "";
  if (checkpoint_fingerprint.empty() && data_fingerprint == kNoTokenizer) return "";  // neither side has one
  const std::string head = "checkpoint " + checkpoint_path + " was trained on data with " +
                           describe(checkpoint_fingerprint) + ", but " + data_what + " has " + describe(data_fingerprint);
  if (checkpoint_fingerprint.empty())
    return head + ": nothing tells whether its token ids mean the same pieces. Such a checkpoint is used with "
                  "synthetic data only; train afresh on this data";
  return head + ": the same token ids would mean other pieces. Use the data prepared with the checkpoint's tokenizer "
                "(the datasets of one run of task='prepare' share it), or train afresh on this data";
}

}  // namespace th
