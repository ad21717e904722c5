#include "grad_reduction.hpp"

#include <algorithm>
#include <cstring>
#include <utility>
#include <vector>

#include "precision.hpp"

namespace th::zero {

using Piece = ZeroPartition::Piece;

void GradReduction::begin_backward(bool last_micro_batch) {
  communicating_ = reduce_every_micro_batch() || last_micro_batch;
  rounded_from_ = ps_.size();
  begin_sync(communicating_);
}

void GradReduction::finalize(std::int64_t w, std::int64_t end) {
  if (compute_ != DType::F32) round_to_compute(ps_.backend(), compute_, ps_.grads() + w, end - w);
}

void GradReduction::grads_ready(std::int64_t w) {
  if (communicating_ && w < rounded_from_) {  // the gradients into the reduction
    finalize(w, rounded_from_);
    rounded_from_ = w;
  }
  account();  // the bucket pages backward has written so far
  sync_->grads_ready(w);
}

void GradReduction::finish() {
  sync_->finish();
  after_finish();
}

namespace {

// Buckets of the reduce-scatter modes: the partition's segments, from the end of the buffer.
std::vector<GradientSync::Bucket> segment_buckets(const ZeroPartition& part) {
  std::vector<GradientSync::Bucket> buckets;
  const auto& pieces = part.pieces();
  for (std::size_t k = pieces.size(); k-- > 0;)
    buckets.push_back({pieces[k].begin, pieces[k].begin + pieces[k].count * part.world()});
  return buckets;
}

const Piece& bucket_piece(const ZeroPartition& part, std::size_t i) {
  return part.pieces()[part.pieces().size() - 1 - i];
}

class AllReduce final : public GradReduction {
 public:
  AllReduce(ParamStore<float>& ps, DType compute) : GradReduction(ps, compute) {}
  void zero_grad() override { ps_.zero_grad(); }
  float* owned(const Piece& p) override { return ps_.grads() + p.begin; }

 private:
  std::unique_ptr<GradientSync> make_sync(Comm& comm, const ZeroOptions& opt) override {
    return std::make_unique<GradientSync>(comm, ps_.size(), opt.bucket_mb, opt.overlap, ps_.backend());
  }
};

class ScatterInPlace final : public GradReduction {
 public:
  ScatterInPlace(ParamStore<float>& ps, const ZeroPartition& part, DType compute)
      : GradReduction(ps, compute), part_(part) {}
  void zero_grad() override { ps_.zero_grad(); }
  float* owned(const Piece& p) override { return ps_.grads() + part_.owned(p); }

 private:
  std::unique_ptr<GradientSync> make_sync(Comm& comm, const ZeroOptions& opt) override {
    return std::make_unique<GradientSync>(comm, segment_buckets(part_), opt.overlap, [this](std::size_t i) {
      const Piece& p = bucket_piece(part_, i);
      float* block = ps_.grads() + p.begin;  // the in-place reduce-scatter left this rank's sum here
      if (part_.rank() > 0) copy_device(ps_.backend(), ps_.grads() + part_.owned(p), block, p.count);
    }, ps_.backend());
  }
  const ZeroPartition& part_;
};

class ScatterPartition final : public GradReduction, public GradAccess {
 public:
  ScatterPartition(ParamStore<float>& ps, const ZeroPartition& part, DType compute)
      : GradReduction(ps, compute), part_(part), range_(ps.size(), MemCategory::Gradients, ps.backend()),
        shard_(ps.backend().zeros({part.shard_size()}, DType::F32, MemCategory::Gradients)) {}
  void zero_grad() override {
    ps_.backend().zero(shard_.raw(), shard_.bytes(), MemorySpace::Device);
    range_.clear();
  }
  float* owned(const Piece& p) override { return shard_.data<float>() + p.shard; }
  float* working() override { return range_.data(); }
  GradAccess* grad_access() override { return this; }
  // The unit's segments (their padding included) are backed before its gradients are written;
  // each bucket gives its part back after its reduce-scatter.
  void writing(int unit) override {
    for (const ParamSegment& s : ps_.segments())
      if (s.unit == unit) range_.commit(s.begin, s.end, Backing::OnTouch);
  }
  void writing_range(std::int64_t b, std::int64_t e) override { range_.commit(b, e, Backing::Now); }

