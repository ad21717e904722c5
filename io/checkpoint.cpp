// Checkpoint protocol: the collective save (write, verify, commit, prune), the choice of the file
// to resume from, and the collective load. HDF5 details live in checkpoint_h5.cpp.
#include "th/io/checkpoint.hpp"

#include <fcntl.h>
#include <mpi.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <set>
#include <sstream>

#include "checkpoint_dir.hpp"
#include "checkpoint_internal.hpp"
#include "th/parallel/mpi_comm.hpp"
#include "th/core/error.hpp"
#include "th/io/hdf5_lock.hpp"
#include "th/parallel/agree.hpp"
#include "th/parallel/comm.hpp"

namespace th {

std::string checkpoint_file_name(std::int64_t step) {
  char b[64];
  std::snprintf(b, sizeof b, "ckpt_%08" PRId64 ".h5", step);
  return b;
}

namespace {

using namespace ckpt;
namespace fs = std::filesystem;

// Agreement between ranks: th/parallel/agree.hpp. A problem one rank finds (an argument, its
// file system view, a verification) is agreed before the next collective call, so every rank
// returns or every rank throws the same error.

// Ranks that disagree on the tensor list would make different collective HDF5 calls and hang.
std::string same_tensors_everywhere(Comm& comm, const std::vector<CheckpointTensor>& tensors) {
  std::uint64_t h = 1469598103934665603ull;  // FNV-1a 64 of the list
  const auto mix = [&h](const void* p, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) h = (h ^ static_cast<const unsigned char*>(p)[i]) * 1099511628211ull;
  };
  for (const CheckpointTensor& t : tensors) {
    mix(t.name.data(), t.name.size() + 1);
    for (const std::int64_t d : t.shape) mix(&d, sizeof d);
    mix(&t.offset, sizeof t.offset);
    mix(&t.numel, sizeof t.numel);
  }
  std::int64_t v[2] = {static_cast<std::int64_t>(h >> 1), -static_cast<std::int64_t>(h >> 1)};
  comm.allreduce(v, 2, ReduceOp::Max);  // max and -min: equal iff every rank has the same hash
  return v[0] == -v[1] ? "" : "the ranks were given different tensor lists";
}

// Every rank's owned ranges, on every rank (of[r]: rank r's, flat bounds; `local` only for me).
struct Ranges {
  std::vector<std::vector<CheckpointRange>> of;
};
Ranges all_ranges(Comm& comm, const std::vector<CheckpointRange>& mine) {
  const auto n = static_cast<std::size_t>(comm.size()), me = static_cast<std::size_t>(comm.rank());
  std::int64_t most = static_cast<std::int64_t>(mine.size());
  comm.allreduce(&most, 1, ReduceOp::Max);
  const auto m = static_cast<std::size_t>(most);
  std::vector<std::int64_t> v(2 * n * m, -1);
  for (std::size_t i = 0; i < mine.size(); ++i) {
    v[2 * (me * m + i)] = mine[i].begin;
    v[2 * (me * m + i) + 1] = mine[i].end;
  }
  comm.allreduce(v.data(), v.size(), ReduceOp::Max);  // -1 marks "no range" (bounds are >= 0)
  Ranges r;
  r.of.resize(n);
  for (std::size_t k = 0; k < n; ++k)
    for (std::size_t i = 0; i < m; ++i)
      if (v[2 * (k * m + i)] >= 0) r.of[k].push_back({v[2 * (k * m + i)], v[2 * (k * m + i) + 1], 0});
  r.of[me] = mine;
  return r;
}

// The part of tensor t that rank r holds, relative to the tensor: [lo, hi) (lo == hi: nothing),
// and (for this rank's own ranges) the buffer index of element lo.
struct Piece {
  std::int64_t lo = 0, hi = 0, local = 0;
};
Piece piece(const Ranges& r, std::size_t rank, const CheckpointTensor& t) {
  for (const CheckpointRange& g : r.of[rank]) {
    const std::int64_t lo = std::max(g.begin, t.offset), hi = std::min(g.end, t.offset + t.numel);
    if (lo < hi) return {lo - t.offset, hi - t.offset, g.local + (lo - g.begin)};
  }
  return {};
}

// Problems with one rank's own list: bounds, and a tensor cut between two of its ranges.
std::string check_own_ranges(const std::vector<CheckpointRange>& mine, const std::vector<CheckpointTensor>& tensors) {
  for (const CheckpointRange& g : mine)
    if (g.begin < 0 || g.end < g.begin || g.local < 0)
      return "bad owned range [" + std::to_string(g.begin) + ", " + std::to_string(g.end) + ")";
  for (const CheckpointTensor& t : tensors) {
    int hits = 0;
    for (const CheckpointRange& g : mine) hits += std::max(g.begin, t.offset) < std::min(g.end, t.offset + t.numel);
    if (hits > 1) return "tensor " + t.name + " is cut between two owned ranges of one rank";
  }
  return "";
}

// A save writes every element exactly once: the ranges must be disjoint and cover every tensor.
std::string check_write_ranges(const Ranges& r, const std::vector<CheckpointTensor>& tensors) {
  struct Owned {
    std::int64_t begin, end;
    std::size_t rank;
  };
  std::vector<Owned> all;
  for (std::size_t i = 0; i < r.of.size(); ++i)
    for (const CheckpointRange& g : r.of[i])
      if (g.begin < g.end) all.push_back({g.begin, g.end, i});
  std::sort(all.begin(), all.end(), [](const Owned& a, const Owned& b) { return a.begin < b.begin; });
  const auto range = [](const Owned& o) {
    return "[" + std::to_string(o.begin) + ", " + std::to_string(o.end) + ") of rank " + std::to_string(o.rank);
  };
  for (std::size_t k = 1; k < all.size(); ++k)
    if (all[k].begin < all[k - 1].end)
      return "the owned ranges " + range(all[k - 1]) + " and " + range(all[k]) + " overlap";
  for (const CheckpointTensor& t : tensors) {
    std::int64_t covered = t.offset;  // the sorted disjoint ranges must tile [offset, offset + numel)
    for (const Owned& o : all)
      if (o.begin <= covered && o.end > covered) covered = o.end;
    if (covered < t.offset + t.numel)
      return "elements [" + std::to_string(covered) + ", " + std::to_string(t.offset + t.numel) + ") of tensor " +
             t.name + " are owned by no rank";
  }
  return "";
}

// CRC-32 of each piece, exchanged: crcs[(i * P) + r] = CRC of rank r's piece of dataset i.
std::vector<std::int64_t> exchange_crcs(Comm& comm, const std::vector<std::uint32_t>& mine) {
  const auto P = static_cast<std::size_t>(comm.size()), me = static_cast<std::size_t>(comm.rank());
  std::vector<std::int64_t> all(mine.size() * P, 0);
  for (std::size_t i = 0; i < mine.size(); ++i) all[i * P + me] = mine[i];
  comm.allreduce(all.data(), all.size(), ReduceOp::Sum);
  return all;
}

// The CRC of a whole tensor from the pieces of the ranks, chained from its first element (the
// longest piece starting where the chain stands, each time); -1 if they do not tile it (a load
// where no rank or set of ranks read all of it).
std::int64_t chain_crc(const std::vector<std::int64_t>& crcs, std::size_t i, const Ranges& r, const CheckpointTensor& t) {
  const std::size_t P = r.of.size();
  std::uint32_t crc = 0;
  std::int64_t pos = 0;
  while (pos < t.numel) {
    std::size_t best = P;
    std::int64_t best_len = 0;
    for (std::size_t k = 0; k < P; ++k) {
      const Piece pc = piece(r, k, t);
      if (pc.lo == pos && pc.hi - pc.lo > best_len) best = k, best_len = pc.hi - pc.lo;
    }
    if (best == P) return -1;
    crc = crc_join(crc, static_cast<std::uint32_t>(crcs[i * P + best]), best_len);
    pos += best_len;
  }
  return crc;
}

// ---------------------------------------------------------------------------------------------
// MPI-IO

// An MPI communicator with comm's ranks in comm's order, for HDF5's MPI-IO driver. Comm hides its
// MPI handle (the layers above do not call MPI), so it is rebuilt from the members' world ranks;
// MPI_Comm_create_group is collective over those members only.
class MpiMirror {
 public:
  explicit MpiMirror(Comm& comm) : comm_(mpi_comm_of(comm)), unwinding_(std::uncaught_exceptions()) {}
  ~MpiMirror() {
    if (std::uncaught_exceptions() > unwinding_) return;  // freeing is collective: see H5Id
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized && comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
  }
  MpiMirror(const MpiMirror&) = delete;
  MpiMirror& operator=(const MpiMirror&) = delete;
  MPI_Comm get() const { return comm_; }

