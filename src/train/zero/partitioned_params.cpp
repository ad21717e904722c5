// Stage 3: the rank's partition of the parameters, gathered unit by unit (param_home.hpp).
//
// Without parameter offload the partition is gathered straight into the working range. With
// offload_param = 'cpu' the partition is the host copy: the rank's own block is first copied up
// into its place in the working range (on a device backend from pinned memory on the backend's
// copy stream, overlapping compute; on the CPU backend a host copy), then the
// working range is all-gathered in place, so the collective only touches working memory. With
// offload_param = 'nvme' that copy comes from the file: stage_pieces() reads the chunks holding
// the rank's blocks (verified) into their places before the gathers start.
//
// Mixed precision on a backend that takes bf16 operands (the CPU's, the emulated device's;
// `two_byte`): the working range holds the 2-byte compute copy (bf16 or fp16,
// ParamStore::use_16bit_values on the range), all-gathered as 4-byte words of two values (the
// layout pads segments to 2N, so every piece has an even length and offset), and so does the
// partition (device memory, or host memory with offload_param = 'cpu'); with offload_param =
// 'nvme' the file keeps the compute values in fp32 (rounded: the same values), narrowed on the
// host as they are staged. The wide parameters' fp32 copies are refreshed as their unit arrives
// (PieceSource::arrived).
#include <algorithm>
#include <cstring>
#include <string>

#include "gatherer.hpp"
#include "param_home.hpp"
#include "precision.hpp"
#include "reserved_range.hpp"
#include "th/core/profiler.hpp"
#include "th/parallel/agree.hpp"
#include "th/parallel/replica_check.hpp"
#include "th/train/device_comm.hpp"

namespace th::zero {

namespace {

using Piece = ZeroPartition::Piece;

class PartitionedParams final : public ParamHome, public PieceSource {
 public:
  PartitionedParams(Comm& comm, Transformer<float>& model, const ZeroPartition& part, const ZeroOptions& opt,
                    float* grad_range, bool two_byte)
      : comm_(comm), ps_(model.params()), part_(part), param_(opt.offload.param), two_byte_(two_byte),
        type_(opt.compute), range_(ps_.size(), MemCategory::Parameters, ps_.backend(), two_byte ? 2 : sizeof(float)) {
    TH_CHECK(!two_byte_ || type_ != DType::F32, "stage 3's 2-byte compute copy without mixed precision");
    if (param_ != OffloadTarget::None && !ps_.backend().device_is_host() && opt.offload.optimizer == OffloadTarget::None)
      throw InputError(std::string("parallel%offload_param = '") + (param_ == OffloadTarget::Cpu ? "cpu" : "nvme") +
                       "' on the " + ps_.backend().name() +
                       " backend needs parallel%offload_optimizer too (the optimizer would update host-resident "
                       "parameters with device kernels)");
    const std::int64_t S = part.shard_size();
    if (param_ == OffloadTarget::Nvme)  // the partition lives in the file; the host holds two chunk slots
      agree_each(comm_, [&] {
        file_ = std::make_unique<ChunkFile>(opt.offload.nvme_path, "th_param_rank" + std::to_string(comm.rank()) + ".bin",
                                            S, 1, opt.offload.nvme_chunk_mb, MemCategory::Parameters);
      });
    else if (two_byte_)
      shard16_ = ps_.backend().zeros({S}, type_, MemCategory::Parameters, shard_space());
    else
      shard_ = ps_.backend().zeros({S}, DType::F32, MemCategory::Parameters, shard_space());
    ps_.attach(two_byte_ ? nullptr : range_.data(), grad_range);
    if (two_byte_) ps_.use_16bit_values(type_, range_.data16());
    gatherer_ = std::make_unique<Gatherer>(part, range_, *this, opt.prefetch, opt.persistence_threshold);
    model.set_param_access(gatherer_.get());
  }

  float* owned(const Piece& p) override { return shard_.defined() ? shard_.data<float>() + p.shard : nullptr; }
  std::uint16_t* owned16(const Piece& p) override { return shard16_.defined() ? shard16() + p.shard : nullptr; }
  bool two_byte() const override { return two_byte_; }

