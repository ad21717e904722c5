// Finding the checkpoint to resume from (rank 0 verifies, every rank gets the verdict) and the
// collective load of a checkpoint through MPI-IO, checked against the stored CRC-32s.
#include <algorithm>
#include <exception>
#include <filesystem>
#include <mutex>

#include "th/io/checkpoint.hpp"
#include "checkpoint_dir.hpp"
#include "checkpoint_internal.hpp"
#include "checkpoint_pieces.hpp"
#include "th/core/error.hpp"
#include "th/io/h5.hpp"
#include "th/parallel/agree.hpp"
#include "th/parallel/comm.hpp"

namespace th {

using namespace ckpt;
namespace fs = std::filesystem;

std::string find_checkpoint(Comm& comm, const std::string& dir, const std::string& resume,
                            const std::vector<CheckpointTensor>& expected, CheckpointUse use) {
  if (resume == "never") {
    // Starting afresh where another run's checkpoints are would overwrite some of them, and
    // `latest` would point into a mix of two runs.
    agree_root(comm, [&]() -> std::string {
      const auto files = list_checkpoints(dir);
      if (files.empty()) return "";
      return "checkpoint%resume = 'never', but " + dir + " already holds " + std::to_string(files.size()) +
             " checkpoint(s) of an earlier run (the newest " + files.front().second +
             "); use checkpoint%resume = 'auto' to continue that run, or another folder (run%output_dir, "
             "checkpoint%dir) to start afresh";
    }, ErrorKind::Input);
    return "";
  }
  const std::string advice =
      use == CheckpointUse::Weights
          ? "; the model% keys of the deck must be those of the training run (its deck.resolved.nml), or "
            "checkpoint%resume must name a checkpoint of this model"
          : "; to start afresh, move these files away or use another folder (run%output_dir, checkpoint%dir)";
  // Verdict on rank 0: "P<path>" resume from path, "E<message>" input error, "" start afresh.
  std::string verdict;
  if (comm.rank() == 0) {
    try {
      if (resume == "auto") {
        std::vector<std::string> candidates;
        const std::string latest = read_latest(dir);
        if (!latest.empty()) {
          bool tmp = true;
          if (parse_name(latest, nullptr, &tmp) && !tmp)
            candidates.push_back(latest);
          else
            warn(dir + "/latest holds '" + latest + "', not a checkpoint file name; ignoring it");
        }
        const auto files = list_checkpoints(dir);
        for (const auto& f : files)
          if (std::find(candidates.begin(), candidates.end(), f.second) == candidates.end()) candidates.push_back(f.second);
        std::string rejected;
        for (const std::string& c : candidates) {
          const std::string path = dir + "/" + c;
          const std::string problem = verify_file(path, expected, true);
          if (problem.empty()) {
            verdict = "P" + path;
            break;
          }
          warn("cannot resume from " + path + ": " + problem +
               (&c != &candidates.back() ? "; trying an older checkpoint" : ""));
          rejected += (rejected.empty() ? "" : "; ") + c + ": " + problem;
        }
        if (verdict.empty() && !files.empty())
          verdict = "Echeckpoint%resume = 'auto': no checkpoint in " + dir + " verifies (" + rejected + ")" + advice;
      } else {
        std::string path = resume;
        std::error_code ec;
        if (!resume.empty() && resume.find('/') == std::string::npos && !fs::exists(resume, ec) &&
            fs::exists(dir + "/" + resume, ec))
          path = dir + "/" + resume;
        const std::string problem = verify_file(path, expected, true);
        verdict = problem.empty() ? "P" + path
                                  : "Echeckpoint '" + resume + "' cannot be " +
                                        (use == CheckpointUse::Weights ? "used" : "resumed") + ": " + problem +
                                        (use == CheckpointUse::Weights ? advice : std::string());
      }
    } catch (const std::exception& e) {
      verdict = std::string("E") + dir + ": " + e.what();
    }
  }
  agree_on_error(comm, !verdict.empty() && verdict[0] == 'E' ? verdict.substr(1) : "", ErrorKind::Input);
  comm.broadcast_string(verdict, 0);
  return verdict.empty() ? std::string() : verdict.substr(1);
}

// -----------------------------------------------------------------------------------------------
// Load

CheckpointState load_checkpoint(Comm& comm, const std::string& path, const std::vector<CheckpointTensor>& tensors,
                                float* params, float* exp_avg, float* exp_avg_sq, std::int64_t begin,
                                std::int64_t end) {
  return load_checkpoint(comm, path, tensors, params, exp_avg, exp_avg_sq, one_range(begin, end));
}

CheckpointState load_checkpoint(Comm& comm, const std::string& path, const std::vector<CheckpointTensor>& tensors,
                                float* params, float* exp_avg, float* exp_avg_sq,
                                const std::vector<CheckpointRange>& owned) {
  float* bufs[kKinds] = {params, exp_avg, exp_avg_sq};
  // A kind is read if some rank asks for it (ranks owning nothing may pass null everywhere); the
  // set of datasets read must be the same on every rank, the calls being collective.
  bool read_kind[kKinds];
  for (int k = 0; k < kKinds; ++k) read_kind[k] = comm.any_true(bufs[k] != nullptr);
  {
    std::string problem = check_tensor_list(tensors);
    if (problem.empty()) problem = check_own_ranges(owned, tensors);
    if (problem.empty() && !read_kind[0]) problem = "no rank passed a parameter buffer";
    for (int k = 0; k < kKinds && problem.empty(); ++k)
      if (read_kind[k] && owns_any(owned) && !bufs[k]) problem = "a rank owning elements passed a null buffer";
    agree_on_error(comm, problem.empty() ? "" : "load_checkpoint " + path + ": " + problem, ErrorKind::Failure);
  }
  {
    const std::string problem = same_tensors_everywhere(comm, tensors);
    agree_on_error(comm, problem.empty() ? "" : "load_checkpoint " + path + ": " + problem, ErrorKind::Failure);
  }
  // Structure on rank 0 (cheap, no data read): afterwards the collective calls cannot diverge.
  agree_root(comm, [&]() -> std::string {
    const std::string problem = verify_file(path, tensors, false);
    return problem.empty() ? "" : "cannot load checkpoint " + path + ": " + problem;
  }, ErrorKind::Failure);
  const Ranges ranges = all_ranges(comm, owned);
  const auto me = static_cast<std::size_t>(comm.rank());
  const std::size_t T = tensors.size();

  CheckpointState state;
  std::vector<std::uint32_t> stored(kKinds * T, 0), mine(kKinds * T, 0);
  {
    std::lock_guard<std::mutex> lock(hdf5_mutex());
    H5ParallelFile file(comm, path, H5ParallelFile::Access::ReadOnly, H5Metadata::Collective);
    H5Id dxpl = h5_mpio_dxpl(H5Transfer::Collective, path);
    std::string missing;
    if (!get_state(file.get(), state, &missing, path))  // metadata read by rank 0, broadcast: same everywhere
      throw Error(path + ": attribute " + missing + " vanished between the check and the load");
    std::int64_t version = 1;
    h5_get_attr(file.get(), "format_version", version, path);
    const std::string state_problem = version >= 2 ? check_state_crc(file.get(), path) : std::string();
    if (!state_problem.empty()) throw Error("checkpoint " + path + ": " + state_problem + " (changed since it was checked)");
    for (int k = 0; k < kKinds; ++k) {
      if (!read_kind[k]) continue;
      for (std::size_t i = 0; i < T; ++i) {
        const CheckpointTensor& t = tensors[i];
        const std::string p = dataset_path(k, t.name);
        H5Id ds = h5_own(H5Dopen2(file.get(), p.c_str(), H5P_DEFAULT), H5Dclose, "H5Dopen2", path + " " + p);
        std::int64_t crc = 0;
        if (!h5_get_attr(ds.get(), "crc32", crc, path)) throw Error(path + ": " + p + " lost its crc32 attribute");
        stored[k * T + i] = static_cast<std::uint32_t>(crc);
        const auto [lo, hi, local] = piece(ranges, me, t);
        float* dst = hi > lo ? bufs[k] + local : nullptr;
        if (t.numel > 0)
          read_range(ds.get(), dims_of(t), static_cast<std::uint64_t>(lo), static_cast<std::uint64_t>(hi), dst,
                     dxpl.get(), path + " " + p);
        mine[k * T + i] = crc_floats(dst, hi - lo);
      }
    }
    file.close();
  }
  // Checksums of what was read, wherever the ranks' pieces together cover a dataset (always when
  // the ranges tile the buffers, or when one rank reads everything). Same verdict on every rank.
  const std::vector<std::int64_t> crcs = exchange_crcs(comm, mine);
  for (int k = 0; k < kKinds; ++k) {
    if (!read_kind[k]) continue;
    for (std::size_t i = 0; i < T; ++i) {
      const std::int64_t got = chain_crc(crcs, k * T + i, ranges, tensors[i]);
      if (got >= 0 && static_cast<std::uint32_t>(got) != stored[k * T + i])
        throw Error("checkpoint " + path + ": bad checksum of " + dataset_path(k, tensors[i].name) +
                    " (the data changed since it was written)");
    }
  }
  return state;
}

}  // namespace th
