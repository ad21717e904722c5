// Writing one split of a text dataset collectively (task='prepare' on every rank, parallel HDF5):
// each rank's tokens and document offsets land at offsets agreed by one all-reduce, written by
// that rank alone (independent MPI-IO writes); the file is identical for any number of ranks.
#include <cstdio>
#include <fstream>

#include "dataset_file.hpp"
#include "th/core/error.hpp"
#include "th/data/batching.hpp"
#include "th/io/h5.hpp"
#include "th/data/lm_dataset.hpp"
#include "th/data/split.hpp"
#include "th/parallel/agree.hpp"

namespace th {

namespace {
constexpr std::size_t kChunk = std::size_t{1} << 20;  // values per read of a spill file and per H5Dwrite

std::string hex64(std::uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

// Streams a spill file of T values into ds at `first`, adding `shift` to every value.
template <typename T>
void copy_spill(const std::string& spill, std::int64_t count, hid_t ds, hid_t mem_type, hsize_t first, T shift,
                hid_t xfer, const std::string& path) {
  std::ifstream in(spill, std::ios::binary);
  if (!in) throw Error(spill + ": cannot reopen the spill file of task='prepare'");
  std::vector<T> buf;
  std::int64_t done = 0;
  while (done < count) {
    const std::size_t n = static_cast<std::size_t>(std::min<std::int64_t>(count - done, kChunk));
    buf.resize(n);
    if (!in.read(reinterpret_cast<char*>(buf.data()), static_cast<std::streamsize>(n * sizeof(T))))
      throw Error(spill + ": short read of the spill file (" + std::to_string(done) + " of " + std::to_string(count) +
                  " values)");
    if (shift != 0)
      for (T& v : buf) v += shift;
    h5_write_ranges(ds, mem_type, {{first + static_cast<hsize_t>(done), n}}, buf.data(), xfer, false, path);
    done += static_cast<std::int64_t>(n);
  }
}
}  // namespace

void write_lm_dataset(const std::string& path, Comm& comm, const LmSplitPart& mine, const LmProvenance& p) {
  // Every rank's counts, then this rank's offsets (exclusive prefix sums in rank order).
  const int N = comm.size(), r = comm.rank();
  std::vector<std::int64_t> counts(static_cast<std::size_t>(3 * N), 0);
  counts[static_cast<std::size_t>(3 * r)] = mine.tokens;
  counts[static_cast<std::size_t>(3 * r + 1)] = mine.documents;
  counts[static_cast<std::size_t>(3 * r + 2)] = mine.text_bytes;
  comm.allreduce(counts.data(), counts.size(), ReduceOp::Sum);
  std::int64_t total[3] = {0, 0, 0}, before[3] = {0, 0, 0};
  for (int q = 0; q < N; ++q)
    for (int k = 0; k < 3; ++k) {
      if (q < r) before[k] += counts[static_cast<std::size_t>(3 * q + k)];
      total[k] += counts[static_cast<std::size_t>(3 * q + k)];
    }

  std::string error;
  {
    std::lock_guard<std::mutex> lock(hdf5_mutex());
    // Creation and metadata are collective (every rank the same calls and values); a failure here
    // is the same on every rank (the same path, the same library state).
    H5ParallelFile file(comm, path, H5ParallelFile::Access::Create, H5Metadata::Independent);
    const hid_t f = file.get();
    H5Id tokens = h5_create_dataset(f, "tokens", H5T_STD_I32LE, {static_cast<hsize_t>(total[0])}, path);
    H5Id offsets = h5_create_dataset(f, "doc_offsets", H5T_STD_I64LE, {static_cast<hsize_t>(total[1] + 1)}, path);
    H5Id group = h5_create_group(f, "tokenizer", path);
    H5Id model = h5_create_dataset(group.get(), "model", H5T_STD_U8LE, {static_cast<hsize_t>(p.tokenizer_model.size())},
                                   path);
    h5_put_attr(group.get(), "type", std::string("sentencepiece"), path);
    h5_put_attr(f, "format", std::string(kLmDatasetFormat), path);
    h5_put_attr(f, "format_version", kLmDatasetFormatVersion, path);
    h5_put_attr(f, "split", p.split, path);
    h5_put_attr(f, "num_documents", total[1], path);
    h5_put_attr(f, "num_tokens", total[0], path);
    h5_put_attr(f, "text_bytes", total[2], path);
    put_token_id_attrs(f, p.vocab_size, path);
    h5_put_attr(f, "tokenizer_fingerprint", hex64(fnv1a64(p.tokenizer_model)), path);
    h5_put_attr(f, "spm_type", p.spm_type, path);
    h5_put_attr(f, "source", p.source, path);
    h5_put_attr(f, "documents", p.documents, path);
    put_split_attrs(f, p.split_key, p.valid_fraction, p.test_fraction, path);
    h5_put_attr(f, "corpus_documents", p.corpus_documents, path);
    h5_put_attr(f, "skipped_empty", p.skipped_empty, path);
    h5_put_attr(f, "created_by", p.created_by, path);
    h5_put_attr(f, "deck", p.deck, path);

    // The data: each rank its own ranges, independently. A failure (disk full, a spill file
    // gone) is caught and agreed on below, after every rank is done, so no rank is left in a
    // collective call.
    try {
      const H5Id xfer = h5_mpio_dxpl(H5Transfer::Independent, path);
      copy_spill<std::int32_t>(mine.tokens_path, mine.tokens, tokens.get(), H5T_NATIVE_INT32,
                               static_cast<hsize_t>(before[0]), 0, xfer.get(), path);
      copy_spill<std::int64_t>(mine.ends_path, mine.documents, offsets.get(), H5T_NATIVE_INT64,
                               static_cast<hsize_t>(before[1] + 1), before[0], xfer.get(), path);
      if (r == 0) {
        const std::int64_t zero = 0;
        h5_write_ranges(offsets.get(), H5T_NATIVE_INT64, {{0, 1}}, &zero, xfer.get(), false, path);
        h5_write_ranges(model.get(), H5T_NATIVE_UCHAR, {{0, static_cast<hsize_t>(p.tokenizer_model.size())}},
                        p.tokenizer_model.data(), xfer.get(), false, path);
      }
    } catch (const std::exception& e) {
      error = e.what();
      if (error.empty()) error = path + ": write failed";
    }
    model.reset();
    group.reset();
    offsets.reset();
    tokens.reset();
    // Collective close (all ranks arrive: the writes above never leave early).
    const herr_t closed = file.close_status();
    if (closed < 0 && error.empty()) error = path + ": H5Fclose failed (disk full?)";
  }  // the communicator is freed here (collective: every rank gets here)
  agree_on_error(comm, error, ErrorKind::Failure);
}

}  // namespace th
