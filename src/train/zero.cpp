#include "th/train/zero.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <limits>

#include "th/core/error.hpp"
#include "th/core/profiler.hpp"
#include "th/kernels/cpu.hpp"
#include "th/parallel/agree.hpp"
#include "th/parallel/replica_check.hpp"

namespace th {

using Piece = ZeroPartition::Piece;

// ---------------------------------------------------------------------------------------------
// Partition map

ZeroPartition::ZeroPartition(const std::vector<ParamSegment>& segments, int rank, int world)
    : rank_(rank), world_(world) {
  for (const ParamSegment& s : segments) {
    TH_CHECK((s.end - s.begin) % world == 0, "a segment is not padded to a multiple of the world size");
    pieces_.push_back({s.begin, (s.end - s.begin) / world, shard_, s.unit});
    shard_ += pieces_.back().count;
  }
}

std::vector<ZeroPartition::ParamSlice> ZeroPartition::slices(const ParamInfo& p) const {
  std::vector<ParamSlice> out;
  for (const Piece& s : pieces_) {
    if (p.offset < s.begin || p.offset >= s.begin + world_ * s.count) continue;
    for (int r = 0; r < world_; ++r) {
      const std::int64_t a = s.begin + r * s.count, b = a + s.count;
      const std::int64_t lo = std::max(a, p.offset), hi = std::min(b, p.offset + p.numel);
      if (lo < hi) out.push_back({r, lo - p.offset, hi - p.offset, s.shard + (lo - a)});
    }
  }
  return out;
}

std::vector<CheckpointRange> ZeroPartition::owned_ranges() const {
  std::vector<CheckpointRange> out;
  for (const Piece& s : pieces_)
    if (s.count > 0) out.push_back({owned(s), owned(s) + s.count, s.shard});
  return out;
}

// ---------------------------------------------------------------------------------------------
// A reserved address range whose pages are committed when written and given back per range
// (the host analogue of CUDA's cuMemMap virtual memory management). The pool counts the pages
// actually resident (mincore), so gathered parameters and live gradient buckets are accounted
// as what they are, not as the whole range.

class ZeroEngine::Reserved {
 public:
  Reserved(std::int64_t n, MemCategory cat) : cat_(cat) {
    page_ = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
    bytes_ = (std::max<std::size_t>(static_cast<std::size_t>(n) * sizeof(float), 1) + page_ - 1) / page_ * page_;
    void* p = mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED)
      throw Error("cannot reserve " + std::to_string(bytes_) + " bytes of address space for " + to_string(cat) + ": " +
                  std::strerror(errno));
    base_ = static_cast<char*>(p);
    madvise(base_, bytes_, MADV_NOHUGEPAGE);  // page-sized commits and releases
    resident_.resize(bytes_ / page_);
  }
  ~Reserved() {
    host_pool().account(cat_, -accounted_);
    munmap(base_, bytes_);
  }
  Reserved(const Reserved&) = delete;
  Reserved& operator=(const Reserved&) = delete;
  float* data() const { return reinterpret_cast<float*>(base_); }

  // Gives back the pages wholly inside elements [b, e); with `zero`, the rest of [b, e) (on pages
  // shared with neighbours) is zeroed, so the whole range reads zero afterwards.
  void release(std::int64_t b, std::int64_t e, bool zero) {
    const std::size_t lo = static_cast<std::size_t>(b) * sizeof(float), hi = static_cast<std::size_t>(e) * sizeof(float);
    const std::size_t plo = (lo + page_ - 1) / page_ * page_, phi = hi / page_ * page_;
    if (phi > plo) {
      if (madvise(base_ + plo, phi - plo, MADV_DONTNEED) != 0)
        throw Error(std::string("madvise(MADV_DONTNEED) failed: ") + std::strerror(errno));
      if (zero) {
        std::memset(base_ + lo, 0, plo - lo);
        std::memset(base_ + phi, 0, hi - phi);
      }
    } else if (zero && hi > lo) {
      std::memset(base_ + lo, 0, hi - lo);
    }
  }

  // Brings the pool's count of this range up to date with the pages resident now.
  void account() {
    if (mincore(base_, bytes_, resident_.data()) != 0) throw Error(std::string("mincore failed: ") + std::strerror(errno));
    std::int64_t n = 0;
    for (unsigned char c : resident_) n += c & 1;
    const std::int64_t now = n * static_cast<std::int64_t>(page_);
    host_pool().account(cat_, now - accounted_);
    accounted_ = now;
  }

