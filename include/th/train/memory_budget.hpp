#pragma once
// Sizes refused before anything is allocated: a deck whose synthetic data set or model cannot fit
// in the memory this rank may use (th/core/host_memory.hpp) stops every rank alike with a
// th::InputError naming the keys, the bytes needed and the bytes available, instead of a
// std::bad_alloc (or the kernel's OOM killer) minutes later. The needs are lower bounds (what
// the data and the model states take at the least), so a run that fits is never refused.
#include "th/config/config.hpp"
#include "th/model/transformer.hpp"
#include "th/parallel/comm.hpp"

namespace th {

// Collective. data%synthetic = 'copy' / 'reverse': every rank generates the whole training and
// validation sets (at least 48 bytes of vectors, 8 of lengths and 8 per token pair each).
void check_synthetic_data_fits(const Config& cfg, Comm& comm);

// Collective. The model states per rank at the deck's ZeRO stage (16 bytes per parameter at stage
// 0: fp32 parameters, gradients and two Adam moments; the stage's partitioning and NVMe offload
// as in the memory report) plus the positional table; with weights_only (evaluate, translate)
// the parameters alone.
void check_model_fits(const Config& cfg, const ModelSpec& spec, Comm& comm, bool weights_only = false);

}  // namespace th
