#pragma once
// The parts of a ZeroEngine (th/train/zero.hpp), wired together by engine.cpp; the checkpoint
// adapter (checkpoint_adapter.cpp) and the memory accounting (memory_accounting.cpp) read them.
#include <memory>

#include "grad_reduction.hpp"
#include "optimizer_step.hpp"
#include "optimizer_store.hpp"
#include "owned_span.hpp"
#include "param_home.hpp"
#include "stage_policy.hpp"
#include "th/train/zero.hpp"

namespace th {

struct ZeroEngine::Impl {
  Impl(Comm& comm, Transformer<float>& model, const ZeroOptions& opt);

  Comm& comm;
  Transformer<float>& model;
  ParamStore<float>& ps;
  ZeroOptions opt;
  zero::StagePolicy policy;
  ZeroPartition part;
  // Declaration order is construction order: gradients, parameters, moments, master, buckets.
  std::unique_ptr<zero::GradReduction> grads;
  std::unique_ptr<zero::ParamHome> params;
  std::unique_ptr<zero::OptimizerStore> store;
  zero::OwnedSpans spans;
  std::unique_ptr<zero::OptimizerStep> step;
};

}  // namespace th