 private:
  MemCategory cat_;
  std::size_t page_ = 4096, bytes_ = 0;
  char* base_ = nullptr;
  std::vector<unsigned char> resident_;
  std::int64_t accounted_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Stage 3: the model's ParamAccess. A unit's pieces are all-gathered from the partitions into
// the reserved parameter range before use and released after; units below the persistence
// threshold stay gathered. The order of acquires is recorded in the first step; afterwards each
// acquire starts the non-blocking gathers of the next `prefetch` units of that trace. Every
// rank makes the same calls in the same order, so the collectives match without agreement.

class ZeroEngine::Gatherer final : public ParamAccess {
 public:
  explicit Gatherer(ZeroEngine& e) : e_(e) {
    const auto& pieces = e.part_.pieces();
    for (std::size_t k = 0; k < pieces.size(); ++k) {
      const int u = pieces[k].unit;
      if (static_cast<std::size_t>(u) >= units_.size()) units_.resize(static_cast<std::size_t>(u) + 1);
      Unit& unit = units_[static_cast<std::size_t>(u)];
      const std::int64_t end = pieces[k].begin + pieces[k].count * e.part_.world();
      if (unit.pieces.empty()) unit.begin = pieces[k].begin;
      unit.end = end;
      unit.pieces.push_back(k);
    }
    for (Unit& u : units_) u.persistent = u.end - u.begin < e.opt_.persistence_threshold;
  }

  bool persistent(int u) const { return units_[static_cast<std::size_t>(u)].persistent; }
  std::int64_t begin(int u) const { return units_[static_cast<std::size_t>(u)].begin; }
  std::int64_t end(int u) const { return units_[static_cast<std::size_t>(u)].end; }
  int count() const { return static_cast<int>(units_.size()); }
  void stop_recording() { recording_ = false; }

  void acquire(int id) override {
    Unit& u = units_[static_cast<std::size_t>(id)];
    TH_CHECK(!u.held, "unit " + std::to_string(id) + " acquired twice");
    u.held = true;
    if (u.persistent) return;
    std::size_t at = trace_.size();
    if (recording_) {
      trace_.push_back(id);
    } else if (pos_ < trace_.size() && trace_[pos_] == id) {
      at = pos_;
    } else {  // off the recorded order (an inference pass): forget what was gathered ahead
      drop();
      at = static_cast<std::size_t>(std::find(trace_.begin(), trace_.end(), id) - trace_.begin());
    }
    if (!u.resident && u.reqs.empty()) launch(u);
    wait(u);
    if (!recording_ && at < trace_.size()) {
      for (int j = 1; j <= e_.opt_.prefetch && at + static_cast<std::size_t>(j) < trace_.size(); ++j) {
        Unit& w = units_[static_cast<std::size_t>(trace_[at + static_cast<std::size_t>(j)])];
        if (!w.persistent && !w.resident && w.reqs.empty()) launch(w);
      }
      pos_ = at + 1;
    }
  }

  void release(int id) override {
    Unit& u = units_[static_cast<std::size_t>(id)];
    u.held = false;
    if (u.persistent) return;
    e_.rvalues_->account();  // before the release: the peak includes what was gathered ahead
    e_.rvalues_->release(u.begin, u.end, false);
    u.resident = false;
    e_.rvalues_->account();
  }

  // Waits for gathers in flight and releases every unit gathered ahead but not in use.
  void drop() {
    for (Unit& u : units_) {
      if (!u.reqs.empty()) wait(u);
      if (u.resident && !u.held && !u.persistent) {
        e_.rvalues_->release(u.begin, u.end, false);
        u.resident = false;
      }
    }
    e_.rvalues_->account();
    pos_ = 0;
  }

  void mark_resident(int id) { units_[static_cast<std::size_t>(id)].resident = true; }

 private:
  struct Unit {
    std::int64_t begin = 0, end = 0;
    std::vector<std::size_t> pieces;
    bool persistent = false, resident = false, held = false;
    std::vector<CommRequestPtr> reqs;
  };
  void launch(Unit& u) {
    if (e_.pfile_) e_.stage_pieces(u.pieces);  // the rank's blocks from the NVMe file first
    for (std::size_t k : u.pieces) u.reqs.push_back(e_.gather_piece(e_.part_.pieces()[k]));
  }
  void wait(Unit& u) {
    for (auto& r : u.reqs) r->wait();
    u.reqs.clear();
    u.resident = true;
    e_.rvalues_->account();
  }