  // Unit by unit: only one unit is ever whole. offload_param = 'nvme': the initial partition is
  // assembled in a transient workspace and written to the file once.
  void initialize(std::uint64_t seed, const OwnedSpans&, float* master, DType compute) override {
    if (two_byte_) return initialize16(seed, master);
    const std::int64_t S = part_.shard_size();
    Tensor init = file_ ? Tensor::zeros({std::max<std::int64_t>(S, 1)}, DType::F32, MemCategory::Workspace) : shard_;
    for (int u = 0; u < gatherer_->count(); ++u) {
      range_.commit(gatherer_->begin(u), gatherer_->end(u));
      ps_.initialize(seed, gatherer_->begin(u), gatherer_->end(u));
      if (master) {
        for (const auto& p : part_.pieces())
          if (p.unit == u)
            copy_device(ps_.backend(), master + p.shard, range_.data() + part_.owned(p), p.count);
        round_to_compute(ps_.backend(), compute, range_.data() + gatherer_->begin(u), gatherer_->end(u) - gatherer_->begin(u));
      }
      for (const auto& p : part_.pieces())
        if (p.unit == u)
          from_working(init.data<float>() + p.shard, range_.data() + part_.owned(p), p.count);
      range_.account();
      if (gatherer_->persistent(u))
        gatherer_->mark_resident(u);
      else
        range_.release(gatherer_->begin(u), gatherer_->end(u), false);
    }
    range_.account();
    if (file_) write_partition(init.data<float>(), DType::F32);
  }

  // Only the persistent units are kept whole.
  void regather() override {
    std::vector<CommRequestPtr> reqs;
    std::vector<std::size_t> idx;
    for (std::size_t k = 0; k < part_.pieces().size(); ++k)
      if (gatherer_->persistent(part_.pieces()[k].unit)) idx.push_back(k);
    launch(idx, reqs);
    for (auto& r : reqs) r->wait();
    for (int u = 0; u < gatherer_->count(); ++u)
      if (gatherer_->persistent(u)) arrived(gatherer_->begin(u), gatherer_->end(u));
  }

  std::vector<float> gather_values() override {
    std::vector<float> full(static_cast<std::size_t>(ps_.size()), 0.0f);
    if (two_byte_ && param_ == OffloadTarget::None) {  // gathered and widened in device workspace, then copied
      Backend& be = ps_.backend();
      Tensor full16 = be.zeros({std::max<std::int64_t>(ps_.size(), 1)}, type_, MemCategory::Workspace);
      auto* f16 = static_cast<std::uint16_t*>(full16.raw());
      for (const Piece& p : part_.pieces())
        iall_gather_device_16bit(be, comm_, shard16() + p.shard, f16 + p.begin, static_cast<std::size_t>(p.count))->wait();
      Tensor wide = be.empty({std::max<std::int64_t>(ps_.size(), 1)}, DType::F32, MemCategory::Workspace);
      be.widen_16bit(type_, wide.data<float>(), f16, ps_.size());
      copy_to_host(be, full.data(), wide.data<float>(), ps_.size());
      return full;
    }
    Tensor staged = file_ ? read_partition() : two_byte_ ? widened_partition() : shard_;
    if (!file_ && !two_byte_ && shard_space() == MemorySpace::Device && !ps_.backend().device_is_host()) {  // host copy for MPI
      staged = Tensor::empty({std::max<std::int64_t>(part_.shard_size(), 1)}, DType::F32, MemCategory::Workspace);
      copy_to_host(ps_.backend(), staged.data<float>(), shard_.data<float>(), part_.shard_size());
    }
    for (const Piece& p : part_.pieces())
      comm_.all_gather(staged.data<float>() + p.shard, full.data() + p.begin, static_cast<std::size_t>(p.count));
    return full;
  }

  bool replicas_identical() override {
    std::vector<float> kept;  // only the persistent units are replicated (read by host copies)
    for (int u = 0; u < gatherer_->count(); ++u) {
      if (!gatherer_->persistent(u)) continue;
      const std::int64_t b = gatherer_->begin(u), n = gatherer_->end(u) - b;
      if (two_byte_) {  // widened on the device (one-to-one on the bits), then copied
        Tensor wide = ps_.backend().empty({std::max<std::int64_t>(n, 1)}, DType::F32, MemCategory::Workspace);
        ps_.backend().widen_16bit(type_, wide.data<float>(), range_.data16() + b, n);
        kept.resize(kept.size() + static_cast<std::size_t>(n));
        copy_to_host(ps_.backend(), kept.data() + kept.size() - n, wide.data<float>(), n);
        continue;
      }
      Tensor staging;
      const float* v = host_view(ps_.backend(), ps_.values() + b, n, staging);
      kept.insert(kept.end(), v, v + n);
    }
    return th::replicas_identical(comm_, kept.data(), static_cast<std::int64_t>(kept.size()));
  }