 private:
  MPI_Comm comm_ = MPI_COMM_NULL;
  int unwinding_ = 0;
};

// File access through MPI-IO with collective metadata: rank 0 reads metadata and broadcasts it
// instead of every rank reading the same bytes, and metadata is written collectively.
H5Id mpio_fapl(MPI_Comm comm, const std::string& path) {
  H5Id fapl = own(H5Pcreate(H5P_FILE_ACCESS), H5Pclose, "H5Pcreate", path);
  h5_check(H5Pset_fapl_mpio(fapl.get(), comm, MPI_INFO_NULL), "H5Pset_fapl_mpio", path);
  h5_check(H5Pset_all_coll_metadata_ops(fapl.get(), true), "H5Pset_all_coll_metadata_ops", path);
  h5_check(H5Pset_coll_metadata_write(fapl.get(), true), "H5Pset_coll_metadata_write", path);
  return fapl;
}

// Collective HDF5 transfers (every rank calls, a rank with nothing selects nothing) carried out
// by independent MPI-IO underneath. A rank's part of a contiguous dataset is one contiguous byte
// extent (a row-major element range), so two-phase collective buffering has nothing to merge;
// and Open MPI 4.1's OMPIO collective reads returned wrong bytes for partially overlapping
// selections of several ranks (caught by the CRC check of tests/mpi/test_checkpoint_io.cpp).
H5Id collective_dxpl(const std::string& path) {
  H5Id dxpl = own(H5Pcreate(H5P_DATASET_XFER), H5Pclose, "H5Pcreate", path);
  h5_check(H5Pset_dxpl_mpio(dxpl.get(), H5FD_MPIO_COLLECTIVE), "H5Pset_dxpl_mpio", path);
  h5_check(H5Pset_dxpl_mpio_collective_opt(dxpl.get(), H5FD_MPIO_INDIVIDUAL_IO), "H5Pset_dxpl_mpio_collective_opt", path);
  return dxpl;
}

// ---------------------------------------------------------------------------------------------
// The directory (rank 0 only)

// ckpt_<8 or more digits>.h5 (tmp = false) or the same with .tmp (tmp = true).
bool parse_name(const std::string& name, std::int64_t* step, bool* tmp) {
  const std::string pre = "ckpt_";
  if (name.compare(0, pre.size(), pre) != 0) return false;
  std::size_t i = pre.size();
  while (i < name.size() && name[i] >= '0' && name[i] <= '9') ++i;
  const std::size_t digits = i - pre.size();
  if (digits < 8 || digits > 18) return false;
  const std::string rest = name.substr(i);
  if (rest != ".h5" && rest != ".h5.tmp") return false;
  if (step) *step = std::stoll(name.substr(pre.size(), digits));
  if (tmp) *tmp = rest != ".h5";
  return true;
}

// Checkpoint files (not .tmp) of dir, newest step first.
std::vector<std::pair<std::int64_t, std::string>> list_checkpoints(const std::string& dir) {
  std::vector<std::pair<std::int64_t, std::string>> out;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), e; !ec && it != e; it.increment(ec)) {
    std::int64_t step = 0;
    bool tmp = false;
    const std::string name = it->path().filename().string();
    if (parse_name(name, &step, &tmp) && !tmp) out.emplace_back(step, name);
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a > b; });
  return out;
}

