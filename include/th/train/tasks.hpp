#pragma once
// The tasks a run can perform (run%task). Each takes the validated config and the world
// communicator; output goes to cfg.run.output_dir (rank 0 writes files).
#include "io/config.hpp"
#include "th/model/transformer.hpp"
#include "th/parallel/comm.hpp"

namespace th {

ModelSpec model_spec(const Config& cfg, int vocab_size);
struct ZeroOptions;
ZeroOptions zero_options(const Config& cfg);  // the &parallel and &optim keys ZeRO needs
void run_train(const Config& cfg, Comm& comm);
void run_bench(const Config& cfg, Comm& comm);

}  // namespace th
