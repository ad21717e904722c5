#pragma once
// Checkpoints: one HDF5 file per checkpoint, <dir>/ckpt_<step, 8 digits>.h5, written and read
// collectively through MPI-IO. Every tensor is stored once per kind at its GLOBAL shape
// (/model/<name>, /optimizer/exp_avg/<name>, /optimizer/exp_avg_sq/<name>), whatever the number
// of ranks and however the flat buffers were partitioned when it was written, so a checkpoint
// written on N ranks loads on M ranks: each rank reads the element range it owns now.
// The format and the commit protocol are documented in docs/checkpoint-format.md.
//
// Buffers and ranges. The tensors are slices of flat fp32 buffers (th/model/params.hpp). A rank
// passes the element range [begin, end) of the flat buffers it owns, and pointers to ITS PART of
// each buffer: params[k] is flat element begin + k. A rank holding the whole buffer passes the
// buffer itself with begin = 0; a ZeRO partition passes its local shard with its global range;
// a rank with an empty range may pass null pointers.
//
// Every function here is collective over comm (except verify_checkpoint and
// checkpoint_file_name). Conditions that could differ between ranks (a file system's view, a
// verification) are decided on rank 0 and broadcast, so either every rank returns or every rank
// throws the same th::Error; only an I/O error inside a collective HDF5 call throws on the ranks
// that saw it (main() then aborts the job, as for any error after start-up).
#include <cstdint>
#include <string>
#include <vector>

#include "th/model/params.hpp"