  ZeroEngine& e_;
  std::vector<Unit> units_;
  std::vector<int> trace_;
  bool recording_ = true;
  std::size_t pos_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Engine

void ZeroEngine::configure(ModelSpec& spec, const ZeroOptions& opt, int world) {
  if (opt.stage == 0) return;
  spec.param_align = world;
  const auto bucket = static_cast<std::int64_t>(opt.bucket_mb * 1024 * 1024 / sizeof(float));
  spec.param_segment_max = std::max<std::int64_t>(world, bucket / world * world);
  spec.external_param_storage = opt.stage >= 2;
}

namespace {
const std::vector<ParamSegment>& closed_segments(ParamStore<float>& ps) {
  ps.end_unit();  // the model's last unit (idempotent)
  return ps.segments();
}
}  // namespace

ZeroEngine::ZeroEngine(Comm& comm, Transformer<float>& model, const ZeroOptions& opt)
    : comm_(comm), model_(model), ps_(model.params()), opt_(opt),
      part_(closed_segments(model.params()), opt.stage == 0 ? 0 : comm.rank(), opt.stage == 0 ? 1 : comm.size()) {
  const int N = comm.size();
  const std::int64_t P = ps_.size(), S = part_.shard_size();
  TH_CHECK(opt.stage >= 0 && opt.stage <= 3, "ZeRO stage " + std::to_string(opt.stage));
  TH_CHECK(opt.stage == 0 || (model.spec().param_align == N && model.spec().external_param_storage == (opt.stage >= 2)),
           "the model was not configured for ZeRO stage " + std::to_string(opt.stage) + " (ZeroEngine::configure)");
  if (opt.stage >= 2) {
    rgrads_ = std::make_unique<Reserved>(P, MemCategory::Gradients);
    shard_grads_ = Tensor::zeros({S}, DType::F32, MemCategory::Gradients);
  }
  if (opt.stage == 2) {
    values_ = Tensor::zeros({P}, DType::F32, MemCategory::Parameters);
    ps_.attach(values_.data<float>(), rgrads_->data());
  } else if (opt.stage == 3) {
    rvalues_ = std::make_unique<Reserved>(P, MemCategory::Parameters);
    if (opt.offload.param == "nvme")  // the partition lives in the file; the host holds two chunk slots
      agree_each(comm_, [&] {
        pfile_ = std::make_unique<ChunkFile>(opt.offload.nvme_path, "th_param_rank" + std::to_string(comm.rank()) + ".bin",
                                             S, 1, opt.offload.nvme_chunk_mb, MemCategory::Parameters);
      });
    else
      shard_values_ = Tensor::zeros({S}, DType::F32, MemCategory::Parameters);
    ps_.attach(rvalues_->data(), rgrads_->data());
    gatherer_ = std::make_unique<Gatherer>(*this);
    model.set_param_access(gatherer_.get());
  }
  TH_CHECK(opt.offload.optimizer == "none" || opt.stage >= 1, "optimizer offload needs ZeRO stage >= 1");
  TH_CHECK(opt.offload.param == "none" ||
               ((opt.offload.param == "cpu" || opt.offload.param == "nvme") && opt.stage == 3),
           "parameter offload is 'cpu' or 'nvme' with ZeRO stage 3");
  if (opt.offload.optimizer == "none")
    adam_ = std::make_unique<AdamW<float>>(opt.stage == 0 ? P : S, opt.adam);
  else  // an NVMe file that cannot be created stops every rank
    agree_each(comm_, [&] { offload_ = OffloadedAdamW::make(opt.offload, S, opt.adam, comm.rank()); });
  TH_CHECK(opt.compute == DType::F32 || opt.compute == DType::BF16 || opt.compute == DType::F16,
           std::string("compute type ") + to_string(opt.compute));
  if (opt.compute != DType::F32)
    master_ = Tensor::zeros({std::max<std::int64_t>(opt.stage == 0 ? P : S, 1)}, DType::F32, MemCategory::OptimizerState);

  // Initial values, the same on every rank (deterministic from the seed).
  if (opt.stage < 3) {
    ps_.initialize(opt.seed);
    comm.broadcast(ps_.values(), sizeof(float) * static_cast<std::size_t>(P), 0);  // rank 0's copy wins
    if (master_.defined()) {
      if (opt.stage == 0)
        std::memcpy(master_.data<float>(), ps_.values(), sizeof(float) * static_cast<std::size_t>(P));
      else
        for_each_owned([&](float* v, float*, std::int64_t shard, std::int64_t n) {
          std::memcpy(master_.data<float>() + shard, v, sizeof(float) * static_cast<std::size_t>(n));
        });
      round_compute(ps_.values(), P);
    }
  } else {  // unit by unit: only one unit is ever whole
    // offload_param = 'nvme': the initial partition is assembled in a transient workspace and
    // written to the file once.
    Tensor init = pfile_ ? Tensor::zeros({std::max<std::int64_t>(S, 1)}, DType::F32, MemCategory::Workspace)
                         : shard_values_;
    for (int u = 0; u < gatherer_->count(); ++u) {
      ps_.initialize(opt.seed, gatherer_->begin(u), gatherer_->end(u));
      if (master_.defined()) {
        for (const auto& p : part_.pieces())
          if (p.unit == u)
            std::memcpy(master_.data<float>() + p.shard, rvalues_->data() + part_.owned(p),
                        sizeof(float) * static_cast<std::size_t>(p.count));
        round_compute(rvalues_->data() + gatherer_->begin(u), gatherer_->end(u) - gatherer_->begin(u));
      }
      for (const auto& p : part_.pieces())
        if (p.unit == u)
          std::memcpy(init.data<float>() + p.shard, rvalues_->data() + part_.owned(p),
                      sizeof(float) * static_cast<std::size_t>(p.count));
      rvalues_->account();
      if (gatherer_->persistent(u))
        gatherer_->mark_resident(u);
      else
        rvalues_->release(gatherer_->begin(u), gatherer_->end(u), false);
    }
    rvalues_->account();
    if (pfile_) write_partition(init.data<float>(), false);
  }

  // Gradient communication.
  if (opt.stage == 0) {
    sync_ = std::make_unique<GradientSync>(comm, P, opt.bucket_mb, opt.overlap);
    return;
  }
  std::vector<GradientSync::Bucket> buckets;
  const auto& pieces = part_.pieces();
  for (std::size_t k = pieces.size(); k-- > 0;)
    buckets.push_back({pieces[k].begin, pieces[k].begin + pieces[k].count * N});
  sync_ = std::make_unique<GradientSync>(comm, std::move(buckets), opt.overlap, [this](std::size_t i) {
    const Piece& p = part_.pieces()[part_.pieces().size() - 1 - i];
    float* block = ps_.grads() + p.begin;  // the in-place reduce-scatter left this rank's sum here
    if (opt_.stage == 1) {
      if (part_.rank() > 0)
        std::memmove(ps_.grads() + part_.owned(p), block, sizeof(float) * static_cast<std::size_t>(p.count));
    } else {  // accumulate into the partition, then give the bucket's pages back
      cpu::add_inplace(shard_grads_.data<float>() + p.shard, block, p.count);
      rgrads_->account();
      rgrads_->release(p.begin, p.begin + p.count * part_.world(), true);
      rgrads_->account();
    }
  });
}

ZeroEngine::~ZeroEngine() {
  model_.set_param_access(nullptr);
}

void ZeroEngine::zero_grad() {
  if (opt_.stage <= 1) {
    ps_.zero_grad();
  } else {
    shard_grads_.zero_();
    rgrads_->release(0, ps_.size(), true);
    rgrads_->account();
  }
}

void ZeroEngine::begin_backward(bool last_micro_batch) {
  // Stages 2-3 reduce every micro-batch (the full gradient is never kept); 0-1 only the last.
  communicating_ = opt_.stage >= 2 || last_micro_batch;
  rounded_from_ = ps_.size();
  sync_->begin_backward(ps_.grads(), communicating_);
}

Transformer<float>::GradsReadyFn ZeroEngine::hook() {
  return [this](std::int64_t w) {
    if (master_.defined() && communicating_ && w < rounded_from_) {  // 16-bit gradients into the reduction
      round_compute(ps_.grads() + w, rounded_from_ - w);
      rounded_from_ = w;
    }
    if (rgrads_) rgrads_->account();  // the bucket pages backward has written so far
    sync_->grads_ready(w);
  };
}

void ZeroEngine::finish_backward() {
  sync_->finish();
  if (rgrads_) {  // every bucket is in the partition now: the pages shared by neighbours go too
    rgrads_->release(0, ps_.size(), true);
    rgrads_->account();
  }
}

void ZeroEngine::for_each_owned(
    const std::function<void(float* value, float* grad, std::int64_t shard, std::int64_t n)>& f) {
  for (const Piece& p : part_.pieces()) {
    // offload_param = 'nvme': the values are in the file (nullptr here).
    float* v = opt_.stage != 3            ? ps_.values() + part_.owned(p)
               : shard_values_.defined() ? shard_values_.data<float>() + p.shard
                                         : nullptr;
    float* g = opt_.stage == 1 ? ps_.grads() + part_.owned(p) : shard_grads_.data<float>() + p.shard;
    f(v, g, p.shard, p.count);
  }
}

double ZeroEngine::clip_and_norm(double max_norm, double loss_scale) {
  if (opt_.stage == 0) {
    if (loss_scale != 1.0) cpu::scale_inplace(ps_.grads(), static_cast<float>(1.0 / loss_scale), ps_.size());
    return clip_by_global_norm(ps_.grads(), ps_.size(), cpu::sum_squares(ps_.grads(), ps_.size()), max_norm);
  }
  const float inv = loss_scale == 1.0 ? 1.0f / static_cast<float>(comm_.size())
                                      : static_cast<float>(1.0 / (comm_.size() * loss_scale));
  double sq = 0;
  for_each_owned([&](float*, float* g, std::int64_t, std::int64_t n) {
    cpu::scale_inplace(g, inv, n);  // sums over ranks -> averages
    sq += cpu::sum_squares(g, n);
  });
  sq = comm_.sum(sq);
  for_each_owned([&](float*, float* g, std::int64_t, std::int64_t n) { clip_by_global_norm(g, n, sq, max_norm); });
  return std::sqrt(sq);
}

// Stage 3. Without parameter offload the partition is gathered straight into the working range.
// With offload_param = 'cpu' the partition is the host copy: the rank's own block is first
// copied up into its place in the working range (host -> device on a GPU build; a memcpy here),
// then the working range is all-gathered in place, so the collective only touches working memory.
// With offload_param = 'nvme' that copy comes from the file: stage_pieces() reads the chunks
// holding the rank's blocks (verified) into their places before the gathers start.
CommRequestPtr ZeroEngine::gather_piece(const Piece& p) {
  float* working = rvalues_ ? rvalues_->data() : ps_.values();
  const auto count = static_cast<std::size_t>(p.count);
  if (opt_.offload.param == "none")
    return comm_.iall_gather(shard_values_.data<float>() + p.shard, working + p.begin, count);
  if (!pfile_) {
    ProfileScope scope(profiler(), "offload/param_upload", Category::Offload);
    std::memcpy(working + part_.owned(p), shard_values_.data<float>() + p.shard, sizeof(float) * count);
  }
  return comm_.iall_gather(working + part_.owned(p), working + p.begin, count);
}

void ZeroEngine::stage_pieces(const std::vector<std::size_t>& idx) {
  if (idx.empty()) return;
  float* working = rvalues_->data();
  const auto& pieces = part_.pieces();
  std::int64_t lo = pieces[idx.front()].shard, hi = lo;
  for (std::size_t k : idx) {
    lo = std::min(lo, pieces[k].shard);
    hi = std::max(hi, pieces[k].shard + pieces[k].count);
  }
  agree_each(comm_, [&] {
    ProfileScope scope(profiler(), "offload/param_upload", Category::Offload);
    pfile_->read_range(lo, hi, [&](const float* a, std::int64_t c0, std::int64_t c1) {
      for (std::size_t k : idx) {
        const Piece& p = pieces[k];
        const std::int64_t b = std::max(c0, p.shard), e = std::min(c1, p.shard + p.count);
        if (b < e)
          std::memcpy(working + part_.owned(p) + (b - p.shard), a + (b - c0), sizeof(float) * static_cast<std::size_t>(e - b));
      }
    });
  });
}

Tensor ZeroEngine::read_partition() {
  Tensor x = Tensor::zeros({std::max<std::int64_t>(part_.shard_size(), 1)}, DType::F32, MemCategory::Workspace);
  float* out = x.data<float>();
  agree_each(comm_, [&] {
    pfile_->stream([&](float* a, float*, std::int64_t c0, std::int64_t c1) {
      std::memcpy(out + c0, a, sizeof(float) * static_cast<std::size_t>(c1 - c0));
    }, false);
  });
  return x;
}

void ZeroEngine::write_partition(const float* x, bool round) {
  agree_each(comm_, [&] {
    pfile_->fill([&](float* a, float*, std::int64_t c0, std::int64_t c1) {
      std::memcpy(a, x + c0, sizeof(float) * static_cast<std::size_t>(c1 - c0));
      if (round) round_compute(a, c1 - c0);
    });
  });
}

bool ZeroEngine::local_overflow() {
  // fp16: the reduction of a real fp16 run carries averages (DeepSpeed divides by N before the
  // all-reduce); stage 0's buffer holds the average already, stages 1-3 hold the sum over ranks.
  const float limit = opt_.compute == DType::F16
                          ? 65504.0f * static_cast<float>(opt_.stage == 0 ? 1 : comm_.size())
                          : std::numeric_limits<float>::max();
  bool bad = false;
  const auto scan = [&](const float* g, std::int64_t n) {
    for (std::int64_t i = 0; i < n && !bad; ++i) bad = !(std::fabs(g[i]) <= limit);  // NaN too
  };
  if (opt_.stage == 0)
    scan(ps_.grads(), ps_.size());
  else
    for_each_owned([&](float*, float* g, std::int64_t, std::int64_t n) { scan(g, n); });
  return bad;
}

void ZeroEngine::inject_overflow() {
  if (opt_.stage == 0) {
    ps_.grads()[0] = std::numeric_limits<float>::infinity();
    return;
  }
  bool done = false;
  for_each_owned([&](float*, float* g, std::int64_t, std::int64_t n) {
    if (!done && n > 0) g[0] = std::numeric_limits<float>::infinity(), done = true;
  });
}

void ZeroEngine::round_compute(float* x, std::int64_t n) const {
  if (opt_.compute == DType::BF16) cpu::round_to_bf16(x, n);
  if (opt_.compute == DType::F16) cpu::round_to_fp16(x, n);
}

void ZeroEngine::master_to_compute() {
  if (pfile_) {  // the compute values of the partition live in the NVMe file
    write_partition(master_.data<float>(), true);
    return;
  }
  if (opt_.stage == 0) {
    std::memcpy(ps_.values(), master_.data<float>(), sizeof(float) * static_cast<std::size_t>(ps_.size()));
    round_compute(ps_.values(), ps_.size());
    return;
  }
  for_each_owned([&](float* v, float*, std::int64_t shard, std::int64_t n) {
    std::memcpy(v, master_.data<float>() + shard, sizeof(float) * static_cast<std::size_t>(n));
    round_compute(v, n);
  });
}

void ZeroEngine::all_gather_pieces(bool persistent_only) {
  std::vector<CommRequestPtr> reqs;
  if (pfile_) {
    std::vector<std::size_t> idx;
    for (std::size_t k = 0; k < part_.pieces().size(); ++k)
      if (!persistent_only || gatherer_->persistent(part_.pieces()[k].unit)) idx.push_back(k);
    stage_pieces(idx);
  }
  for (const Piece& p : part_.pieces()) {
    if (persistent_only && !gatherer_->persistent(p.unit)) continue;
    if (opt_.stage == 3)
      reqs.push_back(gather_piece(p));
    else
      reqs.push_back(comm_.iall_gather(ps_.values() + part_.owned(p), ps_.values() + p.begin,
                                       static_cast<std::size_t>(p.count)));
  }
  for (auto& r : reqs) r->wait();
}

void ZeroEngine::update(double lr) {
  // Mixed precision: Adam updates the fp32 master, the compute copy is rounded from it.
  float* master = master_.defined() ? master_.data<float>() : nullptr;
  if (opt_.stage == 0) {
    adam_->step(master ? master : ps_.values(), ps_.grads(), lr);
    if (master) master_to_compute();
    return;
  }
  if (gatherer_) gatherer_->drop();  // nothing gathered ahead may outlive the old values
  if (pfile_ && !master) {
    // offload_param = 'nvme', fp32: the partition values stream through the file's two slots;
    // each chunk is updated in its slot and written back (an I/O error on any rank stops all).
    if (offload_)
      offload_->next_step();
    else
      adam_->next_step();
    agree_each(comm_, [&] {
      pfile_->stream([&](float* x, float*, std::int64_t c0, std::int64_t c1) {
        std::vector<AdamSpan> spans;
        for (const Piece& p : part_.pieces()) {
          const std::int64_t lo = std::max(c0, p.shard), hi = std::min(c1, p.shard + p.count);
          if (lo < hi) spans.push_back({x + (lo - c0), shard_grads_.data<float>() + lo, lo, hi - lo});
        }
        if (offload_)
          offload_->update(spans, lr);
        else
          for (const AdamSpan& a : spans) adam_->update(a.param, a.grad, a.offset, a.n, lr);
      }, true);
    });
  } else if (offload_) {
    // The partition's spans go to the host step (a GPU build copies their gradients down before
    // and their parameters up after); an I/O error on any rank stops every rank. Mixed precision:
    // the spans point into the fp32 master.
    offload_->next_step();
    std::vector<AdamSpan> spans;
    for_each_owned([&](float* v, float* g, std::int64_t shard, std::int64_t n) {
      spans.push_back({master ? master + shard : v, g, shard, n});
    });
    agree_each(comm_, [&] { offload_->update(spans, lr); });
  } else {
    adam_->next_step();
    for_each_owned([&](float* v, float* g, std::int64_t shard, std::int64_t n) {
      adam_->update(master ? master + shard : v, g, shard, n, lr);
    });
  }
  if (master) master_to_compute();
  all_gather_pieces(opt_.stage == 3);  // stage 3: only the persistent units are kept whole
  if (gatherer_) gatherer_->stop_recording();
}

void ZeroEngine::skip_update() {
  if (!gatherer_) return;
  gatherer_->drop();  // as after an update: the recorded order is complete after the first step
  gatherer_->stop_recording();
}

void ZeroEngine::drop_prefetched() {
  if (gatherer_) gatherer_->drop();
}

std::int64_t ZeroEngine::steps() const { return offload_ ? offload_->steps() : adam_->steps(); }
void ZeroEngine::set_steps(std::int64_t t) {
  if (offload_)
    offload_->set_steps(t);
  else
    adam_->set_steps(t);
}

std::vector<float> ZeroEngine::gather_values() {
  if (opt_.stage < 3) return std::vector<float>(ps_.values(), ps_.values() + ps_.size());
  std::vector<float> full(static_cast<std::size_t>(ps_.size()), 0.0f);
  const Tensor staged = pfile_ ? read_partition() : shard_values_;
  for (const Piece& p : part_.pieces())
    comm_.all_gather(staged.data<float>() + p.shard, full.data() + p.begin, static_cast<std::size_t>(p.count));
  return full;
}

void ZeroEngine::save(const std::string& dir, const CheckpointState& st, int keep_last) {
  const auto tensors = checkpoint_tensors(ps_.infos());
  if (opt_.stage == 0) {  // every rank holds everything: rank 0 writes it all
    const std::int64_t end = comm_.rank() == 0 ? ps_.size() : 0;
    save_checkpoint(comm_, dir, tensors, master_.defined() ? master_.data<float>() : ps_.values(), adam_->exp_avg(), adam_->exp_avg_sq(), 0, end, st, keep_last);
    return;
  }
  // Every rank writes its partition: parameters in partition layout (stages 1-2: copied from the
  // full buffer for the write), moments as they are.
  Tensor copy;
  if (pfile_ && !master_.defined()) copy = read_partition();  // verified reads of the file
  const float* values = master_.defined()        ? master_.data<float>()
                        : shard_values_.defined() ? shard_values_.data<float>()
                        : copy.defined()          ? copy.data<float>()
                                                  : nullptr;
  if (!values) {
    copy = Tensor::empty({std::max<std::int64_t>(part_.shard_size(), 1)}, DType::F32, MemCategory::Workspace);
    for_each_owned([&](float* v, float*, std::int64_t shard, std::int64_t n) {
      std::memcpy(copy.data<float>() + shard, v, sizeof(float) * static_cast<std::size_t>(n));
    });
    values = copy.data<float>();
  }
  // Offloaded moments: from the host directly, or read back from the NVMe file (verified) into a
  // staging buffer for the write.
  float* m = adam_ ? adam_->exp_avg() : offload_->host_exp_avg();
  float* v = adam_ ? adam_->exp_avg_sq() : offload_->host_exp_avg_sq();
  Tensor staged;
  if (!m) {
    staged = Tensor::empty({2 * std::max<std::int64_t>(part_.shard_size(), 1)}, DType::F32, MemCategory::Workspace);
    m = staged.data<float>();
    v = m + std::max<std::int64_t>(part_.shard_size(), 1);
    agree_each(comm_, [&] { offload_->read_moments(m, v); });
  }
  save_checkpoint(comm_, dir, tensors, values, m, v, part_.owned_ranges(), st, keep_last);
}

CheckpointState ZeroEngine::load(const std::string& path) {
  const auto tensors = checkpoint_tensors(ps_.infos());
  if (opt_.stage == 0) {
    const CheckpointState st = load_checkpoint(comm_, path, tensors, master_.defined() ? master_.data<float>() : ps_.values(),
                                               adam_->exp_avg(), adam_->exp_avg_sq(), 0, ps_.size());
    if (master_.defined()) master_to_compute();
    return st;
  }
  Tensor copy;
  float* values = master_.defined()        ? master_.data<float>()
                  : shard_values_.defined() ? shard_values_.data<float>()
                                            : nullptr;
  if (!values) {
    copy = Tensor::zeros({std::max<std::int64_t>(part_.shard_size(), 1)}, DType::F32, MemCategory::Workspace);
    values = copy.data<float>();
  }
  float* m = adam_ ? adam_->exp_avg() : offload_->host_exp_avg();
  float* v = adam_ ? adam_->exp_avg_sq() : offload_->host_exp_avg_sq();
  Tensor staged;  // NVMe: the moments go through a staging buffer into the file
  if (!m) {
    staged = Tensor::zeros({2 * std::max<std::int64_t>(part_.shard_size(), 1)}, DType::F32, MemCategory::Workspace);
    m = staged.data<float>();
    v = m + std::max<std::int64_t>(part_.shard_size(), 1);
  }
  const CheckpointState st = load_checkpoint(comm_, path, tensors, values, m, v, part_.owned_ranges());
  if (staged.defined()) agree_each(comm_, [&] { offload_->write_moments(m, v); });
  if (master_.defined())
    master_to_compute();
  else if (pfile_)
    write_partition(copy.data<float>(), false);
  else if (copy.defined())
    for_each_owned([&](float* v, float*, std::int64_t shard, std::int64_t n) {
      std::memcpy(v, copy.data<float>() + shard, sizeof(float) * static_cast<std::size_t>(n));
    });
  all_gather_pieces(opt_.stage == 3);
  return st;
}

bool ZeroEngine::replicas_identical() {
  if (opt_.stage < 3) return th::replicas_identical(comm_, ps_.values(), ps_.size());
  std::vector<float> kept;  // stage 3: only the persistent units are replicated
  for (int u = 0; u < gatherer_->count(); ++u)
    if (gatherer_->persistent(u)) kept.insert(kept.end(), ps_.values() + gatherer_->begin(u), ps_.values() + gatherer_->end(u));
  return th::replicas_identical(comm_, kept.data(), static_cast<std::int64_t>(kept.size()));
}

ZeroMemory ZeroEngine::memory() const {
  const MemoryPool& pool = host_pool();
  ZeroMemory m;
  m.psi = ps_.size();
  m.params = pool.live(MemCategory::Parameters);
  m.grads = pool.live(MemCategory::Gradients);
  m.optimizer = pool.live(MemCategory::OptimizerState);
  m.activation_peak = pool.peak(MemCategory::Activations);
  if (offload_) {
    const OffloadMemory o = offload_->memory();
    m.offload_host = o.host;
    m.offload_window = o.window;
    m.offload_nvme = o.nvme;
  }
  if (opt_.offload.param == "cpu") m.offload_host += static_cast<std::int64_t>(sizeof(float)) * part_.shard_size();
  if (pfile_) {  // 'nvme': the host holds the file's two chunk slots
    m.offload_host += pfile_->window_bytes();
    m.offload_window += pfile_->window_bytes();
    m.offload_nvme += pfile_->file_bytes();
  }
  const double psi = static_cast<double>(m.psi), n = comm_.size();
  const double f[4] = {16 * psi, 8 * psi + 8 * psi / n, 4 * psi + 12 * psi / n, 16 * psi / n};
  // Mixed precision as stored here: fp32 compute copy and gradients, plus the fp32 master (4 Psi,
  // partitioned from stage 1 on).
  const double master = master_.defined() ? 4 * psi / (opt_.stage == 0 ? 1 : n) : 0;
  m.formula = static_cast<std::int64_t>(f[opt_.stage] + master);
  return m;
}

std::vector<ZeroMemory> ZeroEngine::memory_all() const {
  const auto n = static_cast<std::size_t>(comm_.size()), me = static_cast<std::size_t>(comm_.rank());
  const ZeroMemory m = memory();
  constexpr std::size_t K = 9;
  std::vector<std::int64_t> v(K * n, 0);
  const std::int64_t mine[K] = {m.psi,     m.params,          m.grads,        m.optimizer,   m.formula,
                                m.activation_peak, m.offload_host, m.offload_window, m.offload_nvme};
  std::copy(mine, mine + K, v.begin() + static_cast<std::ptrdiff_t>(K * me));
  comm_.allreduce(v.data(), v.size(), ReduceOp::Sum);
  std::vector<ZeroMemory> all(n);
  for (std::size_t r = 0; r < n; ++r) {
    const std::int64_t* x = v.data() + K * r;
    all[r] = {x[0], x[1], x[2], x[3], x[4], x[5], x[6], x[7], x[8]};
  }
  return all;
}

double ZeroEngine::theory_bytes_per_step() const {
  const double psi = static_cast<double>(ps_.size()), n = comm_.size();
  return (opt_.stage == 3 ? 3 : 2) * psi * (n - 1) / n * sizeof(float);
}

}  // namespace th