  // Host memory for the checkpoint: the partition itself where the host can read it, else a copy.
  const float* partition_values(Tensor& scratch, const OwnedSpans&) override {
    fp32_only();
    if (shard_.defined() && host_readable_shard()) return shard_.data<float>();
    if (shard_.defined()) {
      scratch = Tensor::empty({std::max<std::int64_t>(part_.shard_size(), 1)}, DType::F32, MemCategory::Workspace);
      copy_to_host(ps_.backend(), scratch.data<float>(), shard_.data<float>(), part_.shard_size());
      return scratch.data<float>();
    }
    scratch = read_partition();  // verified reads of the file
    return scratch.data<float>();
  }
  float* load_target(Tensor& scratch) override {
    fp32_only();
    settle_uploads();  // the host writes the partition: no copy out of it may be in flight
    if (shard_.defined() && host_readable_shard()) return shard_.data<float>();
    scratch = Tensor::zeros({std::max<std::int64_t>(part_.shard_size(), 1)}, DType::F32, MemCategory::Workspace);
    return scratch.data<float>();
  }
  void loaded(const Tensor& scratch, const OwnedSpans&) override {
    fp32_only();
    if (file_) write_partition(scratch.data<float>(), DType::F32);
    else if (!host_readable_shard()) copy_to_device(ps_.backend(), shard_.data<float>(), scratch.data<float>(), part_.shard_size());
  }

  ChunkFile* file() override { return file_.get(); }
  bool owned_on_host() const override { return shard_space() != MemorySpace::Device && !ps_.backend().device_is_host(); }
  void write_partition(const float* x, DType compute) override {
    agree_each(comm_, [&] {
      file_->fill([&](float* a, float*, std::int64_t c0, std::int64_t c1) {
        std::memcpy(a, x + c0, sizeof(float) * static_cast<std::size_t>(c1 - c0));
        round_to_compute_on_host(compute, a, c1 - c0);
      });
    });
  }

  // Also ends the uploads: the caller is about to change the values (the optimizer step, a load).
  void drop_prefetched() override {
    gatherer_->drop();
    settle_uploads();
  }
  void order_recorded() override { gatherer_->stop_recording(); }
  bool collective_forward() const override { return true; }
  void add_offload(ZeroMemory& m) const override {
    if (param_ == OffloadTarget::Cpu) m.offload_host += (two_byte_ ? 2 : 4) * part_.shard_size();
    if (file_) {  // 'nvme': the host holds the file's two chunk slots
      m.offload_host += file_->window_bytes();
      m.offload_window += file_->window_bytes();
      m.offload_nvme += file_->file_bytes();
    }
  }

  // PieceSource: the rank's blocks from the NVMe file first, then the gathers.
  void launch(const std::vector<std::size_t>& idx, std::vector<CommRequestPtr>& reqs) override {
    for (std::size_t k : idx) {  // back the pieces' part of the working range first
      const Piece& p = part_.pieces()[k];
      range_.commit(p.begin, p.begin + p.count * part_.world());
    }
    if (file_) stage_pieces(idx);
    for (std::size_t k : idx) reqs.push_back(gather_piece(part_.pieces()[k]));
  }
  void arrived(std::int64_t begin, std::int64_t end) override { ps_.widen_copies(begin, end); }

 private:
  std::uint16_t* shard16() const { return static_cast<std::uint16_t*>(shard16_.raw()); }
  void fp32_only() const {  // checkpoints of fp32 runs only (mixed precision saves its master)
    TH_CHECK(!two_byte_, "fp32 checkpoint values asked of a 2-byte compute copy");
  }

