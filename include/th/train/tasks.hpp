#pragma once
// The tasks a run can perform (run%task). Each takes the validated config and the world
// communicator; output goes to cfg.run.output_dir (rank 0 writes files).
#include <cstdio>

#include "th/config/config.hpp"
#include "th/model/model_spec.hpp"
#include "th/model/transformer.hpp"
#include "th/parallel/comm.hpp"

namespace th {

struct ZeroOptions;
ZeroOptions zero_options(const Config& cfg);  // the &parallel and &optim keys ZeRO needs

// Where rank 0's messages go: stdout, except for task='translate' or 'generate' writing its text
// to stdout (translate%output_file / generate%output_file empty), whose messages go to stderr so
// the output can be piped.
inline std::FILE* task_log(const Config& cfg) {
  const bool text_to_stdout = (cfg.run.task == "translate" && cfg.translate.output_file.empty()) ||
                              (cfg.run.task == "generate" && cfg.generate.output_file.empty());
  return text_to_stdout ? stderr : stdout;
}
void run_train(const Config& cfg, Comm& comm);   // src/train/trainer.cpp
void run_bench(const Config& cfg, Comm& comm);   // src/train/bench.cpp
// The tasks on a trained model (evaluate, translate, generate) are in th/eval/tasks.hpp.

}  // namespace th