 private:
  std::unique_ptr<GradientSync> make_sync(Comm& comm, const ZeroOptions& opt) override {
    return std::make_unique<GradientSync>(comm, segment_buckets(part_), opt.overlap, [this](std::size_t i) {
      const Piece& p = bucket_piece(part_, i);
      // accumulate into the partition, then give the bucket's pages back
      ps_.backend().f32().add_inplace(shard_.data<float>() + p.shard, ps_.grads() + p.begin, p.count);
      range_.account();
      range_.release(p.begin, p.begin + p.count * part_.world(), true);
      range_.account();
    }, ps_.backend());
  }
  bool reduce_every_micro_batch() const override { return true; }
  void account() override { range_.account(); }
  void after_finish() override { range_.clear(); }  // every bucket is in the partition: shared pages go too
  const ZeroPartition& part_;
  ReservedRange range_;
  Tensor shard_;
};

class TwoByte final : public GradReduction, public GradAccess {
 public:
  // part: the partition (stage 1: reduce-scatter in place; stages 2-3, `partitioned`: into the
  // rank's 2-byte partition), nullptr at stage 0 (all-reduce).
  // half: bf16 or fp16 (the compute type: the gradients' type on the wire too).
  TwoByte(ParamStore<float>& ps, const ZeroPartition* part, bool partitioned, DType half)
      : GradReduction(ps, half), part_(part), window_(ps.size(), MemCategory::Gradients, ps.backend()),
        chunk_(ps.backend().empty({kChunk}, DType::F32, MemCategory::Workspace)) {
    Backend& be = ps.backend();
    if (partitioned) {  // the full-size 2-byte range, backed where taken until its bucket is reduced
      range16_ = std::make_unique<ReservedRange>(ps.size(), MemCategory::Gradients, be, sizeof(std::uint16_t));
      g16_ = range16_->data16();
      kept_ = be.zeros({part->shard_size()}, half, MemCategory::Gradients);  // the rank's partition
      return;  // the model's gradients are working(), attached with the parameters
    }
    kept_ = be.zeros({ps.size()}, half, MemCategory::Gradients);
    g16_ = static_cast<std::uint16_t*>(kept_.raw());
    TH_CHECK(!ps.grads(), "2-byte gradients: the model has a gradient buffer of its own");
    ps.attach_grads(window_.data());
  }
  void zero_grad() override {
    ps_.backend().zero(kept_.raw(), kept_.bytes(), MemorySpace::Device);
    if (range16_) range16_->clear();
    window_.clear();
  }
  float* owned(const Piece&) override { return nullptr; }
  std::uint16_t* owned16(const Piece& p) override {
    if (range16_) return shard16() + p.shard;
    return g16_ + (part_ ? part_->owned(p) : p.begin);
  }
  bool two_byte() const override { return true; }
  float* working() override { return range16_ ? window_.data() : nullptr; }
  GradAccess* grad_access() override { return this; }
  // A unit written (again): its segments backed; what written() took of it is taken again at the
  // end (the tied embeddings: the lookup's gradients add to the output projection's).
  // The window's pages are backed parameter by parameter (writing_range) and given back as each is
  // taken, so the whole unit is never held at once.
  void writing(int unit) override {
    for (const ParamSegment& s : ps_.segments())
      if (s.unit == unit) {
        window_.commit(s.begin, s.end, Backing::OnTouch);
        taken_.erase(std::remove_if(taken_.begin(), taken_.end(),
                                    [&](const Range& r) { return r.first >= s.begin && r.second <= s.end; }),
                     taken_.end());
      }
    window_.account();
  }
  // Each parameter's pages backed just before its kernel writes it (they go again when taken).
  void writing_range(std::int64_t b, std::int64_t e) override { window_.commit(b, e, Backing::Now); }
  bool takes_written() const override { return true; }
  void written(std::int64_t b, std::int64_t e) override {
    take(b, e);
    taken_.emplace_back(b, e);
  }