// fsync a file or a directory (the rename of an entry is durable once its directory is synced).
std::string sync_path(const std::string& p, bool directory) {
  const int fd = ::open(p.c_str(), O_RDONLY | (directory ? O_DIRECTORY : 0));
  if (fd < 0) return p + ": cannot open to sync: " + std::strerror(errno);
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  // Some file systems cannot sync a directory (EINVAL): the rename is then as durable as they allow.
  if (rc != 0 && !(directory && err == EINVAL)) return p + ": fsync failed: " + std::strerror(err);
  return "";
}

std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char b[32];
  std::strftime(b, sizeof b, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return b;
}

void warn(const std::string& msg) { std::cerr << "[checkpoint] warning: " << msg << std::endl; }

std::string read_latest(const std::string& dir) {
  std::ifstream in(dir + "/latest");
  std::string name;
  if (in) std::getline(in, name);
  while (!name.empty() && (name.back() == '\r' || name.back() == ' ' || name.back() == '\t')) name.pop_back();
  return name;
}

// Rename, then point `latest` at it (temp + rename: a reader sees the old or the new name, never
// a partial one), then prune. Returns a problem or "".
std::string commit(const std::string& dir, const std::string& tmp, const std::string& name, int keep_last) {
  std::error_code ec;
  fs::rename(tmp, dir + "/" + name, ec);
  if (ec) return "cannot rename " + tmp + " to " + name + ": " + ec.message();
  std::string p = sync_path(dir, true);
  if (!p.empty()) return p;
  const std::string latest_tmp = dir + "/latest.tmp";
  {
    std::ofstream out(latest_tmp, std::ios::trunc);
    out << name << "\n";
    out.close();
    if (!out) return latest_tmp + ": cannot write";
  }
  if (!(p = sync_path(latest_tmp, false)).empty()) return p;
  fs::rename(latest_tmp, dir + "/latest", ec);
  if (ec) return "cannot rename " + latest_tmp + " to latest: " + ec.message();
  if (!(p = sync_path(dir, true)).empty()) return p;

  // Pruning: the checkpoint is committed, so a failure here is only a warning.
  std::set<std::string> keep = {name};
  const auto files = list_checkpoints(dir);
  if (keep_last > 0)
    for (std::size_t i = 0; i < files.size() && i < static_cast<std::size_t>(keep_last); ++i) keep.insert(files[i].second);
  else
    for (const auto& f : files) keep.insert(f.second);
  std::vector<std::string> doomed;
  for (const auto& f : files)
    if (!keep.count(f.second)) doomed.push_back(f.second);
  for (fs::directory_iterator it(dir, ec), e; !ec && it != e; it.increment(ec)) {
    bool is_tmp = false;
    const std::string n = it->path().filename().string();
    if (parse_name(n, nullptr, &is_tmp) && is_tmp) doomed.push_back(n);  // left by an interrupted save
  }
  for (const std::string& n : doomed) {
    std::error_code rm;
    fs::remove(dir + "/" + n, rm);
    if (rm) warn("cannot remove " + dir + "/" + n + ": " + rm.message());
  }
  return "";
}

}  // namespace