namespace th {

class Comm;

// A named slice of the flat buffers: elements [offset, offset + numel), row-major of `shape`.
struct CheckpointTensor {
  std::string name;                 // "encoder/layer_0/self_attn/q_proj/weight"
  std::vector<std::int64_t> shape;  // global shape; Linear weights [out, in]
  std::int64_t offset = 0;
  std::int64_t numel = 0;
};

// A range of the flat buffers a rank owns: flat elements [begin, end) are buf[local, local +
// end - begin) of the buffers the rank passes. A rank may own several (a ZeRO partition: one
// piece of every segment); a tensor may not be cut between two ranges of one rank.
struct CheckpointRange {
  std::int64_t begin = 0, end = 0, local = 0;
};

// What a training run needs to continue bit for bit (besides the buffers).
struct CheckpointState {
  std::int64_t step = 0, epoch = 0, step_in_epoch = 0;
  std::uint64_t micro = 0;  // dropout RNG counter (counter-based RNG: the counter is the state)
  double loss_scale = 1.0;
  std::string deck;         // the resolved deck text
  int world_size = 1, zero_stage = 0;
  // Optimizer updates done (fewer than `step` when fp16 overflows skipped steps; -1: as many as
  // `step`) and the fp16 loss scaler's counters (LossScaler::State). Optional in the file: older
  // checkpoints read as -1 / 0.
  std::int64_t optimizer_steps = -1;
  std::int64_t scaler_clean_steps = 0, scaler_hysteresis_left = 0, scaler_floor_overflows = 0,
               scaler_skipped_steps = 0;
  // The tokenizer of the training data (th/data/dataset_h5.hpp: 16 hex digits, or "none" for
  // synthetic ids). Optional in the file: older checkpoints read as "" (unknown).
  std::string tokenizer_fingerprint;
};

// Version of the layout this code writes, stored in the root attribute format_version; files of
// a newer version are rejected (an older reader cannot know what it would miss). Version 2 added
// state_crc32, the checksum of the root attributes; version 1 files are read without it.
constexpr std::int64_t kCheckpointFormatVersion = 2;

// "ckpt_00000042.h5" (more digits past step 99 999 999).
std::string checkpoint_file_name(std::int64_t step);

// The tensor list of a parameter store, in declaration order.
inline std::vector<CheckpointTensor> checkpoint_tensors(const std::vector<ParamInfo>& infos) {
  std::vector<CheckpointTensor> out;
  out.reserve(infos.size());
  for (const ParamInfo& p : infos) out.push_back({p.name, p.shape, p.offset, p.numel});
  return out;
}

// Writes <dir>/ckpt_<step>.h5 atomically: into <name>.tmp, flushed (fsync), closed, re-opened and
// verified (every rank compares what it wrote, every dataset's CRC-32 is checked), renamed, then
// <dir>/latest rewritten (temp + rename) to hold the file name: that rename is the commit point.
// Then keeps the keep_last newest checkpoints by step (keep_last <= 0 keeps all), never the one
// just written, and removes stale *.tmp files of interrupted saves. The ranges of all ranks must
// be disjoint and together cover every tensor (each element is written exactly once). The state
// is taken from rank 0. `dir` is created if needed.
void save_checkpoint(Comm& comm, const std::string& dir, const std::vector<CheckpointTensor>& tensors,
                     const float* params, const float* exp_avg, const float* exp_avg_sq, std::int64_t begin,
                     std::int64_t end, const CheckpointState& state, int keep_last);
// The same with a list of owned ranges per rank.
void save_checkpoint(Comm& comm, const std::string& dir, const std::vector<CheckpointTensor>& tensors,
                     const float* params, const float* exp_avg, const float* exp_avg_sq,
                     const std::vector<CheckpointRange>& owned, const CheckpointState& state, int keep_last);

// What a checkpoint is looked for: to continue training, or for its weights only (evaluate,
// translate). Only the advice in the messages differs.
enum class CheckpointUse { Resume, Weights };

// Which checkpoint to resume from; every rank gets the same answer ("" = start afresh).
//   "never": "" when dir holds no checkpoint; th::InputError when it holds some (an earlier run's:
//            starting afresh there would overwrite some of them and mix two runs in one folder).
//   "auto":  the newest checkpoint of dir that verifies: the file `latest` names first, then every
//            ckpt_*.h5 newest step first. Each one rejected is reported by rank 0 on stderr with
//            the file and what is wrong (truncated file, bad checksum, missing dataset, wrong
//            shape, ...). "" when dir holds no checkpoint; th::InputError listing the problems
//            when it holds some and none verifies.
//   a path:  that file (a bare file name not found as given is looked up in dir); it must verify,
//            else th::InputError naming it and the problem.
std::string find_checkpoint(Comm& comm, const std::string& dir, const std::string& resume,
                            const std::vector<CheckpointTensor>& expected,
                            CheckpointUse use = CheckpointUse::Resume);

// The checkpoint folder as a place to write (io/checkpoint_dir.cpp). Collective: rank 0 creates
// dir and writes, syncs and removes a probe file in it, so a folder that cannot hold checkpoints
// stops the run at start-up rather than at its first save; th::InputError on every rank, naming
// `what` (e.g. "checkpoint%dir = '...'") and the reason. With bytes_needed > 0, rank 0 also warns
// when the file system has less free space than that.
void prepare_checkpoint_dir(Comm& comm, const std::string& dir, const std::string& what,
                            std::int64_t bytes_needed = 0);

// Bytes a checkpoint of these tensors with a deck of deck_bytes takes on disk, rounded up: the
// float32 data of the three groups plus an upper estimate of HDF5's metadata (object headers,
// attributes, group indexes, the deck). save_checkpoint refuses to start a file when the file
// system has less free space than this ("no space left on device", nothing written).
std::int64_t checkpoint_bytes(const std::vector<CheckpointTensor>& tensors, std::size_t deck_bytes);

// Collective read: each rank reads the elements [begin, end) of the flat buffers (the parts of
// the datasets that overlap it) into its buffers (same convention as save; exp_avg and exp_avg_sq
// may be null to read the weights only). Checks the file's structure first (rank 0) and, for every
// dataset the ranks' ranges cover together, its CRC-32. Returns the state attributes.
CheckpointState load_checkpoint(Comm& comm, const std::string& path, const std::vector<CheckpointTensor>& tensors,
                                float* params, float* exp_avg, float* exp_avg_sq, std::int64_t begin,
                                std::int64_t end);
CheckpointState load_checkpoint(Comm& comm, const std::string& path, const std::vector<CheckpointTensor>& tensors,
                                float* params, float* exp_avg, float* exp_avg_sq,
                                const std::vector<CheckpointRange>& owned);

// Serial, on the calling rank only: every check find_checkpoint makes on one file (opens, format
// version, state attributes, each expected dataset present with its shape and dtype, no dataset
// of another model, every CRC-32). Returns "" when the file verifies, else what is wrong.
std::string verify_checkpoint(const std::string& path, const std::vector<CheckpointTensor>& expected);

}  // namespace th