 private:
  using Range = std::pair<std::int64_t, std::int64_t>;
  static constexpr std::int64_t kChunk = 1 << 16;
  std::uint16_t* shard16() const { return static_cast<std::uint16_t*>(kept_.raw()); }  // stages 2-3
  // The window's gradients [b, e) into the 2-byte ones, then given back: rounded, where nothing
  // was taken there before in this backward; else added to what was (the tied embeddings' rows:
  // the lookups' gradients onto the output projection's, each part rounded once).
  void take(std::int64_t b, std::int64_t e) {
    Backend& be = ps_.backend();
    const bool fresh =
        std::none_of(dirty_.begin(), dirty_.end(), [&](const Range& r) { return r.first < e && r.second > b; });
    if (range16_) {
      range16_->commit(b, e, Backing::OnTouch);
      range16_->account();
    }
    if (fresh) {
      be.narrow_16bit(compute_, g16_ + b, ps_.grads() + b, e - b);
    } else {
      float* t = chunk_.data<float>();
      for (std::int64_t i = b; i < e; i += kChunk) {
        const std::int64_t m = std::min(kChunk, e - i);
        be.widen_16bit(compute_, t, g16_ + i, m);
        be.f32().add_inplace(t, ps_.grads() + i, m);
        be.narrow_16bit(compute_, g16_ + i, t, m);
      }
    }
    dirty_.emplace_back(b, e);
    window_.account();  // the pages written: the window's peak
    window_.release(b, e, true);
    window_.account();
  }
  // Final gradients [w, end): taken, but for the ranges written() has taken already.
  void finalize(std::int64_t w, std::int64_t end) override {
    std::vector<Range> skip;
    for (const Range& r : taken_)
      if (r.first < end && r.second > w) skip.emplace_back(std::max(r.first, w), std::min(r.second, end));
    std::sort(skip.begin(), skip.end());
    std::int64_t at = w;
    for (const Range& r : skip) {
      if (r.first > at) take(at, r.first);
      at = std::max(at, r.second);
    }
    if (at < end) take(at, end);
  }
  void begin_sync(bool communicating) override {
    taken_.clear();
    dirty_.clear();
    sync_->begin_backward16(g16_, communicating);
  }
  std::unique_ptr<GradientSync> make_sync(Comm& comm, const ZeroOptions& opt) override {
    if (!part_) return std::make_unique<GradientSync>(comm, ps_.size(), opt.bucket_mb, opt.overlap, ps_.backend());
    return std::make_unique<GradientSync>(comm, segment_buckets(*part_), opt.overlap, [this](std::size_t i) {
      const Piece& p = bucket_piece(*part_, i);  // the in-place reduce-scatter left this rank's sum at p.begin
      if (range16_) {  // into the partition (one micro-batch per step: a copy), then the bucket given back
        copy_device(ps_.backend(), shard16() + p.shard, g16_ + p.begin, p.count);
        range16_->release(p.begin, p.begin + p.count * part_->world(), true);
        range16_->account();
      } else if (part_->rank() > 0) {
        copy_device(ps_.backend(), g16_ + part_->owned(p), g16_ + p.begin, p.count);
      }
    }, ps_.backend());
  }
  bool reduce_every_micro_batch() const override { return true; }  // one micro-batch per step
  void account() override {
    window_.account();
    if (range16_) range16_->account();
  }
  void after_finish() override {  // every bucket reduced: the pages shared by neighbours go too
    window_.clear();
    if (range16_) range16_->clear();
  }
  const ZeroPartition* part_;
  ReservedRange window_;
  std::unique_ptr<ReservedRange> range16_;  // stages 2-3: the full-size 2-byte range
  // What is kept between backward and the update: the full-size 2-byte buffer (stages 0-1; g16_
  // points into it) or the rank's 2-byte partition (stages 2-3; g16_ points into range16_).
  Tensor kept_, chunk_;
  std::uint16_t* g16_ = nullptr;  // the full-size 2-byte gradients backward's takes round into
  std::vector<Range> taken_;  // this backward's ranges written() took (a unit written again: erased)
  std::vector<Range> dirty_;  // every range taken in this backward
};

}  // namespace

std::unique_ptr<GradReduction> make_grad_reduction(const StagePolicy& policy, ParamStore<float>& ps,
                                                   const ZeroPartition& part, DType compute, bool two_byte) {
  if (two_byte) {
    TH_CHECK(compute == DType::BF16 || compute == DType::F16, "2-byte gradients: bf16 or fp16 runs");
    return std::make_unique<TwoByte>(ps, policy.replicated ? nullptr : &part, policy.grads_partitioned, compute);
  }
  if (policy.replicated) return std::make_unique<AllReduce>(ps, compute);
  if (!policy.grads_partitioned) return std::make_unique<ScatterInPlace>(ps, part, compute);
  return std::make_unique<ScatterPartition>(ps, part, compute);
}

}  // namespace th::zero