// -----------------------------------------------------------------------------------------------
// Save

namespace {
std::vector<CheckpointRange> one_range(std::int64_t begin, std::int64_t end) {
  if (begin == end && begin >= 0) return {};
  return {{begin, end, 0}};
}
bool owns_any(const std::vector<CheckpointRange>& owned) {
  for (const CheckpointRange& g : owned)
    if (g.begin < g.end) return true;
  return false;
}

// Testing aids (tests/check_kill_during_save.sh, tests/check_rank_failure.sh): TH_FAULT="rank:step:save"
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

  MpiMirror mpi(comm);
  const auto me = static_cast<std::size_t>(comm.rank());
  errno = 0;  // what a failed write leaves here names its cause (ENOSPC, EDQUOT)
  try {  // Write: every rank makes the same calls in the same order; each writes its pieces.
    std::lock_guard<std::mutex> lock(hdf5_mutex());
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    H5Id fapl = mpio_fapl(mpi.get(), tmp);
    H5Id file = own(H5Fcreate(tmp.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.get()), H5Fclose, "H5Fcreate (MPI-IO)", tmp, true);
    H5Id dxpl = collective_dxpl(tmp);
    H5Id lcpl = own(H5Pcreate(H5P_LINK_CREATE), H5Pclose, "H5Pcreate", tmp);
    h5_check(H5Pset_create_intermediate_group(lcpl.get(), 1), "H5Pset_create_intermediate_group", tmp);
    H5Id dcpl = own(H5Pcreate(H5P_DATASET_CREATE), H5Pclose, "H5Pcreate", tmp);
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
        H5Id space = dims.empty() ? own(H5Screate(H5S_SCALAR), H5Sclose, "H5Screate", tmp)
                                  : own(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr),
                                        H5Sclose, "H5Screate_simple", tmp);
        const std::string p = dataset_path(k, t.name);
        H5Id ds = own(H5Dcreate2(file.get(), p.c_str(), H5T_IEEE_F32LE, space.get(), lcpl.get(), dcpl.get(), H5P_DEFAULT),
                      H5Dclose, "H5Dcreate2", tmp + " " + p);
        const auto [lo, hi, local] = piece(ranges, me, t);
        if (t.numel > 0)
          write_range(ds.get(), dims, static_cast<std::uint64_t>(lo), static_cast<std::uint64_t>(hi),
                      hi > lo ? bufs[k] + local : nullptr, dxpl.get(), tmp + " " + p);
        put_attr_u32(ds.get(), "crc32", stored[k * T + i], tmp);
        put_attr(ds.get(), "flat_offset", t.offset, tmp);
        ds.close("H5Dclose", tmp);
      }
    }
    put_state_crc(file.get(), tmp);  // last: covers every root attribute written above
    h5_check(H5Fflush(file.get(), H5F_SCOPE_GLOBAL), "H5Fflush", tmp);
    file.close("H5Fclose", tmp);
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
    H5Id fapl = mpio_fapl(mpi.get(), tmp);
    H5Id file = own(H5Fopen(tmp.c_str(), H5F_ACC_RDONLY, fapl.get()), H5Fclose, "H5Fopen (MPI-IO)", tmp, true);
    H5Id dxpl = collective_dxpl(tmp);
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
        H5Id ds = own(H5Dopen2(file.get(), p.c_str(), H5P_DEFAULT), H5Dclose, "H5Dopen2", tmp + " " + p);
        std::int64_t crc = -1;
        if (!get_attr(ds.get(), "crc32", crc, tmp) || static_cast<std::uint32_t>(crc) != stored[k * T + i])
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
    file.close("H5Fclose", tmp);
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