  // initialize() for the 2-byte compute copy, unit by unit: the unit's fp32 initial values in a
  // transient workspace, the master's pieces from them, then narrowed into the partition and the
  // working range (the bits rounding in place would give).
  void initialize16(std::uint64_t seed, float* master) {
    Backend& be = ps_.backend();
    Tensor file_init;  // offload_param = 'nvme': the partition assembled here, written once
    if (file_) file_init = Tensor::zeros({std::max<std::int64_t>(part_.shard_size(), 1)}, DType::F32, MemCategory::Workspace);
    for (int u = 0; u < gatherer_->count(); ++u) {
      const std::int64_t b = gatherer_->begin(u), e = gatherer_->end(u);
      range_.commit(b, e);
      Tensor init = be.zeros({e - b}, DType::F32, MemCategory::Workspace);
      float* f = init.data<float>();
      ps_.initial_values(seed, f, b, e);
      be.narrow_16bit(type_, range_.data16() + b, f, e - b);
      for (const auto& p : part_.pieces())
        if (p.unit == u) {
          const std::int64_t o = part_.owned(p);
          if (master) copy_device(be, master + p.shard, f + (o - b), p.count);
          if (file_)  // the file's fp32 values: the 16-bit ones widened (exact)
            copy_to_host(be, file_init.data<float>() + p.shard, f + (o - b), p.count);
          else if (shard_space() == MemorySpace::Device)
            copy_device(be, shard16() + p.shard, range_.data16() + o, p.count);
          else
            copy_to_host(be, shard16() + p.shard, range_.data16() + o, p.count);
        }
      arrived(b, e);
      range_.account();
      if (gatherer_->persistent(u))
        gatherer_->mark_resident(u);
      else
        range_.release(b, e, false);
    }
    range_.account();
    if (file_) write_partition(file_init.data<float>(), type_);
  }

  // offload_param = 'cpu' with the 2-byte partition (host memory): widened on the host.
  Tensor widened_partition() {
    Tensor x = Tensor::empty({std::max<std::int64_t>(part_.shard_size(), 1)}, DType::F32, MemCategory::Workspace);
    widen_16bit_on_host(type_, x.data<float>(), shard16(), part_.shard_size());
    return x;
  }

  // The partition's memory: host with offload_param 'cpu' (pinned on a device backend, so that its
  // uploads run on the copy stream), else the backend's device.
  MemorySpace shard_space() const {
    if (param_ != OffloadTarget::Cpu) return MemorySpace::Device;
    return ps_.backend().device_is_host() ? MemorySpace::Host : MemorySpace::Pinned;
  }
  bool host_readable_shard() const { return shard_space() != MemorySpace::Device || ps_.backend().device_is_host(); }
  // Working values (device) into the initial partition (host when offloaded or for the file).
  void from_working(float* dst, const float* src, std::int64_t n) {
    if (file_ || shard_space() != MemorySpace::Device)
      copy_to_host(ps_.backend(), dst, src, n);
    else
      copy_device(ps_.backend(), dst, src, n);
  }

  // Starts the all-gather of one piece from the partition into the working range (2-byte or fp32).
  CommRequestPtr gather_piece(const Piece& p) {
    Backend& be = ps_.backend();
    if (two_byte_)
      return gather_into(p, range_.data16(), shard16(), [&](const std::uint16_t* s, std::uint16_t* r, std::size_t n) {
        return iall_gather_device_16bit(be, comm_, s, r, n);
      });
    return gather_into(p, range_.data(), static_cast<const float*>(shard_.raw()),
                       [&](const float* s, float* r, std::size_t n) { return iall_gather_device(be, comm_, s, r, n); });
  }
  // Without parameter offload straight from the partition; offloaded, the rank's block goes up
  // into its place first (from the host partition, or staged from the file), then in place.
  template <typename T, typename Gather>
  CommRequestPtr gather_into(const Piece& p, T* working, const T* partition, Gather gather) {
    const auto count = static_cast<std::size_t>(p.count);
    if (param_ == OffloadTarget::None) return gather(partition + p.shard, working + p.begin, count);
    if (!file_) {
      ProfileScope scope(profiler(), "offload/param_upload", Category::Offload);
      upload(working + part_.owned(p), partition + p.shard, sizeof(T) * count);
    }
    return gather(working + part_.owned(p), working + p.begin, count);
  }

