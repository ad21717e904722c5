// The collective save of a checkpoint: arguments agreed, every dataset's CRC-32 from memory, the
// write through MPI-IO, the verification by reading back, then the commit (checkpoint_files.cpp).
#include <cerrno>
#include <csignal>
#include <cstring>
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

namespace {
using namespace ckpt;
namespace fs = std::filesystem;

// Testing aids (tests/scripts/check_kill_during_save.sh, tests/scripts/check_rank_failure.sh): TH_FAULT="rank:step:save"
// kills that rank with SIGKILL, like `kill -9`, in the middle of writing the checkpoint of that
// step; "rank:step:save_throw" makes it throw there instead.
void maybe_kill_during_save(int rank, std::int64_t step) {
  if (injected_fault(rank, step) == "save") std::raise(SIGKILL);
}
}  // namespace

void save_checkpoint(Comm& comm, const std::string& dir, const std::vector<CheckpointTensor>& tensors,
                     const float* params, const float* exp_avg, const float* exp_avg_sq, std::int64_t begin,
                     std::int64_t end, const CheckpointState& state, int keep_last) {
  save_checkpoint(comm, dir, tensors, params, exp_avg, exp_avg_sq, one_range(begin, end), state, keep_last);
}

void save_checkpoint(Comm& comm, const std::string& dir, const std::vector<CheckpointTensor>& tensors,
                     const float* params, const float* exp_avg, const float* exp_avg_sq,
                     const std::vector<CheckpointRange>& owned, const CheckpointState& state_in, int keep_last) {
  const float* bufs[kKinds] = {params, exp_avg, exp_avg_sq};
  {
    std::string problem = check_tensor_list(tensors);
    if (problem.empty()) problem = check_own_ranges(owned, tensors);
    if (problem.empty() && owns_any(owned) && (!params || !exp_avg || !exp_avg_sq))
      problem = "a rank owning elements passed a null buffer";
    if (problem.empty() && dir.empty()) problem = "empty checkpoint directory";
    if (problem.empty() && state_in.step < 0) problem = "negative step";
    agree_on_error(comm, problem.empty() ? "" : "save_checkpoint into " + dir + ": " + problem, ErrorKind::Failure);
  }
  {
    const std::string problem = same_tensors_everywhere(comm, tensors);
    agree_on_error(comm, problem.empty() ? "" : "save_checkpoint into " + dir + ": " + problem, ErrorKind::Failure);
  }
  const Ranges ranges = all_ranges(comm, owned);
  {
    const std::string problem = check_write_ranges(ranges, tensors);  // same data on every rank
    if (!problem.empty()) throw Error("save_checkpoint into " + dir + ": " + problem);
  }

  // Attribute values must be identical on every rank (metadata is written collectively): rank
  // 0's state and clock are the ones written.
  CheckpointState state = state_in;
  struct Wire {
    std::int64_t step, epoch, step_in_epoch;
    std::uint64_t micro;
    double loss_scale;
    std::int64_t world_size, zero_stage;
    std::int64_t optimizer_steps, clean, hysteresis, floor, skipped;
  } w{state.step, state.epoch, state.step_in_epoch, state.micro, state.loss_scale, state.world_size, state.zero_stage,
      state.optimizer_steps, state.scaler_clean_steps, state.scaler_hysteresis_left, state.scaler_floor_overflows,
      state.scaler_skipped_steps};
  comm.broadcast(&w, sizeof w, 0);
  state = {w.step, w.epoch, w.step_in_epoch, w.micro, w.loss_scale, state.deck, static_cast<int>(w.world_size),
           static_cast<int>(w.zero_stage), w.optimizer_steps, w.clean, w.hysteresis, w.floor, w.skipped,
           state.tokenizer_fingerprint};
  comm.broadcast_string(state.deck, 0);
  comm.broadcast_string(state.tokenizer_fingerprint, 0);
  std::string created = comm.rank() == 0 ? utc_now() : std::string();
  comm.broadcast_string(created, 0);

  const std::string name = checkpoint_file_name(state.step);
  const std::string tmp = dir + "/" + name + ".tmp";
  const std::int64_t needed = checkpoint_bytes(tensors, state.deck.size());
  agree_root(comm, [&]() -> std::string {
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) return "cannot create checkpoint directory " + dir + ": " + ec.message();
    fs::remove(tmp, ec);  // a previous attempt at this step
    if (ec) return "cannot remove " + tmp + ": " + ec.message();
    // Room for the whole file before it is started: a full disk is named, and leaves no partial file.
    const std::string fault = injected_fault(0, state.step);
    const std::int64_t free = fault == "disk_full" ? 0 : free_bytes(dir);
    if (fault != "no_space_check" && free >= 0 && free < needed) return no_space_message(dir + "/" + name, needed, free);
    return "";
  }, ErrorKind::Failure);

  // Every dataset's CRC-32, from memory: each rank hashes its piece, the pieces are chained in
  // element order (the ranges tile every tensor, checked above).
  const std::size_t T = tensors.size();
  std::vector<std::uint32_t> stored(kKinds * T);
  {
    std::vector<std::uint32_t> mine(kKinds * T, 0);
    for (int k = 0; k < kKinds; ++k)
      for (std::size_t i = 0; i < T; ++i) {
        const Piece pc = piece(ranges, static_cast<std::size_t>(comm.rank()), tensors[i]);
        if (pc.hi > pc.lo) mine[k * T + i] = crc_floats(bufs[k] + pc.local, pc.hi - pc.lo);
      }
    const std::vector<std::int64_t> crcs = exchange_crcs(comm, mine);
    for (std::size_t j = 0; j < kKinds * T; ++j)
      stored[j] = static_cast<std::uint32_t>(chain_crc(crcs, j, ranges, tensors[j % T]));
  }

  const auto me = static_cast<std::size_t>(comm.rank());
  errno = 0;  // what a failed write leaves here names its cause (ENOSPC, EDQUOT)
  try {  // Write: every rank makes the same calls in the same order; each writes its pieces.
    std::lock_guard<std::mutex> lock(hdf5_mutex());
    H5ParallelFile file(comm, tmp, H5ParallelFile::Access::Create, H5Metadata::Collective);
    H5Id dxpl = h5_mpio_dxpl(H5Transfer::Collective, tmp);
    H5Id lcpl = h5_own(H5Pcreate(H5P_LINK_CREATE), H5Pclose, "H5Pcreate", tmp);
    h5_check(H5Pset_create_intermediate_group(lcpl.get(), 1), "H5Pset_create_intermediate_group", tmp);
    H5Id dcpl = h5_own(H5Pcreate(H5P_DATASET_CREATE), H5Pclose, "H5Pcreate", tmp);
    // Contiguous: h5py/numpy read it directly, H5Dget_offset finds it. No fill: every element is
    // written once anyway.
    h5_check(H5Pset_layout(dcpl.get(), H5D_CONTIGUOUS), "H5Pset_layout", tmp);
    h5_check(H5Pset_fill_time(dcpl.get(), H5D_FILL_TIME_NEVER), "H5Pset_fill_time", tmp);
    h5_check(H5Pset_alloc_time(dcpl.get(), H5D_ALLOC_TIME_EARLY), "H5Pset_alloc_time", tmp);
    put_state(file.get(), state, created, tmp);
    for (int k = 0; k < kKinds; ++k) {
      for (std::size_t i = 0; i < T; ++i) {
        if (k == 1 && i == 0) {  // the parameters are written, the file is open on every rank
          maybe_kill_during_save(comm.rank(), state.step);
          inject_fault("save_throw", comm.rank(), state.step, "writing " + tmp);
        }
        const CheckpointTensor& t = tensors[i];
        const std::vector<hsize_t> dims = dims_of(t);
        const std::string p = dataset_path(k, t.name);
        H5Id ds = h5_create_dataset(file.get(), p, H5T_IEEE_F32LE, dims, tmp, lcpl.get(), dcpl.get());
        const auto [lo, hi, local] = piece(ranges, me, t);
        if (t.numel > 0)
          write_range(ds.get(), dims, static_cast<std::uint64_t>(lo), static_cast<std::uint64_t>(hi),
                      hi > lo ? bufs[k] + local : nullptr, dxpl.get(), tmp + " " + p);
        h5_put_attr_u32(ds.get(), "crc32", stored[k * T + i], tmp);
        h5_put_attr(ds.get(), "flat_offset", t.offset, tmp);
        ds.close("H5Dclose", tmp);
      }
    }
    put_state_crc(file.get(), tmp);  // last: covers every root attribute written above
    h5_check(H5Fflush(file.get(), H5F_SCOPE_GLOBAL), "H5Fflush", tmp);
    file.close();
    // Durable before it is verified and renamed: after a power loss the renamed file is complete.
    agree_root(comm, [&] { return sync_path(tmp, false); }, ErrorKind::Failure);
  } catch (const std::exception& e) {
    // On the ranks that failed (a write error is one rank's; the others may wait in a collective
    // call until main() aborts the job): no partial file is left, and a full disk is named.
    throw Error(write_failure(e.what(), errno, dir, tmp, needed));
  }

  // Verify: re-open; each rank reads back what it wrote and compares; the stored CRCs are checked
  // against the ones computed from memory.
  std::string problem;
  {
    std::lock_guard<std::mutex> lock(hdf5_mutex());
    H5ParallelFile file(comm, tmp, H5ParallelFile::Access::ReadOnly, H5Metadata::Collective);
    H5Id dxpl = h5_mpio_dxpl(H5Transfer::Collective, tmp);
    CheckpointState back;
    std::string missing;
    if (!get_state(file.get(), back, &missing, tmp)) problem = "attribute " + missing + " missing after writing";
    const std::string state_problem = check_state_crc(file.get(), tmp);
    if (problem.empty() && !state_problem.empty()) problem = state_problem + " after writing";
    std::vector<float> buf;
    for (int k = 0; k < kKinds; ++k) {
      for (std::size_t i = 0; i < T; ++i) {
        const CheckpointTensor& t = tensors[i];
        const std::string p = dataset_path(k, t.name);
        H5Id ds = h5_own(H5Dopen2(file.get(), p.c_str(), H5P_DEFAULT), H5Dclose, "H5Dopen2", tmp + " " + p);
        std::int64_t crc = -1;
        if (!h5_get_attr(ds.get(), "crc32", crc, tmp) || static_cast<std::uint32_t>(crc) != stored[k * T + i])
          if (problem.empty()) problem = "crc32 attribute of " + p + " wrong after writing";
        const auto [lo, hi, local] = piece(ranges, me, t);
        buf.resize(static_cast<std::size_t>(hi - lo));
        if (t.numel > 0)
          read_range(ds.get(), dims_of(t), static_cast<std::uint64_t>(lo), static_cast<std::uint64_t>(hi), buf.data(),
                     dxpl.get(), tmp + " " + p);
        if (hi > lo && std::memcmp(buf.data(), bufs[k] + local, buf.size() * sizeof(float)) != 0)
          if (problem.empty()) problem = p + " reads back different from what was written";
      }
    }
    file.close();
  }
  try {
    agree_on_error(comm, problem.empty() ? "" : "checkpoint " + tmp + " failed verification after writing: " + problem, ErrorKind::Failure);
  } catch (const Error&) {
    if (comm.rank() == 0) {
      std::error_code ec;
      fs::remove(tmp, ec);  // never committed; nobody would read it
    }
    throw;
  }

  agree_root(comm, [&] { return commit(dir, tmp, name, keep_last); }, ErrorKind::Failure);
}

}  // namespace th