// -----------------------------------------------------------------------------------------------
// Find

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
    MpiMirror mpi(comm);
    std::lock_guard<std::mutex> lock(hdf5_mutex());
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    H5Id fapl = mpio_fapl(mpi.get(), path);
    H5Id file = own(H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl.get()), H5Fclose, "H5Fopen (MPI-IO)", path, true);
    H5Id dxpl = collective_dxpl(path);
    std::string missing;
    if (!get_state(file.get(), state, &missing, path))  // metadata read by rank 0, broadcast: same everywhere
      throw Error(path + ": attribute " + missing + " vanished between the check and the load");
    std::int64_t version = 1;
    get_attr(file.get(), "format_version", version, path);
    const std::string state_problem = version >= 2 ? check_state_crc(file.get(), path) : std::string();
    if (!state_problem.empty()) throw Error("checkpoint " + path + ": " + state_problem + " (changed since it was checked)");
    for (int k = 0; k < kKinds; ++k) {
      if (!read_kind[k]) continue;
      for (std::size_t i = 0; i < T; ++i) {
        const CheckpointTensor& t = tensors[i];
        const std::string p = dataset_path(k, t.name);
        H5Id ds = own(H5Dopen2(file.get(), p.c_str(), H5P_DEFAULT), H5Dclose, "H5Dopen2", path + " " + p);
        std::int64_t crc = 0;
        if (!get_attr(ds.get(), "crc32", crc, path)) throw Error(path + ": " + p + " lost its crc32 attribute");
        stored[k * T + i] = static_cast<std::uint32_t>(crc);
        const auto [lo, hi, local] = piece(ranges, me, t);
        float* dst = hi > lo ? bufs[k] + local : nullptr;
        if (t.numel > 0)
          read_range(ds.get(), dims_of(t), static_cast<std::uint64_t>(lo), static_cast<std::uint64_t>(hi), dst,
                     dxpl.get(), path + " " + p);
        mine[k * T + i] = crc_floats(dst, hi - lo);
      }
    }
    file.close("H5Fclose", path);
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