  // The rank's block from the host partition up into the working range. A pinned partition (device
  // backends) goes up on the copy stream, after the compute work issued so far and overlapping the
  // kernels issued after it (the gathers are issued ahead by the prefetch); the compute stream, and
  // the gather after it, start after the copy. The host waits for the last upload before it writes the partition again
  // (settle_uploads).
  void upload(void* dst, const void* src, std::size_t bytes) {
    Backend& be = ps_.backend();
    if (shard_space() != MemorySpace::Pinned) {
      be.host_to_device(dst, src, bytes);
      return;
    }
    // After the compute stream's work issued so far (its last reads of this part of the range).
    be.stream_wait(Backend::Stream::Copy, be.record(Backend::Stream::Compute));
    be.copy_to_device_async(dst, src, bytes, Backend::Stream::Copy);
    last_upload_ = be.record(Backend::Stream::Copy);
    be.stream_wait(Backend::Stream::Compute, last_upload_);
    upload_pending_ = true;
  }
  void settle_uploads() {
    if (!upload_pending_) return;
    ps_.backend().wait(last_upload_);
    upload_pending_ = false;
  }

  // Copies the rank's blocks of pieces `idx` from the file into their places in the working range
  // (verified reads, agreed over ranks).
  void stage_pieces(const std::vector<std::size_t>& idx) {
    if (idx.empty()) return;
    const auto& pieces = part_.pieces();
    std::vector<std::uint16_t> narrowed;  // the 2-byte compute copy: the file's values narrowed
    std::int64_t lo = pieces[idx.front()].shard, hi = lo;
    for (std::size_t k : idx) {
      lo = std::min(lo, pieces[k].shard);
      hi = std::max(hi, pieces[k].shard + pieces[k].count);
    }
    agree_each(comm_, [&] {
      ProfileScope scope(profiler(), "offload/param_upload", Category::Offload);
      file_->read_range(lo, hi, [&](const float* a, std::int64_t c0, std::int64_t c1) {
        for (std::size_t k : idx) {
          const Piece& p = pieces[k];
          const std::int64_t b = std::max(c0, p.shard), e = std::min(c1, p.shard + p.count);
          if (b >= e) continue;
          const std::int64_t at = part_.owned(p) + (b - p.shard);
          if (!two_byte_) {
            copy_to_device(ps_.backend(), range_.data() + at, a + (b - c0), e - b);
            continue;
          }
          narrowed.resize(static_cast<std::size_t>(e - b));
          narrow_16bit_on_host(type_, narrowed.data(), a + (b - c0), e - b);
          copy_to_device(ps_.backend(), range_.data16() + at, narrowed.data(), e - b);
        }
      });
    });
  }

  // The whole partition read from the file (transient workspace).
  Tensor read_partition() {
    Tensor x = Tensor::zeros({std::max<std::int64_t>(part_.shard_size(), 1)}, DType::F32, MemCategory::Workspace);
    float* out = x.data<float>();
    agree_each(comm_, [&] {
      file_->stream([&](float* a, float*, std::int64_t c0, std::int64_t c1) {
        std::memcpy(out + c0, a, sizeof(float) * static_cast<std::size_t>(c1 - c0));
      }, false);
    });
    return x;
  }

  Comm& comm_;
  ParamStore<float>& ps_;
  const ZeroPartition& part_;
  OffloadTarget param_;
  bool two_byte_;                     // the compute copy in 2 bytes of type_ (partition and range)
  DType type_;
  ReservedRange range_;               // the full-size working range, committed per gathered unit
  Tensor shard_;                      // the partition ('none', 'cpu'), or
  Tensor shard16_;                    // its 2-byte compute copy ('none', 'cpu')
  std::unique_ptr<ChunkFile> file_;   // or its file ('nvme')
  std::unique_ptr<Gatherer> gatherer_;
  Backend::Event last_upload_ = 0;  // the copy stream's last upload of the partition
  bool upload_pending_ = false;
};

}  // namespace

std::unique_ptr<ParamHome> make_partitioned_params(Comm& comm, Transformer<float>& model, const ZeroPartition& part,
                                                   const ZeroOptions& opt, float* grad_range, bool two_byte) {
  return std::make_unique<PartitionedParams>(comm, model, part, opt, grad_range, two_byte);
}

}  // namespace th::zero
